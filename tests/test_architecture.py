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


def _imported_names(path: Path) -> set[str]:
    """Every neuron_sim name a file imports (``module`` or ``module.name``), at module level or inside functions
    (lazy and TYPE_CHECKING imports count too), relative imports resolved, and modules named by a string (what
    ``importlib.import_module`` is given: the package's lazy names, the CLI's tool table)."""
    parts = path.resolve().relative_to(PACKAGE.parent).with_suffix("").parts if PACKAGE in path.resolve().parents \
        else ("neuron_sim", path.stem)
    package = ".".join(parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            found.add(node.value)
    return {n for n in found if n.split(".")[0] == "neuron_sim"}


def _module_of(name: str) -> str:
    """The module an imported name lives in (the name itself when it is a module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> set[str]:
    """Every neuron_sim module a file imports."""
    return {_module_of(n) for n in _imported_names(path)}


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


# Faces: every module of these packages (and the package root, which re-exports the Pythonic face).
FACE_PACKAGES = ("neuron_sim.nrt", "neuron_sim.api", "neuron_sim.nrtpy", "neuron_sim.clib", "neuron_sim.testing",
                 "neuron_sim.cli")
FACES = {"neuron_sim"} | {m for m in MODULES for p in FACE_PACKAGES if m == p or m.startswith(p + ".")}

# The documented exceptions: what a face imports besides the interface, the vocabulary and other faces. Each
# reads the machine (catalog, state directory, fault plan file, published records) or builds files; none
# drives this process's runtime, which goes through the interface.
MACHINE_SELECTION = {"neuron_sim.hardware.select.select_machine", "neuron_sim.config.load_config"}
FAULT_PLAN_FILE = {"neuron_sim.runtime.fault_store", "neuron_sim.runtime.fault_plan.Fault",
                   "neuron_sim.runtime.fault_plan.FaultPlanError", "neuron_sim.runtime.fault_plan.parse_fault",
                   "neuron_sim.runtime.faults.machine_state_dir"}
EXCEPTIONS: dict[str, set[str]] = {
    # the package root lazily re-exports register_reference/unregister_reference (a process-wide registry)
    "neuron_sim": {"neuron_sim.runtime.references"},
    # neuron-sim run/env: the library's environment for a machine named before any runtime starts
    "neuron_sim.clib.environment": {"neuron_sim.hardware.select.INSTANCE_TYPE_VAR",
                                    "neuron_sim.hardware.select.select_machine"},
    # emulate: validates its clock argument and names the default machine before any runtime starts
    "neuron_sim.testing.emulate": {"neuron_sim.config.variables.CLOCKS",
                                   "neuron_sim.hardware.select.DEFAULT_INSTANCE_TYPE",
                                   "neuron_sim.hardware.select.INSTANCE_TYPES"},   # refuse a bad name at once
    # the machine's fault plan (a file in its state directory, shared by all its processes) and hardware model
    "neuron_sim.testing": {"neuron_sim.runtime.fault_plan.Fault", "neuron_sim.runtime.fault_plan.FaultPlanError"},
    "neuron_sim.testing.machine": MACHINE_SELECTION | FAULT_PLAN_FILE | {"neuron_sim.runtime.fault_plan.parse_plan"},
    "neuron_sim.cli.faults_cmd": FAULT_PLAN_FILE - {"neuron_sim.runtime.fault_plan.Fault"}
                                 | {"neuron_sim.runtime.fault_plan.CALLS", "neuron_sim.runtime.fault_plan.load_plan_text"},
    # the tools inspect the machine: the catalog, the lock files, the runtimes' published records, the ledger
    "neuron_sim.cli.ls": {"neuron_sim.hardware.model.GiB", "neuron_sim.hardware.model.Device",
                          "neuron_sim.hardware.model.Machine", "neuron_sim.hardware.select.LNC_VAR",
                          "neuron_sim.hardware.select.SelectionError", "neuron_sim.hardware.select.select_machine",
                          "neuron_sim.ranges.format_ranges", "neuron_sim.runtime.reservation",
                          "neuron_sim.runtime.reservation.default_state_dir", "neuron_sim.runtime.publish.read_runtimes",
                          "neuron_sim.runtime.memory_ledger.read_machine_memory",
                          "neuron_sim.sizes.format_bytes"},
    "neuron_sim.cli.monitor": {"neuron_sim.runtime.publish.MonitorAttachment", "neuron_sim.runtime.publish.read_runtimes",
                               "neuron_sim.runtime.reservation.default_state_dir",
                               "neuron_sim.regular_files.read_regular"},   # -c must not block on a FIFO
    "neuron_sim.cli.top": {"neuron_sim.hardware.model.Machine", "neuron_sim.runtime.publish.MonitorAttachment",
                           "neuron_sim.runtime.publish.read_runtimes", "neuron_sim.runtime.reservation.default_state_dir"},
    "neuron_sim.cli.monitor_report": {"neuron_sim.hardware.model.Machine"},
    # the demo builds its NEFF and checks the result against the numpy op; neff inspects/packs NEFF files
    "neuron_sim.cli.demo": {"neuron_sim.neff.builder.NeffBuilder", "neuron_sim.compute.ops.apply_op",
                            "neuron_sim.draw.render", "neuron_sim.draw.scene"},
    # drawings of the machine (published records, ledger) and trace/profile files written by runtimes
    "neuron_sim.cli.draw_cmd": MACHINE_SELECTION | {"neuron_sim.runtime.faults.machine_state_dir",
                                                    "neuron_sim.draw.render", "neuron_sim.draw.scene"},
    "neuron_sim.cli.trace_cmd": {"neuron_sim.tracing.perfetto", "neuron_sim.tracing.profile"},
    "neuron_sim.cli.neff_cmd": {"neuron_sim.compute.graph.Graph", "neuron_sim.neff.builder.NeffBuilder",
                                "neuron_sim.neff.errors.NeffError", "neuron_sim.neff.header.HEADER_SIZE",
                                "neuron_sim.neff.header.NeffHeader", "neuron_sim.neff.metadata.TARGET_ARCH",
                                "neuron_sim.neff.package.hash_algorithm", "neuron_sim.neff.package.make_archive",
                                "neuron_sim.neff.package.compute_hash", "neuron_sim.neff.package.read_archive",
                                "neuron_sim.neff.reader.Neff", "neuron_sim.neff.reader.hash_fields",
                                "neuron_sim.neff.reader.read_neff", "neuron_sim.neff.writer.write_neff",
                                "neuron_sim.regular_files.open_regular"},
}


def _beyond_the_interface(face: str) -> set[str]:
    """What a face imports that is neither the interface, the vocabulary, nor another face."""
    return {n for n in _imported_names(MODULES[face]) if _module_of(n) not in VOCABULARY | FACES}


@pytest.mark.parametrize("face", sorted(FACES))
def test_faces_import_the_interface_and_the_vocabulary_only(face):
    extra = _beyond_the_interface(face)
    assert extra <= EXCEPTIONS.get(face, set()), sorted(extra - EXCEPTIONS.get(face, set()))


def test_the_listed_exceptions_are_all_still_used():
    for face, allowed in EXCEPTIONS.items():
        assert allowed <= _beyond_the_interface(face), (face, sorted(allowed - _beyond_the_interface(face)))


def test_the_face_check_sees_a_face_reaching_into_the_runtime(tmp_path):
    bad = tmp_path / "neuron_sim_face.py"
    bad.write_text("from neuron_sim import nrtlog\nfrom neuron_sim.runtime.lifecycle import peek\n"
                   "def f():\n    from neuron_sim.runtime import interface\n")
    names = _imported_names(bad)
    assert names == {"neuron_sim.nrtlog", "neuron_sim.runtime.lifecycle.peek", "neuron_sim.runtime.interface"}
    assert {_module_of(n) for n in names} - VOCABULARY == {"neuron_sim.nrtlog", "neuron_sim.runtime.lifecycle"}


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
