"""Reading sequences (frames.read) and writing decoded frames (frames.write)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from base.errors import TezipError
from frames.read import (
    IMAGE_EXTENSIONS,
    ImageSequence,
    list_image_files,
    read_header,
    read_image,
    read_sequence,
)
from conftest import make_sequence, moving_squares, write_frames
from frames.write import LOSSLESS_EXTENSIONS, LOSSY_EXTENSIONS, output_names, write_frame


def raises_tezip(*fragments: str):
    """Context manager: TezipError whose one-line message contains every fragment."""

    class _Check:
        def __enter__(self):
            self._raises = pytest.raises(TezipError)
            self.info = self._raises.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._raises.__exit__(*exc)
            message = str(self.info.value)
            assert "\n" not in message, message
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in {message!r}"
            return suppressed

    return _Check()


def folder_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
    }


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A hand-made PNG, for pixel formats Pillow cannot write (48-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw_rows))
        + chunk(b"IEND", b"")
    )


# --- read_sequence: values, order, modes ------------------------------------------------


def test_read_rgb_sequence_exact(rgb_sequence):
    sequence = read_sequence(rgb_sequence.folder)
    assert isinstance(sequence, ImageSequence)
    assert sequence.mode == "RGB"
    assert sequence.frames.dtype == np.uint8
    assert sequence.frames.shape == (6, 24, 32, 3)
    np.testing.assert_array_equal(sequence.frames, rgb_sequence.frames)
    assert sequence.names == [f"frame_{index:04d}.png" for index in range(6)]
    assert (sequence.height, sequence.width, sequence.channels) == (24, 32, 3)


def test_read_gray_sequence_exact(gray_sequence):
    sequence = read_sequence(gray_sequence.folder)
    assert sequence.mode == "L"
    assert sequence.frames.shape == (6, 24, 32, 1)
    np.testing.assert_array_equal(sequence.frames, gray_sequence.frames)


def test_frames_sorted_by_file_name_and_hidden_files_ignored(tmp_path):
    frames = moving_squares(4, 8, 8, 3, seed=3)
    names = ["c.png", "a.png", "d.png", "b.png"]  # written out of order on purpose
    for frame, name in zip(frames, names):
        Image.fromarray(frame).save(tmp_path / name)
    (tmp_path / ".DS_Store").write_bytes(b"not an image")
    (tmp_path / ".hidden.png").write_bytes(b"not an image either")

    assert [path.name for path in list_image_files(tmp_path)] == sorted(names)
    sequence = read_sequence(tmp_path)
    assert sequence.names == ["a.png", "b.png", "c.png", "d.png"]
    order = [names.index(name) for name in sequence.names]
    np.testing.assert_array_equal(sequence.frames, frames[order])


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff", ".ppm", ".PNG"])
@pytest.mark.parametrize("channels", [3, 1])
def test_lossless_formats_read_exact(tmp_path, ext, channels):
    frames = make_sequence(tmp_path, n_frames=2, height=9, width=13, channels=channels, ext=ext)
    sequence = read_sequence(tmp_path)
    np.testing.assert_array_equal(sequence.frames, frames)
    assert sequence.mode == ("RGB" if channels == 3 else "L")


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp", ".jp2"])
def test_lossy_formats_read(tmp_path, ext):
    make_sequence(tmp_path, n_frames=2, height=16, width=16, channels=3, ext=ext)
    sequence = read_sequence(tmp_path)
    assert sequence.frames.shape == (2, 16, 16, 3)
    assert sequence.mode == "RGB"


def test_read_image_shapes_and_header(rgb_sequence, gray_sequence):
    rgb_path = rgb_sequence.folder / "frame_0002.png"
    pixels, mode = read_image(rgb_path)
    assert (pixels.shape, pixels.dtype, mode) == ((24, 32, 3), np.uint8, "RGB")
    np.testing.assert_array_equal(pixels, rgb_sequence.frames[2])
    pixels, mode = read_image(gray_sequence.folder / "frame_0000.png")
    assert (pixels.shape, mode) == ((24, 32, 1), "L")
    header = read_header(rgb_path)
    assert (header.height, header.width, header.mode, header.format) == (24, 32, "RGB", "PNG")


def test_inputs_not_modified(rgb_sequence):
    before = folder_digest(rgb_sequence.folder)
    read_sequence(rgb_sequence.folder)
    assert folder_digest(rgb_sequence.folder) == before


def test_image_extensions_are_readable_by_pillow():
    registered = Image.registered_extensions()
    for extension in IMAGE_EXTENSIONS:
        assert extension in registered, extension


# --- read_sequence / list_image_files: errors --------------------------------------------


def test_missing_folder(tmp_path):
    with raises_tezip(str(tmp_path / "nope"), "not found"):
        read_sequence(tmp_path / "nope")


def test_not_a_folder(rgb_sequence):
    path = rgb_sequence.folder / "frame_0000.png"
    with raises_tezip(str(path), "not a folder"):
        list_image_files(path)


def test_empty_folder(tmp_path):
    with raises_tezip(str(tmp_path), "no image files"):
        read_sequence(tmp_path)


def test_only_hidden_files_is_empty(tmp_path):
    (tmp_path / ".thumbs").write_bytes(b"x")
    with raises_tezip("no image files"):
        read_sequence(tmp_path)


def test_subfolder(rgb_sequence):
    (rgb_sequence.folder / "extra").mkdir()
    with raises_tezip("extra", "subfolder"):
        read_sequence(rgb_sequence.folder)


def test_non_image_file(rgb_sequence):
    (rgb_sequence.folder / "notes.txt").write_text("hello")
    with raises_tezip("notes.txt", "not an image"):
        list_image_files(rgb_sequence.folder)


def test_non_image_with_image_extension(rgb_sequence):
    (rgb_sequence.folder / "frame_0009.png").write_text("this is text, not a PNG")
    with raises_tezip("frame_0009.png", "not an image"):
        read_sequence(rgb_sequence.folder)


def test_image_with_unknown_extension(rgb_sequence):
    Image.fromarray(rgb_sequence.frames[0]).save(rgb_sequence.folder / "frame_0009.dat", "PNG")
    with raises_tezip("frame_0009.dat", "extension"):
        list_image_files(rgb_sequence.folder)


def test_truncated_image(rgb_sequence):
    path = rgb_sequence.folder / "frame_0003.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with raises_tezip("frame_0003.png", "corrupt or truncated"):
        read_sequence(rgb_sequence.folder)


def test_mixed_sizes_names_both(rgb_sequence):
    other = moving_squares(1, 20, 30, 3, seed=9)[0]
    Image.fromarray(other).save(rgb_sequence.folder / "frame_0004.png")
    with raises_tezip("frame_0004.png", "30x20", "32x24", "frame_0000.png"):
        read_sequence(rgb_sequence.folder)


def test_mixed_modes(rgb_sequence):
    Image.fromarray(rgb_sequence.frames[1]).convert("L").save(rgb_sequence.folder / "frame_0001.png")
    with raises_tezip("frame_0001.png", "mode L", "mode RGB"):
        read_sequence(rgb_sequence.folder)


@pytest.mark.parametrize(
    "mode, ext",
    [
        ("P", ".png"),
        ("RGBA", ".png"),
        ("LA", ".png"),
        ("1", ".png"),
        ("I", ".tif"),  # 32-bit integers (16-bit grayscale I;16 is supported: tests/test_16bit.py)
        ("CMYK", ".jpg"),
        ("CMYK", ".tif"),
        ("F", ".tif"),
        ("RGBA", ".webp"),
    ],
)
def test_unsupported_modes(rgb_sequence, mode, ext):
    image = Image.fromarray(rgb_sequence.frames[2])
    image = image.convert("I").convert(mode) if mode in ("I;16", "F") else image.convert(mode)
    if mode == "RGBA":
        # Some writers (WebP) drop an alpha channel that is opaque everywhere.
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    name = "frame_0002" + ext
    (rgb_sequence.folder / "frame_0002.png").unlink()
    image.save(rgb_sequence.folder / name)
    with Image.open(rgb_sequence.folder / name) as written:
        assert written.mode == mode
    with raises_tezip(name, f"mode {mode}", "only 8-bit RGB and grayscale L"):
        read_sequence(rgb_sequence.folder)


def test_16_bit_rgb_png_rejected(tmp_path):
    # Pillow opens 48-bit PNGs as mode RGB, silently dropping the low byte of every sample.
    rows = b"".join(b"\x00" + np.arange(5 * 3, dtype=">u2").tobytes() for _ in range(4))
    (tmp_path / "deep.png").write_bytes(png_bytes(5, 4, 16, 2, rows))
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode == "RGB"
    with raises_tezip("deep.png", "16-bit"):
        read_sequence(tmp_path)


def test_pnm_maxval_not_255_rejected(tmp_path):
    (tmp_path / "ten_bit.ppm").write_bytes(b"P6\n2 1\n1023\n" + bytes(12))
    with raises_tezip("ten_bit.ppm", "maxval 1023"):
        read_sequence(tmp_path)
    # 16-bit grayscale+alpha opens as Pillow's RGBA: named as what it is
    la16 = tmp_path / "la" / "f.png"
    la16.parent.mkdir()
    la16.write_bytes(png_bytes(2, 2, 16, 4, (b"\0" + bytes(8)) * 2))
    with raises_tezip("f.png", "image mode 16-bit grayscale with alpha (LA) is not supported"):
        read_sequence(la16.parent)
    # a 12-bit PGM opens as Pillow's mode I: the maxval is still what is named (it said "image mode I")
    (tmp_path / "ten_bit.ppm").unlink()
    (tmp_path / "pgm").mkdir()
    (tmp_path / "pgm" / "twelve_bit.pgm").write_bytes(b"P5\n2 1\n4095\n" + bytes(4))
    with raises_tezip("twelve_bit.pgm", "PNM maxval 4095 is not supported"):
        read_sequence(tmp_path / "pgm")


def test_multi_frame_image_rejected(tmp_path):
    frames = [Image.fromarray(frame) for frame in moving_squares(3, 8, 8, 3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    with raises_tezip("stack.tif", "3 frames"):
        read_sequence(tmp_path)


def test_gif_rejected_with_format_named(tmp_path):
    Image.fromarray(moving_squares(1, 8, 8, 3)[0]).save(tmp_path / "frame.gif")
    with raises_tezip("frame.gif", "GIF images are not supported"):
        list_image_files(tmp_path)


# --- output_names ------------------------------------------------------------------------


def test_output_names_keeps_lossless_names():
    names = ["a.png", "b.bmp", "c.tif", "d.tiff", "e.ppm", "f.pgm"]
    assert output_names(names) == (names, [])


def test_output_names_substitutes_lossy_formats():
    names = ["frame_0001.jpg", "frame_0002.JPEG", "frame_0003.webp", "frame_0004.jp2"]
    out_names, notes = output_names(names)
    assert out_names == ["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0004.png"]
    assert len(notes) == 4
    assert notes[0] == (
        "frame_0001.jpg is written as frame_0001.png: a lossy format would spoil the decoded pixels"
    )


def test_output_names_collision_with_existing_png():
    out_names, notes = output_names(["a.jpg", "a.png", "b.jpg"])
    assert out_names == ["a.jpg.png", "a.png", "b.png"]
    assert notes == [
        "a.jpg is written as a.jpg.png: a lossy format would spoil the decoded pixels",
        "b.jpg is written as b.png: a lossy format would spoil the decoded pixels",
    ]


def test_output_names_collision_between_lossy_names():
    out_names, _ = output_names(["a.jpg", "a.webp", "A.PNG"])
    assert out_names == ["a.jpg.png", "a.webp.png", "A.PNG"]
    out_names, _ = output_names(["x.jpg", "x.webp"])
    assert out_names == ["x.jpg.png", "x.webp.png"]


def test_output_names_case_insensitive_collision():
    out_names, _ = output_names(["Frame.jpg", "frame.PNG"])
    assert out_names == ["Frame.jpg.png", "frame.PNG"]


def test_output_names_always_unique():
    names = ["a.jpg", "a.png", "a.jpg.png", "a.webp"]
    out_names, _ = output_names(names)
    assert len({name.casefold() for name in out_names}) == len(names)
    assert out_names[1:3] == ["a.png", "a.jpg.png"]


def test_output_names_many_substitutions_one_summary():
    names = [f"frame_{index:04d}.jpg" for index in range(100)]
    out_names, notes = output_names(names)
    assert out_names == [f"frame_{index:04d}.png" for index in range(100)]
    assert len(notes) == 1
    assert "100 frames" in notes[0] and "frame_0000.jpg" in notes[0]


def test_lossy_and_lossless_extensions_cover_readable_ones():
    assert set(IMAGE_EXTENSIONS) <= LOSSY_EXTENSIONS | LOSSLESS_EXTENSIONS
    assert not LOSSY_EXTENSIONS & LOSSLESS_EXTENSIONS


# --- write_frame ------------------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(LOSSLESS_EXTENSIONS))
@pytest.mark.parametrize("channels", [3, 1])
def test_write_frame_round_trip(tmp_path, ext, channels):
    frame = moving_squares(1, 11, 17, channels, seed=5, noise=40)[0]
    mode = "RGB" if channels == 3 else "L"
    path = tmp_path / f"out{ext}"
    write_frame(path, frame, mode)
    pixels, read_mode = read_image(path)
    assert read_mode == mode
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, frame)


def test_write_frame_full_value_range(tmp_path):
    frame = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    for ext in sorted(LOSSLESS_EXTENSIONS):
        write_frame(tmp_path / f"ramp{ext}", frame, "L")
        np.testing.assert_array_equal(read_image(tmp_path / f"ramp{ext}")[0], frame)


def test_write_frame_tiff_is_uncompressed(tmp_path):
    write_frame(tmp_path / "a.tif", moving_squares(1, 8, 8, 3)[0], "RGB")
    with Image.open(tmp_path / "a.tif") as image:
        assert image.info.get("compression") == "raw"


@pytest.mark.parametrize("name", ["a.jpg", "a.webp", "a.jp2", "a.gif", "noext"])
def test_write_frame_refuses_lossy_or_unknown(tmp_path, name):
    with pytest.raises(ValueError):
        write_frame(tmp_path / name, np.zeros((4, 4, 3), np.uint8), "RGB")


def test_write_frame_format_of_temporary_name(tmp_path):
    frame = moving_squares(1, 6, 7, 1, seed=4)[0]
    temporary = tmp_path / "frame_0001.tif.partial"
    write_frame(temporary, frame, "L", format_of="frame_0001.tif")
    with Image.open(temporary) as image:
        assert image.format == "TIFF"
    final = temporary.rename(tmp_path / "frame_0001.tif")
    np.testing.assert_array_equal(read_image(final)[0], frame)
    with pytest.raises(ValueError):
        write_frame(tmp_path / "x.png", frame, "L", format_of="x.jpg")


def test_write_frame_checks_frame_against_mode(tmp_path):
    with pytest.raises(ValueError):
        write_frame(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8), "L")
    with pytest.raises(ValueError):
        write_frame(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32), "RGB")


def test_write_frame_unwritable_path(tmp_path):
    path = tmp_path / "missing_folder" / "a.png"
    with raises_tezip(str(path), "cannot write"):
        write_frame(path, np.zeros((4, 4, 3), np.uint8), "RGB")


def test_decoded_sequence_written_and_read_back(rgb_sequence, tmp_path):
    sequence = read_sequence(rgb_sequence.folder)
    out_folder = tmp_path / "decoded"
    out_folder.mkdir()
    out_names, _ = output_names(sequence.names)
    for frame, name in zip(sequence.frames, out_names):
        write_frame(out_folder / name, frame, sequence.mode)
    again = read_sequence(out_folder)
    assert again.names == sequence.names
    np.testing.assert_array_equal(again.frames, sequence.frames)


def test_write_frames_helper_names(tmp_path):
    paths = write_frames(tmp_path / "w", moving_squares(3, 4, 4, 1), ext=".bmp", prefix="img")
    assert [path.name for path in paths] == ["img0000.bmp", "img0001.bmp", "img0002.bmp"]


# --- metadata that decides how an image looks: refused with one line naming it -------------------


def _exif(orientation):
    exif = Image.Exif()
    exif[274] = orientation
    return exif


def _rgb(t):
    return moving_squares(2, 8, 12, 3, seed=11)[t]


def _gray16(t):
    return moving_squares(2, 8, 12, 1, seed=12)[t][:, :, 0].astype(np.uint16) * 200


def _save(kind, path, t, orientation=6):
    """Write frame t of one metadata case to path (its extension chosen by the case)."""
    import tifffile
    from PIL import ImageCms, PngImagePlugin

    if kind == "png-exif":
        Image.fromarray(_rgb(t)).save(path, exif=_exif(orientation))
    elif kind == "jpeg-exif":
        Image.fromarray(_rgb(t)).save(path, exif=_exif(orientation), quality=95)
    elif kind == "webp-exif":
        Image.fromarray(_rgb(t)).save(path, exif=_exif(orientation), lossless=True)
    elif kind == "tiff-rgb-orientation":
        tifffile.imwrite(path, _rgb(t), photometric="rgb", extratags=[(274, 3, 1, orientation, False)])
    elif kind == "tiff-16-orientation":
        tifffile.imwrite(path, _gray16(t), photometric="minisblack", extratags=[(274, 3, 1, orientation, False)])
    elif kind == "png-trns-rgb":
        Image.fromarray(_rgb(t)).save(path, transparency=(0, 0, 0))
    elif kind == "png-trns-gray":
        Image.fromarray(_rgb(t)[:, :, 0]).save(path, transparency=7)
    elif kind == "tiff-miniswhite-8":
        tifffile.imwrite(path, _rgb(t)[:, :, 1], photometric="miniswhite")
    elif kind == "tiff-miniswhite-16":
        tifffile.imwrite(path, _gray16(t), photometric="miniswhite")
    elif kind == "png-icc-lab":
        lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        Image.fromarray(_rgb(t)).save(path, icc_profile=lab)
    elif kind == "png-icc-srgb":
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.fromarray(_rgb(t)).save(path, icc_profile=srgb)
    elif kind in ("png-gamma-1", "png-gamma-srgb"):
        info = PngImagePlugin.PngInfo()
        info.add(b"gAMA", struct.pack(">I", 100000 if kind == "png-gamma-1" else 45455))
        Image.fromarray(_rgb(t)).save(path, pnginfo=info)
    elif kind in ("png-chrm-wide", "png-chrm-srgb"):  # cHRM: x, y of white, red, green, blue (× 100000)
        info = PngImagePlugin.PngInfo()
        green = (21000, 71000) if kind == "png-chrm-wide" else (30000, 60000)
        info.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, *green, 15000, 6000))
        Image.fromarray(_rgb(t)).save(path, pnginfo=info)
    else:
        raise ValueError(kind)


REFUSED = {
    "png-exif": (".png", "EXIF orientation 6"),
    "jpeg-exif": (".jpg", "EXIF orientation 6"),
    "webp-exif": (".webp", "EXIF orientation 6"),
    "tiff-rgb-orientation": (".tif", "EXIF orientation 6"),
    "tiff-16-orientation": (".tif", "EXIF orientation 6"),
    "png-trns-rgb": (".png", "colour-key transparency (PNG tRNS"),
    "png-trns-gray": (".png", "colour-key transparency (PNG tRNS"),
    "tiff-miniswhite-8": (".tif", "TIFF photometric MinIsWhite"),
    "tiff-miniswhite-16": (".tif", "TIFF photometric MinIsWhite"),
    "png-icc-lab": (".png", "ICC colour profile"),
    "png-gamma-1": (".png", "PNG gamma 1"),
    "png-chrm-wide": (".png", "PNG cHRM chunk (chromaticities 0.3127, 0.329, 0.64, 0.33, 0.21, 0.71, 0.15, 0.06"),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_metadata_that_changes_how_a_frame_looks_is_refused(tmp_path, kind):
    """Dropped, the restored frame would display differently while its pixels check exact: refused
    before any work, naming the file and the metadata."""
    ext, what = REFUSED[kind]
    for t in range(2):
        _save(kind, tmp_path / f"f{t}{ext}", t)
    with raises_tezip(f"f0{ext}: ", what, "is not carried through the archive"):
        read_sequence(tmp_path)


@pytest.mark.parametrize("kind, ext", [("png-exif", ".png"), ("tiff-rgb-orientation", ".tif"),
                                       ("png-icc-srgb", ".png"), ("png-gamma-srgb", ".png"),
                                       ("png-chrm-srgb", ".png")])
def test_metadata_that_changes_nothing_is_accepted(tmp_path, kind, ext):
    """Orientation 1 (as stored), an sRGB profile, the sRGB gamma and chromaticities display as no
    metadata does."""
    for t in range(2):
        _save(kind, tmp_path / f"f{t}{ext}", t, orientation=1)
    sequence = read_sequence(tmp_path)
    np.testing.assert_array_equal(sequence.frames[1], _rgb(1))


@pytest.mark.parametrize("bits", [2, 4])
def test_grayscale_below_8_bits_is_refused(tmp_path, bits):
    """Pillow hands out 2- and 4-bit samples scaled to 8 bits: restored, the file would be an 8-bit
    image of other values (it was, "bit-exact", QA). Refused in one line, like 1-bit images."""
    for t in range(2):
        rows = b"".join(b"\0" + bytes([(t * 37 + r) % 256]) * 2 for r in range(4))  # 4 rows of 8 or 4 pixels
        (tmp_path / f"f{t}.png").write_bytes(png_bytes(16 // bits, 4, bits, 0, rows))
    with raises_tezip("f0.png: ", f"{bits}-bit grayscale samples are not supported"):
        read_sequence(tmp_path)


_REC2020 = [(318, 5, 2, (3127, 10000, 3290, 10000), True),
            (319, 5, 6, (708, 1000, 292, 1000, 170, 1000, 797, 1000, 131, 1000, 46, 1000), True)]
_SRGB_TAGS = [(318, 5, 2, (3127, 10000, 3290, 10000), True), (319, 5, 6, (64, 100, 33, 100, 30, 100, 60, 100, 15, 100, 6, 100), True)]


def test_tiff_chromaticities_other_than_srgb_refused(tmp_path):
    """WhitePoint / PrimaryChromaticities tags (the TIFF counterpart of PNG cHRM) were dropped
    silently (QA): refused for RGB files and stack pages; sRGB's are accepted."""
    import tifffile

    rgb = np.zeros((8, 12, 3), np.uint8)
    (tmp_path / "files").mkdir()
    for t in range(2):
        tifffile.imwrite(tmp_path / "files" / f"f{t}.tif", rgb, photometric="rgb", extratags=_REC2020)
    with raises_tezip("f0.tif: ", "TIFF PrimaryChromaticities (0.708, 0.292", "is not carried through the archive"):
        read_sequence(tmp_path / "files")
    for name, tags in (("rec2020.tif", _REC2020), ("srgb.tif", _SRGB_TAGS)):
        with tifffile.TiffWriter(tmp_path / name) as tif:
            for t in range(2):
                tif.write(rgb, photometric="rgb", extratags=tags)
    with raises_tezip("rec2020.tif: page 1: TIFF PrimaryChromaticities"):
        read_sequence(tmp_path / "rec2020.tif")
    assert read_sequence(tmp_path / "srgb.tif").frames.shape == (2, 8, 12, 3)


