"""16-bit grayscale frames and TIFF stacks (issue 7): reading, writing, the value scaling the model
sees, the entropy stage's table bound, training data, and round trips through the real codec and a
real tiny PredNet on detector-like frames (conftest.detector_frames)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

import tezip
import archive
from archive import container
from archive import names as archive_names
from base.errors import TezipError
from frames.read import GRAY16, read_image, read_sequence, read_tiff_stack
from conftest import compress, detector_frames, moving_squares, write_frames
from frames.write import write_frame, write_tiff_stack
from decompress.pipeline import decompress_folder
from prednet.scale import ValueScale
from sequence.framecoder import FrameCoder, KeyframeCoder, to_interleaved, to_planar
from sequence.plan import CodecPlan
from test_roundtrip import allowed_error  # each pixel's bound, from the definitions


def one_line_error(match):
    return pytest.raises(TezipError, match=match)


def entropy_header(comp):
    return container.unpack_dat((comp / archive.ENTROPY_FILE).read_bytes(), container.ENTROPY_MAGIC, "entropy.dat")[0]


@pytest.fixture(scope="module")
def detector():
    """8 frames 32x48 spanning 0-65535 (zeros in the dim rows, saturated spots and hot pixels)."""
    frames = detector_frames(8, 32, 48, seed=3)
    assert frames.dtype == np.uint16 and frames.min() == 0 and frames.max() == 65535
    return frames


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif", ".pgm"])
def test_16_bit_folder_reads_exact(tmp_path, detector, ext):
    write_frames(tmp_path, detector[:3], ext=ext)
    sequence = read_sequence(tmp_path)
    assert sequence.mode == GRAY16 and sequence.stack is None
    assert sequence.frames.dtype == np.uint16
    np.testing.assert_array_equal(sequence.frames, detector[:3])


def test_big_endian_16_bit_tiff_reads_as_values(tmp_path, detector):
    tifffile.imwrite(tmp_path / "be.tif", detector[0, :, :, 0], byteorder=">", photometric="minisblack")
    pixels, mode = read_image(tmp_path / "be.tif")
    assert mode == GRAY16 and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, detector[0])


def test_16_bit_rgb_refused_with_one_line(tmp_path, detector):
    rgb = np.repeat(detector[:2, :, :, :1], 3, axis=3)
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "rgb16.tif", rgb[0], photometric="rgb")
    with one_line_error(r"rgb16\.tif: 16-bit-per-channel RGB images are not supported") as error:
        read_sequence(tmp_path / "f")
    assert "\n" not in str(error.value)
    tifffile.imwrite(tmp_path / "stack.tif", rgb, photometric="rgb")
    with one_line_error(r"stack\.tif: page 1: uint16 RGB pages are not supported; only 8-bit") as error:
        read_sequence(tmp_path / "stack.tif")
    assert "\n" not in str(error.value)


def test_16_bit_frame_among_8_bit_frames_refused(tmp_path):
    write_frames(tmp_path, moving_squares(3, 8, 8, 1))
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "frame_0001.png")
    with one_line_error(r"frame_0001\.png: mode I;16 differs from mode L of frame_0000\.png"):
        read_sequence(tmp_path)


def test_stack_pages_are_frames(tmp_path, detector):
    tifffile.imwrite(tmp_path / "run.tif", detector[..., 0], photometric="minisblack")
    sequence = read_sequence(tmp_path / "run.tif")
    assert (sequence.mode, sequence.stack, sequence.frames.dtype) == (GRAY16, "run.tif", np.uint16)
    assert sequence.names == [f"run_{i:04d}.tif" for i in range(8)]
    np.testing.assert_array_equal(sequence.frames, detector)


@pytest.mark.parametrize("channels", [1, 3])
def test_8_bit_stack_write_and_read_back(tmp_path, channels):
    frames = moving_squares(4, 12, 20, channels, seed=2, noise=30)
    mode = "RGB" if channels == 3 else "L"
    write_tiff_stack(tmp_path / "s.tiff", frames, mode)
    with tifffile.TiffFile(tmp_path / "s.tiff") as tif:
        assert len(tif.pages) == 4 and tif.pages[0].compression == 1  # uncompressed
    sequence = read_tiff_stack(tmp_path / "s.tiff")
    assert sequence.mode == mode
    np.testing.assert_array_equal(sequence.frames, frames)


def test_stack_with_pages_of_different_sizes_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((8, 8), np.uint16), photometric="minisblack")
        tif.write(np.zeros((8, 9), np.uint16), photometric="minisblack")
    with one_line_error(r"mixed\.tif: page 2 .* differs from page 1"):
        read_sequence(tmp_path / "mixed.tif")


def test_multi_page_tiff_inside_a_folder_still_refused(tmp_path, detector):
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "run.tif", detector[:3, :, :, 0], photometric="minisblack")
    with one_line_error(r"run\.tif: holds 3 frames.*give the TIFF file itself"):
        read_sequence(tmp_path / "f")


@pytest.mark.parametrize("content,message", [(b"not a TIFF", "unreadable TIFF file"),
                                             (b"II*\x00" + bytes(20), "TIFF file holds no pages")])
def test_damaged_stack_refused_with_one_line(tmp_path, content, message):
    (tmp_path / "bad.tif").write_bytes(content)
    with one_line_error(rf"bad\.tif: {message}") as error:
        read_sequence(tmp_path / "bad.tif")
    assert "\n" not in str(error.value)


# --- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff", ".pgm"])
def test_write_16_bit_frame_keeps_its_bit_depth(tmp_path, detector, ext):
    write_frame(tmp_path / f"a{ext}", detector[1], GRAY16)
    pixels, mode = read_image(tmp_path / f"a{ext}")
    assert mode == GRAY16
    np.testing.assert_array_equal(pixels, detector[1])
    with pytest.raises(ValueError):
        write_frame(tmp_path / f"b{ext}", detector[1].astype(np.uint8), GRAY16)


# --- the model's [0, 1] ------------------------------------------------------------------------


def test_value_scale_8_bit_is_the_old_division_by_255():
    scale = ValueScale.for_frames(np.zeros((1, 2, 2, 1), np.uint8))
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(scale.to_model(pixels), pixels * np.float32(1 / 255))
    predictions = np.linspace(-0.1, 1.1, 1001, dtype=np.float32)
    np.testing.assert_array_equal(scale.to_pixels(predictions), np.rint(np.clip(predictions, 0, 1) * np.float32(255)))


def test_value_scale_16_bit_uses_the_observed_range_and_inverts_exactly():
    frames = np.array([1000, 1200, 60000], np.uint16)
    scale = ValueScale.for_frames(frames)
    assert (scale.low, scale.high, scale.span) == (1000, 60000, 59000)
    assert scale.to_model(frames).tolist() == [0.0, pytest.approx(200 / 59000), 1.0]
    every_value = np.arange(1000, 60001)
    np.testing.assert_array_equal(scale.to_pixels(scale.to_model(every_value)), every_value)
    assert ValueScale.for_frames(np.full(4, 7, np.uint16)).span == 1  # constant: no division by 0


class CountingSource:
    """A frames.source stand-in that records which frames were read."""

    def __init__(self, frames):
        self.frames, self.reads = frames, []
        self.n_frames, self.dtype = len(frames), frames.dtype

    def read(self, i):
        self.reads.append(i)
        return self.frames[i]


def test_value_scale_for_a_source_samples_at_most_32_frames_first_and_last_included():
    frames = (np.arange(100, dtype=np.uint16) * 100 + 500)[:, None, None, None] * np.ones((1, 2, 3, 1), np.uint16)
    source = CountingSource(frames)
    scale = ValueScale.for_source(source)
    assert len(source.reads) == 32 and len(set(source.reads)) == 32
    assert source.reads[0] == 0 and source.reads[-1] == 99 and source.reads == sorted(source.reads)
    assert (scale.low, scale.high) == (500, 99 * 100 + 500)  # first and last hold the extremes here
    short = CountingSource(frames[:5])
    assert (ValueScale.for_source(short).low, ValueScale.for_source(short).high) == (500, 900)
    assert sorted(set(short.reads)) == [0, 1, 2, 3, 4]
    assert ValueScale.for_source(CountingSource(frames.astype(np.uint8))).high == 255  # 8-bit: the type's range


def test_values_beyond_the_sampled_range_still_round_trip_exactly(tiny_model, tmp_path):
    """40 frames: the scale samples 32 of them, so a frame it skips may hold values outside the
    recorded range; they reach the model a little outside [0, 1] and still decode bit-exact."""
    frames = (detector_frames(40, 32, 48, seed=8, peak=3000.0, hot_pixels=0) + 1000).astype(np.uint16)
    picks = sorted({round(i * 39 / 31) for i in range(32)})
    skipped = next(i for i in range(40) if i not in picks)
    frames[skipped, :4, :4, 0] = 65535
    frames[skipped, -4:, -4:, 0] = 0
    write_frames(tmp_path / "img", frames)
    _, comp, out = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, window=9)
    sampled = frames[picks]
    assert entropy_header(comp)["value_range"] == [int(sampled.min()), int(sampled.max())]
    assert (int(sampled.min()), int(sampled.max())) != (0, 65535)
    np.testing.assert_array_equal(read_sequence(out).frames, frames)


# --- entropy stage and keyframes on the wide range ---------------------------------------------


def recorded(config):
    """A coder's config as the archive stores it (through JSON) and the decoder reads it back."""
    return json.loads(json.dumps(config))


