"""Fuzzing read_neff: whatever the bytes, only NeffError (NRT_INVALID / NRT_UNSUPPORTED_NEFF_VERSION) escapes."""
from __future__ import annotations

import gzip
import io
import struct
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuron_sim.compute.graph import Graph, Op, Subgraph, TensorSpec
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.header import NeffHeader
from neuron_sim.neff.package import compute_hash, make_archive
from neuron_sim.neff.reader import Neff, read_neff
from neuron_sim.neff.writer import archive_members, write_neff
from neuron_sim.status import NrtStatus

ALLOWED = {NrtStatus.INVALID, NrtStatus.UNSUPPORTED_NEFF_VERSION}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_G = Graph(inputs=(TensorSpec("x", "float32", (2, 4)),), outputs=(TensorSpec("y", "float32", (2, 3)),),
           subgraphs=(Subgraph(("x",), ("y",), (Op("matmul", ("x", "w"), "y"),)),), weight_names=("w",))
_W = {"w": np.arange(12, dtype=np.float32).reshape(4, 3)}
VALID = write_neff(_G, _W, name="fuzz")
VALID_RAW = write_neff(_G, _W, name="fuzz", pkg_version=1)
MEMBERS = archive_members(_G, _W, name="fuzz", target="v2", lnc_size=1, build_version="")


def outcome(data: bytes, **kw) -> Neff | None:
    """Load; a NeffError must carry an allowed status and a message. Any other exception fails the test."""
    try:
        return read_neff(data, **kw)
    except NeffError as exc:
        assert exc.status in ALLOWED and exc.message
        return None


def with_payload(payload: bytes, **fields) -> bytes:
    return NeffHeader(data_size=len(payload), hash=compute_hash(payload, 2), **fields).pack() + payload


@pytest.mark.timeout(120)
@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    outcome(data)


@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from([VALID, VALID_RAW]), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)),
                                                     min_size=1, max_size=8), st.booleans())
def test_bit_flips_anywhere(base: bytes, flips: list[tuple[int, int]], validate: bool) -> None:
    data = bytearray(base)
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    outcome(bytes(data), validate_hash=validate)


@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from([VALID, VALID_RAW]), st.data())
def test_truncation_at_every_region(base: bytes, data: st.DataObject) -> None:
    region = data.draw(st.sampled_from(["header", "archive-start", "archive-middle", "archive-end"]))
    lo, hi = {"header": (0, 1024), "archive-start": (1024, 1100), "archive-middle": (1100, len(base) - 100),
              "archive-end": (len(base) - 100, len(base))}[region]
    cut = data.draw(st.integers(lo, hi - 1))
    assert outcome(base[:cut]) is None
    # the same cut with data_size fixed up to match: the archive itself is now truncated
    if cut > 1024:
        fixed = bytearray(base[:cut])
        struct.pack_into("<Q", fixed, 16, cut - 1024)
        outcome(bytes(fixed))


header_ints = st.one_of(st.integers(0, 4), st.integers(0, 2**64 - 1), st.sampled_from([1023, 1024, 1025, 2**63]))


@pytest.mark.timeout(120)
@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "pkg_version": header_ints, "header_size": header_ints, "data_size": header_ints,
    "neff_version_major": header_ints, "neff_version_minor": header_ints, "num_tpb": st.integers(0, 2**32 - 1),
    "feature_bits": header_ints, "lnc_size": st.integers(0, 2**32 - 1), "hash": st.binary(min_size=32, max_size=32),
}), st.booleans())
def test_random_header_field_values(fields: dict, validate: bool) -> None:
    base = NeffHeader.unpack(VALID)
    header = NeffHeader(**{**vars(base), **fields})
    outcome(header.pack() + VALID[1024:], validate_hash=validate)


names = st.one_of(st.sampled_from(sorted(MEMBERS) + ["../x", "/abs", "a//b", "sim/weights/w.npy", "kelf-9.json"]),
                  st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20))


@pytest.mark.timeout(120)
@FUZZ
@given(st.dictionaries(names, st.binary(max_size=200), max_size=6), st.booleans())
def test_random_tar_members(extra: dict[str, bytes], keep_valid: bool) -> None:
    members = dict(MEMBERS) if keep_valid else {}
    members.update(extra)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    outcome(with_payload(gzip.compress(buf.getvalue(), mtime=0)))


json_members = sorted(k for k in MEMBERS if k.endswith(".json"))


@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from(json_members), st.data())
def test_mutated_metadata_members(member: str, data: st.DataObject) -> None:
    text = bytearray(MEMBERS[member])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.sampled_from(b'{}[]",:0123456789-e.nul tfx'))
    outcome(with_payload(make_archive({**MEMBERS, member: bytes(text)})))


@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from(json_members), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20))
def test_metadata_members_replaced_by_arbitrary_json(member: str, doc: object) -> None:
    import json
    outcome(with_payload(make_archive({**MEMBERS, member: json.dumps(doc).encode()})))
