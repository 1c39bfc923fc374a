"""``python -m neuron_sim.testing.holder``: a process that initialises the runtime and holds its NeuronCores.

Prints ``READY <visible cores>`` once nrt_init succeeded (``FAILED <status>`` and exit 1 otherwise), then keeps
the cores until its stdin closes. The ``neuron_process`` fixture starts it to occupy cores from another process.
"""
from __future__ import annotations

import sys


def main() -> int:
    from neuron_sim import nrt
    status = nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "")
    if status != nrt.NRT_SUCCESS:
        print(f"FAILED {nrt.nrt_get_status_as_str(status)}", flush=True)
        return 1
    print(f"READY {nrt.nrt_get_visible_nc_count()[1]}", flush=True)
    sys.stdin.read()
    nrt.nrt_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
