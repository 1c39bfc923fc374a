/* Many C threads on one model at once: each allocates its own tensors, then loops write → execute → read,
 * allocating and freeing a scratch tensor each time. Every run of a thread must give the same output.
 *   threads MODEL.neff OUT_DIR THREADS ITERATIONS
 * Writes OUT_DIR/thread_<i>.in and .out (float32) for the test to compare with numpy; prints "mismatches=N". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

#include "read_file.h"

static nrt_model_t *model;
static nrt_tensor_info_array_t *info;
static const char *out_dir;
static int iterations;
static int mismatches;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void save(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, size, f); fclose(f); }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    nrt_tensor_info_t *in = &info->tensor_array[0], *out = &info->tensor_array[1];
    nrt_tensor_t *x = NULL, *y = NULL;
    nrt_tensor_set_t *inputs = NULL, *outputs = NULL;
    int bad = 0;
    bad |= nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, in->size, in->name, &x);
    bad |= nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, out->size, out->name, &y);
    bad |= nrt_allocate_tensor_set(&inputs);
    bad |= nrt_allocate_tensor_set(&outputs);
    bad |= nrt_add_tensor_to_tensor_set(inputs, in->name, x);
    bad |= nrt_add_tensor_to_tensor_set(outputs, out->name, y);
    float *data = malloc(in->size), *first = malloc(out->size), *result = malloc(out->size);
    for (size_t i = 0; i < in->size / sizeof(float); i++) data[i] = (float)(id + 1) * 0.01f * (float)((int)i - 20);
    for (int k = 0; k < iterations && !bad; k++) {
        nrt_tensor_t *scratch = NULL;
        bad |= nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_HOST, -1, 64, "scratch", &scratch);
        bad |= nrt_tensor_write(x, data, 0, in->size);
        bad |= nrt_execute(model, inputs, outputs);
        bad |= nrt_tensor_read(y, k ? result : first, 0, out->size);
        nrt_tensor_free(&scratch);
        if (k && memcmp(first, result, out->size) != 0) {
            pthread_mutex_lock(&lock);
            mismatches++;
            pthread_mutex_unlock(&lock);
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/thread_%d.in", out_dir, id);
    save(path, data, in->size);
    snprintf(path, sizeof path, "%s/thread_%d.out", out_dir, id);
    save(path, first, out->size);
    nrt_tensor_free(&x);
    nrt_tensor_free(&y);
    nrt_destroy_tensor_set(&inputs);
    nrt_destroy_tensor_set(&outputs);
    free(data);
    free(first);
    free(result);
    if (bad) {
        pthread_mutex_lock(&lock);
        failures++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) return 2;
    out_dir = argv[2];
    int n = atoi(argv[3]);
    iterations = atoi(argv[4]);
    size_t size = 0;
    void *neff = read_file(argv[1], &size);
    if (!neff) return 1;
    if (nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") || nrt_load(neff, size, 0, -1, &model) ||
        nrt_get_model_tensor_info(model, &info))
        return 1;
    free(neff);
    pthread_t *threads = calloc(n, sizeof(pthread_t));
    for (int i = 0; i < n; i++) pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    printf("threads=%d failures=%d mismatches=%d\n", n, failures, mismatches);
    nrt_unload(model);
    nrt_free_model_tensor_info(info);
    nrt_close();
    free(threads);
    return failures || mismatches;
}
