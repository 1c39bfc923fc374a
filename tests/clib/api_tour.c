/* Every exported function not covered by the other programs, called the right way once:
 *   api_tour MODEL.neff
 * Prints "label=value" lines the test compares with the flat Python face. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

#include "read_file.h"

#define SHOW(label, fmt, value) printf("%s=" fmt "\n", label, value)

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    size_t size = 0;
    void *neff = read_file(argv[1], &size);
    if (!neff) return 1;
    uint32_t n = 0;
    SHOW("init", "%d", nrt_init(NRT_FRAMEWORK_TYPE_PYTORCH, "2.1", "1.0"));
    nrt_get_total_vnc_count(&n);
    SHOW("total_vnc_count", "%u", n);
    nrt_get_visible_vnc_count(&n);
    SHOW("visible_vnc_count", "%u", n);
    nrt_get_visible_nc_count(&n);
    SHOW("visible_nc_count", "%u", n);
    nrt_instance_info_t inst;
    memset(&inst, 0, sizeof inst);
    SHOW("instance_info", "%d", nrt_get_instance_info(&inst, sizeof inst));
    printf("instance=%u/%u/%s/%s\n", inst.family, inst.size, inst.arch_name, inst.device_revision);
    nrt_version_t ver;
    SHOW("version", "%d", nrt_get_version(&ver, sizeof ver));
    printf("version_numbers=%llu.%llu.%llu.%llu\n", (unsigned long long)ver.rt_major,
           (unsigned long long)ver.rt_minor, (unsigned long long)ver.rt_patch,
           (unsigned long long)ver.rt_maintenance);
    SHOW("version_detail", "%s", ver.rt_detail);
    SHOW("git_hash", "%s", ver.git_hash);

    nrt_model_t *model = NULL;
    SHOW("load_collectives", "%d", nrt_load_collectives(neff, size, 1, -1, 0, 1, &model));
    nrt_model_info_t mi;
    nrt_get_model_info(model, &mi, sizeof mi, NULL);
    SHOW("model_vnc", "%u", mi.vnc);
    nrt_get_model_vnc_count(model, &n);
    SHOW("model_vnc_count", "%u", n);
    nrt_get_model_nc_count(model, &n);
    SHOW("model_nc_count", "%u", n);
    nrt_get_model_instance_count(model, &n);
    SHOW("model_instance_count", "%u", n);

    nrt_tensor_t *a = NULL, *b = NULL, *y = NULL;
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 1, 256, "x", &a);
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 1, 256, "x_copy", &b);
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 1, 40, "y", &y);
    float x[64], back[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i / 64.0f - 0.5f;
    nrt_tensor_batch_op_t wops[2] = {{0, 128, x}, {128, 128, (char *)x + 128}};
    nrt_tensor_batch_t wbatch = {a, wops, 2};
    SHOW("write_batch", "%d", nrt_tensor_write_batch(&wbatch, 1, false));
    SHOW("copy", "%d", nrt_tensor_copy(a, 0, b, 0, 256));
    memset(back, 0, sizeof back);
    nrt_tensor_batch_op_t rops[1] = {{0, 256, back}};
    nrt_tensor_batch_t rbatch = {b, rops, 1};
    SHOW("read_batch", "%d", nrt_tensor_read_batch(&rbatch, 1, true));
    SHOW("copy_roundtrip", "%d", memcmp(x, back, sizeof x) == 0);
    nrt_tensor_device_allocation_info_t dai;
    SHOW("device_allocation_info", "%d", nrt_tensor_get_device_allocation_info(b, &dai));
    SHOW("dai_size", "%zu", dai.size);
    SHOW("dai_hbm", "%d", dai.hbm_index);
    SHOW("dai_address_nonzero", "%d", dai.physical_address != 0);

    nrt_tensor_set_t *ins = NULL, *outs = NULL;
    nrt_allocate_tensor_set(&ins);
    nrt_allocate_tensor_set(&outs);
    nrt_add_tensor_to_tensor_set(ins, "x", b);
    nrt_add_tensor_to_tensor_set(outs, "y", y);
    SHOW("execute_repeat", "%d", nrt_execute_repeat(model, ins, outs, 3));
    float out[10];
    nrt_tensor_read(y, out, 0, sizeof out);
    printf("y=");
    for (int i = 0; i < 10; i++) printf("%s%.9g", i ? "," : "", out[i]);
    printf("\n");
    SHOW("check_completion_none", "%d", nrt_tensor_check_output_completion(y, 1000, 1));
    SHOW("reset_completion", "%d", nrt_tensor_reset_output_completion(y));
    SHOW("check_completion_zero", "%d", nrt_tensor_check_output_completion(y, 0, 0));
    SHOW("register_callback_without_async", "%d", nrt_register_async_exec_callback(NULL, NULL));
    SHOW("drain", "%d", nrt_async_drain_queued_execs(1));
    nrt_vnc_memory_stats_t stats;
    size_t written = 0;
    SHOW("memory_stats", "%d", nrt_get_vnc_memory_stats(1, &stats, sizeof stats, &written));
    SHOW("bytes_used", "%zu", stats.bytes_used);
    SHOW("bytes_limit", "%zu", stats.bytes_limit);
    SHOW("unload", "%d", nrt_unload(model));
    nrt_close();
    free(neff);
    return 0;
}
