"""The NEFF payload: a (gzip-compressed) tar archive after the header, and the package hash over it.

Archive: pkg_version 1 = tar + SHA-256, pkg_version 2 = gzip tar + MD5; gzip is detected by its magic
``1f 8b`` whatever the version says. Writing is reproducible: members sorted, mtime 0, uid/gid 0, no
owner names, mode 0644, gzip mtime 0 and no file name.

Hash: it covers the payload (``data_size`` bytes after the header). The real compiler stores the
digest as 32-bit words: the hex digest is read as big-endian 32-bit numbers and each is stored
little-endian, so every 4-byte group of the digest appears byte-reversed (checked against both real
NEFFs in ../shared/realneffs). neuron_sim writes that form; the reader accepts it and also the plain
digest bytes (the form the documentation implies). MD5 fills bytes 0..15 and the rest stays zero.

Reading never trusts the archive and streams it: the payload is inflated chunk by chunk into one buffer
whose size is capped (``NEURON_SIM_MAX_NEFF_BYTES``) and stops soon after the tar's end-of-archive marker;
every tar header checksum must match and the tar must be read to its end (only zero padding after it);
members are views of that buffer; names must be plain relative paths; links, devices, sparse files and
duplicate names are refused; any failure becomes NeffError(NRT_INVALID) naming the cause.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from neuron_sim.neff.errors import invalid, unsupported

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_ARCHIVE_BYTES = 64 << 30   # unpacked tar; NEURON_SIM_MAX_NEFF_BYTES overrides it
MAX_BYTES_VARIABLE = "NEURON_SIM_MAX_NEFF_BYTES"
MAX_TRAILING_ZEROS = 1 << 20   # tar record padding after the end-of-archive marker
MAX_MEMBERS = 100_000
BLOCK = 512
READ_STEP = 1 << 20            # bytes of the file read (or hashed) at a time
INFLATE_STEP = 4 << 20         # bytes inflated at a time
PKG_VERSIONS = {1: "sha256", 2: "md5"}


def hash_algorithm(pkg_version: int) -> str:
    """``"sha256"`` or ``"md5"``; NeffError(NRT_UNSUPPORTED_NEFF_VERSION) for an unknown packager."""
    try:
        return PKG_VERSIONS[pkg_version]
    except KeyError:
        raise unsupported(f"Unsupported NEFF packager: {pkg_version}") from None


def payload_digest(chunks: Iterable[bytes | memoryview], pkg_version: int) -> bytes:
    """The plain digest of a payload given as chunks (streamed: nothing is held)."""
    h = hashlib.md5() if hash_algorithm(pkg_version) == "md5" else hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


def _word_swapped(digest: bytes) -> bytes:
    return b"".join(digest[i:i + 4][::-1] for i in range(0, len(digest), 4))


def stored_form(digest: bytes) -> bytes:
    """The 32-byte header hash field as the Neuron compiler writes a digest (word-swapped, zero-padded)."""
    return _word_swapped(digest).ljust(32, b"\0")


def compute_hash(payload: bytes | memoryview, pkg_version: int) -> bytes:
    """The 32-byte header hash field as the Neuron compiler writes it (word-swapped digest, zero-padded)."""
    return stored_form(payload_digest([payload], pkg_version))


def digest_matches(stored: bytes, digest: bytes) -> bool:
    """True when ``stored`` is ``digest`` in the compiler's word-swapped form or as plain bytes."""
    stored = bytes(stored).ljust(32, b"\0")[:32]
    return stored in (stored_form(digest), digest.ljust(32, b"\0"))


def hash_matches(stored: bytes, payload: bytes | memoryview, pkg_version: int) -> bool:
    """True when ``stored`` is the payload digest in the compiler's word-swapped form or as plain bytes."""
    return digest_matches(stored, payload_digest([payload], pkg_version))


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


_BAD_PARTS = frozenset(("", ".", ".."))


def _check_member_name(name: str) -> None:
    if (not name or "\\" in name or "\0" in name
            or not _BAD_PARTS.isdisjoint(name.split("/"))):     # also a leading "/": an empty first part
        raise invalid(f"NEFF archive member name {name!r} is not a plain relative path")


_ZERO_BLOCK = bytes(512)


def _zero(view: memoryview) -> bool:
    """True when every byte of ``view`` is zero (no copy of more than 64 KiB)."""
    if len(view) <= 1 << 16:           # a tar's record padding: two small bytes objects beat a numpy reduction
        return view.tobytes() == bytes(len(view))
    return not np.frombuffer(view, dtype=np.uint8).any()


