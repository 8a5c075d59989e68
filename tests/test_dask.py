"""Scale-out on Dask (cluster/): --workers N and --scheduler ADDRESS for -c and -u, through
tezip.main with real frames and the real codec. The archives must be byte-identical to those made
without Dask (and whatever the number of workers), the frames restored exactly, a failure confined
to its sequence, a killed worker's task rerun with nothing half-written."""

import filecmp
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import archive
import tezip
from conftest import REPO_ROOT, make_sequence
from frames.read import read_sequence

distributed = pytest.importorskip("distributed")

LOSSLESS = ["-f", "-w", "4", "-m", "abs", "-b", "0"]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a local cluster of 2 worker processes, shared by this module's tests."""
    from cluster.client import local_cluster

    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """runs/: three small sequences; long/: one of 40 frames (10 windows of -w 4 … cut into segments)."""
    root = tmp_path_factory.mktemp("dask")
    frames = {name: make_sequence(root / "runs" / name, n_frames=n, height=24, width=32, seed=seed)
              for name, n, seed in (("a", 9, 1), ("b", 7, 2), ("c", 6, 3))}
    frames["long"] = make_sequence(root / "long", n_frames=40, height=24, width=32, seed=4)
    return root, frames


def same_archive(one, other):
    return all(filecmp.cmp(one / name, other / name, shallow=False) for name in archive.ARCHIVE_FILES)


def test_archives_are_byte_identical_with_and_without_dask_and_decode_exactly(data, scheduler, tmp_path, capsys):
    root, frames = data
    on_cluster = ["--scheduler", scheduler]
    for k, (model, options) in enumerate((("none", LOSSLESS), ("none", ["-f", "-t", "0.001", "-m", "abs", "-b", "2"]),
                                          ("default", LOSSLESS), ("none", LOSSLESS + ["--order", "auto"]))):
        out = tmp_path / f"{k}-{model}"
        for source in ("runs", "long"):
            assert tezip.main(["-c", model, str(root / source), str(out / "plain" / source), *options]) == 0
            assert tezip.main(["-c", model, str(root / source), str(out / "dask" / source), *options, *on_cluster]) == 0
        for name in "abc":
            assert same_archive(out / "plain" / "runs" / name, out / "dask" / "runs" / name), (model, options, name)
        assert same_archive(out / "plain" / "long", out / "dask" / "long"), (model, options)
    assert "compressed 3 of 3 sequences, 0 skipped, 0 failed" in capsys.readouterr().out

    # Decoded with 2 workers (the long sequence in segments): the very pixels.
    comp = tmp_path / "2-default" / "dask"  # (3-none: --order auto, chosen on the client)
    assert tezip.main(["-u", "default", str(comp / "long"), str(tmp_path / "back_long"), "-f", *on_cluster]) == 0
    assert tezip.main(["-u", "default", str(comp / "runs"), str(tmp_path / "back_runs"), "-f", *on_cluster]) == 0
    np.testing.assert_array_equal(read_sequence(tmp_path / "back_long").frames, frames["long"])
    assert tezip.main(["-u", "default", str(comp / "long"), str(tmp_path / "back_plain"), "-f"]) == 0
    assert all(filecmp.cmp(tmp_path / "back_plain" / f.name, f, shallow=False)  # files encoded by the workers
               for f in (tmp_path / "back_long").iterdir())
    for name in "abc":
        np.testing.assert_array_equal(read_sequence(tmp_path / "back_runs" / name).frames, frames[name])

    # The model was loaded once per worker, not once per task (10 segments, 6 sequences).
    from cluster import tasks

    with distributed.Client(scheduler, set_as_default=False) as client:
        loads = client.run(lambda: tasks.LOADS["models"])
    assert sorted(loads.values()) in ([1, 1], [0, 1])


