"""`neff inspect|unpack|pack|build` through argparse: readable output, NRT-style errors, exit codes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from neuron_sim.cli import neff_cmd
from neuron_sim.neff.reader import read_neff_file

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "neffs").glob("*.neff"))
REAL = REPO.parent / "shared" / "realneffs"
FAILING = {"truncated.neff": 2, "unsupported_version.neff": 10, "unknown_features.neff": 10}


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="neuron-sim")
    neff_cmd.register(parser.add_subparsers(dest="command"))
    return neff_cmd.run(parser.parse_args(["neff", *argv]))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_inspect_every_sample(path: Path, capsys) -> None:
    code = cli("inspect", str(path))
    out, err = capsys.readouterr()
    assert "pkg_version      2 (gzip tar)" in out and "feature_bits" in out and "num_tpb" in out
    assert ("hash (md5)" in out) == (path.name != "truncated.neff")   # no payload to hash when cut short
    if path.name in FAILING:
        assert code == 1 and f"(err: {FAILING[path.name]}," in err and "Traceback" not in err
    else:
        assert code == 0 and err == ""
        first_input = {"nki_add.neff": "a_input", "nki_exp.neff": "src_tensor", "gather_oob.neff": "src_tensor"}
        assert "IO tensors" in out and f"  {first_input.get(path.name, 'x')}  " in out and "neuron_sim graph" in out
    if path.name == "bad_hash.neff":
        assert "MISMATCH" in out
    elif path.name != "truncated.neff":
        assert "-> match" in out


def test_inspect_json_and_validate_hash(capsys) -> None:
    assert cli("inspect", "--json", str(REPO / "neffs" / "pipeline_4core.neff")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["neff"]["num_cores"] == 4 and doc["header"]["num_tpb"] == 4 and doc["hash"]["matches"]
    assert doc["neff"]["tensors"][0] == {"name": "x", "usage": "input", "dtype": "float32", "shape": [4, 32],
                                         "bytes": 512}
    assert cli("inspect", "--validate-hash", str(REPO / "neffs" / "bad_hash.neff")) == 1
    assert "MD5 mismatch!" in capsys.readouterr().err


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realneffs is absent")
@pytest.mark.parametrize("name", ["matmul_small.neff", "matmul_large.neff"])
def test_inspect_real_neffs(name: str, capsys) -> None:
    assert cli("inspect", str(REAL / name)) == 0
    out = capsys.readouterr().out
    assert "v3 (kelf target cayman)" in out and "compiler-made (opaque)" in out and "LNC 2" in out
    assert "output0  output  float16" in out and "-> match" in out


def test_unpack_then_pack_gives_an_equivalent_neff(tmp_path: Path, capsys) -> None:
    src = REPO / "neffs" / "mlp_trn2.neff"
    assert cli("unpack", str(src), str(tmp_path / "d")) == 0
    header = json.loads((tmp_path / "d" / "header.json").read_text())
    assert header["lnc_size"] == 2 and (tmp_path / "d" / "sim" / "graph.json").is_file()
    header["name"] = "renamed"
    (tmp_path / "d" / "header.json").write_text(json.dumps(header))
    assert cli("pack", str(tmp_path / "d"), str(tmp_path / "out.neff")) == 0
    a, b = read_neff_file(src), read_neff_file(tmp_path / "out.neff", validate_hash=True)
    assert b.name == "renamed" and b.hash_status == "ok" and b.graph == a.graph and b.lnc_size == 2
    assert b.header.uuid == a.header.uuid and set(b.weights) == set(a.weights)
    assert cli("unpack", str(src), str(tmp_path / "d")) == 1          # not empty
    assert "not an empty directory" in capsys.readouterr().err


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realneffs is absent")
def test_unpack_and_pack_a_real_neff(tmp_path: Path) -> None:
    assert cli("unpack", str(REAL / "matmul_small.neff"), str(tmp_path / "r")) == 0
    assert cli("pack", str(tmp_path / "r"), str(tmp_path / "r.neff")) == 0
    n = read_neff_file(tmp_path / "r.neff", validate_hash=True)
    assert [t.name for t in n.inputs + n.outputs] == ["x", "y", "output0"] and n.hash_status == "ok"


def test_build_from_python_and_json_specs(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.py"
    spec.write_text("import numpy as np\nTARGET = 'v3'\n"
                    "def build(b):\n    x = b.input('x', 'float32', (1, 4))\n"
                    "    b.output('y', b.relu(x @ b.weight('w', np.eye(4, dtype=np.float32))))\n")
    assert cli("build", str(spec), str(tmp_path / "tiny.neff"), "--lnc-size", "2") == 0
    n = read_neff_file(tmp_path / "tiny.neff")
    assert (n.name, n.architecture, n.lnc_size, n.outputs[0].name) == ("tiny", "v3", 2, "y")
    jspec = tmp_path / "g.json"
    jspec.write_text(json.dumps({"name": "g", "graph": json.loads(n.graph.to_json()),
                                 "weights": {"w": {"dtype": "float32", "shape": [4, 4], "seed": 1}}}))
    assert cli("build", str(jspec), str(tmp_path / "g.neff"), "--target", "v1") == 0
    g = read_neff_file(tmp_path / "g.neff")
    assert g.architecture == "v1" and g.weights["w"].shape == (4, 4)


@pytest.mark.parametrize("argv,text", [
    (["inspect", "/nonexistent.neff"], "cannot read /nonexistent.neff"),
    (["pack", "/nonexistent-dir", "/tmp/x.neff"], "header.json is missing"),
    (["build", "/nonexistent.py", "/tmp/x.neff"], "does not exist"),
])
def test_errors_are_one_line_on_stderr_with_exit_1(argv: list[str], text: str, capsys) -> None:
    assert cli(*argv) == 1
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err and err.startswith("ERROR  NEFF:")


def test_a_failing_build_spec_and_usage_errors(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.py"
    spec.write_text("def build(b):\n    x = b.input('x', 'float32', (2, 3))\n    b.output('y', x @ x)\n")
    assert cli("build", str(spec), str(tmp_path / "o.neff")) == 1
    assert "inner dimensions differ" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli("inspect")
    assert exc.value.code == 2
