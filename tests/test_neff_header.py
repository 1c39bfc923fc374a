"""The 1024-byte NEFF header: field offsets, pack/unpack round trip, range checks."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.header import HEADER_SIZE, NeffHeader
from neuron_sim.status import NrtStatus

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
cstr = lambda n: st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=n // 4)

headers = st.builds(
    NeffHeader,
    pkg_version=u64, header_size=u64, data_size=u64, neff_version_major=u64, neff_version_minor=u64,
    neff_build_version=cstr(128), num_tpb=u32, hash=st.binary(min_size=32, max_size=32),
    uuid=st.binary(min_size=16, max_size=16), name=cstr(256), requested_tpb_count=u32,
    tpb_per_node=st.binary(min_size=64, max_size=64), feature_bits=u64, lnc_size=u32,
)


@given(headers)
@settings(max_examples=200, deadline=None)
def test_pack_unpack_round_trip(h: NeffHeader) -> None:
    raw = h.pack()
    assert len(raw) == HEADER_SIZE
    assert NeffHeader.unpack(raw) == h
    assert NeffHeader.from_dict(h.as_dict()) == h


def test_fields_sit_at_the_documented_offsets() -> None:
    h = NeffHeader(pkg_version=2, header_size=1024, data_size=0x1122, neff_version_major=2, neff_version_minor=7,
                   neff_build_version="2.23.0", num_tpb=3, hash=bytes(range(32)), uuid=bytes(range(100, 116)),
                   name="model.neff", requested_tpb_count=5, tpb_per_node=b"\x04" + bytes(63),
                   feature_bits=0x209C00, lnc_size=2)
    raw = h.pack()
    assert struct.unpack_from("<QQQQQ", raw, 0) == (2, 1024, 0x1122, 2, 7)
    assert raw[40:46] == b"2.23.0" and raw[46] == 0
    assert struct.unpack_from("<I", raw, 168)[0] == 3
    assert raw[172:204] == bytes(range(32))
    assert raw[204:220] == bytes(range(100, 116))
    assert raw[220:230] == b"model.neff"
    assert struct.unpack_from("<I", raw, 476)[0] == 5
    assert raw[480] == 4
    assert struct.unpack_from("<Q", raw, 544)[0] == 0x209C00
    assert struct.unpack_from("<I", raw, 552)[0] == 2
    assert raw[556:] == bytes(HEADER_SIZE - 556)


def test_unpack_ignores_bytes_after_the_first_nul_and_the_pad() -> None:
    raw = bytearray(NeffHeader(name="abc").pack())
    raw[224:230] = b"junk!!"        # after the NUL that ends "abc"
    raw[600:610] = b"x" * 10        # pad
    assert NeffHeader.unpack(bytes(raw)).name == "abc"


def test_non_utf8_strings_survive_a_round_trip() -> None:
    raw = bytearray(NeffHeader().pack())
    raw[220:224] = b"\xff\xfeAB"
    h = NeffHeader.unpack(bytes(raw))
    assert h.pack()[220:224] == b"\xff\xfeAB"


def test_short_data_is_nrt_invalid() -> None:
    with pytest.raises(NeffError) as exc:
        NeffHeader.unpack(b"\0" * 1023)
    assert exc.value.status == NrtStatus.INVALID
    assert "Invalid NEFF data size" in exc.value.message


@pytest.mark.parametrize("field,value", [
    ("num_tpb", 2**32), ("lnc_size", -1), ("feature_bits", 2**64), ("pkg_version", True),
    ("hash", bytes(33)), ("uuid", "not bytes"), ("name", "n" * 256), ("neff_build_version", "v" * 128),
])
def test_pack_rejects_values_that_do_not_fit_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        NeffHeader(**{field: value}).pack()


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown header field 'magic'"):
        NeffHeader.from_dict({"magic": 1})
