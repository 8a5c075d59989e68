"""End-to-end: real tiny PredNet, real codec, real files. Compress → decompress → compare pixels."""

import json
from pathlib import Path
import os
import subprocess
import sys

import numpy as np
import pytest

import archive
from archive import container
from base.errors import OptionError, TezipError
from frames.read import read_sequence
from conftest import REPO_ROOT, compress, make_sequence, write_frames
from decompress.pipeline import decompress_folder


def roundtrip(model, images, tmp_path, tag="", **options):
    comp, out = tmp_path / f"comp{tag}", tmp_path / f"out{tag}"
    summary = compress(model, images, comp, **options)
    decompress_folder(model, comp, out)
    return summary, read_sequence(out).frames, comp


def header(comp):
    data = (comp / archive.ENTROPY_FILE).read_bytes()
    h, _ = container.unpack_dat(data, container.ENTROPY_MAGIC, archive.ENTROPY_FILE)
    return h


def key_header(comp):
    data = (comp / archive.KEYFRAME_FILE).read_bytes()
    h, _ = container.unpack_dat(data, container.KEYFRAME_MAGIC, archive.KEYFRAME_FILE)
    return h


def ids(configs):
    return [c["id"] for c in configs]


def tails(coder):
    """The candidate tails of a frame or keyframe coder's config, as lists of stage ids."""
    return [ids(tail) for tail in coder["tails"]]


@pytest.fixture
def rgb20(tmp_path):
    frames = make_sequence(tmp_path / "img", n_frames=20, height=30, width=45, channels=3, seed=7)
    return tmp_path / "img", frames


@pytest.mark.parametrize("entropy", [True, False])
def test_lossless_rgb_bit_exact(tiny_model, rgb20, tmp_path, entropy):
    images, frames = rgb20
    summary, back, comp = roundtrip(tiny_model(3), images, tmp_path, window=5, entropy=entropy)
    np.testing.assert_array_equal(back, frames)
    assert summary.max_abs_error == 0 and summary.ratio > 1
    assert sorted(p.name for p in comp.iterdir()) == sorted(archive.ARCHIVE_FILES)
    h = header(comp)
    for name in (archive.ENTROPY_FILE, archive.KEYFRAME_FILE):  # the format version after the magic
        assert int.from_bytes((comp / name).read_bytes()[8:10], "little") == container.FORMAT_VERSION == 3
    assert ids(h["coder"]["residual"]) == ["runmerge", "rct", "med"]  # lossless RGB: runmerge at 0, colour transform, MED
    assert tails(h["coder"]) == ([["ctxrange"]] if entropy else [["zigzag", "zstd"]])
    keys = key_header(comp)["coder"]
    if entropy:  # lossless keyframes: no head, the smallest of wpred, MED → ctxrange and stored on the RCT'd pixels
        assert "head" not in keys and tails(keys) == [["wpred"], ["med", "ctxrange"], ["zstd"]]
        assert keys["colour"]["id"] == "rct"
    else:  # -n: MED and the same tails as the residuals
        assert keys["head"]["id"] == "med" and tails(keys) == tails(h["coder"])
    assert h["model"]["arithmetic"] == archive.REFERENCE_ARITHMETIC and len(h["model"]["digest"]) == 64
    assert h["coder"]["block_select"]["id"] == "blockselect"


def test_lossless_grayscale_odd_size(tiny_model, tmp_path):
    frames = make_sequence(tmp_path / "img", n_frames=9, height=21, width=37, channels=1, seed=3)
    _, back, _ = roundtrip(tiny_model(1), tmp_path / "img", tmp_path, window=3)
    np.testing.assert_array_equal(back, frames)
    assert read_sequence(tmp_path / "out").mode == "L"


BOUNDS = [
    ("abs", (1,)), ("abs", (2,)), ("abs", (4,)),
    ("rel", (0.01,)), ("rel", (0.05,)),
    ("absrel", (3, 0.01)), ("absrel", (1, 0.2)),
    ("pwrel", (0.02,)), ("pwrel", (0.1,)),
]


def allowed_error(frames, mode, bounds):
    x = frames.astype(np.float64)
    rng = (x.max(axis=(1, 2), keepdims=True) - x.min(axis=(1, 2), keepdims=True))
    if mode == "abs":
        return np.full_like(x, bounds[0])
    if mode == "rel":
        return bounds[0] * rng * np.ones_like(x)
    if mode == "absrel":
        return np.minimum(bounds[0], bounds[1] * rng * np.ones_like(x))
    return bounds[0] * np.abs(x)