def test_grayscale_shows_only_the_white_point(tmp_path):
    """A grayscale PNG's cHRM primaries do not change how it looks (accepted); its white point would."""
    from PIL import PngImagePlugin

    for name, white, green in (("d65", (31270, 32900), (21000, 71000)), ("d50", (34570, 35850), (30000, 60000))):
        (tmp_path / name).mkdir()
        for t in range(2):
            info = PngImagePlugin.PngInfo()
            info.add(b"cHRM", struct.pack(">8I", *white, 64000, 33000, *green, 15000, 6000))
            Image.fromarray(np.full((8, 12), 40 * t, np.uint8)).save(tmp_path / name / f"f{t}.png", pnginfo=info)
    assert read_sequence(tmp_path / "d65").frames.shape[0] == 2
    with raises_tezip("f0.png: ", "PNG cHRM chunk (chromaticities 0.3457, 0.3585"):
        read_sequence(tmp_path / "d50")


def test_12_bit_tiff_files_refused(tmp_path):
    """Pillow hands out 12-bit samples as 16-bit values of the same size: restored as a 16-bit file
    they would display near black (QA). Refused, as 12-bit stack pages are."""
    import tifffile

    for t in range(2):
        tifffile.imwrite(tmp_path / f"f{t}.tif", np.full((8, 12), 4000 + t, np.uint16), bitspersample=12,
                         photometric="minisblack")
    with raises_tezip("f0.tif: 12-bit grayscale samples are not supported"):
        read_sequence(tmp_path)


