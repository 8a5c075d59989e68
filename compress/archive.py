"""The archive: `key_frame.dat`, `entropy.dat` and `filename.txt` in one folder.

Each .dat file is self-describing:

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

The header holds everything needed to decode (shape, modes, bounds, keyframes, lanes, the codec
stages with their configs, partition layout, model digest) plus the size and crc32 of every chunk,
so a truncated or corrupted file is caught and the damaged chunk named. `filename.txt` begins with
one header line. All three carry the same `archive_id`, so files of different archives are never
mixed. Files are written under temporary names and renamed when complete.
"""

import contextlib
import hashlib
import json
import os
import signal
import struct
import threading
import zlib
from pathlib import Path

from compress.errors import TezipError

# 2: residuals and keyframes are context range coded (compress/rangecoder.py); entropy.dat has no
# rank-table chunk. Version 1 archives (rank tables + zstd) are no longer decoded.
FORMAT_VERSION = 2
OLDEST_DAT_VERSION = 2
KEYFRAME_MAGIC = b"TEZIPKF\x00"
ENTROPY_MAGIC = b"TEZIPEN\x00"
NAMES_MAGIC = "#TEZIP-NAMES"
KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE = "key_frame.dat", "entropy.dat", "filename.txt"
ARCHIVE_FILES = (KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE)
TMP_SUFFIX = ".tezip-partial"

_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
# A header is a few kB per thousand frames; anything near this is not ours.
MAX_HEADER_BYTES = 64 << 20


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def frame_checksum(pixels):
    """Checksum of the pixels the decoder must produce: C-order little-endian bytes of one frame
    (numpy array), so 16-bit archives check the same on machines of either byte order."""
    data = pixels.astype(pixels.dtype.newbyteorder("<"), order="C", copy=False)
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=8).hexdigest()


def names_digest(mode, names, stack=None):
    """Binds filename.txt's names (order included), colour mode and TIFF stack name into
    entropy.dat: an edited filename.txt cannot rename or reorder the output even with its own
    checksum recomputed. (Without a stack the digest is what it always was.)"""
    bound = [mode, list(names)] if stack is None else [mode, list(names), stack]
    return hashlib.sha256(json.dumps(bound).encode()).hexdigest()[:32]


def archive_id(header):
    """Identity of an archive: a hash of its decode settings and frame checksums."""
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:32]


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


def name_problem(n):
    """Why a frame's file name cannot be stored or written back (None if it can): a plain file
    name in this folder, on one line, with an image extension TEZip reads."""
    from compress.images import IMAGE_EXTENSIONS

    if not isinstance(n, str) or n in ("", ".", "..") or n.startswith("."):
        return "is not a plain file name"
    if "\n" in n or "\r" in n or "\x00" in n or "/" in n or n != os.path.basename(n):
        return "is not a plain file name"
    try:
        n.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if os.path.splitext(n)[1].lower() not in IMAGE_EXTENSIONS:
        return "does not have an image file extension"
    return None


def stack_problem(stack):
    """Why a TIFF stack's file name cannot be stored or written back (None if it can)."""
    from compress.images import TIFF_EXTENSIONS

    if not isinstance(stack, str) or os.path.splitext(stack)[1].lower() not in TIFF_EXTENSIONS:
        return "is not a TIFF file name"
    return name_problem(stack)


def check_names(names, stack=None):
    """Refuse (before any work) a frame or TIFF stack file name the archive cannot store."""
    problems = [(n, name_problem(n)) for n in names]
    if stack is not None:
        problems.append((stack, stack_problem(stack)))
    for n, problem in problems:
        if problem:
            raise TezipError(f"file name {n!r} cannot be stored: it {problem}")


def names_text(archive_id_, mode, names, stack=None):
    """filename.txt: a header line, then one frame name a line. `stack`: the frames are the pages
    of this one TIFF file (written back as one file; the names are then the pages' names)."""
    check_names(names, stack)
    body = "".join(n + "\n" for n in names)
    head = {"version": FORMAT_VERSION, "archive_id": archive_id_, "mode": mode, "count": len(names), "crc32": crc32(body.encode())}
    if stack is not None:
        head["stack"] = stack
    return f"{NAMES_MAGIC} {json.dumps(head, sort_keys=True)}\n" + body


