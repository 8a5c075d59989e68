"""Reading image sequences: a folder of same-sized frames, or one multi-page TIFF file.

Frames are 8-bit RGB, 8-bit grayscale ("L") or 16-bit grayscale ("I;16", as detectors write them:
16-bit PNG, TIFF or PGM). A sequence is the image files of one folder, ordered by file name
(frame_order: numerically when the names differ only by their numbers, so f-2.png comes before
f-10.png; otherwise plain string order), or the pages of one TIFF file given in place of the
folder (a "stack", read with tifffile). Only regular files are read (a FIFO or a device among the
frames is refused, never opened for reading). What decides how an image looks beyond its pixels
(EXIF orientation, transparency, MinIsWhite, a colour profile other than sRGB) is not carried
through the archive, so such images are refused rather than restored looking different. Every
problem a user can fix (missing folder, stray file, corrupt or unsupported image) raises
TezipError naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from base.errors import TezipError
from base.pixels import GRAY16, HDF5_EXTENSIONS, IMAGE_EXTENSIONS, MODE_DTYPES, SUPPORTED_MODES, TIFF_EXTENSIONS

# Pillow format names (Image.format) of the files above. GIF is left out on purpose: its frames
# are palette images, which we do not support, and it is often animated.
IMAGE_FORMATS: frozenset[str] = frozenset(
    {"PNG", "BMP", "JPEG", "JPEG2000", "PPM", "TIFF", "WEBP"}
)

_SUPPORTED_TEXT = "only 8-bit RGB and grayscale L images and 16-bit grayscale (I;16) images are supported"

# Pillow's names for unsigned 16-bit grayscale pixels (modes, and raw modes of the decoder), by
# byte order. Older Pillow opens 16-bit PNG and PGM as 32-bit mode "I" decoded from one of these.
_PILLOW_GRAY16 = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})



@dataclass
class ImageSequence:
    """The frames of one folder or TIFF stack.

    frames: array (N, H, W, C) of MODE_DTYPES[mode]; C is 3 for mode "RGB", 1 for "L" and "I;16".
    names: the file name of each frame, in frame order (for a stack, one made-up name per page).
    mode: the mode shared by all frames, "RGB", "L" or "I;16".
    stack: the file name of the multi-page TIFF the frames are the pages of, or None.
    order: how the frames were ordered, in words (for -v; see frame_order).
    description: what frames.sink needs to write the same thing back (FrameSource.description).
    """

    frames: np.ndarray
    names: list[str]
    mode: str
    stack: str | None = None
    order: str = "by file name"
    description: dict | None = None  # frames.source's description(): what a sink writes it back with

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


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open an image lazily (header only), from a regular file only (base.files.open_regular: a
    FIFO or a device is refused, never opened for reading); TezipError if it is not one or Pillow
    cannot identify it."""
    from base.files import open_input

    with open_input(path, "an image file") as fp:
        try:
            image = Image.open(fp)
        except Image.UnidentifiedImageError:
            raise TezipError(f"{path}: not an image file (Pillow cannot identify it)") from None
        except _PILLOW_READ_ERRORS as error:
            raise TezipError(f"{path}: unreadable image: {_one_line(error)}") from None
        with image:
            yield image


def _rawmodes(image: Image.Image) -> Iterator[tuple[str, tuple]]:
    """(decoder name, decoder args) of each tile; the args' first string is the raw mode."""
    for tile in image.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        yield tile.codec_name, args


def _rawmode(args: tuple) -> str:
    return args[0] if args and isinstance(args[0], str) else ""


def _tezip_mode(image: Image.Image) -> str | None:
    """TEZip's mode for a Pillow image ("RGB", "L" or GRAY16), or None if unsupported."""
    if image.mode in ("RGB", "L"):
        return image.mode
    if image.mode in _PILLOW_GRAY16:
        return GRAY16
    if image.mode == "I":
        rawmodes = [_rawmode(args) for _, args in _rawmodes(image)]
        if rawmodes and all(rawmode in _PILLOW_GRAY16 for rawmode in rawmodes):
            return GRAY16
    return None


