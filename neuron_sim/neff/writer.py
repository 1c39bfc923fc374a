"""Write a neuron_sim Graph and its weights as a NEFF with the real layout: the 1024-byte header, then a
gzip tar holding the members a compiler-made NEFF has (neff.json, info.json, kelf-N.json, sgNN/def.json,
sgNN/tensor_map.json) plus neuron_sim's own ``sim/graph.json`` and ``sim/weights/<name>.npy``.

Layout decisions: logical core i runs ``kelf-<i>.json`` (neff.json node ``sg_coreV1<i>``), which names
``lnc_size`` subgraph directories (sg00, sg01 for core 0 at LNC=2, as the compiler does); num_tpb is the
number of Graph subgraphs. def.json "file" vars point at ``../sim/weights/<name>.npy``. The default
uuid is the first 16 bytes of SHA-256 over the name and archive members, so the same inputs give the same bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from neuron_sim.compute.graph import Graph, TensorSpec
from neuron_sim.compute.shapes import infer_graph
from neuron_sim.dtypes import dtype_name, nrt_dtype
from neuron_sim.neff import metadata as md
from neuron_sim.neff.header import HEADER_SIZE, NeffHeader
from neuron_sim.neff.package import PKG_VERSIONS, compute_hash, make_archive
from neuron_sim.neff.reader import GRAPH_MEMBER, WEIGHTS_DIR

DEFAULT_BUILD_VERSION = "neuron_sim-0.1.0"


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array(arr, order="C", copy=True), allow_pickle=False)
    return buf.getvalue()


def _size(spec: TensorSpec) -> int:
    return md.tensor_size(nrt_dtype(spec.dtype), spec.shape)


def _content_uuid(name: str, members: Mapping[str, bytes]) -> bytes:
    """16 bytes of SHA-256 over the name and every member (independent of compression details)."""
    h = hashlib.sha256(name.encode())
    for key in sorted(members):
        h.update(len(key).to_bytes(8, "little") + key.encode() + len(members[key]).to_bytes(8, "little"))
        h.update(members[key])
    return h.digest()[:16]


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"{kind} name {name!r} must be non-empty without '/', '\\' or NUL")


def archive_members(graph: Graph, weights: Mapping[str, np.ndarray], *, name: str, target: str,
                    lnc_size: int, build_version: str) -> dict[str, bytes]:
    """Every archive member of the NEFF, by name (validated: ValueError names the first problem)."""
    arrays = {k: np.asarray(v) for k, v in weights.items()}
    for w in arrays:
        _check_name("weight", w)
    specs = infer_graph(graph, arrays)
    codename = md.target_of(target)
    if lnc_size not in (1, 2):
        raise ValueError(f"lnc_size must be 1 or 2, got {lnc_size!r}")
    members: dict[str, bytes] = {GRAPH_MEMBER: graph.to_json().encode()}
    for w, arr in arrays.items():
        members[f"{WEIGHTS_DIR}{w}.npy"] = _npy(arr)

    def triple(n: str) -> tuple[str, str, tuple[int, ...]]:
        return n, specs[n].dtype, tuple(specs[n].shape)

    weight_home: dict[str, int] = {}
    for i, sg in enumerate(graph.subgraphs):
        for op in sg.ops:
            for n in op.inputs:
                if n in arrays:
                    weight_home.setdefault(n, i)
    cores = []
    for i, sg in enumerate(graph.subgraphs):
        cores.append(([triple(n) for n in sg.outputs], list(sg.inputs)))
        io_vars = [(n, "input", _size(specs[n])) for n in sg.inputs] + [(n, "output", _size(specs[n])) for n in sg.outputs]
        own = [w for w in graph.weight_names if weight_home.get(w, 0) == i]
        files = [(w, int(arrays[w].nbytes), f"../{WEIGHTS_DIR}{w}.npy") for w in own]
        tmap_io = [(n, "input", *triple(n)[1:]) for n in sg.inputs] + [(n, "output", *triple(n)[1:]) for n in sg.outputs]
        consts = [(w, dtype_name(arrays[w].dtype), tuple(arrays[w].shape), f"../{WEIGHTS_DIR}{w}.npy") for w in own]
        dirs = [f"sg{i * lnc_size + k:02d}" for k in range(lnc_size)]
        for d in dirs:
            members[f"{d}/def.json"] = md.dumps(md.make_def_json(io_vars, files, graph.declared.scratchpad_bytes))
            members[f"{d}/tensor_map.json"] = md.dumps(md.make_tensor_map(tmap_io, consts))
        members[f"kelf-{i}.json"] = md.dumps(md.make_kelf(dirs, codename))
    members["neff.json"] = md.dumps(md.make_neff_json(
        [triple(s.name) for s in graph.inputs], cores, [s.name for s in graph.outputs]))
    members["info.json"] = md.dumps(md.make_info_json(name, build_version, len(graph.subgraphs)))
    return members


def write_neff(graph: Graph, weights: Mapping[str, np.ndarray], *, name: str, target: str = "v2",
               lnc_size: int = 1, version: tuple[int, int] = (2, 0), pkg_version: int = 2,
               feature_bits: int = 0, uuid: bytes | None = None, build_version: str = DEFAULT_BUILD_VERSION,
               header_overrides: Mapping[str, Any] | None = None) -> bytes:
    """The NEFF bytes for ``graph``; ``header_overrides`` replaces header fields after the hash is computed
    (tests use it to write deliberately wrong values). ValueError names any bad argument."""
    if pkg_version not in PKG_VERSIONS:
        raise ValueError(f"pkg_version must be one of {sorted(PKG_VERSIONS)}, got {pkg_version!r}")
    if uuid is not None and (not isinstance(uuid, (bytes, bytearray)) or len(uuid) != 16):
        raise ValueError("uuid must be 16 bytes")
    major, minor = version
    members = archive_members(graph, weights, name=name, target=target, lnc_size=lnc_size,
                              build_version=build_version)
    payload = make_archive(members, compress=pkg_version == 2)
    cores = len(graph.subgraphs)
    if not 0 < cores < 256:
        raise ValueError(f"a NEFF holds 1..255 subgraphs, got {cores}")
    header = NeffHeader(
        pkg_version=pkg_version, header_size=HEADER_SIZE, data_size=len(payload),
        neff_version_major=major, neff_version_minor=minor, neff_build_version=build_version,
        num_tpb=cores, hash=compute_hash(payload, pkg_version),
        uuid=bytes(uuid) if uuid is not None else _content_uuid(name, members),
        name=name, requested_tpb_count=cores, tpb_per_node=bytes([cores]) + bytes(63),
        feature_bits=feature_bits, lnc_size=lnc_size,
    )
    if header_overrides:
        known = {f.name for f in dataclasses.fields(NeffHeader)}
        bad = sorted(set(header_overrides) - known)
        if bad:
            raise ValueError(f"unknown header fields {bad}; known: {', '.join(sorted(known))}")
        header = dataclasses.replace(header, **dict(header_overrides))
    return header.pack() + payload