@pytest.mark.parametrize("mode,bounds", BOUNDS)
def test_lossy_every_pixel_within_bound(tiny_model, tmp_path, mode, bounds):
    frames = make_sequence(tmp_path / "img", n_frames=12, height=30, width=45, channels=3, seed=11, noise=6)
    summary, back, _ = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, window=4, mode=mode, bounds=bounds)
    err = np.abs(back.astype(np.int64) - frames)
    assert np.all(err <= allowed_error(frames, mode, bounds)), (mode, bounds, err.max())
    assert summary.max_abs_error == err.max()


def test_lossy_compresses_smaller_than_lossless(tiny_model, tmp_path):
    make_sequence(tmp_path / "img", n_frames=12, height=30, width=45, channels=3, seed=11, noise=6)
    lossless, _, _ = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, tag="0", window=4)
    lossy, _, _ = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, tag="4", window=4, mode="abs", bounds=(4,))
    assert lossy.compressed_bytes < 0.8 * lossless.compressed_bytes


def test_swp_keyframe_placement(tiny_model, rgb20, tmp_path):
    images, frames = rgb20
    _, back, comp = roundtrip(tiny_model(3), images, tmp_path, warmup=2, window=4, lanes=3)
    np.testing.assert_array_equal(back, frames)
    pred = header(comp)["prediction"]
    # warm-up frames 0, 1; then a keyframe after every 4 predicted frames
    assert pred["keyframes"] == [0, 1, 6, 11, 16]
    assert pred["lanes"][0] == 0 and len(pred["lanes"]) <= 3 and set(pred["lanes"]) <= set(pred["keyframes"])


def test_dwp_keyframe_placement(tiny_model, rgb20, tmp_path):
    images, frames = rgb20
    _, back, tight = roundtrip(tiny_model(3), images, tmp_path, tag="t", threshold=1e-9, lanes=1)
    np.testing.assert_array_equal(back, frames)
    assert header(tight)["prediction"]["keyframes"] == list(range(20))  # every prediction misses
    _, back, loose = roundtrip(tiny_model(3), images, tmp_path, tag="l", threshold=10.0, lanes=2)
    np.testing.assert_array_equal(back, frames)
    pred = header(loose)["prediction"]
    assert pred["keyframes"] == pred["lanes"] == [0, 10]  # only the forced lane starts
    _, back, mid = roundtrip(tiny_model(3), images, tmp_path, tag="m", threshold=0.004, lanes=2, mode="abs", bounds=(2,))
    assert np.abs(back.astype(int) - frames).max() <= 2
    n_keys = len(header(mid)["prediction"]["keyframes"])
    assert 2 <= n_keys <= 20


def test_dwp_with_a_model_judges_the_prediction_the_frame_is_coded_from(tmp_path):
    """-t with the bundled model places keyframes about as without one (QA: judged by the model's
    raw first step after each keyframe, every frame of 20 became a keyframe at -t 0.005)."""
    frames = make_sequence(tmp_path / "g", n_frames=20, height=40, width=48, channels=1, seed=5, noise=2)
    keys = {}
    for model in ("default", "none"):
        _, back, comp = roundtrip(model, tmp_path / "g", tmp_path, tag=model, threshold=0.005, warmup=1, mode="abs",
                                  bounds=(2,))
        assert np.abs(back.astype(int) - frames).max() <= 2
        keys[model] = len(header(comp)["prediction"]["keyframes"])
    assert keys["default"] <= keys["none"] + 2 and keys["default"] < 10, keys


def test_black_keyframe(tiny_model, tmp_path):
    frames = make_sequence(tmp_path / "gen", n_frames=10, height=24, width=32, channels=3, seed=5)
    frames[0] = 0
    frames[5] = 0
    write_frames(tmp_path / "img", frames)
    _, back, _ = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, window=4)
    np.testing.assert_array_equal(back, frames)


