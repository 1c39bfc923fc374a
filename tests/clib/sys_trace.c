/* System trace and profile from C (nrt_sys_trace.h, nrt_profile.h):
 *   sys_trace MODEL.neff PROFILE_FILE
 * loads the model on NC 0, lists the event types, starts a capture that leaves out the software events,
 * executes twice, fetches the events (printed as one JSON line after "events "), then profiles two more
 * executions into PROFILE_FILE. Everything handed out is released with the documented calls or free(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>
#include <nrt/nrt_profile.h>
#include <nrt/nrt_sys_trace.h>

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
    if (argc < 3) { fprintf(stderr, "usage: sys_trace MODEL.neff PROFILE_FILE\n"); return 2; }
    CHECK(nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));
    size_t size = 0;
    void *neff = read_file(argv[1], &size);
    if (!neff) { perror(argv[1]); return 1; }
    nrt_model_t *model = NULL;
    CHECK(nrt_load(neff, size, 0, -1, &model));
    free(neff);

    nrt_tensor_info_array_t *info = NULL;
    CHECK(nrt_get_model_tensor_info(model, &info));
    nrt_tensor_set_t *inputs = NULL, *outputs = NULL;
    CHECK(nrt_allocate_tensor_set(&inputs));
    CHECK(nrt_allocate_tensor_set(&outputs));
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_info_t *ti = &info->tensor_array[i];
        nrt_tensor_t *t = NULL;
        CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, ti->size, ti->name, &t));
        CHECK(nrt_add_tensor_to_tensor_set(ti->usage == NRT_TENSOR_USAGE_INPUT ? inputs : outputs, ti->name, t));
    }

    const char **types = NULL;
    size_t count = 0;
    CHECK(nrt_sys_trace_get_event_types(&types, &count));
    printf("types %zu first %s\n", count, types[0]);
    nrt_sys_trace_free_event_types(types, count);

    nrt_sys_trace_config_t *config = NULL;
    CHECK(nrt_sys_trace_config_allocate(&config));
    if (nrt_sys_trace_config_set_capture_enabled_for_event_type(config, "no_such_event", true) != NRT_INVALID) {
        fprintf(stderr, "an unknown event type was accepted\n");
        return 1;
    }
    const char *software[] = {"nrt_load", "nrt_unload", "nrt_execute", "nrt_tensor_read", "nrt_tensor_write",
                              "async_exec_queue"};
    for (size_t i = 0; i < sizeof software / sizeof *software; i++)
        CHECK(nrt_sys_trace_config_set_capture_enabled_for_event_type(config, software[i], false));
    CHECK(nrt_sys_trace_config_get_enabled_event_types(config, &types, &count));
    printf("enabled %zu\n", count);
    for (size_t i = 0; i < count; i++) free((void *)types[i]);        /* the documented free() path */
    free(types);
    nrt_sys_trace_config_set_max_events_per_nc(config, 1000);
    CHECK(nrt_sys_trace_start(config));
    CHECK(nrt_execute(model, inputs, outputs));
    CHECK(nrt_execute(model, inputs, outputs));

    nrt_sys_trace_fetch_options_t *options = NULL;
    CHECK(nrt_sys_trace_fetch_options_allocate(&options));
    nrt_sys_trace_fetch_options_set_nc_idx(options, 0);
    char *buffer = NULL;
    size_t written = 0;
    CHECK(nrt_sys_trace_fetch_events(&buffer, &written, options));
    printf("written %zu strlen %zu\n", written, strlen(buffer));
    printf("events %s\n", buffer);
    nrt_sys_trace_buffer_free(buffer);
    if (nrt_sys_trace_fetch_events(NULL, &written, NULL) != NRT_INVALID) {
        fprintf(stderr, "a NULL buffer pointer was accepted\n");
        return 1;
    }
    nrt_sys_trace_fetch_options_free(options);
    CHECK(nrt_sys_trace_stop());
    nrt_sys_trace_config_free(config);

    CHECK(nrt_profile_start(model, argv[2]));
    CHECK(nrt_execute(model, inputs, outputs));
    CHECK(nrt_execute(model, inputs, outputs));
    CHECK(nrt_profile_stop(argv[2]));
    if (nrt_profile_stop("never-started.json") != NRT_INVALID) {
        fprintf(stderr, "stopping a profile never started was accepted\n");
        return 1;
    }
    CHECK(nrt_unload(model));
    nrt_close();
    printf("done\n");
    return 0;
}
