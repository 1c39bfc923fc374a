"""The real NEFF metadata members (neff.json, kelf-N.json, sgNN/def.json, sgNN/tensor_map.json, info.json):
parse them into IO tensors, architecture and sizes, and produce them for the NEFFs neuron_sim writes.

neff.json is a TVM graph: ``op:"null"`` nodes listed in ``arg_nodes`` are the inputs, ``heads`` are the
outputs, and each tensor's dtype/shape sit in ``attrs.dltype``/``attrs.shape`` at index
``node_row_ptr[node] + output_index``. Real LNC=2 NEFFs list an output once per physical core, so
outputs are deduplicated by name (copies must agree). def.json/tensor_map.json/metadata.signatures
are cross-checked where they name the same tensor. A kelf without ``target`` counts as ``"*"`` (any).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from neuron_sim.dtypes import NrtDtype, dtype_name, nrt_dtype, numpy_dtype
from neuron_sim.neff.errors import invalid

# kelf "target" codename -> NeuronCore generation name used by neuron_sim.
TARGET_ARCH: dict[str, str] = {"tonga": "v1", "sunda": "v2", "cayman": "v3", "mariana": "v4", "*": "any"}
ARCH_TARGET: dict[str, str] = {v: k for k, v in TARGET_ARCH.items()}
_ARCH_ALIASES: dict[str, str] = {
    "inf1": "v1", "trn1": "v2", "trn1n": "v2", "inf2": "v2", "trn2": "v3", "trn2n": "v3", "trn3": "v4",
    "ncv1": "v1", "ncv2": "v2", "ncv3": "v3", "ncv4": "v4",
}
_KELF_NAME = re.compile(r"kelf-[^/]+\.json")


@dataclass(frozen=True)
class IoTensor:
    """One model input or output as nrt_get_model_tensor_info reports it; ``size`` is in bytes."""

    name: str
    usage: str            # "input" | "output"
    dtype: NrtDtype
    shape: tuple[int, ...]
    size: int


@dataclass(frozen=True)
class DefSummary:
    """What the runtime takes from one sgNN/def.json: IO var sizes, constants and scratchpad need."""

    member: str
    io_vars: dict[str, tuple[str, int]]   # name -> (type, size)
    file_bytes: int                       # sum of "file" var sizes (constants in HBM)
    scratchpad_bytes: int                 # max(backing_variable_off + size) over "virtual" vars
    files: tuple[str, ...] = ()           # archive members the "file" vars name (relative to the archive root)


def arch_of_target(target: str) -> str:
    """Architecture ("v1".."v4" or "any") of a kelf target; NeffError naming the accepted targets."""
    if target in TARGET_ARCH:
        return TARGET_ARCH[target]
    raise invalid(f"unknown kelf target {target!r}; accepted: {', '.join(sorted(TARGET_ARCH))}")


def target_of(arch: str) -> str:
    """The kelf target codename for an architecture, codename or instance family (v2, sunda, trn1, any...)."""
    key = arch.strip().lower()
    if key in TARGET_ARCH:
        return key
    key = _ARCH_ALIASES.get(key, key)
    if key in ARCH_TARGET:
        return ARCH_TARGET[key]
    accepted = sorted(set(TARGET_ARCH) | set(ARCH_TARGET) | set(_ARCH_ALIASES))
    raise ValueError(f"unknown target {arch!r}; accepted: {', '.join(accepted)}")


def tensor_size(dtype: NrtDtype, shape: Iterable[int]) -> int:
    """Bytes of a dense tensor: prod(shape) * itemsize."""
    return math.prod(shape) * numpy_dtype(dtype).itemsize


def load_json(members: Mapping[str, bytes], name: str) -> Any:
    """Parse a JSON member; NeffError(NRT_INVALID) naming the member when missing or malformed."""
    if name not in members:
        raise invalid(f"NEFF is missing member {name}")
    try:
        return json.loads(bytes(members[name]))
    except (ValueError, RecursionError) as exc:
        raise invalid(f"NEFF member {name} is not valid JSON: {exc}") from None


def _text(where: str | Callable[[], str]) -> str:
    """An error's location: given as is, or made only when an error needs it (loads check many values)."""
    return where if isinstance(where, str) else where()


