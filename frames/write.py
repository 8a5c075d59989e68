"""Writing decoded frames back to image files, losslessly.

Frames keep their original file names where the format is lossless. A frame that came from a
lossy format (JPEG, WebP, JPEG 2000) is written as PNG instead: re-encoding it lossily would
change the pixels TEZip just restored exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from base.errors import TezipError, printable
from base.pixels import MODE_DTYPES, SUPPORTED_MODES

# Extensions whose Pillow writers are lossy by default (JPEG always; WebP and JPEG 2000 unless
# told otherwise), so decoded frames are never written in them.
LOSSY_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".jp2", ".j2k"}
)

# Extension -> (Pillow format, save options) for the formats write_frame writes. Every one of
# them stores 8-bit RGB and L pixels exactly; PNG, TIFF and PGM store 16-bit I;16 ones too (the
# only formats such frames are read from; a lossy one becomes PNG, see output_names).
_LOSSLESS_WRITERS: dict[str, tuple[str, dict]] = {
    # zlib level 4 (Pillow's default is 6): on the dev frames 2.1x faster to write for 2 % larger
    # files (level 1: 3x faster, 18 % larger); the pixels are the same at every level.
    ".png": ("PNG", {"compress_level": 4}),
    ".bmp": ("BMP", {}),
    ".ppm": ("PPM", {}),
    ".pgm": ("PPM", {}),
    ".pnm": ("PPM", {}),
    # Uncompressed TIFF: every reader handles it, and no codec can touch the pixels.
    ".tif": ("TIFF", {"compression": "raw"}),
    ".tiff": ("TIFF", {"compression": "raw"}),
}
LOSSLESS_EXTENSIONS: frozenset[str] = frozenset(_LOSSLESS_WRITERS)

# Above this many substituted files, notes hold one summary sentence instead of one per file.
_MAX_NOTES_PER_FILE = 5

_EXPLANATION = "a lossy format would spoil the decoded pixels"


def output_names(names: list[str]) -> tuple[list[str], list[str]]:
    """The file name each frame is written under, and notes on the names that changed.

    Names in lossless formats are kept. A lossy-format name becomes stem + ".png"
    (frame_0001.jpg -> frame_0001.png); if that would collide with another name of the list
    (case-insensitively, for case-insensitive file systems), or with another frame's new name,
    it becomes the full original name + ".png" (frame_0001.jpg.png) instead.
    """
    def is_lossy(name: str) -> bool:
        return Path(name).suffix.lower() in LOSSY_EXTENSIONS

    def stem_png(name: str) -> str:
        return Path(name).stem + ".png"

    kept = {name.casefold() for name in names if not is_lossy(name)}
    # How many lossy names want each stem.png; two of them wanting the same one is a collision.
    wanted: dict[str, int] = {}
    for name in names:
        if is_lossy(name):
            key = stem_png(name).casefold()
            wanted[key] = wanted.get(key, 0) + 1

    out_names: list[str] = []
    substituted: list[tuple[str, str]] = []
    taken = set(kept)
    for name in names:
        if not is_lossy(name):
            out_names.append(name)
            continue
        candidate = stem_png(name)
        key = candidate.casefold()
        if key in taken or wanted[key] > 1:
            candidate = name + ".png"
        # Only reachable with contrived names (a.jpg next to a.jpg.png): number until free.
        counter = 1
        while candidate.casefold() in taken:
            candidate = f"{name}.{counter}.png"
            counter += 1
        taken.add(candidate.casefold())
        out_names.append(candidate)
        substituted.append((name, candidate))

    # Names come from an archive: printed escaped (no terminal escape sequences get through).
    notes: list[str] = []
    if len(substituted) <= _MAX_NOTES_PER_FILE:
        notes = [f"{printable(old)} is written as {printable(new)}: {_EXPLANATION}" for old, new in substituted]
    else:
        extensions = sorted({printable(Path(old).suffix.lower()) for old, _ in substituted})
        old, new = substituted[0]
        notes = [
            f"{len(substituted)} frames stored as {', '.join(extensions)} are written as PNG "
            f"(e.g. {printable(old)} as {printable(new)}): {_EXPLANATION}"
        ]
    return out_names, notes


def _check_frames(path: Path, frames: np.ndarray, mode: str) -> None:
    """ValueError unless frames (..., H, W, C) have the channels and dtype of mode."""
    channels = SUPPORTED_MODES.get(mode)
    if channels is None:
        raise ValueError(f"mode must be one of {', '.join(SUPPORTED_MODES)}, got {mode!r}")
    dtype = MODE_DTYPES[mode]
    if frames.dtype != dtype or frames.ndim < 3 or frames.shape[-1] != channels:
        raise ValueError(
            f"{path}: expected {dtype} (H, W, {channels}) frames for mode {mode}, "
            f"got {frames.dtype} {frames.shape}"
        )


def _cannot_write(path, error: BaseException) -> TezipError:
    return TezipError(f"{printable(path)}: cannot write image: {' '.join(str(error).split())}")


def write_frame(
    path, frame: np.ndarray, mode: str, format_of: str | Path | None = None
) -> None:
    """Write one frame (H, W, C) losslessly: mode "RGB" uint8 C=3, "L" uint8 C=1, or "I;16"
    uint16 C=1 (a 16-bit grayscale file).

    path: a file name, or a binary file object open for writing (a file the caller created, as
    base.publish.OutputFolder.new_file does; format_of then names the format). The format follows the
    extension of format_of if given (so a frame can be written under a temporary name and renamed
    later), else of path; see LOSSLESS_EXTENSIONS. PNG uses
    zlib level 4. A lossy or unknown extension is a programming error
    (ValueError): output_names never produces one. A file that cannot be written raises
    TezipError.
    """
    is_file = hasattr(path, "write")
    if not is_file:
        path = Path(path)
    named = Path(format_of) if format_of is not None else path
    if is_file and format_of is None:
        raise ValueError("write_frame into a file object needs format_of")
    extension = named.suffix.lower()
    if extension not in _LOSSLESS_WRITERS:
        raise ValueError(
            f"{named}: cannot write extension '{named.suffix}' losslessly "
            f"(use one of {' '.join(sorted(LOSSLESS_EXTENSIONS))})"
        )
    _check_frames(named, frame, mode)
    if frame.ndim != 3:
        raise ValueError(f"{named}: expected one (H, W, C) frame, got shape {frame.shape}")
    pixels = frame[:, :, 0] if frame.shape[2] == 1 else frame
    # Pillow infers the mode from the array: 2-D uint8 is L, (H, W, 3) uint8 is RGB, 2-D uint16
    # is I;16 (written as 16-bit PNG / TIFF / PGM).
    image = Image.fromarray(np.ascontiguousarray(pixels))
    pillow_format, options = _LOSSLESS_WRITERS[extension]
    try:
        image.save(path, format=pillow_format, **options)
    except OSError as error:
        raise _cannot_write(named, error) from None


def write_tiff_stack(path, frames: np.ndarray, mode: str) -> None:
    """Write frames (N, H, W, C) as one uncompressed multi-page TIFF, one page per frame, in the
    mode's bit depth (what frames.read.read_tiff_stack reads back). path: a file name or a
    binary file object open for writing; the format does not depend on the name's extension, so a
    temporary name works."""
    import tifffile

    if not hasattr(path, "write"):
        path = Path(path)
    _check_frames(path, frames, mode)
    if frames.ndim != 4:
        raise ValueError(f"{path}: expected (N, H, W, C) frames, got shape {frames.shape}")
    pages = frames[..., 0] if frames.shape[-1] == 1 else frames
    photometric = "rgb" if mode == "RGB" else "minisblack"
    try:
        tifffile.imwrite(path, np.ascontiguousarray(pages), photometric=photometric, compression=None)
    except OSError as error:
        raise _cannot_write(path, error) from None
