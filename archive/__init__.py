"""The archive, and the one place that knows its format: `key_frame.dat`, `entropy.dat` and
`filename.txt` in one folder.

Each .dat file is self-describing (archive/container.py):

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

entropy.dat's header holds everything needed to decode (archive/v3.py: shape, pixel format, model,
bound, keyframes, the frame coder's config, a checksum per decoded frame, the names' digest) and the
size and crc32 of every chunk, so a truncated or corrupted file is caught and the damaged chunk
named; one chunk per predicted frame. key_frame.dat: one chunk per keyframe. filename.txt
(archive/names.py) begins with one header line, then one frame name a line. All three carry the same
`archive_id`, so files of different archives are never mixed.

Format 3 (written now) is streamed: ArchiveWriter takes each frame's chunk as it is coded, in any
order, and writes the files at the end; read_archive gives the chunks one at a time. Format 2
(archive/v2.py, whole-sequence chunks) is still read.
"""

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

from archive import container as _container
from archive.common import ENTROPY_FILE, KEYFRAME_FILE, FrameFormat, frame_checksum, names_digest
from archive.container import FORMAT_VERSION, DatFile
from archive.names import NAMES_FILE, names_text, parse_names, read_names_file
from archive.v2 import KeyframeHeaderV2, SequenceHeaderV2
from archive.v3 import REFERENCE_ARITHMETIC, KeyframeHeader, SequenceHeader
from base.errors import TezipError, printable

ARCHIVE_FILES = (KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE)


