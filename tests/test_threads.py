"""Frames worked on at once (base.threads, --threads) and the vectorised search kernels: none of
it may change an archive's bytes or a decoded pixel.

- block choices equal a plain numpy evaluation of the documented rule (costs, candidate order,
  ties), borders and 16-bit values included (the kernels sum block rows in 32-bit lanes);
- the global search's overlap sums equal numpy's, on the int32 path with short partial sums and
  on the int64 path;
- lossless archives are byte-identical for 1, 2 and 3 frame threads (no model, a model, scene cuts
  coded intra, dynamic windows), and decode exactly with any thread count;
- a file whose encoding fails in a worker is named, and nothing is published.
"""

import contextlib
import io
import os

import numpy as np
import pytest

import tezip
from base import publish
from base.errors import TezipError
from base.publish import OutputFolder
from conftest import compress, moving_squares, write_frames
from decompress.pipeline import decompress_folder
from frames.read import read_sequence
from frames.sink import FolderSink, open_sink
from sequence import blockselect
from sequence.blockselect import BlockSelector


# --- block choices against numpy ---------------------------------------------------------------


def _cost(frame, prediction, colour):
    e = frame.astype(np.int64) - prediction.astype(np.int64)
    if colour and frame.shape[0] >= 3:
        return int(np.abs(e[2]).sum() + np.abs(e[1] - e[2]).sum() + np.abs(e[0] - e[1]).sum() + np.abs(e[3:]).sum())
    return int(np.abs(e).sum())


def _moved(previous, y0, y1, x0, x1, dy, dx):
    _, h, w = previous.shape
    rows = np.clip(np.arange(y0, y1) + dy, 0, h - 1)
    cols = np.clip(np.arange(x0, x1) + dx, 0, w - 1)
    return previous[:, rows][:, :, cols]


