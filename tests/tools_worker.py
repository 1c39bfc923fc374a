"""A real runtime process for the tool tests: init, load the trn1 MLP, execute N times, report, wait.

    tools_worker.py N            (NEURON_PROCESS_TAG, NEURON_RT_NUM_CORES etc. come from the environment)
Prints one JSON line {"pid", "cores": {global core id: bytes used}} once its work is done, then waits
until stdin closes (or it is killed).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

import neuron_sim
from neuron_sim import nrt
from neuron_sim.runtime import lifecycle

MLP = Path(__file__).resolve().parent.parent / "neffs" / "mlp_trn1.neff"


def main() -> None:
    count = int(sys.argv[1])
    with neuron_sim.Runtime() as rt:
        model = rt.load(str(MLP))
        for _ in range(count):
            model(x=np.ones((1, 64), np.float32))
        runtime = lifecycle.current("tools_worker")
        used = {}
        for cs in runtime.cores:
            status, stats = nrt.nrt_get_vnc_memory_stats(cs.vnc)
            assert status == nrt.NRT_SUCCESS
            used[str(cs.core.global_id)] = stats.bytes_used
        os.write(1, (json.dumps({"pid": os.getpid(), "cores": used}) + "\n").encode())
        while os.read(0, 4096):
            pass


if __name__ == "__main__":
    main()