# --- what decides how an image looks beyond its pixels ------------------------------------------
# The archive stores pixels; a frame whose file also says "rotate me", "this colour is
# transparent", "0 is white" or "these are not sRGB colours" would come back looking different
# while its pixels are exact. Such frames are refused, naming the file and the metadata.

_ORIENTATIONS = {
    2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "mirrored and rotated 90 degrees", 6: "rotated 90 degrees clockwise",
    7: "mirrored and rotated 90 degrees", 8: "rotated 90 degrees counter-clockwise",
}
_SRGB_GAMMA = 1 / 2.2  # what PNG's gAMA says for sRGB (0.45455), the display's default
# sRGB's white point and primaries as PNG's cHRM writes them (x, y of white, red, green, blue;
# IEC 61966-2-1): a cHRM chunk of these, or one that an sRGB or ICC chunk overrides, changes nothing.
_SRGB_CHROMATICITY = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)


def _exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (274) from the image's header (TIFF tags, EXIF block, XMP), None
    when absent or unreadable. (Pillow's getexif would decode a PNG's pixels to look for a late
    eXIf chunk: read_image checks again after decoding.)"""
    value = None
    if hasattr(image, "tag_v2"):  # TIFF: the tag is in the IFD itself
        value = image.tag_v2.get(274)
    elif image.info.get("exif"):
        try:
            exif = Image.Exif()
            exif.load(image.info["exif"])
            value = exif.get(274)
        except Exception:  # noqa: BLE001 - a damaged EXIF block: no orientation a viewer could read
            value = None
    if value is None:
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        if isinstance(xmp, bytes):
            xmp = xmp.decode("utf-8", "replace")
        match = re.search(r'tiff:Orientation(?:="|>)([0-9])', xmp) if isinstance(xmp, str) else None
        value = int(match.group(1)) if match else None
    if isinstance(value, tuple) and value:
        value = value[0]
    return value if isinstance(value, int) else None


def icc_problem(profile: bytes | None) -> str | None:
    """Why an embedded ICC colour profile changes how the frame looks (None when there is none or
    it is sRGB, what a viewer assumes without one, so dropping it changes nothing)."""
    if not profile:
        return None
    try:
        import io

        from PIL import ImageCms

        description = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.profile_description or ""
    except Exception:  # noqa: BLE001 - no littlecms, or a damaged profile: it cannot be shown to be sRGB
        description = ""
    if "srgb" in description.lower():
        return None
    shown = f" '{_one_line(description)[:60]}'" if description else ""
    return (f"embedded ICC colour profile{shown} (not sRGB) is not carried through the archive: the restored "
            f"frame would show other colours")


def _tiff_colour_problem(tags, gray=False) -> str | None:
    """Why a TIFF's WhitePoint (318) / PrimaryChromaticities (319) tags change how it looks (None
    when absent or sRGB's; a grayscale frame shows only the white point). tags: a mapping of tag
    numbers to values (Pillow's tag_v2, or a dict from tifffile's page tags)."""
    if tags is None:
        return None
    checked = ((318, "WhitePoint", _SRGB_CHROMATICITY[:2]), (319, "PrimaryChromaticities", _SRGB_CHROMATICITY[2:]))
    for tag, name, srgb in checked[:1] if gray else checked:
        value = tags.get(tag)
        if value is None:
            continue
        try:
            numbers = [float(v[0]) / float(v[1]) if isinstance(v, tuple) else float(v) for v in value]
        except (TypeError, ValueError, ZeroDivisionError):
            numbers = []
        if len(numbers) != len(srgb) or any(abs(a - b) > 1e-3 for a, b in zip(numbers, srgb)):
            shown = ", ".join(f"{v:g}" for v in numbers) or "unreadable"
            return (f"TIFF {name} ({shown}: not sRGB's) is not carried through the archive: the restored frame "
                    f"would show other colours")
    return None


def _appearance_problem(image: Image.Image) -> str | None:
    """What in this image's metadata decides how it looks and would be lost (module docstring)."""
    orientation = _exif_orientation(image)
    if orientation in _ORIENTATIONS:
        return (f"EXIF orientation {orientation} ({_ORIENTATIONS[orientation]} for display) is not carried through "
                f"the archive: the restored frame would display differently; apply the rotation to the pixels "
                f"or remove the tag first")
    if "transparency" in image.info:
        key = image.info["transparency"]
        shown = f" {key}" if isinstance(key, (int, tuple)) else ""
        return (f"colour-key transparency (PNG tRNS{shown}) is not carried through the archive: the restored "
                f"frame would be opaque")
    if hasattr(image, "tag_v2") and image.tag_v2.get(262) == 0:
        return ("TIFF photometric MinIsWhite (0 is white) is not carried through the archive: the restored frame "
                "would be written MinIsBlack; store it MinIsBlack first")
    problem = icc_problem(image.info.get("icc_profile"))
    if problem:
        return problem
    gamma = image.info.get("gamma")
    if isinstance(gamma, (int, float)) and "srgb" not in image.info and abs(gamma - _SRGB_GAMMA) > 5e-4:
        return (f"PNG gamma {gamma:g} (gAMA; sRGB is {_SRGB_GAMMA:.5f}) is not carried through the archive: the "
                f"restored frame would display lighter or darker")
    tiff_problem = _tiff_colour_problem(getattr(image, "tag_v2", None), gray=image.mode != "RGB")
    if tiff_problem:
        return tiff_problem
    chromaticity = image.info.get("chromaticity")
    if (isinstance(chromaticity, tuple) and len(chromaticity) == 8 and "srgb" not in image.info
            and not image.info.get("icc_profile")
            and any(abs(float(a) - b) > 1e-3  # a grayscale frame shows only the white point
                    for a, b in list(zip(chromaticity, _SRGB_CHROMATICITY))[:2 if image.mode != "RGB" else 8])):
        shown = ", ".join(f"{float(v):g}" for v in chromaticity)
        return (f"PNG cHRM chunk (chromaticities {shown}: not sRGB's) is not carried through the archive: the "
                f"restored frame would show other colours")
    return None


