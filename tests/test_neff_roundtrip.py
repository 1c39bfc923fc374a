"""Write -> read round trips, hash handling, every load-time check of read_neff, and the committed samples."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from neuron_sim.compute.graph import Graph, Op, Subgraph, TensorSpec
from neuron_sim.dtypes import NrtDtype
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.header import NeffHeader
from neuron_sim.neff.package import compute_hash, hash_matches, make_archive, read_archive
from neuron_sim.neff.reader import read_neff, read_neff_file, verify_hash
from neuron_sim.neff.writer import archive_members, write_neff
from neuron_sim.status import NrtStatus

REPO = Path(__file__).resolve().parents[1]
NEFFS = REPO / "neffs"
INVALID, UNSUPPORTED = NrtStatus.INVALID, NrtStatus.UNSUPPORTED_NEFF_VERSION


def mlp_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    g = Graph(
        inputs=(TensorSpec("x", "float32", (2, 4)),),
        outputs=(TensorSpec("y", "float32", (2, 3)),),
        subgraphs=(Subgraph(("x",), ("y",), (Op("matmul", ("x", "w"), "h"), Op("add", ("h", "b"), "a"),
                                              Op("relu", ("a",), "y"))),),
        weight_names=("w", "b"),
    )
    return g, {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": np.arange(3, dtype=np.float32)}


def assemble(members: dict[str, bytes], *, pkg_version: int = 2, **fields) -> bytes:
    payload = make_archive(members, compress=pkg_version == 2)
    header = NeffHeader(pkg_version=pkg_version, data_size=len(payload), hash=compute_hash(payload, pkg_version),
                        **fields)
    return header.pack() + payload


def load_error(data: bytes, **kw) -> NeffError:
    with pytest.raises(NeffError) as exc:
        read_neff(data, **kw)
    return exc.value


# ---- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("pkg_version", [1, 2])
def test_every_header_field_tensor_and_weight_comes_back(pkg_version: int) -> None:
    g, w = mlp_graph()
    uuid = bytes(range(16))
    data = write_neff(g, w, name="rt.neff", target="v3", lnc_size=2, version=(2, 1), pkg_version=pkg_version,
                      feature_bits=0x1C00, uuid=uuid, build_version="9.9.9")
    n = read_neff(data, validate_hash=True)
    h = n.header
    assert (h.pkg_version, h.header_size, h.data_size) == (pkg_version, 1024, len(data) - 1024)
    assert (h.neff_version_major, h.neff_version_minor, h.neff_build_version) == (2, 1, "9.9.9")
    assert (h.num_tpb, h.requested_tpb_count, h.tpb_per_node[0], h.feature_bits, h.lnc_size) == (1, 1, 1, 0x1C00, 2)
    assert h.uuid == uuid and n.uuid == uuid.hex() and n.name == h.name == "rt.neff"
    assert (n.version, n.architecture, n.num_cores, n.lnc_size) == ((2, 1), "v3", 1, 2)
    assert n.hash_status == "ok" and verify_hash(data)
    assert [(t.name, t.usage, t.dtype, t.shape, t.size) for t in n.inputs + n.outputs] == [
        ("x", "input", NrtDtype.FLOAT32, (2, 4), 32), ("y", "output", NrtDtype.FLOAT32, (2, 3), 24)]
    assert n.graph == g
    assert set(n.weights) == {"w", "b"}
    for k, v in w.items():
        assert n.weights[k].dtype == v.dtype and np.array_equal(n.weights[k], v)
    assert n.constants_bytes == 48 + 12 and not n.is_opaque
    assert {"sg00/def.json", "sg01/def.json", "kelf-0.json", "neff.json", "info.json"} <= set(n.members)
    is_gzip = data[1024:1026] == b"\x1f\x8b"
    assert is_gzip == (pkg_version == 2)


def test_writing_is_reproducible_and_uuid_follows_content() -> None:
    g, w = mlp_graph()
    a = write_neff(g, w, name="a")
    assert a == write_neff(g, w, name="a")
    b = write_neff(g, w, name="b")
    assert read_neff(a).uuid != read_neff(b).uuid
    members = read_archive(a[1024:])
    info = tarfile.open(fileobj=io.BytesIO(gzip.decompress(a[1024:]))).getmembers()
    assert [m.name for m in info] == sorted(members)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in info)
    assert a[1024 + 4:1024 + 8] == bytes(4)     # gzip mtime 0


def test_declared_sizes_scratchpad_and_bf16_weights_round_trip() -> None:
    b = NeffBuilder("bf", target="v2")
    x = b.input("x", "bfloat16", (2, 8))
    wt = np.arange(64, dtype=np.float32).reshape(8, 8).astype(ml_dtypes.bfloat16)
    b.output("y", x @ b.weight("w", wt))
    b.declare(constants_bytes=1000, scratchpad_bytes=4096, output_buffer_bytes=77, duration_s=1.5)
    n = read_neff(b.build())
    assert n.weights["w"].dtype == np.dtype(ml_dtypes.bfloat16) and np.array_equal(n.weights["w"], wt)
    assert n.inputs[0].dtype == NrtDtype.BFLOAT16 and n.inputs[0].size == 32
    assert n.constants_bytes == 128 + 1000 and n.scratchpad_bytes == 4096
    assert n.graph.declared.output_buffer_bytes == 77 and n.graph.declared.duration_s == 1.5


# ---- hash -------------------------------------------------------------------------------------------

def test_hash_is_the_word_swapped_digest_and_plain_digests_also_match() -> None:
    payload = b"neff payload"
    md5 = hashlib.md5(payload).digest()
    stored = compute_hash(payload, 2)
    assert stored[:4] == md5[:4][::-1] and stored[12:16] == md5[12:16][::-1] and stored[16:] == bytes(16)
    assert hash_matches(stored, payload, 2) and hash_matches(md5 + bytes(16), payload, 2)
    assert not hash_matches(bytes(32), payload, 2)
    assert hash_matches(hashlib.sha256(payload).digest(), payload, 1)


@pytest.mark.parametrize("pkg_version,text", [(2, "MD5 mismatch!"), (1, "SHA256 mismatch!")])
def test_a_wrong_hash_fails_only_when_validation_is_asked(pkg_version: int, text: str) -> None:
    g, w = mlp_graph()
    data = write_neff(g, w, name="h", pkg_version=pkg_version, header_overrides={"hash": b"\1" * 32})
    assert read_neff(data).hash_status == "unchecked"
    err = load_error(data, validate_hash=True)
    assert err.status == INVALID and text in err.message
    assert verify_hash(data) is False


def _without_file_vars(members: dict[str, bytes]) -> dict[str, bytes]:
    """The def.json members with their "file" vars dropped (a compiler-style NEFF with no constants)."""
    out = {}
    for name, raw in members.items():
        if name.endswith("def.json"):
            doc = json.loads(raw)
            doc["var"] = {k: v for k, v in doc["var"].items() if v.get("type") != "file"}
            out[name] = json.dumps(doc).encode()
    return out


def test_compiler_made_neff_with_a_wrong_hash_is_refused_when_validating() -> None:
    g, w = mlp_graph()
    members = {k: v for k, v in archive_members(g, w, name="c", target="v2", lnc_size=1, build_version="")
               .items() if not k.startswith("sim/")}
    members.update(_without_file_vars(members))
    good = assemble(members)
    n = read_neff(good, validate_hash=True)
    assert n.is_opaque and n.hash_status == "ok" and n.weights == {}
    bad = bytearray(good)
    bad[172] ^= 0xFF
    with pytest.raises(NeffError, match="MD5 mismatch"):
        read_neff(bytes(bad), validate_hash=True)
    assert read_neff(bytes(bad)).hash_status == "unchecked"


# ---- container checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,status,text", [
    ({"data_size": 10**9}, INVALID, "Invalid NEFF data size"),
    ({"header_size": 10}, INVALID, "Invalid NEFF header size"),
    ({"header_size": 10**9}, INVALID, "Invalid NEFF header size"),
    ({"pkg_version": 7}, UNSUPPORTED, "Unsupported NEFF packager: 7"),
    ({"pkg_version": 0}, UNSUPPORTED, "Unsupported NEFF packager: 0"),
    ({"neff_version_major": 3}, UNSUPPORTED, "NEFF version: 3.0 is not supported, accepted version range: 0.x-2.x"),
    ({"feature_bits": 1 << 27}, UNSUPPORTED, "This NEFF (version 2.0, features: 0x8000000) has been compiled by a "
                                            "newer version of Neuron compiler. Features supported by this Neuron "
                                            "Runtime: 0x7ffffff"),
    ({"num_tpb": 0}, INVALID, "num_tpb is 0"),
    ({"num_tpb": 2}, INVALID, "num_tpb 2"),
    ({"lnc_size": 4}, INVALID, "lnc_size 4"),
])
def test_bad_header_values_map_to_their_status(overrides: dict, status: NrtStatus, text: str) -> None:
    g, w = mlp_graph()
    err = load_error(write_neff(g, w, name="bad", header_overrides=overrides))
    assert err.status == status and text in err.message


def test_minor_version_and_bit_63_are_not_checked_and_supported_features_is_a_parameter() -> None:
    g, w = mlp_graph()
    assert read_neff(write_neff(g, w, name="m", version=(2, 99), feature_bits=1 << 63)).version == (2, 99)
    data = write_neff(g, w, name="f", feature_bits=1 << 30)
    assert load_error(data).status == UNSUPPORTED
    assert read_neff(data, supported_features=(1 << 31) - 1).header.feature_bits == 1 << 30


def test_too_short_and_non_bytes_inputs() -> None:
    err = load_error(b"\0" * 100)
    assert err.status == INVALID and "Invalid NEFF data size" in err.message
    with pytest.raises(TypeError):
        read_neff("not bytes")  # type: ignore[arg-type]
    with pytest.raises(NeffError, match="Failed to read NEFF file"):
        read_neff_file("/nonexistent/x.neff")


# ---- member checks ----------------------------------------------------------------------------------

def members_of() -> dict[str, bytes]:
    g, w = mlp_graph()
    return archive_members(g, w, name="m", target="v2", lnc_size=1, build_version="")


def edit_json(members: dict[str, bytes], name: str, fn) -> dict[str, bytes]:
    doc = json.loads(members[name])
    fn(doc)
    return {**members, name: json.dumps(doc).encode()}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("mutate,text", [
    (lambda m: {k: v for k, v in m.items() if k != "neff.json"}, "missing member neff.json"),
    (lambda m: {**m, "neff.json": b"{not json"}, "neff.json is not valid JSON"),
    (lambda m: edit_json(m, "neff.json", lambda d: d["attrs"]["dltype"][1].__setitem__(0, "complex64")),
     "neff.json: tensor 'x'"),
    (lambda m: edit_json(m, "neff.json", lambda d: d.__setitem__("heads", [[99, 0, 0]])), "node 99"),
    (lambda m: {k: v for k, v in m.items() if k != "kelf-0.json"}, "missing member kelf-0.json"),
    (lambda m: edit_json(m, "kelf-0.json", lambda d: d.__setitem__("target", "pluto")), "unknown kelf target 'pluto'"),
    (lambda m: {k: v for k, v in m.items() if k != "sg00/def.json"}, "sg00/def.json, which is missing"),
    (lambda m: edit_json(m, "sg00/def.json", lambda d: d["var"]["x"].__setitem__("size", 7)),
     "sg00/def.json: var 'x' is 7 bytes"),
    (lambda m: edit_json(m, "sg00/tensor_map.json", lambda d: d["y"].__setitem__("tf_shape", [9])),
     "sg00/tensor_map.json: 'y': shape [9]"),
    (lambda m: {k: v for k, v in m.items() if k != "sim/graph.json"}, "missing member sim/graph.json"),
    (lambda m: {**m, "sim/graph.json": b"{}"}, "sim/graph.json"),
    (lambda m: {k: v for k, v in m.items() if k != "sim/weights/w.npy"}, "missing member sim/weights/w.npy"),
    (lambda m: {**m, "sim/weights/w.npy": _npy(np.zeros((3, 4), np.float32))},
     "sim/weights/w.npy is float32 [3, 4] but tensor_map.json declares float32 [4, 3]"),
    (lambda m: {**m, "sim/weights/w.npy": _npy(np.zeros((4, 3), np.float64))}, "sim/weights/w.npy is float64"),
    (lambda m: {**m, "sim/weights/w.npy": _npy(np.zeros((4, 3), np.float32))[:-4]}, "data bytes"),
    (lambda m: {**m, "sim/weights/w.npy": b"not an npy"}, "not a valid .npy"),
])
def test_missing_or_malformed_members_are_nrt_invalid_naming_the_member(mutate, text: str) -> None:
    err = load_error(assemble(mutate(members_of())))
    assert err.status == INVALID and text in err.message


def test_npy_header_claiming_a_huge_shape_is_refused_without_allocating() -> None:
    raw = bytearray(_npy(np.zeros((4, 3), np.float32)))
    raw = raw.replace(b"(4, 3)", b"(10**12, 3)".replace(b"10**12", b"999999999999"))
    err = load_error(assemble({**members_of(), "sim/weights/w.npy": bytes(raw)}))
    assert err.status == INVALID


def raw_tar(entries: list[tarfile.TarInfo], contents: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in zip(entries, contents):
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


@pytest.mark.parametrize("info,text", [
    (_info("../evil.json", 2), "not a plain relative path"),
    (_info("/etc/passwd", 2), "not a plain relative path"),
    (_info("sg00/../../x", 2), "not a plain relative path"),
    (_info("neff.json", 0, tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
    (_info("neff.json", 0, tarfile.LNKTYPE, "info.json"), "not a regular file"),
])
def test_tar_path_tricks_are_refused(info: tarfile.TarInfo, text: str) -> None:
    payload = gzip.compress(raw_tar([info], [b"{}"]), mtime=0)
    err = load_error(NeffHeader(data_size=len(payload)).pack() + payload)
    assert err.status == INVALID and text in err.message


def test_duplicate_members_and_decompression_bombs_are_refused() -> None:
    dup = raw_tar([_info("a", 1), _info("a", 1)], [b"1", b"2"])
    with pytest.raises(NeffError, match="appears twice"):
        read_archive(dup)
    bomb = gzip.compress(bytes(4 << 20), mtime=0)
    with pytest.raises(NeffError, match="expands beyond") as exc:
        read_archive(bomb, max_bytes=1 << 20)
    assert exc.value.status == INVALID
    with pytest.raises(NeffError, match="truncated"):
        read_archive(gzip.compress(raw_tar([_info("a", 1)], [b"1"]))[:-20])


# ---- the committed sample set -----------------------------------------------------------------------

def _samples_module():
    spec = importlib.util.spec_from_file_location("build_samples", NEFFS / "build_samples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    return _samples_module().build_all()


def test_build_samples_is_reproducible_and_matches_the_committed_files(built: dict[str, bytes]) -> None:
    assert built == _samples_module().build_all()
    for name, data in built.items():
        committed = (NEFFS / name).read_bytes()
        assert len(committed) < 200 * 1024, name
        if committed != data:   # another zlib may compress differently: compare header and members instead
            a, b = NeffHeader.unpack(committed), NeffHeader.unpack(data)
            assert a.uuid == b.uuid and a.name == b.name, name
            assert read_archive(committed[1024:1024 + a.data_size]) == read_archive(data[1024:1024 + b.data_size])


def test_samples_behave_as_documented(built: dict[str, bytes]) -> None:
    n = {k: read_neff(v) for k, v in built.items()
         if k not in ("truncated.neff", "unsupported_version.neff", "unknown_features.neff")}
    assert (n["mlp_trn1.neff"].architecture, n["mlp_inf2.neff"].architecture) == ("v2", "v2")
    assert (n["mlp_trn2.neff"].architecture, n["mlp_trn2.neff"].lnc_size) == ("v3", 2)
    assert n["mlp_inf1.neff"].architecture == "v1"
    assert n["matmul_bf16.neff"].inputs[0].dtype == NrtDtype.BFLOAT16
    assert n["pipeline_4core.neff"].num_cores == 4 and len(n["pipeline_4core.neff"].graph.subgraphs) == 4
    assert n["large_weights.neff"].constants_bytes >= 768 << 20
    assert n["slow_40s.neff"].graph.declared.duration_s == 40.0
    assert n["large_outputs.neff"].graph.declared.output_buffer_bytes == 6 << 30
    div = [op for op in n["nan_output.neff"].graph.subgraphs[0].ops if op.kind == "div"]
    assert len(div) == 1 and div[0].inputs[0] == div[0].inputs[1]     # 0/0
    assert "MD5 mismatch!" in load_error(built["bad_hash.neff"], validate_hash=True).message
    assert read_neff(built["bad_hash.neff"]).graph == n["mlp_trn1.neff"].graph
    assert load_error(built["truncated.neff"]).status == INVALID
    assert "NEFF version: 3.0" in load_error(built["unsupported_version.neff"]).message
    assert load_error(built["unknown_features.neff"]).status == UNSUPPORTED