def _dtype(value: Any, where: str | Callable[[], str]) -> NrtDtype:
    if not isinstance(value, str):
        raise invalid(f"{_text(where)}: dtype must be a string, got {value!r}")
    try:
        code = nrt_dtype(value)
    except ValueError as exc:
        raise invalid(f"{_text(where)}: {exc}") from None
    if code is NrtDtype.UNKNOWN:
        raise invalid(f"{_text(where)}: dtype {value!r} has no size")
    return code


def _shape(value: Any, where: str | Callable[[], str]) -> tuple[int, ...]:
    if type(value) is list and all(type(d) is int and d >= 0 for d in value):     # as JSON gives it: one pass
        return tuple(value)
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise invalid(f"{_text(where)}: shape must be a list of non-negative integers, got {str(value)[:80]}")
    return tuple(value)


def _int(value: Any, where: str | Callable[[], str]) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{_text(where)} must be a non-negative integer, got {str(value)[:80]}")
    return value


def _typed_list(attrs: dict, key: str, member: str) -> list:
    entry = attrs.get(key)
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
        raise invalid(f"{member}: attrs.{key} must be [\"list_...\", [...]]")
    return entry[1]


def parse_io(doc: Any, member: str = "neff.json") -> tuple[tuple[IoTensor, ...], tuple[IoTensor, ...]]:
    """Inputs and outputs of a TVM-form neff.json (null arg nodes in order; heads deduplicated by name)."""
    if not isinstance(doc, dict):
        raise invalid(f"{member}: top level must be an object")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise invalid(f"{member}: 'nodes' must be a list of objects")
    attrs = doc.get("attrs")
    if not isinstance(attrs, dict):
        raise invalid(f"{member}: 'attrs' must be an object")
    shapes = _typed_list(attrs, "shape", member)
    dltypes = _typed_list(attrs, "dltype", member)
    row_ptr = doc.get("node_row_ptr")
    if row_ptr is None:
        row_ptr, acc = [0], 0
        for node in nodes:
            outs = node.get("output_names")
            acc += len(outs) if isinstance(outs, list) and node.get("op") != "null" else 1
            row_ptr.append(acc)
    if (not isinstance(row_ptr, list) or len(row_ptr) != len(nodes) + 1
            or not all(isinstance(r, int) and not isinstance(r, bool) for r in row_ptr)):
        raise invalid(f"{member}: node_row_ptr must list {len(nodes) + 1} integers")

    def entry(node_id: Any, index: Any, usage: str) -> IoTensor:
        if not (isinstance(node_id, int) and isinstance(index, int)) or not 0 <= node_id < len(nodes) or index < 0:
            raise invalid(f"{member}: {usage} refers to node {node_id!r} output {index!r}, which does not exist")
        node = nodes[node_id]
        eid = row_ptr[node_id] + index
        if not 0 <= eid < min(len(shapes), len(dltypes)) or eid >= row_ptr[node_id + 1]:
            raise invalid(f"{member}: node {node_id} output {index} has no attrs.shape/attrs.dltype entry")
        names = node.get("output_names")
        if node.get("op") != "null" and isinstance(names, list) and index < len(names):
            name = names[index]
        else:
            name = node.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{member}: node {node_id} has no usable name")
        where = lambda: f"{member}: tensor {name!r}"  # noqa: E731
        dtype = _dtype(dltypes[eid], where)
        shape = _shape(shapes[eid], where)
        return IoTensor(name=name, usage=usage, dtype=dtype, shape=shape, size=tensor_size(dtype, shape))

    arg_nodes = doc.get("arg_nodes")
    if arg_nodes is None:
        arg_nodes = [i for i, n in enumerate(nodes) if n.get("op") == "null"]
    if not isinstance(arg_nodes, list):
        raise invalid(f"{member}: 'arg_nodes' must be a list")
    inputs: list[IoTensor] = []
    for nid in arg_nodes:
        if not isinstance(nid, int) or not 0 <= nid < len(nodes):
            raise invalid(f"{member}: arg_nodes names node {nid!r}, which does not exist")
        if nodes[nid].get("op") != "null":
            continue
        t = entry(nid, 0, "input")
        if any(i.name == t.name for i in inputs):
            raise invalid(f"{member}: input {t.name!r} is listed twice")
        inputs.append(t)
    heads = doc.get("heads")
    if not isinstance(heads, list) or not heads:
        raise invalid(f"{member}: 'heads' must be a non-empty list of [node, index, version]")
    outputs: dict[str, IoTensor] = {}
    for head in heads:
        if not isinstance(head, list) or len(head) < 2:
            raise invalid(f"{member}: head {str(head)[:40]} must be [node, index, version]")
        t = entry(head[0], head[1], "output")
        seen = outputs.get(t.name)
        if seen is not None and (seen.dtype, seen.shape) != (t.dtype, t.shape):
            raise invalid(f"{member}: output {t.name!r} is listed twice with different dtype/shape")
        outputs.setdefault(t.name, t)
    _check_signatures(doc.get("metadata"), inputs, list(outputs.values()), member)
    return tuple(inputs), tuple(outputs.values())


