"""Exclusive NeuronCore reservation across real processes (seed: "NeuronCore allocation").

    python examples/core_reservation.py

On a simulated inf1.6xlarge (16 NeuronCores) five processes with NEURON_RT_NUM_CORES=3 get 0-2, 3-5,
6-8, 9-11 and 12-14; a sixth fails with NRT_RESOURCE and the runtime's log names who holds the cores.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

CHILD = """
import sys
from neuron_sim import nrt
from neuron_sim.runtime import interface
status = nrt.nrt_init()
print(nrt.nrt_get_status_as_str(status),
      ",".join(map(str, interface.global_core_ids())) if status == 0 else "-", flush=True)
sys.stdin.read()          # hold the cores until the parent closes our stdin
nrt.nrt_close()
"""

env = dict(os.environ, NEURON_SIM_INSTANCE_TYPE="inf1.6xlarge", NEURON_RT_NUM_CORES="3",
           NEURON_SIM_STATE_DIR=tempfile.mkdtemp(prefix="neuron_sim_example_"))
atexit.register(shutil.rmtree, env["NEURON_SIM_STATE_DIR"], True)     # leave no state directory behind
procs = []
for i in range(6):
    p = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    status, cores = p.stdout.readline().split()
    print(f"process {i + 1} (pid {p.pid}): {status:12s} cores {cores}")
    procs.append(p)
err = procs[-1].communicate("")[1]
print("\nthe sixth process logged:")
print("\n".join("  " + line for line in err.splitlines() if "nrt_allocate_neuron_cores" in line))
for p in procs[:-1]:
    p.communicate("")
