"""The libnrt "first app", call by call (developer guide order), on a simulated trn1.2xlarge.

    python examples/first_app.py [path/to/model.neff]

nrt_init → nrt_load → nrt_get_model_tensor_info → tensor sets → nrt_tensor_allocate per IO tensor →
nrt_tensor_write → nrt_execute → nrt_tensor_read → unload, free, destroy, nrt_close.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
from neuron_sim import nrt  # noqa: E402

neff_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "neffs" / "mlp_trn1.neff"


def check(status, what):
    if status != nrt.NRT_SUCCESS:
        sys.exit(f"{what} failed: {nrt.nrt_get_status_as_str(status)}({status})")


check(nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", ""), "nrt_init")
status, model = nrt.nrt_load(neff_path.read_bytes(), -1, -1)
check(status, "nrt_load")
status, info = nrt.nrt_get_model_tensor_info(model)
print(f"loaded {neff_path.name} on NC {nrt.nrt_get_model_info(model)[1].vnc}: {info.tensor_count} IO tensors")
_, inputs = nrt.nrt_allocate_tensor_set()
_, outputs = nrt.nrt_allocate_tensor_set()
tensors = []
for ti in info.tensor_array:
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, ti.size, ti.name)
    check(status, "nrt_tensor_allocate")
    tensors.append(t)
    target = inputs if ti.usage == nrt.NRT_TENSOR_USAGE_INPUT else outputs
    check(nrt.nrt_add_tensor_to_tensor_set(target, ti.name, t), "nrt_add_tensor_to_tensor_set")
    if ti.usage == nrt.NRT_TENSOR_USAGE_INPUT:
        data = np.linspace(-1, 1, ti.size // 4, dtype=np.float32)
        check(nrt.nrt_tensor_write(t, data, 0, ti.size), "nrt_tensor_write")
    print(f"  {'in ' if ti.usage == 0 else 'out'} {ti.name:8s} shape {list(ti.shape)} {ti.size} bytes")
check(nrt.nrt_execute(model, inputs, outputs), "nrt_execute")
for ti in info.tensor_array:
    if ti.usage == nrt.NRT_TENSOR_USAGE_OUTPUT:
        _, t = nrt.nrt_get_tensor_from_tensor_set(outputs, ti.name)
        buf = np.empty(ti.size // 4, np.float32)
        check(nrt.nrt_tensor_read(t, buf, 0, ti.size), "nrt_tensor_read")
        print(f"  {ti.name} = {np.array2string(buf[:6], precision=3)}{' ...' if buf.size > 6 else ''}")
nrt.nrt_unload(model)
for t in tensors:
    nrt.nrt_tensor_free(t)
nrt.nrt_destroy_tensor_set(inputs)
nrt.nrt_destroy_tensor_set(outputs)
nrt.nrt_free_model_tensor_info(info)
nrt.nrt_close()