def _check_header(image: Image.Image, path: Path) -> ImageHeader:
    """Reject anything we cannot hand out as exact RGB, L or I;16 pixels, or whose metadata
    decides how it looks in a way the archive does not carry."""
    if image.format not in IMAGE_FORMATS:
        supported = ", ".join(sorted(IMAGE_FORMATS))
        raise TezipError(
            f"{path}: {image.format} images are not supported (supported formats: {supported})"
        )
    for codec_name, args in _rawmodes(image):  # before the mode: a 16-bit PGM of maxval 4095 opens as mode I
        if codec_name.startswith("ppm") and len(args) > 1 and args[1] != 255:
            raise TezipError(
                f"{path}: PNM maxval {args[1]} is not supported; only maxval 255 (8-bit) "
                f"and, for binary grayscale PGM, 65535 (16-bit) are supported"
            )
    mode = _tezip_mode(image)
    if mode is None:
        # Pillow opens 16-bit grayscale+alpha as RGBA: name what the file holds
        shown = "16-bit grayscale with alpha (LA)" if any(_rawmode(a).startswith("LA;16") for _, a in _rawmodes(image)) \
            else image.mode
        raise TezipError(f"{path}: image mode {shown} is not supported; {_SUPPORTED_TEXT}")
    # Pillow silently keeps only the high byte of 16-bit-per-channel RGB PNG/TIFF (and rescales PNM
    # files whose maxval is not 255, refused above); either would make a "lossless" round trip lose data.
    for codec_name, args in _rawmodes(image):
        # 2- and 4-bit grayscale: Pillow hands out the samples scaled to 8 bits (×85, ×17), which
        # would be restored as an 8-bit image of other values.
        if mode == "L" and image.format in ("PNG", "TIFF") and _rawmode(args).startswith(("L;2", "L;4")):
            bits = _rawmode(args)[2]
            raise TezipError(f"{path}: {bits}-bit grayscale samples are not supported (they would be restored as "
                             f"8-bit values); store 8- or 16-bit frames")
        # 12-bit TIFF samples come out as 16-bit values of the same size: restored as a 16-bit file
        # they would display near black
        if mode == GRAY16 and image.format == "TIFF" and _rawmode(args).startswith("I;12"):
            raise TezipError(f"{path}: 12-bit grayscale samples are not supported (they would be restored as 16-bit "
                             f"values); store 8- or 16-bit frames")
        if mode != GRAY16 and image.format in ("PNG", "TIFF") and ";16" in _rawmode(args):
            raise TezipError(
                f"{path}: 16-bit-per-channel {image.mode} images are not supported; {_SUPPORTED_TEXT}"
            )
    n_frames = getattr(image, "n_frames", 1)
    if n_frames != 1:
        raise TezipError(
            f"{path}: holds {n_frames} frames; only single-frame images are supported "
            f"(store each frame as its own file, or give the TIFF file itself in place of the "
            f"folder)"
        )
    problem = _appearance_problem(image)
    if problem:
        raise TezipError(f"{path}: {problem}")
    width, height = image.size
    return ImageHeader(height=height, width=width, mode=mode, format=image.format)