def test_stack_of_4_bit_pages_refused(tmp_path):
    """tifffile hands out 4-bit samples as uint8 0-15: restored as an 8-bit stack they would display
    near black (it was, "bit-exact", QA)."""
    import tifffile

    tifffile.imwrite(tmp_path / "s.tif", (np.arange(2 * 8 * 8).reshape(2, 8, 8) % 16).astype(np.uint8),
                     bitspersample=4, photometric="minisblack")
    with raises_tezip("s.tif: page 1: 4-bit samples are not supported"):
        read_sequence(tmp_path / "s.tif")


def test_stack_page_with_orientation_refused(tmp_path):
    import tifffile

    with tifffile.TiffWriter(tmp_path / "s.tif") as tif:
        for t in range(2):
            tif.write(_gray16(t), photometric="minisblack", extratags=[(274, 3, 1, 8, False)])
    with raises_tezip("s.tif: page 1: TIFF orientation 8", "not carried through the archive"):
        read_sequence(tmp_path / "s.tif")


# --- TIFF stacks: damage is an error, compressed pages are read -----------------------------------


def _stack(path, pages=5, compression=None):
    import tifffile

    frames = np.stack([_gray16(t % 2) + t for t in range(pages)])
    tifffile.imwrite(path, frames, photometric="minisblack", compression=compression)
    return frames


