"""What an execution whose outputs hold NaN reports: NEURON_RT_NUMERICAL_ERRORS_VERBOSITY and NEURON_FAIL_ON_NAN.

Decisions (the seeds give the variables, their values and "NaN/overflow/inf reports", not the lines):

- The status is always NRT_EXEC_COMPLETED_WITH_NUM_ERR (1003) when an output holds NaN: the device's error
  notification (``INFER_ERROR_SUBTYPE_NUMERICAL``) reaches the status whatever the verbosity, as on releases
  before the variable existed. Inf alone is not an error (it is reported from ``debug`` on).
- ``none`` (default): the notification and ``Inference completed with err: 1003`` lines, at WARN (the release
  notes lowered numerical errors from ERROR to WARN).
- ``critical``: plus one line naming each output that holds NaN.
- ``debug``: those lines also count NaN and Inf elements of every float output.
- ``verbose``: and give the flat indices of the first NaN elements (at most ``MAX_INDICES``).
- ``NEURON_FAIL_ON_NAN`` true: every one of these lines is logged at ERROR instead of WARN (and, unless a verbosity
  is set, the verbosity is ``critical``) — the execution is a failure to fix, not a warning.

State owned here: none.
"""
from __future__ import annotations

import numpy as np

from neuron_sim import nrtlog
from neuron_sim.status import NrtStatus

MAX_INDICES = 8


def report(config, model, outputs: dict[str, np.ndarray]) -> None:
    """Log the numerical error of one execution of ``model`` as the configuration asks."""
    log = nrtlog.error if config.fail_on_nan else nrtlog.warn
    verbosity = config.numerical_errors_verbosity
    core = model.cores[0].core
    log("TDRV", "exec_consume_infer_status_notifications",
        f"Error notifications found on NC {model.start_vnc} (ND {core.device}): INFER_ERROR_SUBTYPE_NUMERICAL")
    if verbosity != "none":
        for name, arr in outputs.items():
            if arr.dtype.kind not in "fc" or not arr.size:
                continue
            nan = np.isnan(arr)
            n_nan = int(nan.sum())
            if verbosity == "critical":
                if n_nan:
                    log("NRT", "nrt_execute", f"Numerical error in model {model.name} on NC {model.start_vnc}: "
                        f"output '{name}' holds NaN")
                continue
            n_inf = int(np.isinf(arr).sum())
            if not (n_nan or n_inf):
                continue
            line = (f"Numerical error in model {model.name} on NC {model.start_vnc}: output '{name}' holds "
                    f"{n_nan} NaN and {n_inf} Inf of {arr.size} elements")
            if verbosity == "verbose" and n_nan:
                first = np.flatnonzero(nan.reshape(-1))[:MAX_INDICES]
                line += f"; first NaN at flat indices {', '.join(map(str, first.tolist()))}"
            log("NRT", "nrt_execute", line)
    log("NMGR", "dlr_infer", f"Inference completed with err: {int(NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR)}. "
        f"mode->h_nn={model.id}, start_nc={model.start_vnc}, nc_count={len(model.cores)}")
