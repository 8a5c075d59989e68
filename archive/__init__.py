"""The archive, and the one place that knows its format: `key_frame.dat`, `entropy.dat` and
`filename.txt` in one folder.

Each .dat file is self-describing (archive/container.py):

    magic (8 bytes) | format version (u16) | header length (u32) | header (JSON) | header crc32 (u32)
    | chunk 0 | chunk 1 | ...

entropy.dat's header (archive/header.py, SequenceHeader) holds everything needed to decode: shape,
pixel format, bound, keyframes, lanes, the residual chain's stage configs, model digest, a checksum
per decoded frame, the names' digest, and the size and crc32 of every chunk, so a truncated or
corrupted file is caught and the damaged chunk named. Its chunks: the block choices, then one per
predicted frame. key_frame.dat (KeyframeHeader): the keyframe chain, one chunk per keyframe.
filename.txt (archive/names.py) begins with one header line, then one frame name a line. All three
carry the same `archive_id`, so files of different archives are never mixed.
"""

from dataclasses import dataclass
from pathlib import Path

from archive.header import (ENTROPY_FILE, KEYFRAME_FILE, FrameFormat, KeyframeHeader, SequenceHeader, frame_checksum,
                            names_digest)
from base.errors import TezipError
from archive import container as _container
from archive.container import FORMAT_VERSION
from archive.names import NAMES_FILE, names_text, parse_names, read_names_file

ARCHIVE_FILES = (KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE)


@dataclass
class Archive:
    """One compressed sequence, as written or as read back (headers validated, chunks crc-checked)."""

    sequence: SequenceHeader
    keyframes: KeyframeHeader
    choices_chunk: bytes
    residual_chunks: list
    keyframe_chunks: list
    mode: str
    names: list
    stack: str | None = None

    def files(self):
        """{file name: bytes} of the three archive files."""
        aid = self.sequence.archive_id
        entropy = SequenceHeader.join_chunks(self.choices_chunk, self.residual_chunks)
        return {
            KEYFRAME_FILE: _container.pack_dat(_container.KEYFRAME_MAGIC, self.keyframes.to_json(), self.keyframe_chunks),
            ENTROPY_FILE: _container.pack_dat(_container.ENTROPY_MAGIC, self.sequence.to_json(), entropy),
            NAMES_FILE: names_text(aid, self.mode, self.names, self.stack).encode("utf-8"),
        }


def read_archive(comp_dir):
    """Read, parse and cross-check the three files of an archive folder → Archive."""
    comp = Path(comp_dir)
    if not comp.is_dir():
        raise TezipError(f"archive folder {comp_dir} does not exist")
    names_raw = read_names_file(comp)
    try:
        names_head, names = parse_names(names_raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TezipError(f"{NAMES_FILE} is corrupt (not UTF-8 text)") from None
    key_json, key_chunks = _container.read_dat_file(comp, KEYFRAME_FILE, _container.KEYFRAME_MAGIC)
    ent_json, ent_chunks = _container.read_dat_file(comp, ENTROPY_FILE, _container.ENTROPY_MAGIC)
    aid = ent_json.get("archive_id")
    for fname, other in ((KEYFRAME_FILE, key_json.get("archive_id")), (NAMES_FILE, names_head.get("archive_id"))):
        if other != aid:
            raise TezipError(f"{fname} belongs to a different archive than {ENTROPY_FILE}")
    mode, stack = names_head.get("mode"), names_head.get("stack")
    sequence = SequenceHeader.from_json(ent_json, names, mode, stack)
    keyframes = KeyframeHeader.from_json(key_json, sequence)
    choices, residuals = SequenceHeader.split_chunks(ent_chunks, sequence.n_predicted)
    return Archive(sequence, keyframes, choices, residuals, keyframes.check_chunks(key_chunks), mode, names, stack)


def archive_size(comp_dir):
    """Bytes of an archive folder's three files."""
    return sum((Path(comp_dir) / name).stat().st_size for name in ARCHIVE_FILES)


__all__ = ["ARCHIVE_FILES", "Archive", "ENTROPY_FILE", "FORMAT_VERSION", "FrameFormat", "KEYFRAME_FILE", "KeyframeHeader", "NAMES_FILE",
           "SequenceHeader", "archive_size", "frame_checksum", "names_digest", "read_archive"]
