"""The package's layering: no import cycle, every module importable on its own, faces through the interface only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "neuron_sim"
VOCABULARY = {"neuron_sim.status", "neuron_sim.dtypes", "neuron_sim.runtime.interface"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every neuron_sim module a file imports, at module level or inside functions (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES and m.startswith("neuron_sim")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_the_package():
    # package __init__ files only re-export; an edge into one is an edge to what it imports
    graph = {m: _imports(p) - {m} for m, p in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("face", ["neuron_sim.nrt", "neuron_sim.api", "neuron_sim.cli.demo"])
def test_faces_import_the_interface_and_the_vocabulary_only(face):
    runtime = {m for m in _imports(MODULES[face]) if m.startswith("neuron_sim.runtime")}
    assert runtime <= VOCABULARY | {"neuron_sim.runtime"}, runtime - VOCABULARY


def test_every_module_imports_on_its_own():
    """Each module imported into a process holding no other neuron_sim module (so no hidden order dependency)."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(MODULES)!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'neuron_sim' or m.startswith('neuron_sim.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_every_runtime_module_says_what_state_it_owns():
    for name, path in MODULES.items():
        if name.startswith("neuron_sim.runtime.") :
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "State owned here" in doc or "owns no state" in doc, name
