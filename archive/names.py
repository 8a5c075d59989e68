"""filename.txt: the frames' names, in order, and the colour mode (and the TIFF stack's name when
the frames were one multi-page TIFF) — a header line, then one name a line. entropy.dat binds them
(names_digest), so an edited list is refused even with its own checksum recomputed.
"""

import json
import os
from pathlib import Path

from archive.container import FORMAT_VERSION, open_archive_file, crc32
from base.errors import TezipError
from base.pixels import IMAGE_EXTENSIONS, TIFF_EXTENSIONS

NAMES_FILE = "filename.txt"
NAMES_MAGIC = "#TEZIP-NAMES"
# File names are at most this many bytes (Linux, macOS, Windows): longer ones cannot be written back.
NAME_MAX = 255
# filename.txt: its header line, and each name's line (a frame name, or a stack page's made-up name).
MAX_NAMES_HEAD = 64 << 10
MAX_NAME_LINE = 300


def name_problem(n, is_file=True):
    """Why a frame's file name cannot be stored or written back (None if it can): a plain file
    name in this folder, on one line, with an image extension TEZip reads, and (when it names a
    file of its own: not a TIFF stack's page) at most NAME_MAX bytes."""
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
        from frames.write import output_names

        for n, out in zip(names, output_names(names)[0]):
            if len(out.encode("utf-8")) > NAME_MAX:
                raise TezipError(f"file name {n!r} cannot be stored: it would be written back as {out!r}, "
                                 f"longer than {NAME_MAX} bytes")


def names_text(archive_id_, mode, names, stack=None, source=None):
    """filename.txt: a header line, then one frame name a line. `stack`: the frames are the pages
    of this one TIFF file (written back as one file; the names are then the pages' names).
    `source`: what frames.sink needs to write the frames back as they came (a TIFF stack, an HDF5
    dataset with its attributes: frames.source's description), or None for a folder of images."""
    check_names(names, stack)
    body = "".join(n + "\n" for n in names)
    head = {"version": FORMAT_VERSION, "archive_id": archive_id_, "mode": mode, "count": len(names), "crc32": crc32(body.encode())}
    if stack is not None:
        head["stack"] = stack
    if source is not None:
        head["source"] = source
    line = f"{NAMES_MAGIC} {json.dumps(head, sort_keys=True, allow_nan=False)}\n"
    if len(line.encode()) > MAX_NAMES_HEAD:
        raise TezipError(f"the input's description (its file attributes) takes {len(line.encode())} bytes, more than "
                         f"the {MAX_NAMES_HEAD} an archive keeps")
    return line + body


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
    if "source" in head and not isinstance(head["source"], dict):
        raise TezipError(f"{name} is corrupt (bad source description)")
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
    with open_archive_file(path) as f:
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