def read_header(path: str | Path) -> ImageHeader:
    """Size, mode and format of one image, reading only its header.

    Raises TezipError if the file is not an image Pillow reads, or not RGB / L / I;16.
    """
    path = Path(path)
    with _open(path) as image:
        return _check_header(image, path)


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Decode one image into an array (H, W, C) and its mode: "RGB" uint8 C=3, "L" uint8 C=1,
    "I;16" uint16 C=1 (native byte order, whatever the file's).

    Raises TezipError if the file is not an image, is corrupt or truncated, or is not one of
    those modes.
    """
    path = Path(path)
    with _open(path) as image:
        header = _check_header(image, path)
        header_mode = image.mode
        try:
            image.load()
        except _PILLOW_READ_ERRORS as error:
            raise TezipError(f"{path}: corrupt or truncated image: {_one_line(error)}") from None
        problem = _appearance_problem(image)  # chunks after the pixels (a PNG's late eXIf) are read now
        if problem:
            raise TezipError(f"{path}: {problem}")
        # Values, not bytes: big-endian I;16B and 32-bit "I" holding 16-bit values convert exactly.
        pixels = np.asarray(image).astype(MODE_DTYPES[header.mode])
    # Some decoders settle the mode only while loading; what we hand out must match it.
    if image.mode != header_mode or pixels.shape[:2] != (header.height, header.width):
        raise TezipError(
            f"{path}: decoded as {image.mode} {pixels.shape[1]}x{pixels.shape[0]} although "
            f"its header says {header_mode} {header.width}x{header.height}"
        )
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels, header.mode


_NUMBER = re.compile(r"([0-9]+)")


def frame_order(names: list[str]) -> tuple[list[str], str]:
    """The names in frame order, and that order in words (-v prints it).

    Names that share one pattern and differ only in their numbers (f-1.png, f-2.png, f-10.png;
    run3_7.tif, run3_12.tif) are ordered by those numbers, so frames need no zero padding;
    otherwise (or where the two agree) by plain file name."""
    plain = sorted(names)
    split = [_NUMBER.split(name) for name in names]
    if len(names) > 1 and len(split[0]) > 1 and all(parts[0::2] == split[0][0::2] for parts in split):
        numeric = sorted(names, key=lambda name: ([int(x) for x in _NUMBER.split(name)[1::2]], name))
        if numeric != plain:
            shown = ", ".join(printable_name(n) for n in numeric[:2]) + f", ..., {printable_name(numeric[-1])}"
            return numeric, f"by number (the names differ only in their numbers: {shown})"
    return plain, "by file name"


def printable_name(name: str) -> str:
    from base.errors import printable

    return printable(name)


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder in frame order (frame_order); hidden files (".name") are skipped.

    Raises TezipError if the folder is missing or not a folder, holds a subfolder or a file
    that is not a supported image (checked with Pillow, not just by extension), or holds no
    images at all.
    """
    folder = Path(folder)
    if not folder.exists():
        raise TezipError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise TezipError(f"{folder}: not a folder (nor a multi-page TIFF file: {' '.join(TIFF_EXTENSIONS)}, nor an "
                         f"HDF5 file: {' '.join(HDF5_EXTENSIONS)}, or FILE::/dataset)")
    try:
        by_name = {entry.name: entry for entry in folder.iterdir() if not entry.name.startswith(".")}
    except PermissionError:
        raise TezipError(f"{folder}: permission denied") from None
    entries = [by_name[name] for name in frame_order(list(by_name))[0]]
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


def is_tiff_stack(path: str | Path) -> bool:
    """Whether path names a TIFF file (given in place of a folder: a stack of frames)."""
    path = Path(path)
    return path.suffix.lower() in TIFF_EXTENSIONS and path.is_file()


def read_sequence(folder: str | Path) -> ImageSequence:
    """Read every image of a folder (see list_image_files) into one (N, H, W, C) array, or
    every page of a TIFF file given in its place (see read_tiff_stack), or every frame of an HDF5
    dataset (`FILE::/path`, or an HDF5 file: frames.hdf5).

    All frames must share size and mode. Raises TezipError naming the first offending file.
    Headers come first (frames.source.open_source: a mismatch in frame 5000 is reported before
    any pixels are decoded); the frame array is allocated once and filled frame by frame, so
    memory stays at one copy of the sequence even for thousands of frames.
    """
    from frames.source import open_source

    return _read_all(open_source(folder))


# --- TIFF stacks: one multi-page file is one sequence ---------------------------------------


def stack_page_names(stack: str, count: int) -> list[str]:
    """Names of a stack's pages as frames (run.tif -> run_0000.tif, ...): what filename.txt lists
    and -v reports; the decoder writes the pages back into one file named `stack`."""
    path = Path(stack)
    digits = max(4, len(str(count - 1)))
    return [f"{path.stem}_{index:0{digits}d}{path.suffix}" for index in range(count)]


def _stack_page_mode(page, index: int, path: Path) -> str:
    """TEZip's mode for one tifffile page, or TezipError saying why the page is not supported."""
    from tifffile import PHOTOMETRIC

    where = f"{path}: page {index + 1}"
    # tifffile gives RATIONAL arrays flat (numerator, denominator, ...)
    colour = {tag: tuple(zip(page.tags[tag].value[::2], page.tags[tag].value[1::2]))
              for tag in (318, 319) if tag in page.tags and isinstance(page.tags[tag].value, tuple)}
    problem = _tiff_colour_problem(colour, gray=page.photometric != PHOTOMETRIC.RGB)
    if problem:
        raise TezipError(f"{where}: {problem}")
    if page.photometric == PHOTOMETRIC.MINISWHITE:
        raise TezipError(f"{where}: TIFF photometric MinIsWhite (0 is white) is not carried through the archive: the "
                         f"restored stack would be written MinIsBlack; store it MinIsBlack first")
    dtype = np.dtype(page.dtype).newbyteorder("=") if page.dtype is not None else None
    bits = getattr(page, "bitspersample", None)
    if dtype is not None and isinstance(bits, int) and bits != 8 * dtype.itemsize and dtype.kind == "u":
        # 2-, 4-, 12-bit samples come out of tifffile in uint8/uint16: restored, the stack would say
        # 8 or 16 bits per sample, and the same values would display other shades
        raise TezipError(f"{where}: {bits}-bit samples are not supported (they would be restored as {8 * dtype.itemsize}-bit "
                         f"values); store 8- or 16-bit pages")
    if page.photometric == PHOTOMETRIC.MINISBLACK and page.axes == "YX":
        mode = {np.dtype(np.uint8): "L", np.dtype(np.uint16): GRAY16}.get(dtype)
        if mode is None:
            raise TezipError(
                f"{where}: {dtype} grayscale pages are not supported; only uint8 and uint16 "
                f"grayscale pages are"
            )
        return mode
    if page.photometric == PHOTOMETRIC.RGB and page.axes in ("YXS", "SYX") and page.samplesperpixel == 3:
        if dtype != np.uint8:
            raise TezipError(
                f"{where}: {dtype} RGB pages are not supported; only 8-bit (uint8) RGB pages are"
            )
        return "RGB"
    photometric = getattr(page.photometric, "name", page.photometric)
    raise TezipError(
        f"{where}: {photometric} pages with axes {page.axes} are not supported; a stack holds "
        f"8-bit RGB, 8-bit grayscale or 16-bit grayscale pages"
    )


class _TiffComplaints(logging.Handler):
    """Collects what tifffile logs while a stack is read: it reports a damaged file (a page chain
    cut off in the middle, an offset past the end) by logging an error and carrying on with fewer
    pages. (Its warnings, about odd but harmless tags, are only kept off the terminal.)"""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())