def test_same_input_gives_byte_identical_archive(tiny_model, rgb20, tmp_path):
    images, _ = rgb20
    for tag in ("a", "b"):
        compress(tiny_model(3), images, tmp_path / tag, threshold=0.003, mode="abs", bounds=(1,), lanes=2)
    for name in archive.ARCHIVE_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_jpeg_input_is_written_back_as_png(tiny_model, tmp_path):
    frames = make_sequence(tmp_path / "img", n_frames=6, height=24, width=32, channels=3, seed=2, ext=".jpg")
    del frames  # JPEG decoding defines the pixels; compare against what we read
    original = read_sequence(tmp_path / "img").frames
    _, back, _ = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, window=2)
    np.testing.assert_array_equal(back, original)
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".png"] * 6


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "options,message,exit_code",
    [
        (dict(window=0), "-w must be at least 1", 2),
        (dict(threshold=-0.1), "-t must be a positive", 2),
        (dict(window=2, threshold=0.1), "exactly one of -w", 2),
        (dict(window=2, mode="abs", bounds=(1, 2)), "abs", 1),
        (dict(window=2, mode="absrel", bounds=(1,)), "absrel", 1),
        (dict(window=2, mode="abs", bounds=(-1,)), "negative", 1),
        (dict(window=2, mode="abs", bounds=(float("nan"),)), "finite, got nan", 1),
        (dict(window=2, mode="rel", bounds=(float("inf"),)), "finite, got inf", 1),
        (dict(window=2, mode="psnr", bounds=(1,)), "psnr", 1),
        (dict(window=2, warmup=20), "-p 20", 1),
    ],
)
def test_bad_options_rejected(tiny_model, rgb20, tmp_path, options, message, exit_code):
    """Option errors are OptionError (exit code 2, as argparse's), bad bounds and a warm-up longer
    than the sequence TezipError (exit code 1); either before anything is written."""
    images, _ = rgb20
    with pytest.raises(TezipError, match=message) as info:
        compress(tiny_model(3), images, tmp_path / "comp", **options)
    assert isinstance(info.value, OptionError) == (exit_code == 2)
    assert info.value.exit_code == exit_code
    assert not (tmp_path / "comp").exists()


def test_one_frame_and_channel_mismatch_rejected(tiny_model, tmp_path):
    make_sequence(tmp_path / "one", n_frames=1, channels=3)
    with pytest.raises(TezipError, match="single frame"):
        compress(tiny_model(3), tmp_path / "one", tmp_path / "c1", window=2)
    make_sequence(tmp_path / "rgb", n_frames=4, channels=3)
    with pytest.raises(TezipError, match="trained on 1-channel frames .* \\(3-channel\\) images"):
        compress(tiny_model(1), tmp_path / "rgb", tmp_path / "c2", window=2)
    assert not (tmp_path / "c2").exists()


@pytest.mark.parametrize("bound", [0, 2])
def test_colour_model_predicts_grayscale_frames(tiny_model, tmp_path, bound):
    """A 3-channel model serves grayscale frames (shown the gray frame in all three channels,
    predicting the mean of its three): the archive records it, the decoder does the same."""
    frames = make_sequence(tmp_path / "img", n_frames=9, height=21, width=37, channels=1, seed=3)
    _, back, comp = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, window=3, block=0, mode="abs", bounds=(bound,))
    assert np.abs(back.astype(np.int64) - frames).max() <= bound
    if bound == 0:
        np.testing.assert_array_equal(back, frames)
    assert read_sequence(tmp_path / "out").mode == "L"
    assert header(comp)["model"]["input"] == "gray-on-colour"


