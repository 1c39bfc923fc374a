"""The two compiler-made NEFFs in ../shared/realneffs load with their exact metadata (skipped when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from neuron_sim.dtypes import NrtDtype
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.reader import read_neff, read_neff_file, verify_hash

REAL = next((p for p in (Path(__file__).resolve().parents[1].parent / "shared" / "realneffs",
                          Path("/work/shared/realneffs")) if (p / "matmul_small.neff").is_file()),
            Path("../shared/realneffs"))
pytestmark = pytest.mark.skipif(not (REAL / "matmul_small.neff").is_file(), reason=f"{REAL} is absent")

F16 = NrtDtype.FLOAT16
EXPECTED = {
    "matmul_small.neff": ([("x", (128, 256)), ("y", (256, 128))], ("output0", (128, 128)), 0x209C00, 0),
    "matmul_large.neff": ([("x", (128, 32768)), ("y", (32768, 65536))], ("output0", (128, 65536)), 0x201C00,
                          8 << 20),
}


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_real_neff_metadata(file: str) -> None:
    ins, out, features, scratch = EXPECTED[file]
    n = read_neff_file(REAL / file)
    assert [(t.name, t.usage, t.dtype, t.shape, t.size) for t in n.inputs] == [
        (name, "input", F16, shape, shape[0] * shape[1] * 2) for name, shape in ins]
    assert [(t.name, t.usage, t.dtype, t.shape, t.size) for t in n.outputs] == [
        (out[0], "output", F16, out[1], out[1][0] * out[1][1] * 2)]
    assert (n.version, n.num_cores, n.lnc_size, n.architecture, n.name) == ((2, 0), 1, 2, "v3", "file.neff")
    assert (n.header.pkg_version, n.header.feature_bits) == (2, features)
    assert n.is_opaque and n.graph is None and dict(n.weights) == {}
    assert len(n.uuid) == 32 and int(n.uuid, 16) == int.from_bytes(n.header.uuid, "big")
    assert n.constants_bytes == 2 * 32768            # one 32 KiB "file" var per subgraph (sg00, sg01)
    assert n.scratchpad_bytes == scratch
    assert n.code_bytes > 0 and "sg01/def.json" in n.members
    assert n.hash_status == "unchecked"


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_real_neff_hash_validates_with_the_word_swapped_md5(file: str) -> None:
    data = (REAL / file).read_bytes()
    assert verify_hash(data)
    assert read_neff(data, validate_hash=True).hash_status == "ok"
    corrupted = bytearray(data)
    corrupted[172] ^= 1
    with pytest.raises(NeffError, match="MD5 mismatch"):
        read_neff(bytes(corrupted), validate_hash=True)