def test_noisy_16_bit_residuals_go_to_the_context_coder_and_two_tail_archives_still_decode(detector):
    """Lossless 16-bit frames against the previous frame as their prediction leave shot noise of
    ~250. They go to the context coder alone; coders recorded with zigzag + zstd beside it (archives
    written before zstd was dropped for never winning) keep the smaller per frame and decode back
    from the recorded config alone, and the context coder alone is within 1 % of them."""
    from stages.chain import Alternatives, Chain
    from stages.zigzag import ZigZagCoder
    from stages.zstd import ZstdCodec

    plan = CodecPlan.make(window=1, zstd_level=19, block=0)  # block 0: the given prediction everywhere
    frames, predictions = to_planar(detector[1:]), to_planar(detector[:-1])

    def code(coder):
        chunks = []
        for frame, prediction in zip(frames, predictions):
            chunk, decoded, p = coder.encode_frame(frame, prediction, prediction)
            np.testing.assert_array_equal(decoded, frame)  # lossless
            chunks.append(chunk)
        return chunks

    context = plan.frame_coder(65535, True)
    assert [[s["id"] for s in tail] for tail in context.get_config()["tails"]] == [["ctxrange"]]
    both = plan.frame_coder(65535, True)
    both.tails = Alternatives(both.tails.chains + [Chain([ZigZagCoder(), ZstdCodec(level=19, shuffle=True)])])
    config = both.get_config()
    assert [s["id"] for s in config["residual"]] == ["runmerge", "med"] and config["block_select"] is None
    assert [[s["id"] for s in tail] for tail in config["tails"]] == [["ctxrange"], ["zigzag", "zstd"]]
    context_chunks, both_chunks = code(context), code(both)
    assert sum(map(len, both_chunks)) <= sum(map(len, context_chunks)) <= 1.01 * sum(map(len, both_chunks))
    decoder = FrameCoder.from_config(recorded(config), "abs", [0.0], 65535, archive.ENTROPY_FILE)
    for chunk, frame, prediction in zip(both_chunks, frames, predictions):
        np.testing.assert_array_equal(decoder.decode_frame(chunk, prediction, prediction), frame)


