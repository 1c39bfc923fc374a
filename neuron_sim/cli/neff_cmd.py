"""``neuron-sim neff``: inspect, unpack, pack and build NEFF files (what neuron-packager tells about a NEFF).

    neff inspect FILE [--json] [--validate-hash]
    neff unpack FILE DIR          members + header.json (the header fields) into DIR (empty or new)
    neff pack DIR FILE            re-pack an unpacked DIR; data_size and hash are recomputed
    neff build SPEC OUT [--name N] [--target T] [--lnc-size L]

SPEC is a Python file defining ``build(b)`` that traces a model on the given NeffBuilder (it may set
``NAME``, ``TARGET``, ``LNC_SIZE`` at module level), or a JSON file ``{"name", "target", "lnc_size",
"graph": <sim/graph.json object>, "weights": {name: {"dtype", "shape", "seed" | "fill"}}}`` whose weights are
filled with ``fill`` or drawn from a standard normal with ``seed``.
Errors print one NRT-style line on stderr and exit 1 (usage errors exit 2); never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np

from neuron_sim.compute.graph import Graph
from neuron_sim.dtypes import dtype_name, numpy_dtype
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.header import HEADER_SIZE, NeffHeader
from neuron_sim.neff.metadata import TARGET_ARCH
from neuron_sim.neff.package import hash_algorithm, make_archive, compute_hash, read_archive
from neuron_sim.neff.reader import Neff, hash_fields, read_neff
from neuron_sim.neff.writer import write_neff
from neuron_sim.regular_files import open_regular
from neuron_sim.status import NrtError, status_name

HEADER_JSON = "header.json"


class CliError(Exception):
    """A user-facing failure of a neff subcommand (exit code 1)."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``neff`` and its subcommands to an argparse subparsers object; each sets ``func(args) -> int``."""
    neff = subparsers.add_parser("neff", help="inspect, unpack, pack and build NEFF files",
                                 description="Inspect, unpack, pack and build NEFF files.")
    sub = neff.add_subparsers(dest="neff_command", metavar="{inspect,unpack,pack,build}")
    sub.required = True
    p = sub.add_parser("inspect", help="print the header, hash status and IO tensors of a NEFF")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--validate-hash", action="store_true",
                   help="load as NEURON_RT_VALIDATE_HASH=true would (a mismatch fails the load)")
    p.set_defaults(func=run, handler=cmd_inspect)
    p = sub.add_parser("unpack", help="extract the archive members and header.json into DIR")
    p.add_argument("file")
    p.add_argument("dir")
    p.set_defaults(func=run, handler=cmd_unpack)
    p = sub.add_parser("pack", help="re-pack an unpacked directory (recomputes data_size and hash)")
    p.add_argument("dir")
    p.add_argument("file")
    p.set_defaults(func=run, handler=cmd_pack)
    p = sub.add_parser("build", help="build a NEFF from a SPEC.py (defining build(b)) or SPEC.json")
    p.add_argument("spec")
    p.add_argument("out")
    p.add_argument("--name")
    p.add_argument("--target")
    p.add_argument("--lnc-size", type=int)
    p.set_defaults(func=run, handler=cmd_build)
    return neff