def _check_signatures(meta: Any, inputs: list[IoTensor], outputs: list[IoTensor], member: str) -> None:
    if meta is None:
        return
    sigs = meta.get("signatures") if isinstance(meta, dict) else None
    if not isinstance(sigs, dict):
        return
    known = {("inputs", t.name): t for t in inputs} | {("outputs", t.name): t for t in outputs}
    for sig_name, sig in sigs.items():
        if not isinstance(sig, dict):
            raise invalid(f"{member}: metadata.signatures.{sig_name} must be an object")
        for kind in ("inputs", "outputs"):
            table = sig.get(kind) or {}
            if not isinstance(table, dict):
                raise invalid(f"{member}: metadata.signatures.{sig_name}.{kind} must be an object")
            for name, spec in table.items():
                t = known.get((kind, name))
                if t is None or not isinstance(spec, dict):
                    continue
                where = lambda: f"{member}: metadata.signatures.{sig_name}.{kind}.{name}"  # noqa: E731
                if "dtype" in spec and _dtype(spec["dtype"], where) != t.dtype:
                    raise invalid(f"{where()}: dtype {spec['dtype']} disagrees with the graph's {dtype_name(t.dtype)}")
                if "shape" in spec and _shape(spec["shape"], where) != t.shape:
                    raise invalid(f"{where()}: shape {spec['shape']} disagrees with the graph's {list(t.shape)}")


def kelf_members(doc: Any, members: Mapping[str, bytes]) -> list[str]:
    """kelf JSON files of the NEFF: those named by neff.json ``__kelf`` nodes, else every kelf-*.json member."""
    names: list[str] = []
    for node in doc.get("nodes", []) if isinstance(doc, dict) else []:
        attrs = node.get("attrs") if isinstance(node, dict) else None
        if isinstance(attrs, dict) and isinstance(attrs.get("kelf"), str) and attrs["kelf"] not in names:
            names.append(attrs["kelf"])
    if not names:
        names = sorted(n for n in members if _KELF_NAME.fullmatch(n))
    if not names:
        raise invalid("NEFF is missing member kelf-0.json (no kelf graph description)")
    return names


def parse_kelf(doc: Any, member: str, members: Mapping[str, bytes]) -> tuple[str, list[str]]:
    """(architecture, def.json paths) of one kelf JSON; every named definition must be in the archive."""
    if not isinstance(doc, dict) or not isinstance(doc.get("graphs"), list) or not doc["graphs"]:
        raise invalid(f"{member}: must be an object with a non-empty 'graphs' list")
    target = doc.get("target", "*")
    if not isinstance(target, str):
        raise invalid(f"{member}: 'target' must be a string")
    try:
        arch = arch_of_target(target)
    except Exception as exc:
        raise invalid(f"{member}: {getattr(exc, 'message', exc)}") from None
    defs: list[str] = []
    for g in doc["graphs"]:
        path = g.get("definition") if isinstance(g, dict) else None
        if not isinstance(path, str):
            raise invalid(f"{member}: each graph needs a 'definition' path")
        if path not in members:
            raise invalid(f"{member} names {path}, which is missing from the NEFF")
        defs.append(path)
    return arch, defs


def parse_def(doc: Any, member: str) -> DefSummary:
    """Sizes one sgNN/def.json declares: input/output vars, file constants and virtual scratchpad."""
    if not isinstance(doc, dict) or not isinstance(doc.get("var"), dict):
        raise invalid(f"{member}: must be an object with a 'var' table")
    io_vars: dict[str, tuple[str, int]] = {}
    files: list[str] = []
    file_bytes = scratch = 0
    for name, var in doc["var"].items():
        if not isinstance(var, dict) or not isinstance(var.get("type"), str):
            raise invalid(f"{member}: var {name!r} needs a string 'type'")
        kind = var["type"]
        if kind in ("input", "output"):
            io_vars[name] = (kind, _int(var.get("size"), lambda: f"{member}: var {name!r} size"))
        elif kind == "file":
            file_bytes += _int(var.get("size", 0), lambda: f"{member}: var {name!r} size")
            if isinstance(var.get("file_name"), str):
                files.append(_member_path(member, var["file_name"]))
        elif kind == "virtual":
            off = _int(var.get("backing_variable_off", 0), lambda: f"{member}: var {name!r} backing_variable_off")
            scratch = max(scratch, off + _int(var.get("size", 0), lambda: f"{member}: var {name!r} size"))
    return DefSummary(member=member, io_vars=io_vars, file_bytes=file_bytes, scratchpad_bytes=scratch,
                      files=tuple(files))