def parse_names(text, name=NAMES_FILE):
    """Returns (header dict, list of names). Every name is checked (a plain, unique image file
    name), so an edited list can never make the decoder write outside OUT_DIR or one frame over
    another."""
    first, sep, body = text.partition("\n")
    if not first.startswith(NAMES_MAGIC + " "):
        raise TezipError(f"{name} is not a TEZip file-name list (missing its header line)")
    try:
        head = json.loads(first[len(NAMES_MAGIC) + 1 :])
    except (ValueError, RecursionError):
        raise TezipError(f"{name} has a corrupt header line") from None
    if not isinstance(head, dict):
        raise TezipError(f"{name} has a corrupt header line")
    version = head.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TezipError(f"{name} has a corrupt header line (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise TezipError(f"{name} was written by a newer TEZip (format version {version}); this one reads up to {FORMAT_VERSION}")
    if crc32(body.encode()) != head.get("crc32"):
        raise TezipError(f"{name} was edited or is corrupt (its names do not match their checksum)")
    if "stack" in head and stack_problem(head["stack"]):
        raise TezipError(f"{name} is corrupt: its stack name {str(head['stack'])[:80]!r} {stack_problem(head['stack'])}")
    names = body.split("\n")[:-1] if body.endswith("\n") else body.split("\n")
    if len(names) != head.get("count"):
        raise TezipError(f"{name} lists {len(names)} names, its header says {head.get('count')!r}")
    seen = set()
    for i, n in enumerate(names):
        problem = name_problem(n)
        if problem:
            raise TezipError(f"{name} is corrupt: name {i + 1} {n[:80]!r} {problem}")
        if n in seen:
            raise TezipError(f"{name} is corrupt: name {n[:80]!r} appears twice")
        seen.add(n)
    return head, names


def read_archive_file(folder, name):
    path = Path(folder) / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TezipError(f"{path} is missing: not a complete TEZip archive") from None
    except OSError as e:
        raise TezipError(f"{path} cannot be read ({e.strerror})") from None


def is_partial(path):
    """A temporary file of ours, left by an interrupted run."""
    return Path(path).name.endswith(TMP_SUFFIX)


def remove_partials(folder):
    """Delete the temporary files an interrupted run left in folder (names ending in TMP_SUFFIX)."""
    try:
        for entry in Path(folder).iterdir():
            if is_partial(entry) and entry.is_file():
                entry.unlink(missing_ok=True)
    except OSError as e:
        raise TezipError(f"cannot clean up {folder} ({e.strerror or e})") from None


def make_output_folder(folder):
    """Create folder (and missing parents); returns the folders created, for remove_created."""
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_created(created)
        raise TezipError(f"cannot create OUT_DIR {folder} ({e.strerror or e})") from None
    return created


def remove_created(created):
    """After a failed write: remove the folders make_output_folder created, if they are empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            return


# Signals the command line's handler has seen (tezip.main). The handler raises KeyboardInterrupt,
# but an exception raised inside a callback of a library (a garbage-collection hook, a worker
# thread) can be swallowed there; publishing checks this record too, so an interrupted run never
# publishes.
signals_received = []


def note_signal(signum):
    signals_received.append(signum)


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, then deliver them: the renames that
    publish finished files happen all together or not at all. (SIGKILL cannot be held.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received, saved = [], {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        saved[sig] = handler
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


def publish_atomically(folder, names, write_one):
    """Create `names` in folder so that an interrupted or failed run leaves no file that looks
    complete: `write_one(i, tmp_path)` writes item i under a temporary name (tracked before it is
    written, so a half-written one is removed too); all are renamed only when every one is written,
    with Ctrl-C held meanwhile; on failure temporaries and an OUT_DIR this call created are removed."""
    created = make_output_folder(Path(folder))
    remove_partials(Path(folder))
    written, done = [], False
    try:
        for i, name in enumerate(names):
            tmp = Path(folder) / (name + TMP_SUFFIX)
            written.append((tmp, Path(folder) / name))
            write_one(i, tmp)
        with deferred_interrupts():
            if signals_received:  # interrupted earlier, though the KeyboardInterrupt got lost
                raise KeyboardInterrupt
            for tmp, final in written:
                os.replace(tmp, final)
            done = True
    except OSError as e:
        raise TezipError(f"cannot write into {folder} ({e.strerror or e})") from None
    finally:
        for tmp, _ in written:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if not done:
            remove_created(created)


def write_files_atomically(folder, files):
    """Write {name: bytes} into folder, each synced to disk before any is published."""
    contents = list(files.values())

    def write_one(i, tmp):
        with open(tmp, "wb") as f:
            f.write(contents[i])
            f.flush()
            os.fsync(f.fileno())

    publish_atomically(folder, list(files), write_one)
