"""Interrupting tezip.py midway (real processes, real signals): Ctrl-C (SIGINT) and `kill`
(SIGTERM) leave nothing behind; SIGKILL, which cannot be caught, may leave temporary
`*.tezip-partial` files but never a file under a final name that is incomplete; re-running
afterwards works, without --overwrite.

The cases are few: compress interrupted during prediction (SIGINT, SIGTERM, SIGKILL), decompress
interrupted while it writes frames (SIGINT, SIGKILL), and training interrupted while TensorFlow
imports (-c and -u no longer import it).
"""

import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import archive
from base import publish
from frames.read import read_image
from conftest import REPO_ROOT, compress, make_sequence
from decompress.pipeline import decompress_folder
from sequence.plan import RunFlags

# Long enough that prediction runs for seconds after start-up (one lane: one frame per model call).
N_FRAMES, HEIGHT, WIDTH = 120, 64, 96
OPTIONS = dict(warmup=1, window=5, lanes=1)  # lossless: the decoded frames are the originals
CLI_OPTIONS = ["-p", "1", "-w", "5", "--lanes", "1"]


@pytest.fixture(scope="module")
def long_sequence(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    frames = make_sequence(root / "images", n_frames=N_FRAMES, height=HEIGHT, width=WIDTH, channels=3, seed=31, noise=3)
    compress(tiny_model(3), root / "images", root / "comp", **OPTIONS)
    return root, frames


def start(*args):
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "tezip.py"), "-f", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))


def wait_for_start(proc, timeout=120):
    """Until the process has printed its mode line (start-up is over, the work begins)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.strip() in ("CPU MODE", "GPU MODE"):
                return
            if not line:
                break
    proc.kill()
    raise AssertionError(f"tezip.py did not start: {proc.stderr.read()}")


def wait_for_partial_file(proc, folder, timeout=120):
    """Until a temporary file appears in folder (the decoder is writing its frames; the run's lock,
    there from the start, does not count)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if any(e.name.endswith(publish.TMP_SUFFIX) and e.name != publish.LOCK_NAME for e in os.scandir(folder)):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    return False


