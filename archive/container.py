"""The .dat container (entropy.dat and key_frame.dat): a header and the chunks it describes.

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

The header (archive/header.py says what it holds) gets the size and crc32 of every chunk, so a
truncated or corrupted file is caught and the damaged chunk named. A file is read only when it is
a regular file, and only once its size matches what its header declares.
"""

import json
import os
import struct
import zlib
from pathlib import Path

from archive.common import ENTROPY_FILE, KEYFRAME_FILE
from base.errors import TezipError
from base.files import NotARegularFile, open_regular

# 2: residuals and keyframes are context range coded (stages/ctxrange.py); entropy.dat has no
# rank-table chunk. Version 1 archives (rank tables + zstd) are no longer decoded.
# 3: the streaming format (archive/v3.py): one chunk per frame, written and read frame by frame.
FORMAT_VERSION = 3
OLDEST_DAT_VERSION = 2
KEYFRAME_MAGIC = b"TEZIPKF\x00"
ENTROPY_MAGIC = b"TEZIPEN\x00"

_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
# A header is a few kB per thousand frames; anything near this is not ours.
MAX_HEADER_BYTES = 64 << 20


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_dat(magic, header, chunks, version=FORMAT_VERSION):
    """Serialise a .dat file: header (with chunk sizes and crcs added) then the chunks."""
    return dat_prefix(magic, header, [[len(c), crc32(c)] for c in chunks], version) + b"".join(chunks)


def dat_prefix(magic, header, table, version=FORMAT_VERSION):
    """The bytes of a .dat file before its chunks: prefix, header with the chunk table `table`
    ([size, crc32] per chunk, in order), header crc. The chunks follow as they were written, so a
    writer that kept them elsewhere (frame by frame) appends them after this."""
    header = dict(header, chunks=[[int(s), int(c)] for s, c in table])
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return _PREFIX.pack(magic, version, len(hbytes)) + hbytes + _CRC.pack(crc32(hbytes))