@pytest.mark.parametrize("name", [archive.KEYFRAME_FILE, archive.ENTROPY_FILE, archive.NAMES_FILE])
@pytest.mark.parametrize("where", ["header", "payload", "truncate"])
def test_corruption_detected_no_images_written(tiny_model, rgb20, tmp_path, name, where):
    images, _ = rgb20
    comp = tmp_path / "comp"
    compress(tiny_model(3), images, comp, window=5, mode="abs", bounds=(1,))
    data = bytearray((comp / name).read_bytes())
    if where == "truncate":
        data = data[: len(data) - 7]
    else:
        pos = 30 if where == "header" else len(data) - 20
        data[pos] ^= 0x5A
    (comp / name).write_bytes(bytes(data))
    with pytest.raises(TezipError) as e:
        decompress_folder(tiny_model(3), comp, tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg
    assert name in msg or "checksum" in msg or "frame" in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_different_model_refused(tiny_model, rgb20, tmp_path):
    from conftest import train_tiny_model

    images, _ = rgb20
    compress(tiny_model(3), images, tmp_path / "comp", window=5)
    other = train_tiny_model(tmp_path / "other", 3, seed=1)
    with pytest.raises(TezipError, match="different model"):
        decompress_folder(other, tmp_path / "comp", tmp_path / "out")
    # One model's description with the other's weights (the same architecture): refused, not used
    # under the wrong description.
    import shutil

    from prednet.modelfile import MODEL_JSON, WEIGHTS_FILE

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(tiny_model(3) / MODEL_JSON, mixed / MODEL_JSON)
    shutil.copy(other / WEIGHTS_FILE, mixed / WEIGHTS_FILE)
    with pytest.raises(TezipError, match="the two files come from different models"):
        compress(mixed, images, tmp_path / "comp2", window=5)
    with pytest.raises(TezipError, match="the two files come from different models"):
        decompress_folder(mixed, tmp_path / "comp", tmp_path / "out2")
    assert not (tmp_path / "comp2").exists() and not (tmp_path / "out2").exists()


def test_cli_compress_decompress_and_errors(tiny_model, rgb20, tmp_path):
    images, frames = rgb20
    model = tiny_model(3)

    def run(*args):
        return subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), *map(str, args)], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))

    r = run("-c", model, images, tmp_path / "comp", "-p", 1, "-w", 5, "-m", "abs", "-b", 2, "-v")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "CPU MODE"
    assert lines[-1].startswith("compressed 20 frames") and "ratio" in lines[-1] and "PSNR" in lines[-1]
    assert any("MSE" in line for line in lines) and any("stage" in line for line in lines)
    r = run("-u", model, tmp_path / "comp", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout.splitlines()[-1]
    assert np.abs(read_sequence(tmp_path / "out").frames.astype(int) - frames).max() <= 2
    # errors: one line, non-zero
    r = run("-c", model, images, tmp_path / "comp2", "-w", 5, "-m", "abs", "-b", "nan")
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "finite" in r.stderr
    r = run("-c", model, images, tmp_path / "comp3", "-m", "abs", "-b", 1)
    assert r.returncode == 2 and "exactly one of -w" in r.stderr
    r = run("-u", model, tmp_path / "comp", tmp_path / "out")
    assert r.returncode == 1 and "not empty" in r.stderr
    json.dumps(r.stdout)  # output is plain text


@pytest.mark.parametrize("window,threshold", [(5, None), (None, 0.003)])
def test_open_loop_tezip_windows_round_trip(tiny_model, rgb20, tmp_path, window, threshold):
    """TEZip's original extrapolation (model fed its own predictions) still round-trips."""
    images, frames = rgb20
    _, back, comp = roundtrip(tiny_model(3), images, tmp_path, tag="0", loop="open", window=window, threshold=threshold, lanes=2)
    np.testing.assert_array_equal(back, frames)
    assert header(comp)["prediction"]["loop"] == "open"
    _, back, _ = roundtrip(tiny_model(3), images, tmp_path, tag="2", loop="open", window=window, threshold=threshold,
                           lanes=2, mode="abs", bounds=(2,))
    assert np.abs(back.astype(int) - frames).max() <= 2


@pytest.mark.parametrize("bound", [1, 3, 7.5])
def test_every_quantizer_holds_the_abs_bound(tiny_model, tmp_path, bound):
    """All three quantizers hold the bound. medquant is smaller than runmerge at fine bounds; on this
    synthetic noise runmerge's merged runs win at coarse ones. (On the dev frames linquant, the
    default, is the smallest at every bound, then medquant, then runmerge.)"""
    frames = make_sequence(tmp_path / "img", n_frames=10, height=32, width=48, channels=3, seed=11, noise=6)
    sizes = {}
    for quantizer in ("linquant", "medquant", "runmerge"):
        summary, decoded, comp = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, tag=quantizer, window=9,
                                           mode="abs", bounds=(bound,), quantizer=quantizer)
        assert np.abs(decoded.astype(np.int64) - frames).max() <= bound
        assert ids(header(comp)["coder"]["residual"])[0] == quantizer
        sizes[quantizer] = summary.compressed_bytes
    if bound < 5:
        assert sizes["medquant"] < sizes["runmerge"]


