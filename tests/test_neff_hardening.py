"""Hostile and corrupt NEFFs (issue 9 §7): bounded inflation, hash before inflating, strict tar, metadata
that must agree with the members, declared durations, and the load path's memory across many cycles."""
from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zlib

import numpy as np
import pytest

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.header import NeffHeader
from neuron_sim.neff.package import compute_hash, make_archive, read_archive
from neuron_sim.neff.reader import read_neff, read_neff_file
from neuron_sim.neff.writer import archive_members
from neuron_sim.status import NrtStatus
from tests.test_neff_roundtrip import mlp_graph

MiB = 1 << 20


def container(payload: bytes, *, good_hash: bool = True, **fields) -> bytes:
    digest = compute_hash(payload, 2) if good_hash else bytes(32)
    return NeffHeader(pkg_version=2, data_size=len(payload), hash=digest, **fields).pack() + payload


def gzip_of_zeros(total: int, head: bytes = b"") -> bytes:
    """A gzip stream of ``head`` followed by ``total`` zero bytes, built without holding them."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(head)]
    block = bytes(MiB)
    for _ in range(total // MiB):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    return b"".join(parts)


def peak_traced(fn) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        fn()
        error = None
    except NeffError as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def small_tar() -> bytes:
    g, w = mlp_graph()
    return make_archive(archive_members(g, w, name="m", target="v2", lnc_size=1, build_version=""), compress=False)


# ---- unbounded inflation ------------------------------------------------------------------------------

def test_a_gzip_bomb_is_refused_after_the_tar_ends_without_inflating_it() -> None:
    bomb = container(gzip_of_zeros(64 * MiB))
    peak, error = peak_traced(lambda: read_neff(bomb))
    assert error is not None and error.status == NrtStatus.INVALID
    assert "continues past the end of its tar" in error.message
    assert peak < 16 * MiB, f"inflating a 64 MiB bomb took {peak} bytes"


def test_a_bomb_after_real_members_is_refused_with_bounded_memory() -> None:
    tar = small_tar()
    bomb = container(gzip_of_zeros(64 * MiB, head=tar))
    peak, error = peak_traced(lambda: read_neff(bomb))
    assert error is not None and "continues past the end of its tar" in error.message
    assert peak < 16 * MiB


def test_a_wrong_hash_is_reported_before_anything_is_inflated() -> None:
    bomb = container(gzip_of_zeros(64 * MiB), good_hash=False)
    peak, error = peak_traced(lambda: read_neff(bomb, validate_hash=True))
    assert error is not None and "MD5 mismatch!" in error.message
    assert peak < 2 * MiB


def test_the_unpacked_size_cap_is_a_setting_with_a_clear_error(monkeypatch, capsys) -> None:
    data = container(gzip.compress(small_tar()))
    with pytest.raises(NeffError, match="expands beyond 4096 bytes, the limit set by NEURON_SIM_MAX_NEFF_BYTES"):
        read_neff(data, max_bytes=4096)
    monkeypatch.setenv("NEURON_SIM_MAX_NEFF_BYTES", "4096")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    status, model = nrt.nrt_load(data)
    assert status == nrt.NRT_INVALID and model is None
    assert "NEURON_SIM_MAX_NEFF_BYTES" in capsys.readouterr().err
    monkeypatch.setenv("NEURON_SIM_MAX_NEFF_BYTES", str(1 << 20))
    nrt.nrt_close()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert nrt.nrt_load(data)[0] == nrt.NRT_SUCCESS


def test_a_member_larger_than_one_gib_is_not_capped_by_default() -> None:
    """The cap used to be 1 GiB; a tar member declaring 1.5 GiB now passes the size check (and fails only
    because the tar is truncated), so NEFFs above 1 GiB load."""
    info = tarfile.TarInfo("big.bin")
    info.size = 3 << 29
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    with pytest.raises(NeffError, match="truncated inside the member"):
        read_archive(head + bytes(4096))


# ---- corrupt archives that used to load ---------------------------------------------------------------

def _flip_in_second_header(tar: bytes) -> bytes:
    members = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()
    offset = members[1].offset
    bad = bytearray(tar)
    bad[offset + 3] ^= 0x20                     # one byte of the second member's name
    return bytes(bad)


@pytest.mark.parametrize("compress", [True, False])
def test_one_corrupted_tar_header_byte_is_a_load_error_not_lost_members(compress: bool) -> None:
    bad = _flip_in_second_header(small_tar())
    data = container(gzip.compress(bad) if compress else bad)
    with pytest.raises(NeffError, match="bad checksum") as exc:
        read_neff(data)
    assert exc.value.status == NrtStatus.INVALID


def test_data_after_the_end_of_archive_marker_is_a_load_error() -> None:
    tar = small_tar()
    with pytest.raises(NeffError, match="not read to its end"):
        read_neff(container(gzip.compress(tar + b"\x01" + bytes(511))))
    with pytest.raises(NeffError, match="data after the end of its gzip stream"):
        read_neff(container(gzip.compress(tar) + b"junk"))


def test_a_neuron_sim_neff_that_lost_its_sim_members_does_not_load_as_a_compiler_neff() -> None:
    g, w = mlp_graph()
    members = archive_members(g, w, name="m", target="v2", lnc_size=1, build_version="")
    stripped = {k: v for k, v in members.items() if not k.startswith("sim/")}
    with pytest.raises(NeffError, match="missing member sim/weights/"):
        read_neff(container(make_archive(stripped)))


def test_a_sparse_member_with_a_huge_declared_size_is_refused() -> None:
    info = tarfile.TarInfo("sim/graph.json")
    info.size = 0
    hdr = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    hdr[156:157] = b"S"
    hdr[483:495] = b"\x80" + (1 << 60).to_bytes(11, "big")     # GNU realsize: 2**60 bytes
    hdr[148:156] = b"        "
    hdr[148:156] = f"{sum(hdr):06o}\0 ".encode()
    with pytest.raises(NeffError, match="not a regular file") as exc:
        read_neff(container(gzip.compress(bytes(hdr) + bytes(1024))))
    assert exc.value.status == NrtStatus.INVALID


def test_npy_headers_are_parsed_without_evaluating_them() -> None:
    g, w = mlp_graph()
    members = archive_members(g, w, name="m", target="v2", lnc_size=1, build_version="")
    raw = members["sim/weights/w.npy"]
    evil = raw.replace(b"'shape': (4, 3)", b"'shape': (__import__('os').getpid(),)"[:len(b"'shape': (4, 3)")])
    with pytest.raises(NeffError, match="not a valid .npy file"):
        read_neff(container(make_archive({**members, "sim/weights/w.npy": evil})))


def test_weights_are_read_only_views_of_the_unpacked_archive() -> None:
    g, w = mlp_graph()
    neff = read_neff(container(make_archive(archive_members(g, w, name="m", target="v2", lnc_size=1,
                                                            build_version=""))))
    for name, arr in neff.weights.items():
        assert not arr.flags.writeable and not arr.flags.owndata
        np.testing.assert_array_equal(arr, w[name])


def test_a_fifo_given_as_a_neff_file_is_refused_without_blocking(tmp_path) -> None:
    import os
    fifo = tmp_path / "model.neff"
    os.mkfifo(fifo)
    with pytest.raises(NeffError, match="must be a regular file"):
        read_neff_file(fifo)


# ---- declared durations -------------------------------------------------------------------------------

def _timed_neff(duration: float, uuid: bytes = b"u" * 16) -> bytes:
    b = NeffBuilder("timed")
    x = b.input("x", "float32", (2, 2))
    b.output("y", b.relu(x))
    b.declare(duration_s=duration)
    return b.build(uuid=uuid)


def test_a_negative_declared_duration_is_nrt_invalid_and_leaves_no_model(capsys) -> None:
    data = _timed_neff(1.0)
    members = {n: bytes(v) for n, v in read_archive(data[1024:]).items()}
    graph = members["sim/graph.json"].replace(b'"duration_s": 1.0', b'"duration_s": -1.0')
    assert graph != members["sim/graph.json"]
    bad = container(make_archive({**members, "sim/graph.json": graph}), name="timed")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    status, model = nrt.nrt_load(bad)
    assert status == nrt.NRT_INVALID and model is None
    assert "declared.duration_s must be a finite non-negative number" in capsys.readouterr().err
    from neuron_sim.runtime import lifecycle
    from neuron_sim.runtime import models
    rt = lifecycle.peek()
    assert models.loaded(rt) == [] and all(cs.models == 0 for cs in rt.cores)


def test_two_neffs_with_one_uuid_and_name_keep_their_own_durations() -> None:
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    status, slow = nrt.nrt_load(_timed_neff(40.0))
    assert status == 0
    status, fast = nrt.nrt_load(_timed_neff(0.001))
    assert status == 0
    assert (slow.duration_s, fast.duration_s) == (40.0, 0.001)
    status, again = nrt.nrt_load(_timed_neff(40.0))
    assert status == 0 and again.duration_s == 40.0


# ---- no state grows across load/unload cycles ---------------------------------------------------------

def _rss_bytes() -> int:
    import os
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_twenty_thousand_load_unload_cycles_keep_memory_flat() -> None:
    """Issue 18: no runtime table grows across load/unload cycles and the process's memory stays flat."""
    from neuron_sim.runtime import lifecycle
    data = _timed_neff(0.001)
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    rt = lifecycle.peek()

    def cycles(n: int) -> None:
        for _ in range(n):
            status, model = nrt.nrt_load(data)
            assert status == 0
            assert nrt.nrt_unload(model) == 0

    cycles(2_000)
    from neuron_sim.runtime.models import table
    tab = table(rt)
    tables = lambda: (len(rt.memory.neff_names), len(tab.duration_cache), len(tab.by_id), len(tab.shared_constants))
    sizes, rss_before = tables(), _rss_bytes()
    cycles(18_000)
    assert tables() == sizes and sizes[0] == 0 and sizes[2] == 0
    grown = _rss_bytes() - rss_before
    assert grown < 4 * MiB, f"RSS grew by {grown} bytes over 18k load/unload cycles"


def test_a_compiler_neff_without_a_reference_warns_once_per_model_at_the_default_level(capsys) -> None:
    from tests.test_neff_roundtrip import _without_file_vars
    g, w = mlp_graph()
    members = {k: v for k, v in archive_members(g, w, name="c", target="v2", lnc_size=1, build_version="")
               .items() if not k.startswith("sim/")}
    members.update(_without_file_vars(members))
    data = container(make_archive(members), name="opaque_one")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS              # NEURON_RT_LOG_LEVEL unset: ERROR
    models = [nrt.nrt_load(data, 0)[1] for _ in range(2)]
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", nrt.nrt_tensor_allocate(0, 0, 32, "x")[1])
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", nrt.nrt_tensor_allocate(0, 0, 24, "y")[1])
    for model in models + models:
        assert nrt.nrt_execute(model, ins, outs) == 0
    err = capsys.readouterr().err
    assert err.count("cannot be run by neuron_sim") == 2 and " WARN " in err