@pytest.mark.parametrize("entropy", [True, False])
def test_16_bit_keyframes_decode_back(detector, entropy):
    plan = CodecPlan.make(window=1, entropy=entropy, zstd_level=3)
    key_coder = plan.keyframe_coder(65535, wide=True)
    if entropy:  # the pixels to the smallest of wpred, MED → ctxrange and stored (zstd)
        assert key_coder.head is None
        assert [[s.codec_id for s in c.stages] for c in key_coder.tails.chains] == [["wpred"], ["med", "ctxrange"],
                                                                                    ["zstd"]]
    else:
        assert key_coder.head.codec_id == "med"
    chunks = []
    for frame in to_planar(detector[:2]):
        chunk, decoded = key_coder.encode_frame(frame)
        np.testing.assert_array_equal(decoded, frame)
        chunks.append(chunk)
    config = recorded(key_coder.get_config())
    if not entropy:
        assert [[s["id"] for s in tail] for tail in config["tails"]] == [["zigzag", "zstd"]]
        # the tag byte: candidate 0, and the dtype its byte coder received: MED errors of 16-bit
        # pixels exceed 16 bits once zigzagged
        chain = key_coder.tails.chains[0]
        assert all(chain.payload_dtypes()[c[0] % 4] == "uint32" and c[0] // 4 == 0 for c in chunks)
    decoder = KeyframeCoder.from_config(config, 65535, archive.KEYFRAME_FILE)  # what the decoder rebuilds
    back = to_interleaved(np.stack([decoder.decode_frame(c, (1, 32, 48)) for c in chunks]), np.uint16)
    np.testing.assert_array_equal(back, detector[:2])


# --- end to end with the tiny model ----------------------------------------------------------


def roundtrip(model, images, tmp_path, tag="", **options):
    comp, out = tmp_path / f"comp{tag}", tmp_path / f"out{tag}"
    summary = compress(model, images, comp, **options)
    decompress_folder(model, comp, out)
    return summary, comp, out


def test_png_folder_lossless_bit_exact(tiny_model, tmp_path, detector):
    write_frames(tmp_path / "img", detector)
    summary, comp, out = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, window=3)
    back = read_sequence(out)
    assert back.mode == GRAY16 and sorted(p.suffix for p in out.iterdir()) == [".png"] * 8
    np.testing.assert_array_equal(back.frames, detector)
    h = entropy_header(comp)
    assert (h["dtype"], h["max_value"], h["bound"]["lossless"]) == ("uint16", 65535, True)
    assert "value_range" not in h  # the sequence spans the whole type
    assert summary.max_abs_error == 0 and summary.ratio > 1.1
    assert archive_names.parse_names((comp / archive.NAMES_FILE).read_text())[0]["mode"] == GRAY16


