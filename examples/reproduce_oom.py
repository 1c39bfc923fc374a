"""Reproduce device out-of-memory on demand, and make it go away with shared weights.

    python examples/reproduce_oom.py

A trn1.32xlarge device has 32 GiB of HBM shared by its two NeuronCores. neffs/large_weights.neff
declares 768 MiB of constants: 22 copies per core need 33 GiB per device and fail with NRT_RESOURCE and
the runtime's memory-usage table; NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS=TRUE keeps one copy per HBM.
"""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

if "NEURON_SIM_STATE_DIR" not in os.environ:        # a private state directory, removed at exit
    os.environ["NEURON_SIM_STATE_DIR"] = tempfile.mkdtemp(prefix="neuron_sim_example_")
    atexit.register(shutil.rmtree, os.environ["NEURON_SIM_STATE_DIR"], True)
os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.32xlarge"
os.environ["NEURON_RT_VISIBLE_CORES"] = "0-1"          # one device is enough to show it
LOG = Path(os.environ["NEURON_SIM_STATE_DIR"]) / "tdrv.log"
LOG.parent.mkdir(parents=True, exist_ok=True)
os.environ["NEURON_RT_LOG_LOCATION_TDRV"] = str(LOG)   # the driver-level memory report goes to a file
from neuron_sim import nrt  # noqa: E402
from neuron_sim.runtime.interface import format_bytes  # noqa: E402

NEFF = (Path(__file__).parent.parent / "neffs" / "large_weights.neff").read_bytes()


def fill(copies: int) -> str:
    loaded = 0
    for _ in range(copies):
        for vnc in (0, 1):
            status, _ = nrt.nrt_load(NEFF, vnc, -1)
            if status:
                return f"{nrt.nrt_get_status_as_str(status)} after {loaded} loads"
            loaded += 1
    return f"NRT_SUCCESS, {loaded} loads"


for shared in ("FALSE", "TRUE"):
    os.environ["NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS"] = shared
    assert nrt.nrt_init() == 0
    print(f"NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS={shared}: 22 copies on each core -> {fill(22)}", flush=True)
    used = sum(nrt.nrt_get_vnc_memory_stats(v)[1].bytes_used for v in (0, 1))
    print(f"  device 0 memory in use: {format_bytes(used)} of 32 GiB\n", flush=True)
    nrt.nrt_close()
print(f"the out-of-memory report the runtime wrote to {LOG} (first lines):")
for line in LOG.read_text().splitlines()[:7]:
    print("  " + line.split(None, 3)[-1][:160])
sys.stdout.flush()