def test_an_hdf5_dataset_on_the_cluster(scheduler, tmp_path):
    """A sequence that is not a folder of images: read by the workers, written back by the client."""
    h5py = pytest.importorskip("h5py")
    from conftest import detector_frames

    frames = detector_frames(24, 24, 32, seed=1)[..., 0]
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f["entry/data"] = frames
    spec, on_cluster = f"{tmp_path / 'run.h5'}::/entry/data", ["--scheduler", scheduler]
    assert tezip.main(["-c", "none", spec, str(tmp_path / "plain"), *LOSSLESS]) == 0
    assert tezip.main(["-c", "none", spec, str(tmp_path / "dask"), *LOSSLESS, *on_cluster]) == 0
    assert same_archive(tmp_path / "plain", tmp_path / "dask")
    assert tezip.main(["-u", "none", str(tmp_path / "dask"), str(tmp_path / "back"), "-f", *on_cluster]) == 0
    with h5py.File(tmp_path / "back" / "run.h5") as f:
        np.testing.assert_array_equal(f["entry/data"][()], frames)


def test_a_failing_sequence_fails_alone(data, scheduler, tmp_path, capsys):
    root, _ = data
    runs = tmp_path / "runs"
    make_sequence(runs / "a_good", n_frames=6, height=16, width=16, seed=5)
    make_sequence(runs / "b_broken", n_frames=6, height=16, width=16, seed=6)
    broken = sorted((runs / "b_broken").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:60])  # header intact, pixels cut: found by the worker reading it
    (runs / "c_single").mkdir()
    Image.new("RGB", (8, 8)).save(runs / "c_single" / "only.png")  # refused by the client before any task
    assert tezip.main(["-c", "none", str(runs), str(tmp_path / "comp"), *LOSSLESS, "--scheduler", scheduler]) == 1
    captured = capsys.readouterr()
    assert "b_broken: error:" in captured.err and "c_single: error:" in captured.err
    assert "compressed 1 of 3 sequences, 0 skipped, 2 failed: b_broken, c_single" in captured.out
    assert all((tmp_path / "comp" / "a_good" / f).is_file() for f in archive.ARCHIVE_FILES)
    assert not (tmp_path / "comp" / "b_broken").exists() and not (tmp_path / "comp" / "c_single").exists()


def test_a_worker_killed_mid_task_is_replaced_and_the_archive_is_whole(data, tmp_path, monkeypatch, capsys):
    """--workers 1: the one worker dies (os._exit) in its first task on `long`; the nanny restarts
    it, Dask reruns the task, and the archive is the one made without Dask."""
    from cluster.tasks import FAULT_ENV

    root, _ = data
    marker = tmp_path / "kill-once"
    marker.write_text(str(root / "long"))
    monkeypatch.setenv(FAULT_ENV, str(marker))
    assert tezip.main(["-c", "none", str(root / "long"), str(tmp_path / "dask"), *LOSSLESS, "--workers", "1"]) == 0
    assert not marker.exists() and marker.with_name("kill-once.fired").exists()  # a worker did die
    monkeypatch.delenv(FAULT_ENV)
    assert tezip.main(["-c", "none", str(root / "long"), str(tmp_path / "plain"), *LOSSLESS]) == 0
    assert same_archive(tmp_path / "plain", tmp_path / "dask")