def finish(proc):
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_final_frames_complete(out, frames):
    """Every frame file under its final name holds exactly its frame (temporary files aside)."""
    for name in files_in(out):
        if publish.is_partial(name):
            continue
        index = int(name[len("frame_"):-len(".png")])
        pixels, _ = read_image(out / name)
        np.testing.assert_array_equal(pixels, frames[index], err_msg=name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_compress_interrupted_leaves_nothing(tiny_model, long_sequence, tmp_path, sig):
    root, _ = long_sequence
    out = tmp_path / "comp"
    proc = start("-c", tiny_model(3), root / "images", out, *CLI_OPTIONS)
    wait_for_start(proc)
    assert wait_for_partial_file(proc, out), "compression finished before its archive spool appeared"
    time.sleep(0.2)  # into the coding of the frames (the whole run takes a second or two)
    assert proc.poll() is None, "compression finished before it could be interrupted"
    proc.send_signal(sig)
    code, _, err = finish(proc)
    assert code == 128 + sig, err
    assert err.strip().splitlines() == ["tezip.py: interrupted; no partial output was left"], err
    assert files_in(out) == []


def test_compress_killed_then_rerun(tiny_model, long_sequence, tmp_path):
    root, frames = long_sequence
    out = tmp_path / "comp"
    proc = start("-c", tiny_model(3), root / "images", out, *CLI_OPTIONS)
    wait_for_start(proc)
    assert wait_for_partial_file(proc, out), "compression finished before its archive spool appeared"
    time.sleep(0.2)  # into the coding of the frames (the whole run takes a second or two)
    assert proc.poll() is None, "compression finished before it could be killed"
    proc.kill()
    finish(proc)
    left = files_in(out)
    assert all(publish.is_partial(n) for n in left), f"a final-named file after SIGKILL: {left}"
    # Re-running works without --overwrite (temporary files of an interrupted run do not count).
    compress(tiny_model(3), root / "images", out, **OPTIONS)
    assert files_in(out) == sorted(archive.ARCHIVE_FILES)
    for name in archive.ARCHIVE_FILES:
        assert (out / name).read_bytes() == (root / "comp" / name).read_bytes()


def test_decompress_interrupted_while_writing(tiny_model, long_sequence, tmp_path):
    root, frames = long_sequence
    out = tmp_path / "out"
    proc = start("-u", tiny_model(3), root / "comp", out)
    wait_for_start(proc)
    caught = wait_for_partial_file(proc, out)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert caught, f"never saw the frames being written (exit {code}: {err})"
    left = files_in(out)
    assert not any(publish.is_partial(n) for n in left), left
    if code == 130:  # interrupted while writing: nothing, or (renames are not interruptible) everything
        assert err.strip().splitlines() == ["tezip.py: interrupted; no partial output was left"], err
        assert left in ([], [f"frame_{i:04d}.png" for i in range(N_FRAMES)]), left
    else:  # the signal came after the last rename
        assert code == 0, err
        assert len(left) == N_FRAMES
    assert_final_frames_complete(out, frames)


def test_decompress_killed_while_writing_then_rerun(tiny_model, long_sequence, tmp_path):
    root, frames = long_sequence
    out = tmp_path / "out"
    proc = start("-u", tiny_model(3), root / "comp", out)
    wait_for_start(proc)
    caught = wait_for_partial_file(proc, out)
    proc.kill()
    finish(proc)
    assert caught, "never saw the frames being written"
    left = files_in(out)
    assert any(publish.is_partial(n) for n in left)
    assert_final_frames_complete(out, frames)  # whatever has a final name is complete
    finals = [n for n in left if not publish.is_partial(n)]
    # Re-running works: without --overwrite unless the kill fell among the renames.
    decoded = decompress_folder(tiny_model(3), root / "comp", out, RunFlags(overwrite=bool(finals)))
    assert decoded.frames == N_FRAMES
    assert files_in(out) == [f"frame_{i:04d}.png" for i in range(N_FRAMES)]
    assert_final_frames_complete(out, frames)


@pytest.mark.parametrize("after", [0.3, 1.0])
def test_ctrl_c_while_the_frameworks_import(tmp_path, after):
    """Ctrl-C in the first seconds, while numba and the codec (0.3 s) or TensorFlow (1 s) are
    still importing: the usual one line, 130 (a busy machine once showed a traceback from the
    first imports, before the handler was in place). Only training (-l) imports TensorFlow now (-c
    and -u of format 3 run the reference kernel and reach their mode line in a fraction of a
    second), so the import is interrupted there."""
    model = tmp_path / "model"
    proc = start("-l", model, tmp_path / "nodata")
    time.sleep(after)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    code, stdout, err = finish(proc)
    assert "MODE" not in stdout, "the run went on after Ctrl-C (or it came after the imports)"
    assert code == 130, err
    assert err.strip().splitlines() == ["tezip.py: interrupted; no partial output was left"], err
    assert not model.exists()


def test_two_runs_started_at_once_into_one_new_out_dir(tiny_model, long_sequence, tmp_path):
    """The first to lock OUT_DIR compresses; the other stops with one line; no archive is lost."""
    root, _ = long_sequence
    out = tmp_path / "comp"
    procs = [start("-c", tiny_model(3), root / "images", out, *CLI_OPTIONS) for _ in range(2)]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    _, _, err = next(r for r in results if r[0] == 1)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tezip.py: error: OUT_DIR ") and "is in use by another TEZip run" in lines[0], err
    assert files_in(out) == sorted(archive.ARCHIVE_FILES)
    for name in archive.ARCHIVE_FILES:
        assert (out / name).read_bytes() == (root / "comp" / name).read_bytes()


def test_ctrl_c_inside_a_library_callback_prints_no_traceback(monkeypatch, capsys):
    """QA: Ctrl-C while numba compiled a kernel was raised inside llvmlite's ctypes callback, which
    cannot pass it on, and Python printed "Exception ignored on calling ctypes callback function"
    with a traceback before the run's own line. The signal is recorded and the run stops on that;
    the swallowed KeyboardInterrupt itself is not reported."""
    import ctypes

    import tezip

    def job_with_a_callback(argv):
        def callback():
            os.kill(os.getpid(), signal.SIGINT)  # handled inside the callback, at its next bytecode
            for _ in range(1000):
                time.sleep(0.001)

        ctypes.CFUNCTYPE(None)(callback)()
        return 0

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)  # what Python would print
    monkeypatch.setattr(tezip, "_main", job_with_a_callback)
    assert tezip.main([]) == 0
    assert reported == [] and "Traceback" not in capsys.readouterr().err
    assert sys.unraisablehook == reported.append  # restored

    def another_error(argv):  # other unraisable errors are still reported
        ctypes.CFUNCTYPE(None)(lambda: 1 / 0)()
        return 0

    monkeypatch.setattr(tezip, "_main", another_error)
    assert tezip.main([]) == 0
    assert len(reported) == 1 and isinstance(reported[0].exc_value, ZeroDivisionError)


def test_ctrl_c_that_a_library_turns_into_its_own_error_is_still_ctrl_c(monkeypatch, capsys, tmp_path):
    """QA: Ctrl-C during -l --skip's least-squares fit (numba's compiled fit calls back into
    Python, where the handler raised) came back as "SystemError: CPUDispatcher(...) returned a
    result with an exception set" with a traceback and exit 1. Any error once the signal is
    recorded is the interrupt: one line, 128 + the signal."""
    import tezip

    def learn_interrupted_inside_a_library(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt here
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(<function fit>) returned a result with an exception set") from e

    monkeypatch.setattr(tezip, "run_learn", learn_interrupted_inside_a_library)
    (tmp_path / "d").mkdir()
    assert tezip.main(["-l", str(tmp_path / "m"), str(tmp_path / "d")]) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [tezip.INTERRUPTED], err

    def learn_fails(args):  # without a signal an error is still an error
        raise SystemError("a library's own failure")

    monkeypatch.setattr(tezip, "run_learn", learn_fails)
    with pytest.raises(SystemError):
        tezip.main(["-l", str(tmp_path / "m"), str(tmp_path / "d")])
