"""Reading image sequences: a folder of same-sized 8-bit RGB or grayscale frames.

A sequence is the image files of one folder, ordered by file name (plain string order, so
frame numbers need zero padding: frame_10.png sorts before frame_2.png). Every problem a user
can fix (missing folder, stray file, corrupt or unsupported image) raises TezipError naming the
file and what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from compress.errors import TezipError

# File name extensions we accept (compared lower-cased). Each maps to a Pillow format that this
# machine's Pillow reads; the content is checked with Pillow too, so a renamed text file is
# still caught.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".bmp",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".jp2",
    ".j2k",
    ".ppm",
    ".pgm",
    ".pnm",
    ".tif",
    ".tiff",
    ".webp",
)

# Pillow format names (Image.format) of the files above. GIF is left out on purpose: its frames
# are palette images, which we do not support, and it is often animated.
IMAGE_FORMATS: frozenset[str] = frozenset(
    {"PNG", "BMP", "JPEG", "JPEG2000", "PPM", "TIFF", "WEBP"}
)

# Pillow mode -> channels of the (H, W, C) arrays we hand out.
SUPPORTED_MODES: dict[str, int] = {"RGB": 3, "L": 1}


@dataclass
class ImageSequence:
    """The frames of one folder.

    frames: uint8 array (N, H, W, C); C is 3 for mode "RGB" and 1 for mode "L".
    names: the file name of each frame, in frame order.
    mode: the Pillow mode shared by all frames, "RGB" or "L".
    """

    frames: np.ndarray
    names: list[str]
    mode: str

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def channels(self) -> int:
        return int(self.frames.shape[3])


@dataclass(frozen=True)
class ImageHeader:
    """What Pillow knows about an image from its header alone, without decoding pixels."""

    height: int
    width: int
    mode: str
    format: str

    @property
    def channels(self) -> int:
        return SUPPORTED_MODES[self.mode]


# Exceptions Pillow raises for files it cannot identify or decode (UnidentifiedImageError is an
# OSError; some plugins raise SyntaxError, ValueError or EOFError on malformed headers).
_PILLOW_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open(path: Path) -> Image.Image:
    """Open an image lazily (header only); TezipError if Pillow cannot identify it."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise TezipError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise TezipError(f"{path}: is a folder, not an image file") from None
    except PermissionError:
        raise TezipError(f"{path}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise TezipError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except _PILLOW_READ_ERRORS as error:
        raise TezipError(f"{path}: unreadable image: {_one_line(error)}") from None


def _rawmodes(image: Image.Image) -> Iterator[tuple[str, tuple]]:
    """(decoder name, decoder args) of each tile; the args' first string is the raw mode."""
    for tile in image.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        yield tile.codec_name, args


def _check_header(image: Image.Image, path: Path) -> ImageHeader:
    """Reject anything we cannot hand out as exact 8-bit RGB or L pixels."""
    if image.format not in IMAGE_FORMATS:
        supported = ", ".join(sorted(IMAGE_FORMATS))
        raise TezipError(
            f"{path}: {image.format} images are not supported (supported formats: {supported})"
        )
    if image.mode not in SUPPORTED_MODES:
        raise TezipError(
            f"{path}: image mode {image.mode} is not supported; only 8-bit RGB and "
            f"grayscale L images are supported"
        )
    # Pillow silently keeps only the high byte of 16-bit-per-channel RGB PNG/TIFF and rescales
    # PNM files whose maxval is not 255; either would make a "lossless" round trip lose data.
    for codec_name, args in _rawmodes(image):
        rawmode = args[0] if args and isinstance(args[0], str) else ""
        if image.format in ("PNG", "TIFF") and ";16" in rawmode:
            raise TezipError(
                f"{path}: 16-bit-per-channel {image.mode} images are not supported; only "
                f"8-bit RGB and grayscale L images are supported"
            )
        if codec_name.startswith("ppm") and len(args) > 1 and args[1] != 255:
            raise TezipError(
                f"{path}: PNM maxval {args[1]} is not supported; only 8-bit images "
                f"(maxval 255) are supported"
            )
    n_frames = getattr(image, "n_frames", 1)
    if n_frames != 1:
        raise TezipError(
            f"{path}: holds {n_frames} frames; only single-frame images are supported "
            f"(store each frame as its own file)"
        )
    width, height = image.size
    return ImageHeader(height=height, width=width, mode=image.mode, format=image.format)


def read_header(path: str | Path) -> ImageHeader:
    """Size, mode and format of one image, reading only its header.

    Raises TezipError if the file is not an image Pillow reads, or not 8-bit RGB / L.
    """
    path = Path(path)
    with _open(path) as image:
        return _check_header(image, path)


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Decode one image into a uint8 array (H, W, C) and its mode ("RGB": C=3, "L": C=1).

    Raises TezipError if the file is not an image, is corrupt or truncated, or is not 8-bit
    RGB or grayscale L.
    """
    path = Path(path)
    with _open(path) as image:
        header = _check_header(image, path)
        try:
            image.load()
        except _PILLOW_READ_ERRORS as error:
            raise TezipError(f"{path}: corrupt or truncated image: {_one_line(error)}") from None
        pixels = np.asarray(image, dtype=np.uint8)
    # Some decoders settle the mode only while loading; what we hand out must match it.
    if image.mode != header.mode or pixels.shape[:2] != (header.height, header.width):
        raise TezipError(
            f"{path}: decoded as {image.mode} {pixels.shape[1]}x{pixels.shape[0]} although "
            f"its header says {header.mode} {header.width}x{header.height}"
        )
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels, header.mode


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted by file name; hidden files (".name") are skipped.

    Raises TezipError if the folder is missing or not a folder, holds a subfolder or a file
    that is not a supported image (checked with Pillow, not just by extension), or holds no
    images at all.
    """
    folder = Path(folder)
    if not folder.exists():
        raise TezipError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise TezipError(f"{folder}: not a folder")
    try:
        entries = sorted(
            (entry for entry in folder.iterdir() if not entry.name.startswith(".")),
            key=lambda entry: entry.name,
        )
    except PermissionError:
        raise TezipError(f"{folder}: permission denied") from None
    for entry in entries:
        if entry.is_dir():
            raise TezipError(
                f"{entry}: subfolders are not allowed in an image sequence folder"
            )
        # Opening reads only the header, so checking every file stays cheap.
        with _open(entry) as image:
            if image.format in IMAGE_FORMATS and entry.suffix.lower() not in IMAGE_EXTENSIONS:
                raise TezipError(
                    f"{entry}: {image.format} image with unsupported file name extension "
                    f"'{entry.suffix}' (use one of {' '.join(IMAGE_EXTENSIONS)})"
                )
            _check_header(image, entry)
    if not entries:
        raise TezipError(f"{folder}: no image files in folder")
    return entries


def _check_same_as_first(header: ImageHeader, first: ImageHeader, path: Path, first_path: Path):
    if header.mode != first.mode:
        raise TezipError(
            f"{path}: mode {header.mode} differs from mode {first.mode} of {first_path.name}; "
            f"all frames of a sequence must have the same mode"
        )
    if (header.height, header.width) != (first.height, first.width):
        raise TezipError(
            f"{path}: size {header.width}x{header.height} differs from size "
            f"{first.width}x{first.height} of {first_path.name}; all frames of a sequence "
            f"must have the same size"
        )


def sequence_header(paths: list[Path]) -> ImageHeader:
    """The header shared by all the images of paths, reading headers only.

    Raises TezipError naming the first file whose size or mode differs from the first file's.
    """
    first = read_header(paths[0])
    for path in paths[1:]:
        _check_same_as_first(read_header(path), first, path, paths[0])
    return first


def read_sequence(folder: str | Path) -> ImageSequence:
    """Read every image of a folder (see list_image_files) into one (N, H, W, C) uint8 array.

    All frames must share size and mode. Raises TezipError naming the first offending file.
    The frame array is allocated once and filled file by file, so memory stays at one copy of
    the sequence even for thousands of frames.
    """
    paths = list_image_files(folder)
    # Headers first: a mismatch in frame 5000 is reported before any pixels are decoded.
    first = sequence_header(paths)

    frames = np.empty((len(paths), first.height, first.width, first.channels), dtype=np.uint8)
    for index, path in enumerate(paths):
        pixels, mode = read_image(path)
        _check_same_as_first(
            ImageHeader(pixels.shape[0], pixels.shape[1], mode, first.format),
            first,
            path,
            paths[0],
        )
        frames[index] = pixels
    return ImageSequence(frames=frames, names=[path.name for path in paths], mode=first.mode)