def test_a_worker_that_always_dies_fails_the_sequence_with_one_line(data, tmp_path, monkeypatch, capsys):
    """Every try of a task kills its worker: after Dask's allowed failures (0 here, to be quick) the
    run stops with one line, exit 1, and no archive (not even the folder)."""
    import dask

    from cluster.tasks import EVERY_TIME, FAULT_ENV

    root, _ = data
    marker = tmp_path / "kill-always"
    marker.write_text(EVERY_TIME + str(root / "long"))
    monkeypatch.setenv(FAULT_ENV, str(marker))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        code = tezip.main(["-c", "none", str(root / "long"), str(tmp_path / "comp"), *LOSSLESS, "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "a Dask worker died each time" in err[0], err
    assert not (tmp_path / "comp").exists()


@pytest.mark.parametrize("options, code, message", [
    (["--workers", "0"], 2, "--workers must be at least 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], 2, "not both"),
    (["--scheduler", "nonsense"], 2, "--scheduler needs a scheduler's address"),
    (["--scheduler", "foo://127.0.0.1:8786"], 2, "--scheduler needs a scheduler's address"),
    (["--scheduler", "ucx://127.0.0.1:8786"], 2, "--scheduler needs a scheduler's address"),
    (["--scheduler", "tcp://127.0.0.1:99999"], 2, "--scheduler needs a scheduler's address"),
    (["--scheduler", "tls://127.0.0.1:1"], 1, "is encrypted, and Dask has no TLS settings"),
    (["--scheduler", "tcp://a..b:8786"], 2, "--scheduler needs a scheduler's address"),  # IDNA cannot encode it
    (["--scheduler", "tcp://127.0.0.1:1"], 1, "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
])
def test_bad_cluster_options_are_one_line_and_write_nothing(data, tmp_path, monkeypatch, capsys, options, code, message):
    import cluster.client

    monkeypatch.setattr(cluster.client, "CONNECT_TIMEOUT", "1s")
    root, _ = data
    out = tmp_path / "comp"
    try:
        returned = tezip.main(["-c", "none", str(root / "long"), str(out), *LOSSLESS, *options])
    except SystemExit as stop:  # argparse's errors
        returned = stop.code
    assert returned == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_training_refuses_the_cluster_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tezip.main(["-l", str(tmp_path / "m"), str(tmp_path / "d"), "--workers", "2"])
    assert stop.value.code == 2 and "serve -c and -u" in capsys.readouterr().err


def intra_windows(folder):
    """Two windows of -w 5 whose keyframes differ a lot in size: a smooth gradient with a patch of
    fresh noise in every frame (a small keyframe, costly predicted frames: intra is tried against
    it), then steady noise (a large keyframe)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = []
    for i in range(12):
        if i < 6:
            img = np.stack([(xx * 3 + yy) % 256, (yy * 4) % 256, (xx + 2 * yy) % 256], -1).astype(np.uint8)
            img[10:40, 10:50] = rng.integers(0, 256, (30, 40, 3))
        else:
            base = rng.integers(0, 256, (48, 64, 3)) if i == 6 else base
            img = np.clip(base + rng.integers(-2, 3, (48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"f{i:02d}.png")
        frames.append(img)
    return np.stack(frames)


def test_a_window_coded_apart_gives_the_chunks_it_gives_among_lanes(scheduler, tmp_path):
    """Two lanes code two windows in turn; the cluster codes each alone. Whether a predicted frame
    also tries intra depends on its own window's keyframe (not the other lane's, coded just
    before): the same archive either way."""
    intra_windows(tmp_path / "seq")
    options = ["-f", "-w", "5", "-m", "abs", "-b", "0", "--lanes", "2"]
    assert tezip.main(["-c", "default", str(tmp_path / "seq"), str(tmp_path / "plain"), *options]) == 0
    assert tezip.main(["-c", "default", str(tmp_path / "seq"), str(tmp_path / "dask"), *options,
                       "--scheduler", scheduler]) == 0
    assert same_archive(tmp_path / "plain", tmp_path / "dask")


def _importing_children(pid):
    """PIDs of the multiprocessing-spawned children of process pid that are in Python with
    SIGINT caught but not yet ignored: a worker importing, before its set-up (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                spawned = b"spawn_main" in f.read()
            with open(f"/proc/{entry}/status") as f:
                masks = dict(line.split(":", 1) for line in f if line.startswith(("SigCgt", "SigIgn")))
        except (OSError, ValueError, IndexError):
            continue
        sigint = 1 << (signal.SIGINT - 1)
        if parent == pid and spawned and int(masks["SigCgt"], 16) & sigint and not int(masks["SigIgn"], 16) & sigint:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the worker processes in /proc")
def test_ctrl_c_while_the_local_cluster_starts_prints_one_line(data, tmp_path):
    """A terminal's Ctrl-C goes to the whole process group: sent while the local workers are still
    importing (before they ignore SIGINT), it printed each worker's KeyboardInterrupt traceback
    after the one line. Now the workers are born with SIGINT blocked: one line, 130, nothing
    written, no worker left behind."""
    root, _ = data
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "tezip.py"), "-c", "none", str(root / "long"), str(out),
                             "--workers", "2", *LOSSLESS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    children = []
    while not children and proc.poll() is None and time.time() < deadline:
        children = _importing_children(proc.pid)
        time.sleep(0.001)
    assert children, "no worker process was seen importing"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["tezip.py: interrupted; no partial output was left"], err
    assert not out.exists() or not any(out.iterdir())
    for child in children:
        assert not os.path.exists(f"/proc/{child}") or _is_zombie(child), f"worker {child} outlived the run"


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _tezip_cli(*args, **popen):
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "tezip.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_ctrl_c_after_the_last_line_while_the_cluster_closes_is_ignored(data, tmp_path):
    """The summary line is printed before the local cluster closes (a second or more): a Ctrl-C
    then was reported as an interrupted run (130, "no partial output was left") though the
    archive was complete. It is ignored: exit 0, nothing more on stderr, the archive whole."""
    root, _ = data
    out = tmp_path / "out"
    proc = _tezip_cli("-c", "none", root / "long", out, "--workers", "2", *LOSSLESS, start_new_session=True)
    for line in proc.stdout:
        if line.startswith("compressed "):
            break
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == ""
    assert all((out / f).is_file() for f in archive.ARCHIVE_FILES)


def test_a_failing_task_on_local_workers_is_one_line(data, tmp_path):
    """Dask's worker logged "Compute Failed" and the task's traceback before TEZip's own line."""
    root, _ = data
    broken = tmp_path / "broken"
    make_sequence(broken, n_frames=8, height=16, width=16, seed=9)
    frame = sorted(broken.iterdir())[5]
    frame.write_bytes(frame.read_bytes()[:60])
    proc = _tezip_cli("-c", "none", broken, tmp_path / "out", "--workers", "1", *LOSSLESS)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert len(err.splitlines()) == 1 and "corrupt or truncated image" in err, err
    assert not (tmp_path / "out").exists()


def _dask_cli(module, *args, cwd):
    return subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}", *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def _wait_for_file(path, proc, timeout=60):
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{proc.args} did not start"


def test_an_external_scheduler_without_workers_then_lost_mid_run(data, tmp_path, monkeypatch, capsys):
    """--scheduler: with no worker yet the run says it waits, and gives up with one line after
    WORKER_WAIT_S (it waited forever without a word); with a worker, the scheduler killed mid-run
    ends the run with one line (a traceback through cluster/run.py before), nothing written."""
    import cluster.client
    import cluster.jobs

    monkeypatch.setattr(cluster.client, "WORKER_WAIT_S", 2)
    monkeypatch.setattr(cluster.client, "CONNECT_TIMEOUT", "2s")
    root, _ = data
    address_file = tmp_path / "scheduler.json"
    scheduler = _dask_cli("dask_scheduler", "--scheduler-file", address_file, "--port", "0", "--dashboard-address",
                          ":0", cwd=tmp_path)
    worker = None
    try:
        _wait_for_file(address_file, scheduler)
        address = json.loads(address_file.read_text())["address"]
        command = ["-c", "none", str(root / "long"), str(tmp_path / "out"), *LOSSLESS, "--scheduler", address]
        assert tezip.main(command) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and "has no worker yet; waiting" in err[0], err
        assert "no Dask worker joined the scheduler" in err[1], err
        assert not (tmp_path / "out").exists()

        worker = _dask_cli("dask_worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                           cwd=tmp_path)
        add = cluster.jobs.CompressJob.add

        def add_then_kill_the_scheduler(job, i, code):  # the first segment is in: the scheduler dies
            if scheduler.poll() is None:
                os.killpg(scheduler.pid, signal.SIGKILL)
                scheduler.wait()
            return add(job, i, code)

        monkeypatch.setattr(cluster.jobs.CompressJob, "add", add_then_kill_the_scheduler)
        assert tezip.main(command) == 1
        err = capsys.readouterr().err.splitlines()
        assert err[-1] == "tezip.py: error: lost the connection to the Dask scheduler mid-run; nothing was written", err
        assert len(err) <= 2 and all("Traceback" not in line for line in err), err  # the waiting note, if any
        assert not (tmp_path / "out").exists()
    finally:
        for proc in (scheduler, worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("options", [["--workers", "1"], ["--scheduler", "tcp://127.0.0.1:1"]], ids=["workers", "scheduler"])
def test_a_configuration_that_requires_encryption_is_one_line(data, tmp_path, capsys, options):
    """distributed.comm.require-encryption (a site's Dask configuration): a local cluster failed to
    start with ~90 lines of traceback, a plain --scheduler with ~60 and a 20 s hang (QA)."""
    import dask

    root, _ = data
    with dask.config.set({"distributed.comm.require-encryption": True}):
        returned = tezip.main(["-c", "none", str(root / "long"), str(tmp_path / "out"), *LOSSLESS, *options])
    assert returned == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "requires encryption (distributed.comm.require-encryption)" in err[0], err
    assert not (tmp_path / "out").exists()
