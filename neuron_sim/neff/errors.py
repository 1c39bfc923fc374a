"""The one exception a NEFF parser raises: an NrtError carrying NRT_INVALID or NRT_UNSUPPORTED_NEFF_VERSION."""
from __future__ import annotations

from neuron_sim.status import NrtError, NrtStatus


class NeffError(NrtError):
    """A NEFF that cannot be loaded; ``status`` is the NRT status nrt_load returns for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)


def invalid(message: str) -> NeffError:
    """A malformed NEFF (NRT_INVALID)."""
    return NeffError(NrtStatus.INVALID, message)


def unsupported(message: str) -> NeffError:
    """A NEFF this runtime does not accept (NRT_UNSUPPORTED_NEFF_VERSION)."""
    return NeffError(NrtStatus.UNSUPPORTED_NEFF_VERSION, message)
