"""The archive: `key_frame.dat`, `entropy.dat` and `filename.txt` in one folder.

Each .dat file is self-describing:

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

The header holds everything needed to decode (shape, modes, bounds, keyframes, lanes, the codec
stages with their configs, partition layout, model digest) plus the size and crc32 of every chunk,
so a truncated or corrupted file is caught and the damaged chunk named. `filename.txt` begins with
one header line. All three carry the same `archive_id`, so files of different archives are never
mixed. Files are written under temporary names and renamed when complete.

Output folders (OutputFolder): a run locks its OUT_DIR against other runs, creates every file it
writes itself (exclusively, under a short random `*.tezip-partial` name, never through a symbolic
link) and publishes them all together or not at all. Input files (archive files here, images in
compress/images.py) are read only when they are regular files (open_regular).
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import signal
import stat
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
# The lock of a run writing into an output folder (a leftover of a killed run is stale, not
# binding: flock locks end with their process).
LOCK_NAME = ".tezip-lock" + TMP_SUFFIX
# File names are at most this many bytes (Linux, macOS, Windows): longer ones cannot be written back.
NAME_MAX = 255
# filename.txt: its header line, and each name's line (a frame name, or a stack page's made-up name).
MAX_NAMES_HEAD = 64 << 10
MAX_NAME_LINE = 300

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


def _parse_header(buf, magic, name, total):
    """Check the prefix and header of a .dat file of `total` bytes whose first bytes are `buf`
    (at least the prefix, and the header when the prefix is valid). Returns (header, position of
    the first chunk)."""
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
    return header, pos + hlen + _CRC.size


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
    header, pos = _parse_header(data, magic, name, len(data))
    return header, _chunks(data, _chunk_layout(header, pos, len(data), name))


def name_problem(n, is_file=True):
    """Why a frame's file name cannot be stored or written back (None if it can): a plain file
    name in this folder, on one line, with an image extension TEZip reads, and (when it names a
    file of its own: not a TIFF stack's page) at most NAME_MAX bytes."""
    from compress.images import IMAGE_EXTENSIONS

    if not isinstance(n, str) or n in ("", ".", "..") or n.startswith("."):
        return "is not a plain file name"
    if "\n" in n or "\r" in n or "\x00" in n or "/" in n or n != os.path.basename(n):
        return "is not a plain file name"
    try:
        n.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if is_file and len(n.encode("utf-8")) > NAME_MAX:
        return f"is longer than {NAME_MAX} bytes"
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
    """Refuse (before any work) a frame or TIFF stack file name the archive cannot store or the
    decoder could not write back (a lossy format's frame is written back as PNG: that name too)."""
    problems = [(n, name_problem(n, is_file=stack is None)) for n in names]
    if stack is not None:
        problems.append((stack, stack_problem(stack)))
    for n, problem in problems:
        if problem:
            raise TezipError(f"file name {n!r} cannot be stored: it {problem}")
    if stack is None:
        from decompress.images import output_names

        for n, out in zip(names, output_names(names)[0]):
            if len(out.encode("utf-8")) > NAME_MAX:
                raise TezipError(f"file name {n!r} cannot be stored: it would be written back as {out!r}, "
                                 f"longer than {NAME_MAX} bytes")


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
        problem = name_problem(n, is_file="stack" not in head)
        if problem:
            raise TezipError(f"{name} is corrupt: name {i + 1} {n[:80]!r} {problem}")
        if n in seen:
            raise TezipError(f"{name} is corrupt: name {n[:80]!r} appears twice")
        seen.add(n)
    return head, names


def printable(text):
    r"""`text` with its control and other non-printable characters escaped as repr() writes them
    (`\x1b`, `\u202e`): names from an archive or a folder are printed with this, so they can
    never send a terminal escape sequence or break a one-line message."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --- reading: regular files only -------------------------------------------------------------------

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(TezipError):
    """open_regular's refusal; `what` says what the path is instead ("a FIFO (named pipe)", ...)."""

    def __init__(self, path, what):
        super().__init__(f"{path}: is {what}, not a regular file")
        self.path, self.what = path, what


def _kind(mode):
    return next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")


def open_regular(path):
    """Open `path` for reading when it is a regular file (or a link to one), never blocking: a
    FIFO would wait forever for a writer and a device never ends, so anything else raises
    NotARegularFile before it is opened for real, and the descriptor opened (non-blocking) is
    checked again in case the path changed meanwhile. Other failures raise OSError as open()
    does. Returns a binary file object."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(path, _kind(st.st_mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(path, _kind(st.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_archive_file(path):
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise TezipError(f"{path} is missing: not a complete TEZip archive") from None
    except NotARegularFile as e:
        raise TezipError(f"{path} cannot be read (it is {e.what}, not a regular file)") from None
    except OSError as e:
        raise TezipError(f"{path} cannot be read ({e.strerror or e})") from None


def read_dat_file(folder, name, magic):
    """Read and check one .dat file of an archive folder: (header, chunks) as unpack_dat. The
    file's size is compared with what its header declares (prefix + header + chunk table) before
    any chunk is read, so a file larger or smaller than that is refused having read its header
    only."""
    path = Path(folder) / name
    with _open_archive_file(path) as f:
        try:
            total = os.fstat(f.fileno()).st_size
            buf = f.read(_PREFIX.size)
            if len(buf) == _PREFIX.size and buf[:8] == magic:
                hlen = _PREFIX.unpack_from(buf, 0)[2]
                if hlen <= MAX_HEADER_BYTES and _PREFIX.size + hlen + _CRC.size <= total:
                    buf += f.read(hlen + _CRC.size)
            header, pos = _parse_header(buf, magic, name, total)
            layout = _chunk_layout(header, pos, total, name)
            data = buf + f.read(total - len(buf))
        except OSError as e:
            raise TezipError(f"{path} cannot be read ({e.strerror or e})") from None
    if len(data) != total:
        raise TezipError(f"{name} changed while it was read")
    return header, _chunks(data, layout)


def _declared_name_count(first_line):
    """The name count filename.txt's header line (bytes) declares, or None."""
    magic = NAMES_MAGIC.encode() + b" "
    if not first_line.startswith(magic):
        return None
    try:
        head = json.loads(first_line[len(magic):])
    except (ValueError, RecursionError):
        return None
    count = head.get("count") if isinstance(head, dict) else None
    return count if type(count) is int and count >= 0 else None


def read_names_file(folder):
    """filename.txt's bytes, read only as far as its header line allows: at most MAX_NAME_LINE
    bytes for each name it declares (a larger file is refused unread); without a readable count,
    the header line alone (parse_names then names what is wrong with it)."""
    path = Path(folder) / NAMES_FILE
    with _open_archive_file(path) as f:
        try:
            total = os.fstat(f.fileno()).st_size
            first = f.readline(MAX_NAMES_HEAD)
            count = _declared_name_count(first)
            if count is not None and total > len(first) + count * MAX_NAME_LINE:
                raise TezipError(f"{NAMES_FILE} is corrupt ({total} bytes for the {count} names its header declares)")
            if count is None and total > MAX_NAMES_HEAD:
                return first
            return first + f.read()
        except OSError as e:
            raise TezipError(f"{path} cannot be read ({e.strerror or e})") from None


def is_partial(path):
    """A temporary file of ours (or the lock of a run), as an interrupted run may leave them."""
    return Path(path).name.endswith(TMP_SUFFIX)


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


# --- writing: one locked output folder per run ------------------------------------------------------


class OutputFolder:
    """OUT_DIR for the length of one run (a context manager).

    Entering creates the folder when missing, opens it once (every later step works relative to
    that descriptor), locks it against other TEZip runs (flock on LOCK_NAME: a second run into the
    same folder is refused with one line; the lock of a killed run is stale and taken over),
    checks under the lock that it is still empty unless `overwrite`, and removes what a killed run
    left (*.tezip-partial entries: links and other odd entries are unlinked themselves, never
    followed). publish() is the only way files get in. Leaving releases the lock and, if nothing
    was published, removes the folders entering created."""

    def __init__(self, folder, overwrite=False):
        self.path = Path(folder)
        self.overwrite = overwrite
        self.created, self.fd, self.lock_fd, self.published = [], None, None, False

    def __enter__(self):
        try:
            # Ctrl-C is held while the folder is made and locked (and while leaving, below): an
            # interrupt between creating the lock file and holding it would leave it behind.
            with deferred_interrupts():
                self.created = make_output_folder(self.path)
                try:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    raise TezipError(f"OUT_DIR {self.path} cannot be opened ({e.strerror or e})") from None
                self._lock()
            try:
                entries = os.listdir(self.fd)
            except OSError as e:
                raise TezipError(f"OUT_DIR {self.path} cannot be read ({e.strerror or e})") from None
            if not self.overwrite and any(not is_partial(e) for e in entries):
                raise TezipError(f"OUT_DIR {self.path} is not empty (use --overwrite to replace its contents)")
            self._remove_leftovers(entries)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        with deferred_interrupts():
            if self.lock_fd is not None:
                try:
                    mine, there = os.fstat(self.lock_fd), os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False)
                    if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                        os.unlink(LOCK_NAME, dir_fd=self.fd)
                except OSError:
                    pass
                os.close(self.lock_fd)  # releases the flock
                self.lock_fd = None
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if not self.published:
                remove_created(self.created)
        return False

    def _unlink(self, name):
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def _lock(self):
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        for _ in range(100):
            try:
                fd = os.open(LOCK_NAME, flags, 0o644, dir_fd=self.fd)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a link where our lock belongs: removed, never followed
                    self._unlink(LOCK_NAME)
                    continue
                raise TezipError(f"cannot lock OUT_DIR {self.path} ({e.strerror or e})") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO or device planted there: removed
                os.close(fd)
                self._unlink(LOCK_NAME)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 24, 0).decode("ascii", "replace").strip()
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    who = f" (process {holder})" if holder.isdigit() else ""
                    raise TezipError(f"OUT_DIR {self.path} is in use by another TEZip run{who}: wait until it has "
                                     f"finished, or choose another OUT_DIR") from None
                raise TezipError(f"cannot lock OUT_DIR {self.path} ({e.strerror or e})") from None
            try:
                there = os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            if there is None or (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)  # the run that held it has just removed it: lock afresh
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.lock_fd = fd
            return
        raise TezipError(f"cannot lock OUT_DIR {self.path} (its lock file keeps changing)")

    def _remove_leftovers(self, entries):
        for name in entries:
            if not is_partial(name) or name == LOCK_NAME:
                continue
            try:
                if not stat.S_ISDIR(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise TezipError(f"cannot clean up {self.path} ({e.strerror or e})") from None

    def _free_name(self):
        while True:
            name = f"{secrets.token_hex(6)}{TMP_SUFFIX}"
            try:
                os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                return name

    def new_file(self, track):
        """A new empty file of this run under a fresh short temporary name, created exclusively
        (never an existing file, never through a link); its name is appended to `track` as soon
        as it exists. Returns a binary file object."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            name = f"{secrets.token_hex(6)}{TMP_SUFFIX}"
            try:
                fd = os.open(name, flags, 0o666, dir_fd=self.fd)
            except FileExistsError:
                continue
            track.append(name)
            f = os.fdopen(fd, "w+b")
            f.raw.name = str(self.path / name)  # for libraries that want a name (tifffile); never reopened
            return f

    def _check_targets(self, names):
        """Every final name must be free or a regular file (replaced): a folder, link or other entry
        in the way stops the run before anything is renamed."""
        for name in names:
            try:
                mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode):
                continue
            what = "a symbolic link" if stat.S_ISLNK(mode) else _kind(mode)
            raise TezipError(f"cannot write {printable(name)} into {self.path}: {what} of that name is in the way "
                             f"(only regular files are replaced); nothing was written")

    def _rename_all(self, temps, names):
        """Rename every temporary file to its final name; files replaced are first moved aside,
        and should any rename fail, those placed are removed and those moved aside put back."""
        aside, placed = [], []
        d = dict(src_dir_fd=self.fd, dst_dir_fd=self.fd)
        try:
            for tmp, name in zip(temps, names):
                try:
                    os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    spare = self._free_name()
                    os.rename(name, spare, **d)
                    aside.append((name, spare))
                os.rename(tmp, name, **d)
                placed.append(name)
        except BaseException:
            for name in reversed(placed):
                self._unlink(name)
            for name, spare in reversed(aside):
                try:
                    os.rename(spare, name, **d)
                except OSError:
                    pass
            raise
        for _, spare in aside:
            self._unlink(spare)

    def publish(self, names, write_one):
        """Create `names` in this folder all together or not at all: write_one(i, f) writes item
        i into f, a new file of this run (new_file); when every one is written and synced to disk,
        the final names are checked (_check_targets) and all renamed into place (_rename_all), with
        Ctrl-C held meanwhile. On any failure the temporary files are removed and the folder holds
        what it held before."""
        names = list(names)
        self._check_targets(names)
        temps, done = [], False
        try:
            for i, _ in enumerate(names):
                with self.new_file(temps) as f:
                    write_one(i, f)
                    f.flush()
                    os.fsync(f.fileno())
            with deferred_interrupts():
                if signals_received:  # interrupted earlier, though the KeyboardInterrupt got lost
                    raise KeyboardInterrupt
                self._check_targets(names)
                self._rename_all(temps, names)
                done = self.published = True
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        except OSError as e:
            raise TezipError(f"cannot write into {self.path} ({e.strerror or e})") from None
        finally:
            if not done:
                for tmp in temps:
                    self._unlink(tmp)


def write_files_atomically(out, files):
    """Write {name: bytes} into the OutputFolder `out`, each synced to disk before any is published."""
    contents = list(files.values())
    out.publish(list(files), lambda i, f: f.write(contents[i]))