def _member_path(def_member: str, file_name: str) -> str:
    """A def.json file name resolved against the def.json's directory ('..' allowed, leaving the root is not)."""
    parts = def_member.split("/")[:-1]
    for part in file_name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def check_def_files(summary: DefSummary, members: Mapping[str, object]) -> None:
    """Every file a def.json names must be in the archive: members that contradict the metadata are a load error."""
    for path in summary.files:
        if path not in members:
            raise invalid(f"NEFF is missing member {path} (a file variable of {summary.member})")


def check_def(summary: DefSummary, tensors: Iterable[IoTensor]) -> None:
    """A def.json var that names a model IO tensor must agree on usage and byte size."""
    for t in tensors:
        var = summary.io_vars.get(t.name)
        if var is None:
            continue
        kind, size = var
        if kind != t.usage:
            raise invalid(f"{summary.member}: var {t.name!r} is type {kind} but neff.json lists it as an {t.usage}")
        if size != t.size:
            raise invalid(f"{summary.member}: var {t.name!r} is {size} bytes but neff.json gives {t.size} "
                          f"({dtype_name(t.dtype)} {list(t.shape)})")


def check_tensor_map(doc: Any, member: str, tensors: Iterable[IoTensor]) -> dict[str, tuple[NrtDtype, tuple[int, ...]]]:
    """Cross-check a tensor_map.json against the IO tensors; returns its constant entries (name -> dtype, shape)."""
    if not isinstance(doc, dict):
        raise invalid(f"{member}: top level must be an object")
    by_name = {t.name: t for t in tensors}
    consts: dict[str, tuple[NrtDtype, tuple[int, ...]]] = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            raise invalid(f"{member}: entry {name!r} must be an object")
        where = lambda: f"{member}: {name!r}"  # noqa: E731
        if entry.get("is_const"):
            consts[name] = (_dtype(entry.get("dtype"), where), _shape(entry.get("tf_shape"), where))
            continue
        t = by_name.get(name)
        if t is None or entry.get("kind") not in ("input", "output"):
            continue
        if entry["kind"] != t.usage:
            raise invalid(f"{where()} is kind {entry['kind']} but neff.json lists it as an {t.usage}")
        if "dtype" in entry and _dtype(entry["dtype"], where) != t.dtype:
            raise invalid(f"{where()}: dtype {entry['dtype']} disagrees with neff.json's {dtype_name(t.dtype)}")
        if "tf_shape" in entry and _shape(entry["tf_shape"], where) != t.shape:
            raise invalid(f"{where()}: shape {entry['tf_shape']} disagrees with neff.json's {list(t.shape)}")
    return consts


# ---- producing the members for NEFFs neuron_sim writes -------------------------------------------------

def dumps(doc: Any) -> bytes:
    """Stable JSON bytes (sorted keys, 4-space indent as the compiler writes)."""
    return (json.dumps(doc, indent=4, sort_keys=True) + "\n").encode()


