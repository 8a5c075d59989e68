"""filename.txt: the frames' names, in order, and the colour mode (and the TIFF stack's name when
the frames were one multi-page TIFF) — a header line, then one name a line. entropy.dat binds them
(names_digest), so an edited list is refused even with its own checksum recomputed.
"""

import json
import os

from archive.container import FORMAT_VERSION, crc32
from base.errors import TezipError
from base.pixels import IMAGE_EXTENSIONS, TIFF_EXTENSIONS

NAMES_FILE = "filename.txt"
NAMES_MAGIC = "#TEZIP-NAMES"


def name_problem(n):
    """Why a frame's file name cannot be stored or written back (None if it can): a plain file
    name in this folder, on one line, with an image extension TEZip reads."""
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


