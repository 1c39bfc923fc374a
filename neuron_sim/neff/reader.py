"""Read a NEFF (ours or compiler-made) from bytes into a ``Neff``, trusting no length, offset or member.

Checks run in the order libnrt applies them: sizes, packager (pkg_version), NEFF major version (0..2,
minor never checked), feature bits, then the archive and its members. Every failure is a NeffError
carrying NRT_INVALID or NRT_UNSUPPORTED_NEFF_VERSION; nothing else escapes ``read_neff``.

Decisions where the spec is silent:
- The payload starts at ``header_size`` (which must be >= 1024 and < file size) and is ``data_size`` long.
- num_tpb 0 and lnc_size other than 0/1/2 are NRT_INVALID; lnc_size 0 means 1.
- Feature bit 63 is tolerated (older runtimes advertised it as supported); bits outside
  ``supported_features`` below bit 63 reject the NEFF as "compiled by a newer version".
- Hash (only with ``validate_hash``): checked over the packed payload BEFORE anything is inflated. The
  compiler's word-swapped digest and the plain digest both pass. Any mismatch raises "MD5 mismatch!"/
  "SHA256 mismatch!" (NRT_INVALID), for neuron_sim NEFFs and compiler-made ones alike.
- Loading streams: a file is read in 1 MiB chunks (hashed in a first pass, inflated in a second), bytes
  given to ``read_neff`` are never copied, weights are read-only views of the one unpacked buffer, and
  ``.npy`` headers are parsed by a strict pattern (no eval). Peak memory is about the unpacked archive.
- Every "file" variable a def.json names must be a member of the archive (a NEFF whose members contradict
  its metadata is a load error, e.g. a neuron_sim NEFF that lost its weights).
"""
from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from neuron_sim.compute.graph import Graph
from neuron_sim.dtypes import dtype_name, numpy_dtype
from neuron_sim.neff import metadata as md
from neuron_sim.neff.errors import NeffError, invalid, unsupported
from neuron_sim.neff.header import HEADER_SIZE, NeffHeader
from neuron_sim.neff.metadata import IoTensor
from neuron_sim.neff.package import (DEFAULT_MAX_ARCHIVE_BYTES, READ_STEP, digest_matches, hash_algorithm,
                                     iter_chunks, payload_digest, read_archive, stored_form)
from neuron_sim.regular_files import open_regular

SUPPORTED_FEATURE_BITS = (1 << 27) - 1      # bits 0-26 known to this runtime
TOLERATED_FEATURE_BITS = 1 << 63            # never reported as "newer compiler"
SUPPORTED_MAJOR_VERSIONS = range(0, 3)
GRAPH_MEMBER = "sim/graph.json"
WEIGHTS_DIR = "sim/weights/"
_SG_MEMBER = re.compile(r"sg\d+/")

__all__ = ["IoTensor", "Neff", "NeffError", "SUPPORTED_FEATURE_BITS", "read_neff", "read_neff_file",
           "verify_hash", "hash_fields"]


@dataclass(frozen=True, eq=False)
class Neff:
    """A loaded NEFF: header, identity, IO tensors, and (for neuron_sim NEFFs) the executable graph and weights."""

    header: NeffHeader
    name: str
    uuid: str
    version: tuple[int, int]
    architecture: str
    num_cores: int
    lnc_size: int
    inputs: tuple[IoTensor, ...]
    outputs: tuple[IoTensor, ...]
    graph: Graph | None
    weights: Mapping[str, np.ndarray] = field(default_factory=lambda: types.MappingProxyType({}))
    constants_bytes: int = 0
    code_bytes: int = 0
    scratchpad_bytes: int = 0
    hash_status: str = "unchecked"
    members: tuple[str, ...] = ()
    file_size: int = 0
    unpacked_bytes: int = 0       # host memory its members (weights among them) hold

    @property
    def is_opaque(self) -> bool:
        """True for compiler-made NEFFs: their instructions cannot be executed by neuron_sim."""
        return self.graph is None