@pytest.mark.parametrize("mode,bounds", [("abs", (100,)), ("rel", (0.002,)), ("absrel", (50, 0.001)), ("pwrel", (0.01,))])
def test_lossy_every_pixel_within_bound(tiny_model, tmp_path, detector, mode, bounds):
    write_frames(tmp_path / "img", detector)
    summary, _, out = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, window=3, mode=mode, bounds=bounds)
    back = read_sequence(out).frames
    err = np.abs(back.astype(np.int64) - detector)
    assert np.all(err <= allowed_error(detector, mode, bounds)), (mode, bounds, err.max())
    assert summary.max_abs_error == err.max() > 0  # the bound was used, in 16-bit units


def test_narrow_range_is_recorded_and_decodes_identically(tiny_model, tmp_path):
    """A dim sequence (values 1000-4000 or so) is shown to the model stretched over [0, 1]; the
    decoder must rebuild the same integers from the range stored in entropy.dat."""
    frames = (detector_frames(6, 32, 48, seed=5, peak=3000.0, hot_pixels=0) + 1000).astype(np.uint16)
    write_frames(tmp_path / "img", frames, ext=".tif")
    _, comp, out = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, tag="0", window=5)
    assert entropy_header(comp)["value_range"] == [int(frames.min()), int(frames.max())]
    np.testing.assert_array_equal(read_sequence(out).frames, frames)
    assert sorted(p.suffix for p in out.iterdir()) == [".tif"] * 6
    _, _, out = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, tag="4", window=5, mode="abs", bounds=(4,))
    assert np.abs(read_sequence(out).frames.astype(np.int64) - frames).max() <= 4


