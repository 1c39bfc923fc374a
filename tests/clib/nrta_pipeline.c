/* The explicit async API (nrt_async.h, NRTA 3.0) from C: write the input on TENSOR_OP queue 0, wait on an
 * eventfd registered for its sequence id, execute on COMPUTE (an eventfd registered for the whole XU), read the
 * output on TENSOR_OP queue 1 polling nrta_is_completed, then a few bad calls.
 *   nrta_pipeline MODEL.neff        (the model has input "x" of 64 floats and output "y" of 10 floats)
 * Prints "key=value" lines, the output as "y=v0,v1,...", then "done". */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <nrt/nrt.h>
#include <nrt/nrt_async.h>

#define PENDING ((NRT_STATUS)0x7eadbeef)

static void *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*size);
    if (fread(buf, 1, *size, f) != *size) return NULL;
    fclose(f);
    return buf;
}

#define CHECK(call) \
    do { NRT_STATUS s_ = (call); if (s_) { fprintf(stderr, "%s: %d\n", #call, s_); return 1; } } while (0)

static int wait_readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 30000) != 1 || !(p.revents & POLLIN)) return 0;
    uint64_t count = 0;
    return read(fd, &count, sizeof count) == sizeof count ? (int)count : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    CHECK(nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));
    size_t size = 0;
    void *neff = read_all(argv[1], &size);
    nrt_model_t *model = NULL;
    CHECK(nrt_load(neff, size, 0, 1, &model));
    nrt_tensor_t *x = NULL, *y = NULL;
    CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 64 * sizeof(float), "x", &x));
    CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 10 * sizeof(float), "y", &y));
    nrt_tensor_set_t *ins = NULL, *outs = NULL;
    CHECK(nrt_allocate_tensor_set(&ins));
    CHECK(nrt_allocate_tensor_set(&outs));
    CHECK(nrt_add_tensor_to_tensor_set(ins, "x", x));
    CHECK(nrt_add_tensor_to_tensor_set(outs, "y", y));

    float in[64], out[10];
    for (int i = 0; i < 64; i++) in[i] = (float)i / 64.0f - 0.5f;
    NRT_STATUS ret_w = PENDING, ret_e = PENDING, ret_r = PENDING;
    nrta_seq_t seq_w = 0, seq_e = 0, seq_r = 0;

    int efd = eventfd(0, 0);
    CHECK(nrta_tensor_write(x, in, 0, sizeof in, 0, &ret_w, &seq_w));
    CHECK(nrta_event_register_seq_id_completion(seq_w, efd));
    printf("write_event=%d\n", wait_readable(efd));
    printf("ret_w=%d\n", (int)ret_w);

    int xfd = eventfd(0, 0);
    CHECK(nrta_event_register_xu_completion(0, NRTA_XU_COMPUTE, 0, xfd));
    CHECK(nrta_execute_schedule(model, ins, outs, 0, &ret_e, &seq_e));
    printf("xu_event=%d\n", wait_readable(xfd));
    printf("ret_e=%d\n", (int)ret_e);

    CHECK(nrta_tensor_read(out, y, 0, sizeof out, 1, &ret_r, &seq_r));
    bool done = false;
    while (!done) CHECK(nrta_is_completed(seq_r, &done));
    printf("ret_r=%d\n", (int)ret_r);
    printf("y=");
    for (int i = 0; i < 10; i++) printf("%s%.7g", i ? "," : "", out[i]);
    printf("\n");

    printf("seq_nums=%llu,%llu,%llu\n", (unsigned long long)NRTA_SEQ_GET_SEQ_NUM(seq_w),
           (unsigned long long)NRTA_SEQ_GET_SEQ_NUM(seq_e), (unsigned long long)NRTA_SEQ_GET_SEQ_NUM(seq_r));
    printf("distinct_xu_ids=%d\n", NRTA_SEQ_GET_XU_ID(seq_w) != NRTA_SEQ_GET_XU_ID(seq_e)
                                   && NRTA_SEQ_GET_XU_ID(seq_w) != NRTA_SEQ_GET_XU_ID(seq_r));
    nrta_seq_t last = 0;
    CHECK(nrta_get_sequence(0, NRTA_XU_TENSOR_OP, 1, &last));
    printf("last_is_read=%d\n", last == seq_r);

    /* bad calls: statuses, never a crash */
    nrta_seq_t seq = 0;
    NRT_STATUS ret = PENDING;
    printf("bad_seq=%d\n", (int)nrta_is_completed(seq_r + 100, &done));
    printf("null_ret=%d\n", (int)nrta_tensor_write(x, in, 0, sizeof in, 0, NULL, &seq));
    printf("null_seq=%d\n", (int)nrta_tensor_write(x, in, 0, sizeof in, 0, &ret, NULL));
    printf("bad_queue=%d\n", (int)nrta_tensor_write(x, in, 0, sizeof in, 2, &ret, &seq));
    printf("not_eventfd=%d\n", (int)nrta_event_register_seq_id_completion(seq_w, STDOUT_FILENO));
    printf("untouched_ret=%d\n", ret == PENDING);

    close(efd);
    close(xfd);
    nrt_close();
    printf("done\n");
    return 0;
}