@pytest.mark.parametrize("window, threshold", [(4, None), (None, 0.002)], ids=["swp", "dwp"])
def test_abs_keyframes_are_quantized_within_the_bound(tiny_model, rgb20, tmp_path, window, threshold):
    """Under an abs bound keyframes go through medquant too: lossy, within the bound, smaller; the
    predictions after them start from the decoded keyframes (the checksums would catch a mismatch)."""
    images, frames = rgb20
    exact, _, comp_exact = roundtrip(tiny_model(3), images, tmp_path, tag="exact", window=window, threshold=threshold)
    lossy, back, comp = roundtrip(tiny_model(3), images, tmp_path, tag="abs3", window=window, threshold=threshold,
                                  mode="abs", bounds=(3,))
    keys = header(comp)["prediction"]["keyframes"]
    keys_coder, frames_coder = key_header(comp)["coder"], header(comp)["coder"]
    assert (keys_coder["head"]["id"], tails(keys_coder)) == ("medquant", [["ctxrange"]])
    assert (ids(frames_coder["residual"]), tails(frames_coder)) == (["linquant"], [["ctxrange"]])  # the default for abs
    assert "head" not in key_header(comp_exact)["coder"]  # lossless: wpred or MED, chosen per keyframe
    error = np.abs(back.astype(np.int64) - frames)
    assert 0 < error[keys].max() <= 3 and error.max() <= 3 and lossy.max_abs_error == error.max()
    if keys == header(comp_exact)["prediction"]["keyframes"]:
        assert lossy.stage_bytes["keyframes"] < exact.stage_bytes["keyframes"]


def test_medquant_is_refused_outside_abs(tiny_model, rgb20, tmp_path):
    with pytest.raises(OptionError, match="medquant serves the abs mode only"):
        compress(tiny_model(3), rgb20[0], tmp_path / "c", window=5, mode="rel", bounds=(0.01,), quantizer="medquant")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("mode, bounds", [
    ("abs", (2,)),
    ("rel", (0.01,)),
], ids=["abs-linquant", "rel-runmerge-delta1d"])
def test_dwp_lossy_every_frame_a_keyframe(tiny_model, tmp_path, mode, bounds):
    """A threshold no prediction meets makes every frame a keyframe: no residual frames at all."""
    frames = make_sequence(tmp_path / "img", n_frames=6, height=24, width=32, channels=3, seed=4, noise=4)
    summary, back, comp = roundtrip(tiny_model(3), tmp_path / "img", tmp_path, threshold=1e-9, lanes=1, mode=mode,
                                    bounds=bounds)
    assert header(comp)["prediction"]["keyframes"] == list(range(6))
    assert np.all(np.abs(back.astype(np.int64) - frames) <= allowed_error(frames, mode, bounds))


def test_numbered_names_without_padding_are_ordered_by_number_and_v_says_so(tiny_model, tmp_path, capsys):
    """f-1, f-2, ..., f-10 is the frame order (not f-1, f-10, f-2); -v names the order used, and
    filename.txt records it, so the frames come back under their names."""
    frames = make_sequence(tmp_path / "tmp", n_frames=11, height=16, width=24, seed=3)
    images = tmp_path / "img"
    images.mkdir()
    for t in range(11):
        (tmp_path / "tmp" / f"frame_{t:04d}.png").rename(images / f"f-{t + 1}.png")
    summary = compress(tiny_model(3), images, tmp_path / "comp", window=3, verbose=True)
    printed = capsys.readouterr().out
    assert "frame order: by number (the names differ only in their numbers: f-1.png, f-2.png, ..., f-11.png)" in printed
    assert summary.max_abs_error == 0
    decompress_folder(tiny_model(3), tmp_path / "comp", tmp_path / "out")
    np.testing.assert_array_equal(read_sequence(tmp_path / "out").frames, frames)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"f-{t + 1}.png" for t in range(11))


def test_a_folder_named_default_or_none_is_a_folder(tmp_path, monkeypatch):
    """`default` and `none` are keywords only as such: ./default and ./none name folders of a
    model of one's own (QA: ./default took the bundled model's description with the folder's
    weights and was refused)."""
    import shutil

    import tezip

    golden = Path(__file__).resolve().parent / "fixtures" / "golden"
    monkeypatch.chdir(tmp_path)
    frames = make_sequence(tmp_path / "q", n_frames=7, height=24, width=32, channels=1, seed=2)
    for name in ("default", "none"):
        shutil.copytree(golden / "model1", tmp_path / name)
        assert tezip.main(["-c", f"./{name}", "q", f"c_{name}", "-w", "3", "-b", "0"]) == 0
        assert tezip.main(["-u", f"./{name}", f"c_{name}", f"d_{name}"]) == 0
        np.testing.assert_array_equal(read_sequence(tmp_path / f"d_{name}").frames, frames)
        assert tezip.main(["-u", "default", f"c_{name}", f"x_{name}"]) == 1  # the bundled model is another
