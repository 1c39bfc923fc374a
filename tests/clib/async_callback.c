/* Legacy implicit async from C: registers a callback with a params pointer, submits N executions
 * (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS must be > 0), drains, and counts completions.
 *   async_callback MODEL.neff N
 * Prints "submitted=N completed=C successes=S params_ok=0|1 other_thread=0|1 queue_full=Q". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

#include "read_file.h"

struct counter {
    pthread_mutex_t lock;
    int completed;
    int successes;
    int params_ok;
    int other_thread;
    pthread_t main_thread;
};

static struct counter counter = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 1, 1, 0};

static void on_done(void *params, uint32_t model_id, uint32_t vnc, uint64_t job_id, NRT_STATUS status)
{
    struct counter *c = params;
    (void)model_id;
    (void)job_id;
    pthread_mutex_lock(&counter.lock);
    counter.params_ok &= (c == &counter) && vnc == 0;
    counter.other_thread &= !pthread_equal(pthread_self(), counter.main_thread);
    counter.completed++;
    counter.successes += status == NRT_SUCCESS;
    pthread_mutex_unlock(&counter.lock);
}

#define CHECK(call) \
    do { NRT_STATUS s_ = (call); if (s_) { fprintf(stderr, "%s: %d\n", #call, s_); return 1; } } while (0)

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    int n = atoi(argv[2]);
    counter.main_thread = pthread_self();
    CHECK(nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));
    CHECK(nrt_register_async_exec_callback(on_done, &counter));
    size_t size = 0;
    void *neff = read_file(argv[1], &size);
    nrt_model_t *model = NULL;
    CHECK(nrt_load(neff, size, 0, -1, &model));
    free(neff);
    nrt_tensor_info_array_t *info = NULL;
    CHECK(nrt_get_model_tensor_info(model, &info));
    nrt_tensor_set_t *sets[2];
    CHECK(nrt_allocate_tensor_set(&sets[0]));
    CHECK(nrt_allocate_tensor_set(&sets[1]));
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_t *t = NULL;
        CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, info->tensor_array[i].size,
                                  info->tensor_array[i].name, &t));
        CHECK(nrt_add_tensor_to_tensor_set(sets[info->tensor_array[i].usage], info->tensor_array[i].name, t));
    }
    int queue_full = 0;
    for (int submitted = 0; submitted < n;) {
        NRT_STATUS s = nrt_execute(model, sets[0], sets[1]);
        if (s == NRT_QUEUE_FULL) {          /* back-pressure: wait for the queue, then retry */
            queue_full++;
            CHECK(nrt_async_drain_queued_execs(0));
            continue;
        }
        CHECK(s);
        submitted++;
    }
    CHECK(nrt_async_drain_queued_execs(0));
    pthread_mutex_lock(&counter.lock);
    printf("submitted=%d completed=%d successes=%d params_ok=%d other_thread=%d queue_full=%d\n", n,
           counter.completed, counter.successes, counter.params_ok, counter.other_thread, queue_full);
    pthread_mutex_unlock(&counter.lock);
    CHECK(nrt_unload(model));
    CHECK(nrt_free_model_tensor_info(info));
    nrt_close();
    return 0;
}
