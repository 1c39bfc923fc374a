"""The 1024-byte little-endian NEFF header, field by field (spec runtime-semantics §1.2).

Strings are NUL-terminated C strings decoded with ``surrogateescape`` so that any byte string
survives ``unpack`` → ``pack`` unchanged up to its first NUL. The 468-byte tail pad is written as
zeros and ignored when read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, fields

from neuron_sim.neff.errors import invalid

HEADER_SIZE = 1024

# (field, struct code, offset); the pad 556..1024 is implicit.
_LAYOUT: tuple[tuple[str, str, int], ...] = (
    ("pkg_version", "Q", 0),
    ("header_size", "Q", 8),
    ("data_size", "Q", 16),
    ("neff_version_major", "Q", 24),
    ("neff_version_minor", "Q", 32),
    ("neff_build_version", "128s", 40),
    ("num_tpb", "I", 168),
    ("hash", "32s", 172),
    ("uuid", "16s", 204),
    ("name", "256s", 220),
    ("requested_tpb_count", "I", 476),
    ("tpb_per_node", "64s", 480),
    ("feature_bits", "Q", 544),
    ("lnc_size", "I", 552),
)
_WHOLE = struct.Struct("<" + "".join(code for _, code, _ in _LAYOUT))   # the fields are contiguous from 0
assert _WHOLE.size == _LAYOUT[-1][2] + 4
_STRING_FIELDS = {"neff_build_version": 128, "name": 256}
_BYTES_FIELDS = {"hash": 32, "uuid": 16, "tpb_per_node": 64}
_INT_BITS = {"Q": 64, "I": 32}
_STRING_INDEXES = tuple(i for i, (name, _, _) in enumerate(_LAYOUT) if name in _STRING_FIELDS)


@dataclass(frozen=True)
class NeffHeader:
    """One NEFF header; ``pack()`` gives its 1024 bytes, ``NeffHeader.unpack(data)`` reads them back."""

    pkg_version: int = 2
    header_size: int = HEADER_SIZE
    data_size: int = 0
    neff_version_major: int = 2
    neff_version_minor: int = 0
    neff_build_version: str = ""
    num_tpb: int = 1
    hash: bytes = bytes(32)
    uuid: bytes = bytes(16)
    name: str = ""
    requested_tpb_count: int = 1
    tpb_per_node: bytes = bytes(64)
    feature_bits: int = 0
    lnc_size: int = 1

    def pack(self) -> bytes:
        """The 1024 header bytes; ValueError names a field whose value does not fit its C type."""
        out = bytearray(HEADER_SIZE)
        for name, code, offset in _LAYOUT:
            value = getattr(self, name)
            if name in _STRING_FIELDS:
                if not isinstance(value, str):
                    raise ValueError(f"header field {name} must be a str, got {type(value).__name__}")
                raw = value.encode("utf-8", "surrogateescape")
                if len(raw) >= _STRING_FIELDS[name]:
                    raise ValueError(f"header field {name} is {len(raw)} bytes; at most {_STRING_FIELDS[name] - 1} fit")
                struct.pack_into(code, out, offset, raw)
            elif name in _BYTES_FIELDS:
                if not isinstance(value, (bytes, bytearray)) or len(value) > _BYTES_FIELDS[name]:
                    raise ValueError(f"header field {name} must be at most {_BYTES_FIELDS[name]} bytes")
                struct.pack_into(code, out, offset, bytes(value))
            else:
                bits = _INT_BITS[code]
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
                    raise ValueError(f"header field {name} must be an unsigned {bits}-bit integer, got {value!r}")
                struct.pack_into("<" + code, out, offset, value)
        return bytes(out)

    @staticmethod
    def unpack(data: bytes | bytearray | memoryview) -> "NeffHeader":
        """Read the first 1024 bytes; NeffError (NRT_INVALID) when fewer are given."""
        if len(data) < HEADER_SIZE:
            raise invalid(f"Invalid NEFF data size: file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
        values = list(_WHOLE.unpack_from(data))      # in field order (checked below the class)
        for i in _STRING_INDEXES:
            values[i] = values[i].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return NeffHeader(*values)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly view: byte fields as hex, tpb_per_node as a list of counts."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "tpb_per_node":
                out[f.name] = list(value)
            elif isinstance(value, bytes):
                out[f.name] = value.hex()
            else:
                out[f.name] = value
        return out

    @staticmethod
    def from_dict(doc: dict[str, object]) -> "NeffHeader":
        """Inverse of ``as_dict``; ValueError names the offending key."""
        known = {f.name for f in fields(NeffHeader)}
        values: dict[str, object] = {}
        for key, value in doc.items():
            if key not in known:
                raise ValueError(f"unknown header field {key!r}; known: {', '.join(sorted(known))}")
            if key == "tpb_per_node":
                if not isinstance(value, list) or not all(isinstance(v, int) and 0 <= v < 256 for v in value):
                    raise ValueError("tpb_per_node must be a list of byte values 0..255")
                value = bytes(value)
            elif key in _BYTES_FIELDS:
                if not isinstance(value, str):
                    raise ValueError(f"{key} must be a hex string")
                value = bytes.fromhex(value)
            values[key] = value
        return NeffHeader(**values)  # type: ignore[arg-type]


assert tuple(f.name for f in fields(NeffHeader)) == tuple(name for name, _, _ in _LAYOUT)   # unpack passes them in order
