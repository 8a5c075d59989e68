"""The .dat container (entropy.dat and key_frame.dat): a header and the chunks it describes.

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

The header (archive/header.py says what it holds) gets the size and crc32 of every chunk, so a
truncated or corrupted file is caught and the damaged chunk named.
"""

import json
import struct
import zlib
from pathlib import Path

from archive.header import ENTROPY_FILE, KEYFRAME_FILE
from base.errors import TezipError

# 2: residuals and keyframes are context range coded (compress/rangecoder.py); entropy.dat has no
# rank-table chunk. Version 1 archives (rank tables + zstd) are no longer decoded.
FORMAT_VERSION = 2
OLDEST_DAT_VERSION = 2
KEYFRAME_MAGIC = b"TEZIPKF\x00"
ENTROPY_MAGIC = b"TEZIPEN\x00"

_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
# A header is a few kB per thousand frames; anything near this is not ours.
MAX_HEADER_BYTES = 64 << 20


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_dat(magic, header, chunks):
    """Serialise a .dat file: header (with chunk sizes and crcs added) then the chunks."""
    header = dict(header)
    header["chunks"] = [[len(c), crc32(c)] for c in chunks]
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    parts = [_PREFIX.pack(magic, FORMAT_VERSION, len(hbytes)), hbytes, _CRC.pack(crc32(hbytes))]
    return b"".join(parts + list(chunks))


def unpack_dat(data, magic, name):
    """Parse and check a .dat file. Returns (header, list of chunk memoryviews)."""
    if len(data) < _PREFIX.size or data[:8] != magic:
        other = {KEYFRAME_MAGIC: KEYFRAME_FILE, ENTROPY_MAGIC: ENTROPY_FILE}.get(bytes(data[:8]))
        if other:
            raise TezipError(f"{name} is not what its name says: it holds a {other} file")
        raise TezipError(f"{name} is not a TEZip archive file")
    _, version, hlen = _PREFIX.unpack_from(data, 0)
    if version > FORMAT_VERSION:
        raise TezipError(f"{name} was written by a newer TEZip (format version {version}); this one reads up to {FORMAT_VERSION}")
    if version < 1:
        raise TezipError(f"{name} has an invalid format version {version}")
    if version < OLDEST_DAT_VERSION:
        raise TezipError(f"{name} was written by an older TEZip (format version {version}, rank-table coding), "
                         f"which this one no longer decodes: decompress it with the TEZip that made it")
    pos = _PREFIX.size
    if hlen > MAX_HEADER_BYTES or pos + hlen + _CRC.size > len(data):
        raise TezipError(f"{name} is truncated (header incomplete)")
    hbytes = bytes(data[pos : pos + hlen])
    (stored,) = _CRC.unpack_from(data, pos + hlen)
    if crc32(hbytes) != stored:
        raise TezipError(f"{name} is corrupt (header checksum mismatch)")
    try:
        header = json.loads(hbytes)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurd nesting or integer length
        raise TezipError(f"{name} is corrupt (header is not valid JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("chunks"), list):
        raise TezipError(f"{name} is corrupt (header lacks its chunk table)")
    pos += hlen + _CRC.size
    view = memoryview(data)
    chunks = []
    for i, entry in enumerate(header["chunks"]):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, int) and v >= 0 for v in entry)):
            raise TezipError(f"{name} is corrupt (bad chunk table entry {i})")
        size, crc = entry
        if pos + size > len(data):
            raise TezipError(f"{name} is truncated (chunk {i} of {len(header['chunks'])} incomplete)")
        chunk = view[pos : pos + size]
        if crc32(chunk) != crc:
            chunks.append(None)  # the caller names what this chunk held
        else:
            chunks.append(chunk)
        pos += size
    if pos != len(data):
        raise TezipError(f"{name} has {len(data) - pos} unexpected bytes at its end")
    return header, chunks


def read_archive_file(folder, name):
    path = Path(folder) / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TezipError(f"{path} is missing: not a complete TEZip archive") from None
    except OSError as e:
        raise TezipError(f"{path} cannot be read ({e.strerror})") from None