def test_tiff_stack_round_trip_from_the_command_line(tiny_model, tmp_path, detector):
    stack = tmp_path / "run_042.tif"
    tifffile.imwrite(stack, detector[..., 0], photometric="minisblack")
    model = str(tiny_model(1))
    assert tezip.main(["-f", "-c", model, str(stack), str(tmp_path / "comp"), "-w", "3"]) == 0
    assert tezip.main(["-f", "-u", model, str(tmp_path / "comp"), str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run_042.tif"]
    with tifffile.TiffFile(tmp_path / "out" / "run_042.tif") as tif:
        assert len(tif.pages) == 8 and tif.pages[0].dtype == np.uint16 and tif.pages[0].compression == 1
        np.testing.assert_array_equal(tif.asarray(), detector[..., 0])
    # within a bound too
    assert tezip.main(["-f", "-c", model, str(stack), str(tmp_path / "c16"), "-w", "3", "-m", "abs", "-b", "16"]) == 0
    assert tezip.main(["-f", "-u", model, str(tmp_path / "c16"), str(tmp_path / "o16")]) == 0
    back = read_sequence(tmp_path / "o16" / "run_042.tif").frames
    assert 0 < np.abs(back.astype(np.int64) - detector).max() <= 16


def test_edited_stack_name_refused(tiny_model, tmp_path, detector):
    tifffile.imwrite(tmp_path / "run.tif", detector[:4, :, :, 0], photometric="minisblack")
    compress(tiny_model(1), tmp_path / "run.tif", tmp_path / "comp", window=3)
    names = tmp_path / "comp" / archive.NAMES_FILE
    head, listed = archive_names.parse_names(names.read_text())
    names.write_text(archive_names.names_text(head["archive_id"], head["mode"], listed, "other.tif"))
    with one_line_error("was edited"):
        decompress_folder(tiny_model(1), tmp_path / "comp", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- training on 16-bit frames ---------------------------------------------------------------


def test_16_bit_training_data_and_model(tmp_path):
    from prednet.train import TrainOptions, frame_value_scales, load_train_data, sample_batch, train
    from train_data_create import create_train_data

    for i in range(2):
        write_frames(tmp_path / "seqs" / f"s{i}", detector_frames(8, 32, 48, seed=20 + i, peak=20000.0 * (i + 1)))
    summary = create_train_data(tmp_path / "seqs", tmp_path / "data", val_dirs=["s0"])
    assert summary["mode"] == GRAY16
    X, sources, _, _ = load_train_data(tmp_path / "data")
    assert X.dtype == np.uint16
    scales = frame_value_scales(X, sources)
    batch = sample_batch(X, np.array([0]), 8, (32, 48), np.random.default_rng(0), 1, scales)
    assert batch.min() == 0.0 and batch.max() == 1.0  # the sequence's own range, as compression scales it

    train(tmp_path / "model", tmp_path / "data",
          TrainOptions(epochs=1, steps_per_epoch=2, batch_size=2, nt=4, val_sequences=2, hidden_stack=(4, 8, 8)))
    frames = detector_frames(5, 32, 48, seed=30)
    write_frames(tmp_path / "img", frames)
    _, _, out = roundtrip(tmp_path / "model", tmp_path / "img", tmp_path, window=4)
    np.testing.assert_array_equal(read_sequence(out).frames, frames)


@pytest.mark.parametrize("source", ["tiff-stack-16", "gray-folder-8"])
def test_bundled_default_model_on_grayscale_and_16_bit(tmp_path, detector, source):
    """`-c default` (the bundled RGB model) on a 16-bit TIFF stack and on a folder of 8-bit gray
    frames, without training: the model is shown the gray frame in its three channels (recorded in
    the archive), and -u default restores the frames bit-exact, as the same stack / gray images."""
    if source == "tiff-stack-16":
        frames = detector
        target = tmp_path / "run_007.tif"
        tifffile.imwrite(target, frames[..., 0], photometric="minisblack")
        restored = tmp_path / "out" / "run_007.tif"
    else:
        frames = moving_squares(7, 24, 40, 1, seed=5, noise=2)
        target = tmp_path / "gray"
        write_frames(target, frames)
        restored = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        assert tezip.main(["-f", "-c", "default", str(target), str(tmp_path / "comp"), "-w", "4"]) == 0
        assert tezip.main(["-f", "-u", "default", str(tmp_path / "comp"), str(tmp_path / "out")]) == 0
    with archive.read_archive(tmp_path / "comp") as a:
        assert a.sequence.model["input"] == "gray-on-colour"
    back = read_sequence(restored)
    assert back.frames.dtype == frames.dtype and back.frames.shape == frames.shape
    np.testing.assert_array_equal(back.frames, frames)


def test_noise_does_not_grow_losslessly(tmp_path):
    """Uniform 16-bit noise through the command line's compressor (sequential, no model): every
    frame is stored as its pixels (predicted frames fall back to intra, which stores), so the
    archive is within 1.5 % of the raw bytes (it was 5 % over), and decodes bit-exactly."""
    import tifffile

    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from sequence.plan import RunFlags

    frames = np.random.default_rng(8).integers(0, 65536, (10, 96, 128)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "noise.tif", frames, photometric="minisblack")
    summary = compress_folder("none", tmp_path / "noise.tif", tmp_path / "c", CodecPlan.make(window=9), RunFlags())
    assert summary.compressed_bytes < 1.015 * frames.nbytes, summary.compressed_bytes / frames.nbytes
    decompress_folder("none", tmp_path / "c", tmp_path / "out", RunFlags())
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "noise.tif"), frames)