def _parse_header(buf, magic, name, total):
    """Check the prefix and header of a .dat file of `total` bytes whose first bytes are `buf`
    (at least the prefix, and the header when the prefix is valid). Returns (format version,
    header, position of the first chunk)."""
    if len(buf) < _PREFIX.size and bytes(buf[:8]) == magic:
        raise TezipError(f"{name} is truncated (header incomplete)")
    if len(buf) < _PREFIX.size or bytes(buf[:8]) != magic:
        other = {KEYFRAME_MAGIC: KEYFRAME_FILE, ENTROPY_MAGIC: ENTROPY_FILE}.get(bytes(buf[:8]))
        if other:
            raise TezipError(f"{name} is not what its name says: it holds a {other} file")
        raise TezipError(f"{name} is not a TEZip archive file")
    _, version, hlen = _PREFIX.unpack_from(buf, 0)
    if version > FORMAT_VERSION:
        raise TezipError(f"{name} was written by a newer TEZip (format version {version}); this one reads up to {FORMAT_VERSION}")
    if version < 1:
        raise TezipError(f"{name} has an invalid format version {version}")
    if version < OLDEST_DAT_VERSION:
        raise TezipError(f"{name} was written by an older TEZip (format version {version}, rank-table coding), "
                         f"which this one no longer decodes: decompress it with the TEZip that made it")
    pos = _PREFIX.size
    if hlen > MAX_HEADER_BYTES or pos + hlen + _CRC.size > total:
        raise TezipError(f"{name} is truncated (header incomplete)")
    hbytes = bytes(buf[pos : pos + hlen])
    (stored,) = _CRC.unpack_from(buf, pos + hlen)
    if crc32(hbytes) != stored:
        raise TezipError(f"{name} is corrupt (header checksum mismatch)")
    try:
        header = json.loads(hbytes)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurd nesting or integer length
        raise TezipError(f"{name} is corrupt (header is not valid JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("chunks"), list):
        raise TezipError(f"{name} is corrupt (header lacks its chunk table)")
    return version, header, pos + hlen + _CRC.size


def _chunk_layout(header, pos, total, name):
    """[(start, size, crc)] of the chunks the header declares, checked against the file's size
    `total` (nothing is read: a file larger or smaller than its header says is refused first)."""
    layout = []
    for i, entry in enumerate(header["chunks"]):
        if not (isinstance(entry, list) and len(entry) == 2 and all(type(v) is int and v >= 0 for v in entry)):
            raise TezipError(f"{name} is corrupt (bad chunk table entry {i})")
        size, crc = entry
        if pos + size > total:
            raise TezipError(f"{name} is truncated (chunk {i} of {len(header['chunks'])} incomplete)")
        layout.append((pos, size, crc))
        pos += size
    if pos != total:
        raise TezipError(f"{name} has {total - pos} unexpected bytes at its end")
    return layout


def _chunks(data, layout):
    """The chunks (memoryviews; None where the crc does not match: the caller names what it held)."""
    view = memoryview(data)
    chunks = []
    for start, size, crc in layout:
        chunk = view[start : start + size]
        chunks.append(chunk if crc32(chunk) == crc else None)
    return chunks


def unpack_dat(data, magic, name):
    """Parse and check a .dat file. Returns (header, list of chunk memoryviews)."""
    _, header, pos = _parse_header(data, magic, name, len(data))
    return header, _chunks(data, _chunk_layout(header, pos, len(data), name))


def open_archive_file(path):
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise TezipError(f"{path} is missing: not a complete TEZip archive") from None
    except NotARegularFile as e:
        raise TezipError(f"{path} cannot be read (it is {e.what}, not a regular file)") from None
    except OSError as e:
        raise TezipError(f"{path} cannot be read ({e.strerror or e})") from None


class DatFile:
    """One .dat file of an archive folder, open for reading: its prefix and header are read and
    checked on opening, and its size compared with what the header declares (prefix + header +
    chunk table), so a file larger or smaller than that is refused having read its header only.
    Chunks are then read one at a time (`chunk(i)`), so memory never holds more than one.
    Attributes: version (format version), header (dict), n_chunks."""

    def __init__(self, folder, name, magic):
        self.name, self.path = name, Path(folder) / name
        self._f = open_archive_file(self.path)
        try:
            total = os.fstat(self._f.fileno()).st_size
            buf = self._f.read(_PREFIX.size)
            if len(buf) == _PREFIX.size and buf[:8] == magic:
                hlen = _PREFIX.unpack_from(buf, 0)[2]
                if hlen <= MAX_HEADER_BYTES and _PREFIX.size + hlen + _CRC.size <= total:
                    buf += self._f.read(hlen + _CRC.size)
            self.version, self.header, pos = _parse_header(buf, magic, name, total)
            self._layout = _chunk_layout(self.header, pos, total, name)
        except OSError as e:
            self.close()
            raise TezipError(f"{self.path} cannot be read ({e.strerror or e})") from None
        except BaseException:
            self.close()
            raise
        self.n_chunks = len(self._layout)

    def chunk(self, i):
        """Chunk i (bytes), or None when its crc does not match (the caller names what it held)."""
        start, size, crc = self._layout[i]
        try:
            data = os.pread(self._f.fileno(), size, start)
        except OSError as e:
            raise TezipError(f"{self.path} cannot be read ({e.strerror or e})") from None
        if len(data) != size:
            raise TezipError(f"{self.name} changed while it was read")
        return data if crc32(data) == crc else None

    def chunk_size(self, i):
        return self._layout[i][1]

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_dat_file(folder, name, magic):
    """Read and check one whole .dat file: (header, chunks), as unpack_dat (format 2 archives are
    decoded whole; see DatFile for reading chunk by chunk)."""
    with DatFile(folder, name, magic) as dat:
        return dat.header, [dat.chunk(i) for i in range(dat.n_chunks)]
