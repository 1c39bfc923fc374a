// Loads libnrt.so.1 with dlopen, resolves every function it uses with dlsym, and checks that
// nrt_tensor_get_va gives the tensor's own bytes: stable, shared with read/write, slices at their offset,
// attached caller buffers used in place. Prints one "ok <check>" line per check; exits 1 on the first failure.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nrt/nrt.h>

namespace {

void *library = nullptr;

template <typename Fn>
Fn *resolve(const char *name)
{
    void *symbol = dlsym(library, name);
    if (symbol == nullptr) {
        std::fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());
        std::exit(1);
    }
    return reinterpret_cast<Fn *>(symbol);
}

// The header gives each function's type; decltype does not reference the symbol, so nothing links to libnrt.
#define SYMBOL(fn) const auto p_##fn = resolve<decltype(fn)>(#fn)

void expect(bool ok, const std::string &what)
{
    if (!ok) {
        std::fprintf(stderr, "FAILED %s\n", what.c_str());
        std::exit(1);
    }
    std::printf("ok %s\n", what.c_str());
}

}  // namespace

int main()
{
    library = dlopen("libnrt.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    SYMBOL(nrt_init);
    SYMBOL(nrt_close);
    SYMBOL(nrt_tensor_allocate);
    SYMBOL(nrt_tensor_allocate_slice);
    SYMBOL(nrt_tensor_allocate_empty);
    SYMBOL(nrt_tensor_attach_buffer);
    SYMBOL(nrt_tensor_get_va);
    SYMBOL(nrt_tensor_get_size);
    SYMBOL(nrt_tensor_read);
    SYMBOL(nrt_tensor_write);
    SYMBOL(nrt_tensor_memset);
    SYMBOL(nrt_tensor_free);
    SYMBOL(nrt_get_status_as_str);

    expect(p_nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") == NRT_SUCCESS, "nrt_init");
    const size_t size = 1 << 16;
    nrt_tensor_t *t = nullptr;
    expect(p_nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, size, "va_tensor", &t) == NRT_SUCCESS, "allocate");
    expect(p_nrt_tensor_get_size(t) == size, "get_size");

    auto *va = static_cast<uint8_t *>(p_nrt_tensor_get_va(t));
    expect(va != nullptr, "get_va not NULL");
    bool zero = true;
    for (size_t i = 0; i < size; i++) zero = zero && va[i] == 0;
    expect(zero, "new tensor reads zero through its va");

    std::vector<uint8_t> pattern(size);
    for (size_t i = 0; i < size; i++) pattern[i] = static_cast<uint8_t>(i * 7 + 3);
    expect(p_nrt_tensor_write(t, pattern.data(), 0, size) == NRT_SUCCESS, "write");
    expect(std::memcmp(va, pattern.data(), size) == 0, "va bytes equal what nrt_tensor_write wrote");

    for (size_t i = 0; i < size; i++) va[i] = static_cast<uint8_t>(255 - i % 251);
    std::vector<uint8_t> back(size);
    expect(p_nrt_tensor_read(t, back.data(), 0, size) == NRT_SUCCESS, "read");
    expect(std::memcmp(back.data(), va, size) == 0, "nrt_tensor_read sees bytes stored through the va");

    expect(p_nrt_tensor_memset(t, 100, 0x5a, 50) == NRT_SUCCESS, "memset");
    expect(p_nrt_tensor_get_va(t) == va, "va stable across calls");
    expect(va[99] != 0x5a && va[100] == 0x5a && va[149] == 0x5a && va[150] != 0x5a, "memset visible through the va");

    nrt_tensor_t *slice = nullptr;
    expect(p_nrt_tensor_allocate_slice(t, 4096, 1024, "slice", &slice) == NRT_SUCCESS, "slice");
    expect(p_nrt_tensor_get_va(slice) == va + 4096, "slice va = source va + offset");

    std::vector<uint8_t> mine(8192, 0x11);
    nrt_tensor_t *attached = nullptr;
    expect(p_nrt_tensor_allocate_empty("attached", &attached) == NRT_SUCCESS, "allocate_empty");
    expect(p_nrt_tensor_get_va(attached) == nullptr, "empty tensor has no va");
    expect(p_nrt_tensor_attach_buffer(attached, mine.data(), mine.size()) == NRT_SUCCESS, "attach_buffer");
    expect(p_nrt_tensor_get_va(attached) == mine.data(), "attached tensor's va is the caller's buffer");
    expect(p_nrt_tensor_write(attached, pattern.data(), 10, 20) == NRT_SUCCESS, "write attached");
    expect(std::memcmp(mine.data() + 10, pattern.data(), 20) == 0 && mine[9] == 0x11 && mine[30] == 0x11,
           "writes land in the caller's buffer in place");
    mine[5000] = 0x77;
    uint8_t one = 0;
    expect(p_nrt_tensor_read(attached, &one, 5000, 1) == NRT_SUCCESS && one == 0x77,
           "reads see the caller's later stores (no copy)");

    p_nrt_tensor_free(&t);
    expect(t == nullptr, "free clears the pointer");
    back.assign(1024, 0);
    expect(p_nrt_tensor_read(slice, back.data(), 0, 1024) == NRT_SUCCESS &&
           back[0] == static_cast<uint8_t>(255 - 4096 % 251) && back[1023] == static_cast<uint8_t>(255 - 5119 % 251),
           "slice keeps the storage after its source is freed");
    p_nrt_tensor_free(&slice);
    p_nrt_tensor_free(&attached);
    expect(std::string(p_nrt_get_status_as_str(NRT_INVALID_HANDLE)) == "NRT_INVALID_HANDLE", "status string");
    p_nrt_close();
    dlclose(library);
    std::printf("done\n");
    return 0;
}