@contextlib.contextmanager
def _tiff_complaints_are_errors(path: Path):
    import warnings

    handler = _TiffComplaints()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True):  # kept off the terminal: one line stays one line
            warnings.simplefilter("always")
            yield handler
    finally:
        log.removeHandler(handler)
    if handler.errors:
        raise TezipError(f"{path}: damaged TIFF file: {_one_line(handler.errors[0])[:200]}")


def _stack_page_appearance(page, index: int, path: Path) -> None:
    """Refuse a page whose tags decide how it looks in a way the archive does not carry."""
    where = f"{path}: page {index + 1}"
    tag = page.tags.get(274)
    orientation = tag.value if tag is not None else None
    if orientation in _ORIENTATIONS:
        raise TezipError(f"{where}: TIFF orientation {orientation} ({_ORIENTATIONS[orientation]} for display) is "
                         f"not carried through the archive; apply it to the pixels or remove the tag first")
    tag = page.tags.get(34675)  # InterColorProfile
    problem = icc_problem(bytes(tag.value) if tag is not None else None)
    if problem:
        raise TezipError(f"{where}: {problem}")


def _check_stack_extents(page, index: int, path: Path, size: int) -> None:
    """Every strip or tile of the page lies inside the file (a stack cut off in the middle does
    not decode to fewer or zero-filled frames)."""
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        if count and offset + count > size:
            raise TezipError(f"{path}: page {index + 1} is cut off: its data ends {offset + count - size} bytes past "
                             f"the end of the file ({size} bytes): the file is truncated")


def read_tiff_stack(path: str | Path) -> ImageSequence:
    """Every page of one TIFF file as one frame: 8-bit RGB, 8-bit grayscale or 16-bit grayscale
    pages, all of the same size and kind (checked before any pixels are decoded).

    Frame names come from stack_page_names; ImageSequence.stack is the file name. Raises
    TezipError naming the file and page when the file is not a TIFF, is damaged or cut off
    (whatever tifffile logs about it, and any page data past the end of the file, is an error:
    it would otherwise carry on with fewer pages), or a page does not fit. Compressed pages (LZW,
    deflate, zstd, ...) are decoded by imagecodecs. (frames.source.TiffStackSource reads them.)
    """
    from frames.source import TiffStackSource

    return _read_all(TiffStackSource(path))


def _read_all(source) -> ImageSequence:
    """Every frame of a frames.source source in one (N, H, W, C) array, allocated once."""
    with source:
        frames = source.read_range(0, source.n_frames)
        description = source.description()
    return ImageSequence(frames=frames, names=source.names, mode=source.mode, stack=description.get("stack"),
                         order=source.order, description=description)
