"""What a command-line tool does when its reader goes away (``neuron-sim ls | head``)."""
from __future__ import annotations

import os
import sys


def silence_stdout() -> None:
    """After a closed pipe point stdout at /dev/null, so the exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