def _check_container(head: bytes | memoryview, size: int) -> NeffHeader:
    """Header checks in libnrt order on the first bytes of a NEFF of ``size`` bytes."""
    if size < HEADER_SIZE:
        raise invalid(f"Invalid NEFF data size: file is {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    header = NeffHeader.unpack(head)
    if not HEADER_SIZE <= header.header_size < size:
        raise invalid(f"Invalid NEFF header size: header_size {header.header_size}, file size {size} "
                      f"(must be at least {HEADER_SIZE} and below the file size)")
    if header.data_size > size - header.header_size:
        raise invalid(f"Invalid NEFF data size: data_size {header.data_size} exceeds the "
                      f"{size - header.header_size} bytes after the header")
    hash_algorithm(header.pkg_version)
    return header


def _check_versions(header: NeffHeader, supported_features: int) -> None:
    major, minor = header.neff_version_major, header.neff_version_minor
    if major not in SUPPORTED_MAJOR_VERSIONS:
        raise unsupported(f"NEFF version: {major}.{minor} is not supported, accepted version range: 0.x-2.x")
    newer = header.feature_bits & ~supported_features & ~TOLERATED_FEATURE_BITS
    if newer:
        raise unsupported(
            f"This NEFF (version {major}.{minor}, features: {header.feature_bits:#x}) has been compiled by a newer "
            f"version of Neuron compiler. Features supported by this Neuron Runtime: {supported_features:#x}")
    if header.num_tpb == 0:
        raise invalid("Invalid NEFF: num_tpb is 0; a NEFF needs at least one NeuronCore")
    if header.lnc_size not in (0, 1, 2):
        raise invalid(f"Invalid NEFF: lnc_size {header.lnc_size} is not supported; accepted: 1 or 2 (0 means 1)")


def _mismatch(header: NeffHeader, digest: bytes) -> NeffError:
    algo = "MD5" if hash_algorithm(header.pkg_version) == "md5" else "SHA256"
    return invalid(f"{algo} mismatch! NEFF header hash {header.hash.hex()} does not match the payload "
                   f"(computed {stored_form(digest).hex()})")


_NPY_MAGIC = b"\x93NUMPY"
_NPY_VALUE = r"(?:'[^'\\]*'|True|False|\((?:\s*\d+\s*,)*(?:\s*\d+\s*)?\))"
_NPY_DICT = re.compile(r"\{(?:\s*'(?:descr|fortran_order|shape)'\s*:\s*" + _NPY_VALUE + r"\s*,)*"
                       r"(?:\s*'(?:descr|fortran_order|shape)'\s*:\s*" + _NPY_VALUE + r"\s*)?\s*\}\s*")
_NPY_ITEM = re.compile(r"'(descr|fortran_order|shape)'\s*:\s*(" + _NPY_VALUE + ")")
# the exact form numpy writes (a subset of the pattern above), parsed in one match
_NPY_CANONICAL = re.compile(r"\{'descr': '([^'\\]*)', 'fortran_order': (True|False), 'shape': \(((?:\d+, )*\d+,?|)\), \}\s*")


def _npy_header(raw: memoryview, member: str) -> tuple[np.dtype, bool, tuple[int, ...], int]:
    """(dtype, fortran order, shape, data offset) of a .npy member, parsed by pattern (never evaluated)."""
    if len(raw) < 10 or raw[:6] != _NPY_MAGIC:
        raise ValueError("it does not start with the .npy magic")
    major = raw[6]
    if major == 1:
        hlen, start = int.from_bytes(raw[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(raw[8:12], "little"), 12
    else:
        raise ValueError(f"npy format version {major} is not supported (1, 2 or 3)")
    if start + hlen > len(raw):
        raise ValueError("its header is longer than the member")
    text = bytes(raw[start:start + hlen]).decode("utf-8" if major == 3 else "latin1")
    canonical = _NPY_CANONICAL.fullmatch(text)
    if canonical is not None:
        descr, fortran, dims = canonical.groups()
        return np.dtype(descr), fortran == "True", tuple([int(d) for d in dims.split(",") if d]), start + hlen
    if not _NPY_DICT.fullmatch(text):
        raise ValueError(f"header {text.strip()!r} is not a plain {{'descr', 'fortran_order', 'shape'}} dict")
    items = dict(_NPY_ITEM.findall(text))
    if set(items) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"header {text.strip()!r} needs exactly the keys descr, fortran_order and shape")
    if not items["descr"].startswith("'"):
        raise ValueError(f"descr {items['descr']} must be a dtype string")
    dtype = np.dtype(items["descr"][1:-1])
    shape = tuple(int(d) for d in re.findall(r"\d+", items["shape"]))
    return dtype, items["fortran_order"] == "True", shape, start + hlen


def _load_npy(raw: memoryview, member: str, expected: tuple | None) -> np.ndarray:
    """A .npy member as a read-only view, without pickles and without trusting its header."""
    try:
        dtype, fortran, shape, offset = _npy_header(raw, member)
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        raise invalid(f"NEFF member {member} is not a valid .npy file: {exc}") from None
    if dtype.hasobject or dtype.fields:
        raise invalid(f"NEFF member {member} holds Python objects or records; only numeric arrays are accepted")
    count = math.prod(shape)
    if len(raw) - offset != count * dtype.itemsize:
        raise invalid(f"NEFF member {member} holds {len(raw) - offset} data bytes but its header declares "
                      f"{count * dtype.itemsize} ({dtype} {list(shape)})")
    if expected is not None:
        want_dtype, want_shape = numpy_dtype(expected[0]), expected[1]
        if dtype.kind == "V" and dtype.itemsize == want_dtype.itemsize and not dtype.fields:
            dtype = want_dtype      # ml_dtypes (bfloat16, fp8) are saved as raw void
        if dtype != want_dtype or tuple(shape) != tuple(want_shape):
            raise invalid(f"NEFF member {member} is {dtype} {list(shape)} but tensor_map.json declares "
                          f"{dtype_name(expected[0])} {list(want_shape)}")
    return np.ndarray(shape, dtype, raw, offset, None, "F" if fortran else "C")   # a view: raw is read-only


def _load_sim(members: Mapping[str, memoryview], header: NeffHeader, inputs: tuple[IoTensor, ...],
              outputs: tuple[IoTensor, ...], consts: Mapping[str, tuple]) -> tuple[Graph, dict[str, np.ndarray]]:
    if GRAPH_MEMBER not in members:
        raise invalid(f"NEFF is missing member {GRAPH_MEMBER} (it has other sim/ members)")
    try:
        graph = Graph.from_json(bytes(members[GRAPH_MEMBER]))
    except (ValueError, RecursionError) as exc:
        raise invalid(f"NEFF member {GRAPH_MEMBER}: {exc}") from None
    for usage, declared, listed in (("input", graph.inputs, inputs), ("output", graph.outputs, outputs)):
        got = [(s.name, s.dtype, tuple(s.shape)) for s in declared]
        want = [(t.name, dtype_name(t.dtype), t.shape) for t in listed]
        try:
            got = [(n, dtype_name(d), s) for n, d, s in got]
        except (ValueError, KeyError) as exc:
            raise invalid(f"NEFF member {GRAPH_MEMBER}: {exc}") from None
        if got != want:
            raise invalid(f"NEFF member {GRAPH_MEMBER}: {usage}s {got} disagree with neff.json's {want}")
    if len(graph.subgraphs) != header.num_tpb:
        raise invalid(f"Invalid NEFF: header num_tpb {header.num_tpb} but {GRAPH_MEMBER} has "
                      f"{len(graph.subgraphs)} subgraphs (one per NeuronCore)")
    weights: dict[str, np.ndarray] = {}
    for name in graph.weight_names:
        member = f"{WEIGHTS_DIR}{name}.npy"
        if member not in members:
            raise invalid(f"NEFF is missing member {member} (weight {name!r} of {GRAPH_MEMBER})")
        weights[name] = _load_npy(members[member], member, consts.get(name))
    return graph, weights


def read_neff(data: bytes | bytearray | memoryview, *, validate_hash: bool = False,
              supported_features: int = SUPPORTED_FEATURE_BITS, max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> Neff:
    """Parse and validate NEFF bytes (never copied); NeffError (NRT_INVALID / NRT_UNSUPPORTED_NEFF_VERSION)
    names any problem. ``max_bytes`` caps the unpacked archive."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"read_neff takes bytes, bytearray or memoryview, got {type(data).__name__}")

    def source() -> tuple[NeffHeader, int, Callable[[], Iterable[memoryview]], bytes]:
        view = memoryview(data).cast("B")
        header = _check_container(view[:HEADER_SIZE], len(view))
        payload = view[header.header_size:header.header_size + header.data_size]
        return header, len(view), lambda: iter_chunks(payload), bytes(payload[:2])

    return _guarded(source, validate_hash, supported_features, max_bytes)


def _guarded(source, validate_hash: bool, supported_features: int, max_bytes: int) -> Neff:
    try:
        return _read(*source(), validate_hash, supported_features, max_bytes)
    except NeffError:
        raise
    except RecursionError:
        raise invalid("NEFF metadata is nested too deeply") from None
    except MemoryError:
        raise invalid("NEFF declares more data than can be held in memory") from None
    except Exception as exc:  # a parser gap must still surface as a load failure, never a traceback
        raise invalid(f"NEFF is malformed: {type(exc).__name__}: {exc}") from None


def _read(header: NeffHeader, file_size: int, chunks: Callable[[], Iterable[memoryview]], head: bytes,
          validate_hash: bool, supported_features: int, max_bytes: int) -> Neff:
    _check_versions(header, supported_features)
    hash_status = "unchecked"
    if validate_hash:               # before inflating anything: a bad payload costs one streamed pass
        digest = payload_digest(chunks(), header.pkg_version)
        if not digest_matches(header.hash, digest):
            raise _mismatch(header, digest)
        hash_status = "ok"
    if not head:
        raise invalid("NEFF archive is empty (data_size 0)")
    members = read_archive(head, max_bytes=max_bytes, chunks=chunks())
    ours = GRAPH_MEMBER in members or any(n.startswith("sim/") for n in members)

    neff_doc = md.load_json(members, "neff.json")
    inputs, outputs = md.parse_io(neff_doc)
    archs: set[str] = set()
    defs: list[md.DefSummary] = []
    for kelf in md.kelf_members(neff_doc, members):
        arch, def_paths = md.parse_kelf(md.load_json(members, kelf), kelf, members)
        archs.add(arch)
        defs.extend(md.parse_def(md.load_json(members, p), p) for p in def_paths if p not in {d.member for d in defs})
    if len(archs) > 1:
        raise invalid(f"NEFF kelf files disagree on the target architecture: {sorted(archs)}")
    consts: dict[str, tuple] = {}
    for summary in defs:
        md.check_def(summary, inputs + outputs)
        md.check_def_files(summary, members)
        tmap = summary.member.rsplit("/", 1)[0] + "/tensor_map.json" if "/" in summary.member else "tensor_map.json"
        if tmap in members:
            consts.update(md.check_tensor_map(md.load_json(members, tmap), tmap, inputs + outputs))

    graph: Graph | None = None
    weights: dict[str, np.ndarray] = {}
    if ours:
        graph, weights = _load_sim(members, header, inputs, outputs, consts)
        constants = sum(w.nbytes for w in weights.values()) + graph.declared.constants_bytes
        code = len(members[GRAPH_MEMBER]) + sum([len(v) for k, v in members.items()
                                                 if k.startswith("sg") and _SG_MEMBER.match(k)])
        scratch = graph.declared.scratchpad_bytes
    else:
        constants = sum(d.file_bytes for d in defs)
        code = sum(len(v) for k, v in members.items() if _SG_MEMBER.match(k) and k.endswith(".bin"))
        scratch = max((d.scratchpad_bytes for d in defs), default=0)
    return Neff(
        header=header, name=header.name, uuid=header.uuid.hex(),
        version=(header.neff_version_major, header.neff_version_minor),
        architecture=archs.pop(), num_cores=header.num_tpb, lnc_size=header.lnc_size or 1,
        inputs=inputs, outputs=outputs, graph=graph, weights=types.MappingProxyType(weights),
        constants_bytes=constants, code_bytes=code, scratchpad_bytes=scratch, hash_status=hash_status,
        members=tuple(sorted(members)), file_size=file_size,
        unpacked_bytes=sum(map(len, members.values())),
    )


def read_neff_file(path: str | os.PathLike, **kw) -> Neff:
    """``read_neff`` streamed from a regular file (read in chunks, never whole); an unreadable file or one
    that is not a regular file is NeffError(NRT_INVALID) naming the path."""
    name = os.fspath(path)
    try:
        fd = open_regular(path, "a NEFF")
    except OSError as exc:
        raise invalid(f"Failed to read NEFF file {name}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        size = os.fstat(fd).st_size

        def source() -> tuple[NeffHeader, int, Callable[[], Iterable[memoryview]], bytes]:
            header = _check_container(os.pread(fd, HEADER_SIZE, 0), size)
            start, length = header.header_size, header.data_size

            def chunks() -> Iterable[memoryview]:
                fh.seek(start)
                left = length
                while left:
                    chunk = fh.read(min(READ_STEP, left))
                    if not chunk:
                        raise invalid(f"NEFF file {name} shrank while it was read")
                    left -= len(chunk)
                    yield memoryview(chunk)
            return header, size, chunks, os.pread(fd, min(2, length), start)

        return _guarded(source, kw.pop("validate_hash", False), kw.pop("supported_features", SUPPORTED_FEATURE_BITS),
                        kw.pop("max_bytes", DEFAULT_MAX_ARCHIVE_BYTES))


def hash_fields(data: bytes | bytearray | memoryview) -> tuple[str, bytes, bytes, bool]:
    """(algorithm, stored hash, computed hash in the compiler's form, matches) for NEFF bytes."""
    view = memoryview(data).cast("B")
    header = _check_container(view[:HEADER_SIZE], len(view))
    digest = payload_digest([view[header.header_size:header.header_size + header.data_size]], header.pkg_version)
    return hash_algorithm(header.pkg_version), header.hash, stored_form(digest), digest_matches(header.hash, digest)


def verify_hash(data: bytes | bytearray | memoryview) -> bool:
    """True when the header hash equals the payload hash; NeffError when the container itself is invalid."""
    return hash_fields(data)[3]