@pytest.mark.parametrize("where", ["ifd-chain", "page-data", "strip-past-end"])
def test_stack_cut_off_in_the_middle_is_refused(tmp_path, where):
    """A stack cut off midway is not read as fewer (or zero-filled) frames: tifffile's complaint
    (a page chain cut off, logged) or a strip that ends past the end of the file is an error."""
    import tifffile

    full = tmp_path / "full.tif"
    _stack(full)
    data = full.read_bytes()
    with tifffile.TiffFile(full) as tif:
        cut = {"ifd-chain": tif.pages[-1].offset + 8, "page-data": tif.pages[-1].dataoffsets[0] + 10}.get(where)
    if cut is not None:
        (tmp_path / "cut.tif").write_bytes(data[:cut])
    else:  # every page's tags intact, page 3's strip said to run 100 kB (past the file's end)
        (tmp_path / "cut.tif").write_bytes(data)
        with tifffile.TiffFile(tmp_path / "cut.tif", mode="r+") as tif:
            tif.pages[2].tags["StripByteCounts"].overwrite((100000,))
    with raises_tezip("cut.tif: "):
        read_sequence(tmp_path / "cut.tif")


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_stack_reads_exact(tmp_path, compression):
    frames = _stack(tmp_path / "s.tif", pages=3, compression=compression)
    sequence = read_sequence(tmp_path / "s.tif")
    np.testing.assert_array_equal(sequence.frames[:, :, :, 0], frames)


# --- frame order -------------------------------------------------------------------------------------


def test_names_differing_only_by_a_number_are_ordered_by_it(tmp_path):
    frames = moving_squares(11, 8, 8, 3, seed=13)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"f-{t + 1}.png")
    sequence = read_sequence(tmp_path)
    assert sequence.names == [f"f-{t + 1}.png" for t in range(11)]
    np.testing.assert_array_equal(sequence.frames, frames)
    assert sequence.order.startswith("by number")
    assert [p.name for p in list_image_files(tmp_path)] == sequence.names


@pytest.mark.parametrize("names, expected, how", [
    (["run3_f10.tif", "run3_f2.tif", "run3_f1.tif"], ["run3_f1.tif", "run3_f2.tif", "run3_f10.tif"], "by number"),
    (["a10.png", "b2.png", "a9.png"], ["a10.png", "a9.png", "b2.png"], "by file name"),  # two patterns
    (["f_0010.png", "f_0002.png"], ["f_0002.png", "f_0010.png"], "by file name"),  # padded: the same
    (["x.png", "y.png"], ["x.png", "y.png"], "by file name"),
])
def test_frame_order(names, expected, how):
    from frames.read import frame_order

    ordered, said = frame_order(names)
    assert ordered == expected and said.startswith(how)