def _octal(raw: bytes, where: str, pos: int) -> int:
    """A tar number: NUL/space-terminated octal, or GNU base-256 (high bit set, positive only); ``where`` names
    the field in errors (``{}`` stands for the header's offset ``pos``)."""
    if raw[0] & 0x80:
        if raw[0] != 0x80:
            raise invalid(f"NEFF archive is damaged: {where.format(pos)} is a negative base-256 number")
        return int.from_bytes(raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise invalid(f"NEFF archive is damaged: {where.format(pos)} {text!r} is not an octal number") from None


def _block_end(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _header_size(tar: memoryview, pos: int) -> int:
    """Checked data size of the tar header at ``pos``; NeffError when its checksum does not match."""
    return _checked_size(bytes(tar[pos:pos + BLOCK]), pos)


def _checked_size(raw: bytes, pos: int) -> int:
    """Data size of the 512-byte tar header ``raw`` (at offset ``pos``); NeffError when its checksum is wrong."""
    stored = _fixed_octal(raw, 148, 154)
    if stored is None:
        stored = _octal(raw[148:156], "checksum of the tar header at offset {}", pos)
    unsigned = sum(raw.translate(None, b"\0")) - sum(raw[148:156]) + 8 * 32   # zeros add nothing: drop them first
    if stored != unsigned and stored != unsigned - 256 * sum(b >= 128 for b in raw[:148] + raw[156:]):
        raise invalid(f"NEFF archive is damaged: the tar header at offset {pos} has a bad checksum "
                      f"(stored {stored}, computed {unsigned}); later members would be lost")
    size = _fixed_octal(raw, 124, 135)
    return _octal(raw[124:136], "size in the tar header at offset {}", pos) if size is None else size


def _fixed_octal(raw: bytes, start: int, nul: int) -> int | None:
    """The octal number in ``raw[start:nul]`` when ``raw[nul]`` is its NUL terminator, as tar writers put it
    (the value ``_octal`` gives that field); None for any other form (``_octal`` reads it or names the fault)."""
    if raw[nul] == 0:
        try:
            return int(raw[start:nul], 8)      # fails on a NUL, a high-bit (base-256) byte or an all-space field
        except ValueError:
            return None
    return None


class _EndFinder:
    """Follows tar headers while the archive inflates, so inflation stops soon after the tar's end."""

    def __init__(self) -> None:
        self.pos = 0
        self.end: int | None = None

    def limit(self, tar: bytearray, max_bytes: int) -> int:
        """Most bytes the archive may inflate to, given what has been inflated so far."""
        view = memoryview(tar)
        try:
            while self.end is None and self.pos + BLOCK <= len(view):
                if _zero(view[self.pos:self.pos + BLOCK]):
                    self.end = self.pos
                else:
                    self.pos += BLOCK + _block_end(_header_size(view, self.pos))
        finally:
            view.release()
        return max_bytes if self.end is None else min(max_bytes, self.end + MAX_TRAILING_ZEROS)


def _inflate(chunks: Iterable[memoryview], max_bytes: int) -> bytes | bytearray:
    """Gunzip chunk by chunk into one buffer, stopping as soon as the tar inside is longer than allowed."""
    dec = zlib.decompressobj(wbits=31)
    out: bytes | bytearray = bytearray()
    finder = _EndFinder()
    trailing: list[memoryview] = []
    limit = max_bytes
    try:
        for chunk in chunks:
            if dec.eof:
                trailing.append(chunk)
                continue
            data: bytes | memoryview = chunk
            while data and not dec.eof:
                got = dec.decompress(data, INFLATE_STEP)
                if dec.eof and not out:
                    out = got               # the whole archive in one step (small NEFFs): kept as is, not copied
                else:
                    out += got
                del got                     # not held while the next step inflates
                data = dec.unconsumed_tail
                if len(out) > INFLATE_STEP:     # small archives are checked once, by parse_tar
                    limit = finder.limit(out, max_bytes)
                if len(out) > limit:
                    raise _too_large(limit, max_bytes)
            if dec.eof:
                trailing.append(memoryview(dec.unused_data))
    except zlib.error as exc:
        raise invalid(f"NEFF archive is not a valid gzip stream: {exc}") from None
    if not dec.eof:
        raise invalid("NEFF archive is truncated: gzip stream ends early")
    if not all(_zero(t) for t in trailing):
        raise invalid("NEFF archive has data after the end of its gzip stream; refusing it")
    return out


def _too_large(limit: int, max_bytes: int) -> Exception:
    if limit < max_bytes:
        return invalid("NEFF archive continues past the end of its tar (more than "
                       f"{MAX_TRAILING_ZEROS} bytes of padding); refusing it")
    return invalid(f"NEFF archive expands beyond {max_bytes} bytes, the limit set by {MAX_BYTES_VARIABLE} "
                   f"(default {DEFAULT_MAX_ARCHIVE_BYTES >> 30} GiB); raise it to load this NEFF")


def iter_chunks(view: memoryview, step: int = READ_STEP) -> Iterator[memoryview]:
    """Slices of ``view`` of at most ``step`` bytes (views, no copies)."""
    for start in range(0, len(view), step):
        yield view[start:start + step]


def read_archive(payload: bytes | memoryview, *, max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
                 chunks: Iterable[memoryview] | None = None) -> dict[str, memoryview]:
    """Members of a NEFF payload by name, as read-only views of one unpacked buffer (regular files only).

    ``chunks`` (optional) streams the payload instead of holding it: ``payload`` then only needs its
    first bytes (to tell gzip from tar). NeffError(NRT_INVALID) names anything wrong.
    """
    view = memoryview(payload).cast("B")
    if not len(view):
        raise invalid("NEFF archive is empty (data_size 0)")
    source = iter_chunks(view) if chunks is None else chunks
    if bytes(view[:2]) == GZIP_MAGIC:
        tar = memoryview(_inflate(source, max_bytes)).toreadonly()
    else:
        if isinstance(payload, bytes) and chunks is None:
            tar = view
        else:
            buf = bytearray()
            for chunk in source:
                buf += chunk
                if len(buf) > max_bytes:
                    raise _too_large(max_bytes, max_bytes)
            tar = memoryview(buf).toreadonly()
        if len(tar) > max_bytes:
            raise _too_large(max_bytes, max_bytes)
    return parse_tar(tar)


def _cstr(field: bytes | memoryview) -> str:
    return bytes(field).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: memoryview, pos: int) -> dict[str, str]:
    """``path`` and ``size`` (the keys neuron_sim honours) of a pax extended header."""
    out: dict[str, str] = {}
    text = bytes(data)
    i = 0
    while i < len(text) and text[i] != 0:
        space = text.find(b" ", i)
        try:
            length = int(text[i:space])
            key, _, value = text[space + 1:i + length - 1].partition(b"=")
        except ValueError:
            raise invalid(f"NEFF archive is damaged: bad pax record in the header at offset {pos}") from None
        if length <= 0 or text[i + length - 1:i + length] != b"\n":
            raise invalid(f"NEFF archive is damaged: bad pax record in the header at offset {pos}")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


def parse_tar(tar: memoryview) -> dict[str, memoryview]:
    """Every regular member of a tar held in memory, as views; the tar must be read to its end-of-archive
    marker with nothing but zeros after it, and every header checksum must match."""
    members: dict[str, memoryview] = {}
    pos, n = 0, len(tar)
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        if pos + BLOCK > n:
            raise invalid(f"NEFF archive is truncated: no end-of-archive marker after offset {pos}")
        hdr = bytes(tar[pos:pos + BLOCK])       # one small copy per header: bytes slicing beats view slicing
        if hdr == _ZERO_BLOCK:
            if not _zero(tar[pos:]):
                raise invalid(f"NEFF archive is damaged: data follows the end-of-archive marker at offset {pos}; "
                              "the archive was not read to its end")
            break
        size = _checked_size(hdr, pos)
        kind = hdr[156:157]
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise invalid(f"NEFF archive is damaged: pax size {pax['size']!r} at offset {pos}") from None
        start, end = pos + BLOCK, pos + BLOCK + size
        if end > n:
            raise invalid(f"NEFF archive is truncated inside the member at offset {pos}")
        data = tar[start:end]
        pos = start - (-size // BLOCK) * BLOCK       # _block_end, inlined: this loop runs once per member
        if kind == b"L":
            long_name = _cstr(data)
            continue
        if kind == b"x":
            pax = _pax_records(data, pos)
            continue
        if kind == b"g":
            continue
        name = hdr[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if hdr[257:262] == b"ustar" and hdr[345] != 0:
            name = _cstr(hdr[345:500]) + "/" + name
        if pax or long_name is not None:
            name = pax.get("path", long_name if long_name is not None else name)
            long_name, pax = None, {}
        name = name[2:] if name.startswith("./") else name
        if kind == b"5":
            continue
        _check_member_name(name.rstrip("/"))
        if kind not in (b"0", b"\0", b"7"):
            raise invalid(f"NEFF archive member {name!r} is not a regular file (type {kind!r}: links, devices "
                          "and sparse files are refused)")
        if name in members:
            raise invalid(f"NEFF archive member {name!r} appears twice")
        if len(members) >= MAX_MEMBERS:
            raise invalid(f"NEFF archive has more than {MAX_MEMBERS} members")
        members[name] = data
    if not members:
        raise invalid("NEFF archive holds no files")
    return members
