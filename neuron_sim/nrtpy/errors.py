"""nrtpy's two exceptions: ``NrtpyError`` (the Python layer) and ``NrtError`` (a libnrt status), both RuntimeErrors.

``NrtError`` is the runtime's own exception: its message reads ``NRT Error <NAME>(<code>): <context>`` and it
keeps the status as ``.status`` (an ``NrtStatus``), so ``except nrtpy.NrtError`` also catches it from other faces.
"""
from __future__ import annotations

from neuron_sim.runtime.interface import fail
from neuron_sim.status import NrtError, NrtStatus

__all__ = ["NrtError", "NrtpyError", "face_error", "nrtpy_error"]


class NrtpyError(RuntimeError):
    """Misuse of the Python layer: a freed tensor used, configure() while active, an object used after reset()."""


def nrtpy_error(function: str, message: str) -> NrtpyError:
    """Log ``message`` as the runtime would and return the NrtpyError to raise."""
    fail(NrtStatus.FAILURE, "NRT", function, message)          # logs the line; the NrtError is not raised
    return NrtpyError(message)


def face_error(status: NrtStatus, function: str, message: str) -> NrtError:
    """An NrtError found by the face before any runtime call (e.g. a NEFF file that cannot be read), logged first."""
    return fail(status, "NRT", function, message)
