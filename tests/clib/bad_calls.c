/* Bad calls from C: NULL pointers, wrong sizes, freed and foreign handles, calls before init and after close.
 *   bad_calls MODEL.neff
 * Prints one "label=value" line per call (the NRT_STATUS, or 0/1 for a fact); the test compares them with
 * the spec's status codes. The process must survive every call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

#include "read_file.h"

#define SHOW(label, expr) printf("%s=%d\n", label, (int)(expr))

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    size_t neff_size = 0;
    void *neff = read_file(argv[1], &neff_size);
    uint8_t buf[1024] = {0};
    nrt_tensor_t *t = NULL;
    nrt_model_t *model = NULL;
    nrt_tensor_set_t *set = NULL;
    uint32_t count = 0;

    /* before nrt_init */
    SHOW("before_init.tensor_allocate", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "t", &t));
    SHOW("before_init.load", nrt_load(neff, neff_size, -1, -1, &model));
    SHOW("before_init.allocate_tensor_set", nrt_allocate_tensor_set(&set));
    SHOW("before_init.total_nc_count", nrt_get_total_nc_count(&count));
    SHOW("before_init.total_nc_count.value", count);
    nrt_version_t version;
    memset(&version, 0, sizeof version);
    SHOW("before_init.get_version", nrt_get_version(&version, sizeof version));
    SHOW("before_init.get_version.major", version.rt_major);

    SHOW("init.bad_framework", nrt_init((nrt_framework_type_t)99, "", ""));
    SHOW("init", nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, NULL, NULL));
    SHOW("init.twice", nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));

    /* NULL out-pointers and NULL inputs */
    SHOW("null.load_out", nrt_load(neff, neff_size, -1, -1, NULL));
    SHOW("null.load_neff", nrt_load(NULL, 100, -1, -1, &model));
    SHOW("null.load_garbage", nrt_load(buf, sizeof buf, -1, -1, &model));
    SHOW("null.load_garbage.model_untouched", model == NULL);
    SHOW("null.tensor_allocate_out", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "t", NULL));
    SHOW("null.total_nc_count_out", nrt_get_total_nc_count(NULL));
    SHOW("null.allocate_tensor_set_out", nrt_allocate_tensor_set(NULL));
    SHOW("null.get_version_out", nrt_get_version(NULL, sizeof version));
    SHOW("null.memory_stats_out", nrt_get_vnc_memory_stats(0, NULL, sizeof(nrt_vnc_memory_stats_t), NULL));
    SHOW("null.instance_info_out", nrt_get_instance_info(NULL, sizeof(nrt_instance_info_t)));
    SHOW("null.execute", nrt_execute(NULL, NULL, NULL));
    SHOW("null.tensor_read", nrt_tensor_read(NULL, buf, 0, 4));
    SHOW("null.tensor_get_size", nrt_tensor_get_size(NULL));
    SHOW("null.tensor_get_va", nrt_tensor_get_va(NULL) == NULL);
    SHOW("null.check_output_completion", nrt_tensor_check_output_completion(NULL, 0, 1));
    SHOW("null.reset_output_completion", nrt_tensor_reset_output_completion(NULL));
    SHOW("null.add_to_set", nrt_add_tensor_to_tensor_set(NULL, "x", NULL));
    SHOW("null.free_model_tensor_info", nrt_free_model_tensor_info(NULL));
    SHOW("null.read_batch", nrt_tensor_read_batch(NULL, 1, false));
    nrt_tensor_free(NULL);
    nrt_tensor_free(&t);
    nrt_destroy_tensor_set(NULL);
    nrt_destroy_tensor_set(&set);
    SHOW("null.frees_survived", 1);

    /* a real model and tensors */
    SHOW("load", nrt_load(neff, neff_size, -1, -1, &model));
    nrt_tensor_info_array_t *info = NULL;
    SHOW("null.tensor_info_out", nrt_get_model_tensor_info(model, NULL));
    SHOW("tensor_info", nrt_get_model_tensor_info(model, &info));
    size_t in_size = info->tensor_array[0].size;
    SHOW("tensor_allocate", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, in_size, "x", &t));
    SHOW("null.tensor_write_buf", nrt_tensor_write(t, NULL, 0, 4));

    /* wrong sizes */
    SHOW("size.write_past_end", nrt_tensor_write(t, buf, 0, in_size + 1));
    SHOW("size.read_past_end", nrt_tensor_read(t, buf, in_size, 1));
    SHOW("size.read_huge_offset", nrt_tensor_read(t, buf, (size_t)-1, 1));
    SHOW("size.write_huge_size", nrt_tensor_write(t, buf, 0, (size_t)-1));
    SHOW("size.memset_past_end", nrt_tensor_memset(t, in_size - 1, 0, 2));
    SHOW("size.slice_past_end", nrt_tensor_allocate_slice(t, 8, in_size, "s", &(nrt_tensor_t *){NULL}));
    SHOW("size.allocate_4gb", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, (size_t)4 << 30, "big",
                                                  &(nrt_tensor_t *){NULL}));
    SHOW("size.allocate_bad_vnc", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 99, 16, "v",
                                                      &(nrt_tensor_t *){NULL}));
    nrt_tensor_set_t *inputs = NULL, *outputs = NULL;
    nrt_allocate_tensor_set(&inputs);
    nrt_allocate_tensor_set(&outputs);
    nrt_tensor_t *small = NULL, *out = NULL;
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, in_size / 2, "small", &small);
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, info->tensor_array[1].size, "y", &out);
    nrt_add_tensor_to_tensor_set(inputs, info->tensor_array[0].name, small);
    nrt_add_tensor_to_tensor_set(outputs, info->tensor_array[1].name, out);
    SHOW("size.execute_wrong_input_size", nrt_execute(model, inputs, outputs));
    nrt_add_tensor_to_tensor_set(inputs, info->tensor_array[0].name, t);
    SHOW("execute", nrt_execute(model, inputs, outputs));

    /* versioned structs copy min(size_in, sizeof) */
    nrt_vnc_memory_stats_t stats = {0, 12345};
    size_t written = 0;
    SHOW("versioned.memory_stats_short", nrt_get_vnc_memory_stats(0, &stats, sizeof(size_t), &written));
    SHOW("versioned.memory_stats_short.size_out", written);
    SHOW("versioned.memory_stats_short.used_set", stats.bytes_used > 0);
    SHOW("versioned.memory_stats_short.limit_untouched", stats.bytes_limit == 12345);
    SHOW("versioned.memory_stats_full", nrt_get_vnc_memory_stats(0, &stats, sizeof stats, &written));
    SHOW("versioned.memory_stats_full.size_out", written);
    SHOW("versioned.memory_stats_bad_vnc", nrt_get_vnc_memory_stats(77, &stats, sizeof stats, &written));
    nrt_model_info_t model_info = {999};
    SHOW("versioned.model_info_zero", nrt_get_model_info(model, &model_info, 0, &written));
    SHOW("versioned.model_info_zero.untouched", model_info.vnc == 999);
    SHOW("versioned.model_info", nrt_get_model_info(model, &model_info, sizeof model_info, NULL));
    SHOW("versioned.model_info.vnc", model_info.vnc);

    /* missing names, foreign handles */
    nrt_tensor_t *untouched = (nrt_tensor_t *)&buf[0];
    SHOW("set.missing_name", nrt_get_tensor_from_tensor_set(outputs, "no_such_name", &untouched));
    SHOW("set.missing_name.untouched", untouched == (nrt_tensor_t *)&buf[0]);
    SHOW("set.null_name", nrt_add_tensor_to_tensor_set(inputs, NULL, t));
    SHOW("foreign.tensor_as_model", nrt_execute((nrt_model_t *)t, inputs, outputs));
    SHOW("foreign.garbage_tensor", nrt_tensor_read((nrt_tensor_t *)(uintptr_t)0x1234, buf, 0, 4));
    SHOW("foreign.stack_pointer_model", nrt_unload((nrt_model_t *)buf));
    SHOW("foreign.model_as_set", nrt_execute(model, (nrt_tensor_set_t *)model, outputs));

    /* freed handles */
    nrt_tensor_t *copy = t;
    nrt_tensor_free(&t);
    SHOW("freed.pointer_cleared", t == NULL);
    SHOW("freed.tensor_read", nrt_tensor_read(copy, buf, 0, 4));
    SHOW("freed.tensor_write", nrt_tensor_write(copy, buf, 0, 4));
    SHOW("freed.add_to_set", nrt_add_tensor_to_tensor_set(inputs, "x2", copy));
    SHOW("freed.execute_with_freed_input", nrt_execute(model, inputs, outputs));
    nrt_tensor_free(&copy);
    SHOW("freed.double_free_survived", 1);
    nrt_tensor_set_t *set_copy = inputs;
    nrt_destroy_tensor_set(&inputs);
    SHOW("freed.set_pointer_cleared", inputs == NULL);
    SHOW("freed.execute_destroyed_set", nrt_execute(model, set_copy, outputs));
    nrt_model_t *model_copy = model;
    SHOW("unload", nrt_unload(model));
    SHOW("freed.unload_twice", nrt_unload(model_copy));
    SHOW("freed.model_info_after_unload", nrt_get_model_info(model_copy, &model_info, sizeof model_info, NULL));
    SHOW("freed.nc_count_after_unload", nrt_get_model_nc_count(model_copy, &count));
    SHOW("free_model_tensor_info", nrt_free_model_tensor_info(info));
    SHOW("freed.free_model_tensor_info_twice", nrt_free_model_tensor_info(info));
    SHOW("status_string.unknown", strcmp(nrt_get_status_as_str((NRT_STATUS)4242), "UNKNOWN") == 0);
    SHOW("status_string.invalid", strcmp(nrt_get_status_as_str(NRT_INVALID), "NRT_INVALID") == 0);

    /* after nrt_close */
    nrt_close();
    nrt_close();
    SHOW("after_close.tensor_allocate", nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "t", &t));
    SHOW("after_close.load", nrt_load(neff, neff_size, -1, -1, &model));
    SHOW("after_close.tensor_read", nrt_tensor_read(small, buf, 0, 4));
    free(neff);
    printf("survived\n");
    return 0;
}