@dataclass
class Archive:
    """An archive folder open for reading: headers validated against each other and filename.txt;
    chunks read on demand, crc-checked (`keyframe_chunk(i)`, `frame_chunk(i)`: the i-th keyframe or
    predicted frame in frame order). Format 2 archives also have `choices_chunk` (their block
    choices, whole). Close it (or use `with`) when done."""

    version: int
    sequence: object  # SequenceHeader (3) or SequenceHeaderV2
    keyframes: object  # KeyframeHeader (3) or KeyframeHeaderV2
    mode: str
    names: list
    stack: str | None = None
    source: dict | None = None  # how the frames were laid out in files (frames.source's description)
    _key: DatFile = field(default=None, repr=False)
    _ent: DatFile = field(default=None, repr=False)

    def sink_description(self):
        """What frames.sink writes the frames back as: the source's description, a TIFF stack
        (format 2 recorded only its name), or a folder of images."""
        if self.source is not None:
            return self.source
        if self.stack is not None:
            f = self.sequence.frames
            return {"kind": "tiff", "stack": self.stack, "mode": self.mode, "n_frames": f.n_frames, "height": f.height,
                    "width": f.width, "channels": f.channels}
        return {"kind": "folder"}

    @property
    def choices_chunk(self):
        return self._checked(self._ent, 0, "the block choices are")

    def keyframe_chunk(self, i):
        return self._checked(self._key, i, f"the chunk of keyframe {self.keyframes.keyframes[i]} (frame "
                                           f"{self._frame_name(self.keyframes.keyframes[i])}) is")

    def frame_chunk(self, i):
        lead = 1 if self.version == 2 else 0  # format 2: the block choices come first
        return self._checked(self._ent, lead + i, f"the chunk of frame {self._predicted_frame(i)} (predicted frame {i}, "
                                                  f"{self._frame_name(self._predicted_frame(i))}) is")

    def _predicted_frame(self, i):
        """The frame index of the i-th predicted frame (frames that are not keyframes, in order)."""
        keys = self.sequence.keyframes
        lo, hi = i, i + len(keys)  # frame f has f - (keyframes <= f) predicted frames before it
        while lo < hi:
            mid = (lo + hi) // 2
            if mid + 1 - bisect.bisect_right(keys, mid) > i:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _frame_name(self, f):
        return printable(self.names[f]) if 0 <= f < len(self.names) else "?"

    @staticmethod
    def _checked(dat, i, what):
        data = dat.chunk(i)
        if data is None:
            raise TezipError(f"{dat.name}: {what} corrupt (checksum mismatch)")
        return data

    def close(self):
        for dat in (self._key, self._ent):
            if dat is not None:
                dat.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_archive(comp_dir):
    """Open an archive folder: read, parse and cross-check its three files' headers → Archive."""
    comp = Path(comp_dir)
    if not comp.is_dir():
        raise TezipError(f"archive folder {comp_dir} " + ("is not a folder" if comp.exists() else "does not exist"))
    names_raw = read_names_file(comp)
    try:
        names_head, names = parse_names(names_raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TezipError(f"{NAMES_FILE} is corrupt (not UTF-8 text)") from None
    key = DatFile(comp, KEYFRAME_FILE, _container.KEYFRAME_MAGIC)
    try:
        ent = DatFile(comp, ENTROPY_FILE, _container.ENTROPY_MAGIC)
    except BaseException:
        key.close()
        raise
    archive = Archive(ent.version, None, None, names_head.get("mode"), names, names_head.get("stack"),
                      names_head.get("source"), key, ent)
    try:
        if key.version != ent.version:
            raise TezipError(f"{KEYFRAME_FILE} (format {key.version}) and {ENTROPY_FILE} (format {ent.version}) are "
                             f"from different archives")
        aid = ent.header.get("archive_id")
        for fname, other in ((KEYFRAME_FILE, key.header.get("archive_id")), (NAMES_FILE, names_head.get("archive_id"))):
            if other != aid:
                raise TezipError(f"{fname} belongs to a different archive than {ENTROPY_FILE}")
        if ent.version == 2:
            archive.sequence = SequenceHeaderV2.from_json(ent.header, names, archive.mode, archive.stack)
            archive.keyframes = KeyframeHeaderV2.from_json(key.header, archive.sequence)
            SequenceHeaderV2.split_chunks([b""] * ent.n_chunks, archive.sequence.n_predicted)  # the chunk count
        else:
            archive.sequence = SequenceHeader.from_json(ent.header, names, archive.mode, archive.stack, archive.source)
            archive.keyframes = KeyframeHeader.from_json(key.header, archive.sequence)
            if ent.n_chunks != archive.sequence.n_predicted:
                raise TezipError(f"{ENTROPY_FILE} holds {ent.n_chunks} frames, {archive.sequence.n_predicted} expected")
        if key.n_chunks != len(archive.sequence.keyframes):
            raise TezipError(f"{KEYFRAME_FILE} holds {key.n_chunks} keyframes, {len(archive.sequence.keyframes)} expected")
    except BaseException:
        archive.close()
        raise
    return archive


class ArchiveWriter:
    """Writes a format-3 archive into an OutputFolder (base/publish.py), frame by frame: `add`
    takes each frame's chunk as soon as it is coded, in any order, appending it to a spool file
    of the folder (a temporary of this run), so memory holds no chunk longer than it takes to
    write it; `files` then gives write functions that lay the .dat files out in frame order
    (the chunks copied from the spool), for the folder to publish with filename.txt."""

    def __init__(self, out, n_frames):
        self.out, self._temps = out, []
        self._spool = out.new_file(self._temps)
        self._where = [None] * n_frames  # frame → (offset in the spool, size, crc32)
        self._end = 0

    def add(self, f, chunk):
        chunk = bytes(chunk)
        try:
            self._spool.write(chunk)
        except OSError as e:  # a full disk shows here first: one line naming the folder, as publish() does
            raise TezipError(f"cannot write into {self.out.path} ({e.strerror or e})") from None
        self._where[f] = (self._end, len(chunk), _container.crc32(chunk))
        self._end += len(chunk)

    def chunk_bytes(self, f):
        return self._where[f][1]

    def _writer(self, magic, header, frames):
        table = [self._where[f][1:] for f in frames]

        def write(out):
            out.write(_container.dat_prefix(magic, header.to_json(), table))
            self._spool.flush()
            fd = self._spool.fileno()
            for f in frames:
                offset, size, _ = self._where[f]
                out.write(os.pread(fd, size, offset))
        return write

    def files(self, sequence: SequenceHeader, keyframes: KeyframeHeader, mode, names, stack=None, source=None):
        """{file name: write(file object)} of the three archive files."""
        missing = [f for f, w in enumerate(self._where) if w is None]
        if missing:
            raise RuntimeError(f"internal error: frames {missing[:5]} were never coded")
        keys = list(keyframes.keyframes)
        predicted = sorted(set(range(len(self._where))) - set(keys))
        text = names_text(sequence.archive_id, mode, names, stack, source).encode("utf-8")
        return {
            KEYFRAME_FILE: self._writer(_container.KEYFRAME_MAGIC, keyframes, keys),
            ENTROPY_FILE: self._writer(_container.ENTROPY_MAGIC, sequence, predicted),
            NAMES_FILE: lambda out: out.write(text),
        }

    def close(self):
        """Remove the spool (after publishing, or on failure)."""
        self._spool.close()
        for name in self._temps:
            try:
                os.unlink(name, dir_fd=self.out.fd)
            except OSError:
                pass


def archive_size(comp_dir):
    """Bytes of an archive folder's three files."""
    return sum((Path(comp_dir) / name).stat().st_size for name in ARCHIVE_FILES)


__all__ = ["ARCHIVE_FILES", "Archive", "ArchiveWriter", "ENTROPY_FILE", "FORMAT_VERSION", "FrameFormat", "KEYFRAME_FILE",
           "KeyframeHeader", "NAMES_FILE", "REFERENCE_ARITHMETIC", "SequenceHeader", "archive_size", "frame_checksum",
           "names_digest", "read_archive"]
