"""Run a Neuron model, retrying transient failures and giving up at once on fatal ones.

What a framework author writes around the runtime: a timeout or a busy queue is worth another try,
an uncorrectable hardware error or a device that fell off is not.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from neuron_sim import NrtError, NrtStatus

TRANSIENT = frozenset({NrtStatus.TIMEOUT, NrtStatus.QUEUE_FULL, NrtStatus.EXEC_NC_BUSY})


class GaveUp(RuntimeError):
    """The model could not be run: a fatal status, or transient ones on every attempt."""

    def __init__(self, status: NrtStatus, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {status.name}")
        self.status = status
        self.attempts = attempts


def run_with_retries(model: Callable[..., Mapping[str, Any]], inputs: Mapping[str, Any], attempts: int = 3,
                     on_retry: Callable[[int, NrtStatus], None] | None = None) -> Mapping[str, Any]:
    """Call ``model(**inputs)``; retry transient failures up to ``attempts`` tries in all."""
    for attempt in range(1, attempts + 1):
        try:
            return model(**inputs)
        except NrtError as exc:
            if exc.status not in TRANSIENT or attempt == attempts:
                raise GaveUp(exc.status, attempt) from exc
            if on_retry is not None:
                on_retry(attempt, exc.status)
    raise ValueError(f"attempts must be >= 1, got {attempts}")