def reference_choices(frame, model, previous, block, radius, use_model, mean, colour, vector=(0, 0)):
    """The block choice rule of sequence/blockselect.py's docstring, one block at a time in numpy."""
    _, h, w = frame.shape
    side = 2 * radius + 1
    size = side * side
    centre = radius * side + radius
    kinds = 2 if mean else 1
    windows = [(0, 0)] + ([tuple(vector)] if tuple(vector) != (0, 0) else [])
    out = np.zeros((-(-h // block), -(-w // block)), np.int32)
    for by in range(out.shape[0]):
        for bx in range(out.shape[1]):
            y0, x0 = by * block, bx * block
            y1, x1 = min(h, y0 + block), min(w, x0 + block)
            part = frame[:, y0:y1, x0:x1]
            best, code, best_d = 2**62, 0, (0, 0)
            if use_model:
                best = _cost(part, model[:, y0:y1, x0:x1], colour)
            for window, (oy, ox) in enumerate(windows):
                for k in range(size):
                    index = (centre + k) % size
                    dy, dx = oy + index // side - radius, ox + index % side - radius
                    c = _cost(part, _moved(previous, y0, y1, x0, x1, dy, dx), colour)
                    if c < best:
                        best, code, best_d = c, 1 + window * kinds * size + index, (dy, dx)
            if use_model and mean and code > 0:
                m = (model[:, y0:y1, x0:x1].astype(np.int64) + _moved(previous, y0, y1, x0, x1, *best_d) + 1) >> 1
                if _cost(part, m, colour) < best:
                    code += size
            out[by, bx] = code
    return out


@pytest.mark.parametrize("channels, top, block, colour, mean", [
    (3, 255, 8, True, False), (3, 255, 7, True, True), (3, 65535, 6, False, True), (1, 65535, 5, False, False),
    (4, 65535, 8, True, True), (4, 255, 5, False, False)])
def test_block_choices_equal_numpy(channels, top, block, colour, mean):
    rng = np.random.default_rng(channels * 1000 + block)
    scene = rng.integers(0, top + 1, (channels, 40, 50)).astype(np.int32)
    frame = scene[:, 4:33, 3:46]
    previous = np.clip(scene[:, 6:35, 2:45] + rng.integers(-2, 3, frame.shape), 0, top).astype(np.int32)
    model = np.clip(frame + rng.integers(-top // 40 - 2, top // 40 + 3, frame.shape), 0, top).astype(np.int32)
    sel = BlockSelector(block, radius=3, model=True, mean=mean)
    sel.colour_cost = colour
    for use_model in (True, False):
        got = sel.choose(frame, model, previous, use_model=use_model)
        want = reference_choices(frame, model, previous, block, 3, use_model, mean and use_model, colour)
        np.testing.assert_array_equal(got, want)
    # with a global vector beyond the window: blocks also search around it, past the borders too
    sel = BlockSelector(block, radius=2, model=True, mean=mean, global_range=16)
    sel.colour_cost = colour
    got = sel.choose(frame, model, previous, vector=(-7, 11))
    want = reference_choices(frame, model, previous, block, 2, True, mean, colour, vector=(-7, 11))
    np.testing.assert_array_equal(got.codes, want)


@pytest.mark.parametrize("dtype, top, run", [(np.int32, 700, 3), (np.int32, 2**20, 1000), (np.int64, 2**40, 1)])
def test_global_overlap_sums_equal_numpy(dtype, top, run):
    rng = np.random.default_rng(5)
    current = rng.integers(0, top, (23, 37)).astype(dtype)
    previous = rng.integers(0, top, (23, 37)).astype(dtype)
    for dy, dx in ((0, 0), (3, -5), (-7, 9), (22, 0), (0, -36)):
        h, w = current.shape
        y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        want = np.abs(current[y0:y1, x0:x1].astype(np.int64) - previous[y0 + dy:y1 + dy, x0 + dx:x1 + dx]).sum()
        total, n = blockselect._overlap_sad(current, previous, dy, dx, run)
        assert (total, n) == (want, (y1 - y0) * (x1 - x0))


def test_pyramid_levels_are_int32_with_a_safe_run_length():
    frame = np.full((3, 130, 140), 65535, np.int32)
    for level, run in blockselect._luminance_pyramid(frame):
        assert level.dtype == np.int32
        assert run * int(level.max()) <= 2**31 - 1 and run >= 1


# --- the same archive whatever the thread count ----------------------------------------------------


def _scene_cuts(tmp_path):
    """Moving squares with noise and two scene cuts (frames 7 and 13 from unrelated content)."""
    frames = moving_squares(18, 40, 56, 3, seed=11, noise=4)
    other = moving_squares(18, 40, 56, 3, seed=99, noise=30)
    frames[7], frames[13] = other[3], other[15]
    write_frames(tmp_path / "in", frames)
    return frames


@pytest.mark.parametrize("model, options", [
    ("none", dict(window=8)), ("tiny", dict(window=8)), ("none", dict(threshold=0.01)),
    ("tiny", dict(window=5, lanes=2))])
def test_lossless_archives_are_identical_for_any_thread_count(tiny_model, tmp_path, monkeypatch, model, options):
    from sequence import coding

    frames = _scene_cuts(tmp_path)
    model_dir = tiny_model(3) if model == "tiny" else "none"
    pools = []
    real_pool = coding.frame_pool
    monkeypatch.setattr(coding, "frame_pool", lambda threads, prefix: pools.append((threads, prefix)) or
                        real_pool(threads, prefix))
    archives = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr("base.threads._threads", threads)
        with contextlib.redirect_stdout(io.StringIO()):
            compress(model_dir, tmp_path / "in", tmp_path / f"c{threads}", warmup=1, **options)
        archives[threads] = {n: (tmp_path / f"c{threads}" / n).read_bytes()
                             for n in sorted(os.listdir(tmp_path / f"c{threads}")) if not n.startswith(".")}
    assert archives[1] == archives[2] == archives[3]
    assert pools == [(2, "frames"), (3, "frames")]  # the frames really were coded side by side
    for threads in (1, 3):
        monkeypatch.setattr("base.threads._threads", threads)
        with contextlib.redirect_stdout(io.StringIO()):
            decompress_folder(model_dir, tmp_path / "c1", tmp_path / f"out{threads}")
        np.testing.assert_array_equal(read_sequence(tmp_path / f"out{threads}").frames, frames)
    assert pools[2:] == [(3, "parse")]


def test_lossy_runs_are_unchanged_by_threads(tmp_path, monkeypatch):
    """Under a lossy bound a frame's decoded pixels depend on its chunk (intra or not), so frames
    are coded one by one whatever the thread count; chunks are still parsed ahead on decode."""
    frames = _scene_cuts(tmp_path)
    archives = {}
    for threads in (1, 3):
        monkeypatch.setattr("base.threads._threads", threads)
        with contextlib.redirect_stdout(io.StringIO()):
            compress("none", tmp_path / "in", tmp_path / f"c{threads}", warmup=1, window=8, bounds=(3.0,))
            decompress_folder("none", tmp_path / f"c{threads}", tmp_path / f"out{threads}")
        archives[threads] = (tmp_path / f"c{threads}" / "entropy.dat").read_bytes()
        decoded = read_sequence(tmp_path / f"out{threads}").frames
        assert np.abs(decoded.astype(int) - frames).max() <= 3
    assert archives[1] == archives[3]


def test_threads_option_exit_code(tmp_path):
    _scene_cuts(tmp_path)
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()):
        tezip.main(["-c", "none", str(tmp_path / "in"), str(tmp_path / "c"), "-w", "8", "--threads", "0"])
    assert stop.value.code == 2 and not (tmp_path / "c").exists()
    with contextlib.redirect_stdout(io.StringIO()):
        assert tezip.main(["-c", "none", str(tmp_path / "in"), str(tmp_path / "c"), "-w", "8", "--threads", "3"]) in (0, None)
        assert tezip.main(["-u", "none", str(tmp_path / "c"), str(tmp_path / "o"), "--threads", "1"]) in (0, None)
    from base.threads import frame_threads

    assert frame_threads() == min(4, os.cpu_count() or 1)  # for that run only: the default again after it


# --- an image file that fails in a worker --------------------------------------------------------------


def test_folder_sink_names_a_file_whose_encoding_failed(tmp_path, monkeypatch):
    monkeypatch.setattr("base.threads._threads", 3)
    frames = moving_squares(8, 12, 16, 3, seed=2)
    real = FolderSink.encode

    def encode(frame, mode, file_name):
        if file_name == "f3.png":
            raise TezipError("f3.png: cannot write image: disk says no")
        return real(frame, mode, file_name)

    monkeypatch.setattr(FolderSink, "encode", staticmethod(encode))
    with pytest.raises(TezipError, match="f3.png: cannot write image"):
        with OutputFolder(tmp_path / "out") as out:
            with open_sink(out, {"kind": "folder"}, "RGB", [f"f{i}.png" for i in range(8)]) as sink:
                for i in range(8):
                    sink.write(i, frames[i])
    left = [n for n in os.listdir(tmp_path / "out") if n != publish.LOCK_NAME] if (tmp_path / "out").exists() else []
    assert left == []  # nothing published, no temporary left


def test_frames_in_flight_stay_within_the_memory_budget(monkeypatch):
    """--threads 1024 on 1-megapixel frames: only as many frames at once as FRAME_MEMORY_BUDGET
    holds; small frames get what was asked; never below 1."""
    from base import threads

    monkeypatch.setattr(threads, "_threads", 1024)
    big = threads.threads_for(1024 * 1024)
    assert 1 <= big <= threads.FRAME_MEMORY_BUDGET // (1024 * 1024 * threads.BYTES_PER_VALUE) and big < 1024
    assert threads.threads_for(16 * 16 * 3) == 1024
    assert threads.threads_for(10**10) == 1 and threads.threads_for(100, threads=3) == 3


def test_options_that_do_not_apply_are_named_once(tmp_path, capsys):
    """QA: `-u … -b 4 -w 3` ran without a word. One note line names what is ignored; the run goes
    on (one set of options may serve a script's -c and -u alike); options at their defaults and
    options that apply are not named."""
    _scene_cuts(tmp_path)
    assert tezip.main(["-c", "none", str(tmp_path / "in"), str(tmp_path / "c"), "-w", "8", "-b", "0"]) in (0, None)
    assert "note:" not in capsys.readouterr().err
    code = tezip.main(["-u", "none", str(tmp_path / "c"), str(tmp_path / "o"), "-b", "4", "-w", "3", "--epochs", "2"])
    err = capsys.readouterr().err
    assert code in (0, None) and (tmp_path / "o").is_dir()
    assert err.strip().splitlines() == ["tezip.py: note: -w/--window, -b/--bound, --epochs do not apply to -u: ignored"]
    assert tezip.main(["-u", "none", str(tmp_path / "c"), str(tmp_path / "o2"), "-b", "0"]) in (0, None)
    assert "note:" not in capsys.readouterr().err  # -b 0 is the default


def test_motion_options_with_block_0_are_named_once(tmp_path, capsys):
    """--block 0 has the model predict every pixel: --motion and --global-motion given with it are
    named in one note line (QA: they were ignored silently); the run goes on."""
    _scene_cuts(tmp_path)
    code = tezip.main(["-c", "default", str(tmp_path / "in"), str(tmp_path / "c"), "-w", "8", "--block", "0",
                       "--global-motion", "8"])
    err = capsys.readouterr().err
    assert code in (0, None) and (tmp_path / "c").is_dir()
    assert err.strip().splitlines() == [
        "tezip.py: note: --global-motion does not apply with --block 0 (the model predicts every pixel): ignored"]
