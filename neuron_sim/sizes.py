"""Byte sizes spelled as the runtime spells them in its log lines and tables (light: no numpy, no logging)."""
from __future__ import annotations


def format_bytes(n: int) -> str:
    """The runtime's size spelling: ``20.188GB``, ``192.102MB``, ``0.000B``."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3f}{unit}"
    return f"{float(n):.3f}B"
