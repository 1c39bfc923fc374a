/* The developer guide's first app (spec nrt-api.md section 4), call by call:
 *   first_app MODEL.neff OUT_DIR [INPUT_NAME=FILE ...]
 * mmaps the NEFF, loads it, allocates every IO tensor on NC 0, fills inputs from files (others stay zero),
 * executes, writes each output to OUT_DIR/<name>.bin, then unloads, frees and closes. It also checks that
 * nrt_tensor_get_va shows each output's bytes as nrt_tensor_read returned them. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

#include "read_file.h"

#define CHECK(call)                                                                           \
    do {                                                                                      \
        NRT_STATUS s_ = (call);                                                               \
        if (s_ != NRT_SUCCESS) {                                                              \
            fprintf(stderr, "%s failed: %s (%d)\n", #call, nrt_get_status_as_str(s_), s_);     \
            return 1;                                                                         \
        }                                                                                     \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: first_app MODEL.neff OUT_DIR [NAME=FILE ...]\n"); return 2; }
    CHECK(nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));

    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[1]); return 1; }
    void *neff = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    nrt_model_t *model = NULL;
    CHECK(nrt_load(neff, st.st_size, -1, -1, &model));
    munmap(neff, st.st_size);
    close(fd);

    nrt_tensor_info_array_t *info = NULL;
    CHECK(nrt_get_model_tensor_info(model, &info));
    nrt_tensor_set_t *inputs = NULL, *outputs = NULL;
    CHECK(nrt_allocate_tensor_set(&inputs));
    CHECK(nrt_allocate_tensor_set(&outputs));

    nrt_tensor_t **tensors = calloc(info->tensor_count, sizeof(nrt_tensor_t *));
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_info_t *ti = &info->tensor_array[i];
        CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, ti->size, ti->name, &tensors[i]));
        CHECK(nrt_add_tensor_to_tensor_set(ti->usage == NRT_TENSOR_USAGE_INPUT ? inputs : outputs, ti->name,
                                           tensors[i]));
        printf("%s %s dtype=%d size=%zu shape=", ti->usage == NRT_TENSOR_USAGE_INPUT ? "in" : "out", ti->name,
               (int)ti->dtype, ti->size);
        for (uint32_t d = 0; d < ti->ndim; d++) printf("%s%u", d ? "x" : "", ti->shape[d]);
        printf("\n");
        if (ti->usage != NRT_TENSOR_USAGE_INPUT) continue;
        for (int a = 3; a < argc; a++) {
            size_t len = strlen(ti->name);
            if (strncmp(argv[a], ti->name, len) != 0 || argv[a][len] != '=') continue;
            size_t size = 0;
            void *data = read_file(argv[a] + len + 1, &size);
            if (!data || size != ti->size) { fprintf(stderr, "bad input file for %s\n", ti->name); return 1; }
            CHECK(nrt_tensor_write(tensors[i], data, 0, ti->size));
            free(data);
        }
    }

    CHECK(nrt_execute(model, inputs, outputs));

    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_info_t *ti = &info->tensor_array[i];
        if (ti->usage != NRT_TENSOR_USAGE_OUTPUT) continue;
        nrt_tensor_t *t = NULL;
        CHECK(nrt_get_tensor_from_tensor_set(outputs, ti->name, &t));
        void *buf = malloc(ti->size);
        CHECK(nrt_tensor_read(t, buf, 0, ti->size));
        const void *va = nrt_tensor_get_va(t);   /* not in the guide: the output's own bytes, as read */
        printf("%s va %s\n", ti->name, va && memcmp(va, buf, ti->size) == 0 ? "matches" : "differs");
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.bin", argv[2], ti->name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, ti->size, f) != ti->size) { perror(path); return 1; }
        fclose(f);
        free(buf);
    }

    CHECK(nrt_unload(model));
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_free(&tensors[i]);
        if (tensors[i] != NULL) { fprintf(stderr, "nrt_tensor_free did not clear the pointer\n"); return 1; }
    }
    nrt_destroy_tensor_set(&inputs);
    nrt_destroy_tensor_set(&outputs);
    if (inputs || outputs) { fprintf(stderr, "nrt_destroy_tensor_set did not clear the pointer\n"); return 1; }
    CHECK(nrt_free_model_tensor_info(info));
    free(tensors);
    nrt_close();
    printf("done\n");
    return 0;
}
