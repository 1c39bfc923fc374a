"""NRT_STATUS codes of nrt_status.h and the one exception type that carries them."""
from __future__ import annotations

from enum import IntEnum


class NrtStatus(IntEnum):
    """libnrt status codes (nrt_status.h); ``status_name`` gives the ``NRT_`` spelling."""

    SUCCESS = 0
    FAILURE = 1
    INVALID = 2
    INVALID_HANDLE = 3
    RESOURCE = 4
    TIMEOUT = 5
    HW_ERROR = 6
    QUEUE_FULL = 7
    LOAD_NOT_ENOUGH_NC = 9
    UNSUPPORTED_NEFF_VERSION = 10
    FAIL_HOST_MEM_ALLOC = 11
    UNINITIALIZED = 13
    CLOSED = 14
    QUEUE_EMPTY = 15
    EXEC_UNIT_UNRECOVERABLE = 101
    EXEC_BAD_INPUT = 1002
    EXEC_COMPLETED_WITH_NUM_ERR = 1003
    EXEC_COMPLETED_WITH_ERR = 1004
    EXEC_NC_BUSY = 1005
    EXEC_OOB = 1006
    COLL_PENDING = 1100
    EXEC_HW_ERR_COLLECTIVES = 1200
    EXEC_HW_ERR_HBM_UE = 1201
    EXEC_HW_ERR_NC_UE = 1202
    EXEC_HW_ERR_DMA_ABORT = 1203
    EXEC_SW_NQ_OVERFLOW = 1204
    EXEC_HW_ERR_REPAIRABLE_HBM_UE = 1205
    NETWORK_PROXY_FAILURE = 1206


def status_name(code: int) -> str:
    """The bare ``NRT_*`` name of a status, or ``"UNKNOWN"`` as nrt_get_status_as_str does."""
    try:
        return "NRT_" + NrtStatus(code).name
    except ValueError:
        return "UNKNOWN"


class NrtError(RuntimeError):
    """A runtime failure: carries the NRT status and a message naming the cause."""

    def __init__(self, status: int, message: str) -> None:
        self.status = NrtStatus(status)
        self.message = message
        super().__init__(f"NRT Error {status_name(status)}({int(status)}): {message}")
