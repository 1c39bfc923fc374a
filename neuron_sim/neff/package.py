"""The NEFF payload: a (gzip-compressed) tar archive after the header, and the package hash over it.

Archive: pkg_version 1 = tar + SHA-256, pkg_version 2 = gzip tar + MD5; gzip is detected by its magic
``1f 8b`` whatever the version says. Writing is reproducible: members sorted, mtime 0, uid/gid 0, no
owner names, mode 0644, gzip mtime 0 and no file name.

Hash: it covers the payload (``data_size`` bytes after the header). The real compiler stores the
digest as 32-bit words: the hex digest is read as big-endian 32-bit numbers and each is stored
little-endian, so every 4-byte group of the digest appears byte-reversed (checked against both real
NEFFs in ../shared/realneffs). neuron_sim writes that form; the reader accepts it and also the plain
digest bytes (the form the documentation implies). MD5 fills bytes 0..15 and the rest stays zero.

Reading never trusts the archive: the decompressed size is capped (``MAX_ARCHIVE_BYTES``), member
names must be plain relative paths, links/devices and duplicate names are refused, and any failure
becomes NeffError(NRT_INVALID) naming the cause.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Mapping

from neuron_sim.neff.errors import invalid, unsupported

GZIP_MAGIC = b"\x1f\x8b"
MAX_ARCHIVE_BYTES = 1 << 30      # 1 GiB of uncompressed tar: far above any NEFF neuron_sim writes or reads
MAX_MEMBERS = 100_000
PKG_VERSIONS = {1: "sha256", 2: "md5"}


def hash_algorithm(pkg_version: int) -> str:
    """``"sha256"`` or ``"md5"``; NeffError(NRT_UNSUPPORTED_NEFF_VERSION) for an unknown packager."""
    try:
        return PKG_VERSIONS[pkg_version]
    except KeyError:
        raise unsupported(f"Unsupported NEFF packager: {pkg_version}") from None


def _digest(payload: bytes | memoryview, pkg_version: int) -> bytes:
    algo = hash_algorithm(pkg_version)
    return hashlib.md5(payload).digest() if algo == "md5" else hashlib.sha256(payload).digest()


def _word_swapped(digest: bytes) -> bytes:
    return b"".join(digest[i:i + 4][::-1] for i in range(0, len(digest), 4))


def compute_hash(payload: bytes | memoryview, pkg_version: int) -> bytes:
    """The 32-byte header hash field as the Neuron compiler writes it (word-swapped digest, zero-padded)."""
    return _word_swapped(_digest(payload, pkg_version)).ljust(32, b"\0")


def hash_matches(stored: bytes, payload: bytes | memoryview, pkg_version: int) -> bool:
    """True when ``stored`` is the payload digest in the compiler's word-swapped form or as plain bytes."""
    digest = _digest(payload, pkg_version)
    stored = bytes(stored).ljust(32, b"\0")[:32]
    return stored in (_word_swapped(digest).ljust(32, b"\0"), digest.ljust(32, b"\0"))


def make_archive(members: Mapping[str, bytes], *, compress: bool = True) -> bytes:
    """A reproducible tar (gzip-compressed when ``compress``) holding ``members`` sorted by name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(members):
            _check_member_name(name)
            data = bytes(members[name])
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=9, mtime=0) if compress else tar_bytes


def _check_member_name(name: str) -> None:
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\0" in name
            or any(p in ("", ".", "..") for p in parts)):
        raise invalid(f"NEFF archive member name {name!r} is not a plain relative path")


def _gunzip(payload: bytes, max_bytes: int) -> bytes:
    dec = zlib.decompressobj(wbits=31)
    try:
        out = dec.decompress(payload, max_bytes + 1)
    except zlib.error as exc:
        raise invalid(f"NEFF archive is not a valid gzip stream: {exc}") from None
    if len(out) > max_bytes or dec.unconsumed_tail:
        raise invalid(f"NEFF archive expands beyond {max_bytes} bytes; refusing it")
    if not dec.eof:
        raise invalid("NEFF archive is truncated: gzip stream ends early")
    return out


def read_archive(payload: bytes | memoryview, *, max_bytes: int = MAX_ARCHIVE_BYTES) -> dict[str, bytes]:
    """Members of a NEFF payload by name (regular files only); NeffError(NRT_INVALID) for anything wrong."""
    data = bytes(payload)
    if not data:
        raise invalid("NEFF archive is empty (data_size 0)")
    tar_bytes = _gunzip(data, max_bytes) if data[:2] == GZIP_MAGIC else data
    if len(tar_bytes) > max_bytes:
        raise invalid(f"NEFF archive is larger than {max_bytes} bytes; refusing it")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for count, info in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise invalid(f"NEFF archive has more than {MAX_MEMBERS} members")
                if info.isdir():
                    continue
                name = info.name[2:] if info.name.startswith("./") else info.name
                _check_member_name(name)
                if not info.isreg():
                    raise invalid(f"NEFF archive member {name!r} is not a regular file (links and devices are refused)")
                if name in members:
                    raise invalid(f"NEFF archive member {name!r} appears twice")
                handle = tar.extractfile(info)
                content = handle.read() if handle is not None else b""
                if len(content) != info.size:
                    raise invalid(f"NEFF archive is truncated inside member {name!r}")
                members[name] = content
    except tarfile.TarError as exc:
        raise invalid(f"NEFF archive is not a valid tar: {exc}") from None
    except (EOFError, OSError, ValueError, UnicodeError, OverflowError) as exc:
        raise invalid(f"NEFF archive is damaged: {exc}") from None
    if not members:
        raise invalid("NEFF archive holds no files")
    return members