def main(argv: list[str] | None = None) -> int:
    """Run ``neff ...`` standalone (argv without the leading "neff")."""
    parser = argparse.ArgumentParser(prog="neuron-sim")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["neff", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Dispatch parsed args; turns every failure into one stderr line and exit code 1."""
    try:
        return int(args.handler(args) or 0)
    except NrtError as exc:
        where = getattr(args, "file", None) or getattr(args, "spec", "")
        print(f"ERROR  NEFF:neff_parse  {where}: {exc.message} (err: {int(exc.status)}, {status_name(exc.status)})",
              file=sys.stderr)
    except CliError as exc:
        print(f"ERROR  NEFF:neff_{args.neff_command}  {exc}", file=sys.stderr)
    return 1


def _read_file(path: str) -> bytes:
    try:
        with os.fdopen(open_regular(path, "a NEFF"), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


# ---- inspect -----------------------------------------------------------------------------------------

def _summary(path: str, data: bytes, validate: bool) -> tuple[dict[str, Any], NrtError | None]:
    doc: dict[str, Any] = {"file": path, "file_size": len(data)}
    error: NrtError | None = None
    if len(data) >= HEADER_SIZE:
        doc["header"] = NeffHeader.unpack(data).as_dict()
    try:
        algo, stored, computed, ok = hash_fields(data)
        doc["hash"] = {"algorithm": algo, "stored": stored.hex(), "computed": computed.hex(), "matches": ok}
    except NeffError as exc:
        error = exc
    if error is None:
        try:
            neff = read_neff(data, validate_hash=validate)
            doc["neff"] = _neff_doc(neff)
        except NeffError as exc:
            error = exc
    if error is not None:
        doc["error"] = {"status": int(error.status), "name": status_name(error.status), "message": error.message}
    return doc, error


def _neff_doc(n: Neff) -> dict[str, Any]:
    return {
        "name": n.name, "uuid": n.uuid, "version": f"{n.version[0]}.{n.version[1]}",
        "architecture": n.architecture, "num_cores": n.num_cores, "lnc_size": n.lnc_size,
        "kind": "compiler-made (opaque)" if n.is_opaque else "neuron_sim graph",
        "subgraphs": None if n.graph is None else len(n.graph.subgraphs),
        "ops": None if n.graph is None else sum(len(sg.ops) for sg in n.graph.subgraphs),
        "weights": {k: {"dtype": dtype_name(v.dtype), "shape": list(v.shape)} for k, v in n.weights.items()},
        "declared": None if n.graph is None else vars(n.graph.declared),
        "constants_bytes": n.constants_bytes, "code_bytes": n.code_bytes, "scratchpad_bytes": n.scratchpad_bytes,
        "hash_status": n.hash_status, "members": len(n.members),
        "tensors": [{"name": t.name, "usage": t.usage, "dtype": dtype_name(t.dtype), "shape": list(t.shape),
                     "bytes": t.size} for t in n.inputs + n.outputs],
    }


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n} bytes ({n / size:.1f} {unit})"
    return f"{n} bytes"


def _text(doc: dict[str, Any]) -> str:
    lines = [f"NEFF file        {doc['file']} ({doc['file_size']} bytes)"]
    h = doc.get("header")
    if h:
        archive = {1: "tar", 2: "gzip tar"}.get(h["pkg_version"], "unknown packager")
        lines += [
            f"name             {h['name']}",
            f"uuid             {h['uuid']}",
            f"pkg_version      {h['pkg_version']} ({archive})",
            f"NEFF version     {h['neff_version_major']}.{h['neff_version_minor']}",
            f"build version    {h['neff_build_version'] or '-'}",
            f"header/data size {h['header_size']} / {h['data_size']}",
            f"num_tpb          {h['num_tpb']} (requested {h['requested_tpb_count']})",
            f"lnc_size         {h['lnc_size']}",
            f"feature_bits     {h['feature_bits']:#x}",
        ]
    if "hash" in doc:
        hs = doc["hash"]
        lines += [f"{'hash (' + hs['algorithm'] + ')':<17}stored   {hs['stored']}",
                  f"                 computed {hs['computed']}  -> {'match' if hs['matches'] else 'MISMATCH'}"]
    n = doc.get("neff")
    if n:
        target = {v: k for k, v in TARGET_ARCH.items()}.get(n["architecture"], "?")
        lines += [
            f"architecture     {n['architecture']} (kelf target {target})",
            f"cores            {n['num_cores']} logical core(s), LNC {n['lnc_size']}",
            f"kind             {n['kind']}" + (f", {n['subgraphs']} subgraph(s), {n['ops']} ops" if n["ops"] is not None else ""),
            f"constants        {_human(n['constants_bytes'])}",
            f"code             {_human(n['code_bytes'])}",
            f"scratchpad       {_human(n['scratchpad_bytes'])}",
            f"hash status      {n['hash_status']}",
            f"members          {n['members']}",
        ]
        if n["declared"] and n["declared"].get("duration_s") is not None:
            lines.append(f"declared time    {n['declared']['duration_s']} s")
        if n["declared"] and n["declared"].get("output_buffer_bytes"):
            lines.append(f"output buffers   {_human(n['declared']['output_buffer_bytes'])} per request")
        rows = [("NAME", "USAGE", "DTYPE", "SHAPE", "BYTES")] + [
            (t["name"], t["usage"], t["dtype"], str(t["shape"]), str(t["bytes"])) for t in n["tensors"]]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines.append("")
        lines.append("IO tensors")
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    data = _read_file(args.file)
    doc, error = _summary(args.file, data, args.validate_hash)
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else _text(doc))
    if error is not None:
        raise error
    return 0


# ---- unpack / pack -----------------------------------------------------------------------------------

def cmd_unpack(args: argparse.Namespace) -> int:
    data = _read_file(args.file)
    if len(data) < HEADER_SIZE:
        raise NeffError(2, f"Invalid NEFF data size: file is {len(data)} bytes, shorter than the header")
    header = NeffHeader.unpack(data)
    hash_algorithm(header.pkg_version)
    start = header.header_size
    if not HEADER_SIZE <= start < len(data) or header.data_size > len(data) - start:
        raise NeffError(2, f"Invalid NEFF data size: header_size {start}, data_size {header.data_size}, "
                           f"file size {len(data)}")
    members = read_archive(memoryview(data)[start:start + header.data_size])
    if HEADER_JSON in members:
        raise CliError(f"the archive has its own {HEADER_JSON}; cannot unpack beside it")
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not an empty directory")
    try:
        for name, content in members.items():
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (out / HEADER_JSON).write_text(json.dumps(header.as_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write into {out}: {exc.strerror or exc}") from None
    print(f"unpacked {len(members)} members of {args.file} into {out}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    src = Path(args.dir)
    hfile = src / HEADER_JSON
    if not hfile.is_file():
        raise CliError(f"{hfile} is missing (pack takes a directory written by 'neff unpack')")
    try:
        header = NeffHeader.from_dict(json.loads(hfile.read_text()))
    except (ValueError, TypeError) as exc:
        raise CliError(f"{hfile}: {exc}") from None
    members: dict[str, bytes] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_file() and rel != HEADER_JSON:
            members[rel] = path.read_bytes()
    hash_algorithm(header.pkg_version)
    payload = make_archive(members, compress=header.pkg_version == 2)
    header = NeffHeader(**{**vars(header), "header_size": HEADER_SIZE, "data_size": len(payload),
                           "hash": compute_hash(payload, header.pkg_version)})
    try:
        data = header.pack() + payload
    except ValueError as exc:
        raise CliError(f"{hfile}: {exc}") from None
    _write(args.file, data)
    print(f"packed {len(members)} members into {args.file} ({len(data)} bytes)")
    return 0


def _write(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---- build -------------------------------------------------------------------------------------------

def _build_py(spec: str, args: argparse.Namespace) -> bytes:
    try:
        ns = runpy.run_path(spec, run_name="neff_spec")
    except Exception as exc:
        raise CliError(f"{spec}: {type(exc).__name__}: {exc}") from None
    fn = ns.get("build")
    if not callable(fn):
        raise CliError(f"{spec} must define build(b) taking a NeffBuilder")
    name = args.name or ns.get("NAME") or Path(spec).stem
    b = NeffBuilder(name, target=args.target or ns.get("TARGET", "v2"))
    lnc = args.lnc_size or ns.get("LNC_SIZE", 1)
    try:
        fn(b)
        return b.build(lnc_size=lnc)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{spec}: {exc}") from None


def _build_json(spec: str, args: argparse.Namespace) -> bytes:
    try:
        doc = json.loads(Path(spec).read_text())
        graph = Graph.from_json(json.dumps(doc["graph"]))
        weights = {}
        for wname, w in (doc.get("weights") or {}).items():
            dt, shape = numpy_dtype(w["dtype"]), tuple(w["shape"])
            if "fill" in w:
                weights[wname] = np.full(shape, w["fill"], dtype=dt)
            else:
                weights[wname] = np.random.default_rng(int(w.get("seed", 0))).standard_normal(shape).astype(dt)
        return write_neff(graph, weights, name=args.name or doc.get("name") or Path(spec).stem,
                          target=args.target or doc.get("target", "v2"),
                          lnc_size=args.lnc_size or doc.get("lnc_size", 1))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise CliError(f"{spec}: {type(exc).__name__}: {exc}") from None


def cmd_build(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.spec):
        raise CliError(f"{args.spec} does not exist")
    if args.spec.endswith(".py"):
        data = _build_py(args.spec, args)
    elif args.spec.endswith(".json"):
        data = _build_json(args.spec, args)
    else:
        raise CliError(f"{args.spec}: SPEC must be a .py file defining build(b) or a .json graph spec")
    _write(args.out, data)
    print(f"built {args.out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