def make_neff_json(inputs: list[tuple[str, str, tuple[int, ...]]],
                   cores: list[tuple[list[tuple[str, str, tuple[int, ...]]], list[str]]],
                   outputs: list[str]) -> dict[str, Any]:
    """TVM-form neff.json: ``inputs`` (name, dtype, shape); per core (its output specs, its input names);
    ``outputs`` names the model outputs. Core i is node ``sg_coreV1<i>`` running ``kelf-<i>.json``."""
    nodes: list[dict[str, Any]] = []
    shapes: list[list[int]] = []
    dltypes: list[str] = []
    row_ptr = [0]
    where: dict[str, tuple[int, int]] = {}
    for name, dtype, shape in inputs:
        where[name] = (len(nodes), 0)
        nodes.append({"op": "null", "name": name, "inputs": [], "output_names": [name], "is_param": "0"})
        shapes.append(list(shape))
        dltypes.append(dtype)
        row_ptr.append(len(shapes))
    for i, (outs, ins) in enumerate(cores):
        node_id = len(nodes)
        nodes.append({
            "op": "tvm_op", "name": f"sg_coreV1{i}",
            "attrs": {"func_name": "__kelf", "flatten_data": "0", "num_inputs": str(len(ins)),
                      "kelf": f"kelf-{i}.json", "num_outputs": str(len(outs))},
            "inputs": [[*where[n], 0] for n in ins],
            "output_names": [name for name, _, _ in outs],
        })
        for j, (name, dtype, shape) in enumerate(outs):
            where[name] = (node_id, j)
            shapes.append(list(shape))
            dltypes.append(dtype)
        row_ptr.append(len(shapes))
    spec = {name: (dtype, shape) for name, dtype, shape in inputs}
    for outs, _ in cores:
        spec.update({name: (dtype, shape) for name, dtype, shape in outs})
    return {
        "nodes": nodes,
        "arg_nodes": list(range(len(inputs))),
        "heads": [[*where[n], 0] for n in outputs],
        "attrs": {
            "shape": ["list_shape", shapes],
            "storage_id": ["list_int", list(range(len(shapes)))],
            "dltype": ["list_str", dltypes],
        },
        "node_row_ptr": row_ptr,
        "metadata": {"signatures": {"default": {
            "inputs": {n: {"id": k, "dtype": d, "shape": list(s)} for k, (n, d, s) in enumerate(inputs)},
            "outputs": {n: {"id": k, "dtype": spec[n][0], "shape": list(spec[n][1])} for k, n in enumerate(outputs)},
        }}},
    }


def make_kelf(sg_dirs: list[str], target: str) -> dict[str, Any]:
    """kelf-N.json naming the subgraph directories one logical core runs."""
    return {"graphs": [{"definition": f"{d}/def.json", "name": d} for d in sg_dirs], "version": "0.5", "target": target}


def make_def_json(io: list[tuple[str, str, int]], files: list[tuple[str, int, str]], scratchpad_bytes: int) -> dict[str, Any]:
    """sgNN/def.json: ``io`` (name, "input"|"output", size); ``files`` (name, size, file_name); one virtual
    scratchpad var when ``scratchpad_bytes`` > 0."""
    var: dict[str, Any] = {"SB": {"type": "state-buffer", "var_id": 0}}
    for name, kind, size in io:
        var[name] = {"ops": [], "size": size, "type": kind, "var_id": len(var)}
    for name, size, file_name in files:
        var[name] = {"alignment": 64, "fabric_path": "main", "file_name": file_name, "ops": [],
                     "size": size, "type": "file", "var_id": len(var)}
    if scratchpad_bytes:
        var["sim_scratchpad"] = {"backing_variable_off": 0, "ops": [], "size": scratchpad_bytes,
                                 "type": "virtual", "var_id": len(var)}
    return {
        "name": "definition", "version": "0.6", "var": var, "dma_queue": {},
        "runtime_statebuffer_reservation": [
            {"base_partition": 0, "offset": 0, "partitions": 128, "size": 8, "type": "evtaccel"}],
    }


def make_tensor_map(io: list[tuple[str, str, str, tuple[int, ...]]],
                    consts: list[tuple[str, str, tuple[int, ...], str]]) -> dict[str, Any]:
    """sgNN/tensor_map.json: ``io`` (name, kind, dtype, shape); ``consts`` (name, dtype, shape, file)."""
    doc: dict[str, Any] = {}
    for name, kind, dtype, shape in io:
        doc[name] = {"dtype": dtype, "is_const": False, "kind": kind, "layer_name": name,
                     "tf_file": f"value_{name}.npy", "tf_shape": list(shape)}
    for name, dtype, shape, file_name in consts:
        doc[name] = {"dtype": dtype, "is_const": True, "layer_name": name, "tf_file": file_name,
                     "tf_shape": list(shape)}
    return doc


def make_info_json(name: str, build_version: str, num_tpb: int) -> dict[str, Any]:
    """info.json as the compiler writes it."""
    return {"tool_version": build_version, "kelp_version": "Dynamic", "name": name, "num_tpb": num_tpb,
            "num_tpb_requested": num_tpb, "num_tpb_per_node": [num_tpb] + [0] * 63}
