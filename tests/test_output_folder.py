"""The output folder (base/publish.py OutputFolder): nothing is written through a symbolic link
or outside OUT_DIR, publishing is all or nothing (rollback when a rename fails midway), and a run
locks its OUT_DIR against a second run. Concurrent runs as real processes: test_interrupt.py."""

import os
import shutil

import numpy as np
import pytest

import tezip
import archive
from base import publish
from base.errors import TezipError
from frames.read import read_sequence
from compress.pipeline import compress_folder
from conftest import plan_and_flags
from sequence.plan import RunFlags
from compress.report import REPORT_FILE
from conftest import make_sequence
from decompress.pipeline import decompress_folder
from test_bad_inputs import fails, snapshot

OPTIONS = dict(window=3)


@pytest.fixture(scope="module")
def made(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("output_folder")
    frames = make_sequence(root / "images", n_frames=6, height=16, width=24, channels=3, seed=5)
    compress_folder(tiny_model(3), root / "images", root / "comp", *plan_and_flags(**OPTIONS))
    return root, frames


def outside_files(folder):
    return sorted(p.name for p in folder.iterdir())


# --- 1. symbolic links -----------------------------------------------------------------------------


def test_decompress_never_writes_through_a_planted_partial_link(tiny_model, made, tmp_path):
    """A leftover temporary name that is a dangling link (or a link to a device) is removed, not
    followed: the frames land in OUT_DIR as real files, nothing beside it."""
    root, frames = made
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside / "elsewhere.png", out / ("frame_0000.png" + publish.TMP_SUFFIX))
    os.symlink("/dev/null", out / ("frame_0001.png" + publish.TMP_SUFFIX))
    decompress_folder(tiny_model(3), root / "comp", out)
    assert outside_files(outside) == []
    names = sorted(os.listdir(out))
    assert names == [f"frame_{i:04d}.png" for i in range(6)]
    assert all(os.path.isfile(out / n) and not os.path.islink(out / n) for n in names)
    np.testing.assert_array_equal(read_sequence(out).frames, frames)


def test_compress_never_writes_through_a_planted_partial_link(tiny_model, made, tmp_path):
    """The same for the archive files and report.png of -c."""
    root, _ = made
    out, outside = tmp_path / "comp", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    for name in (*archive.ARCHIVE_FILES, REPORT_FILE):
        os.symlink(outside / name, out / (name + publish.TMP_SUFFIX))
    compress_folder(tiny_model(3), root / "images", out, *plan_and_flags(**OPTIONS, report=True))
    assert outside_files(outside) == []
    assert sorted(os.listdir(out)) == sorted((*archive.ARCHIVE_FILES, REPORT_FILE))
    for name in archive.ARCHIVE_FILES:
        assert not (out / name).is_symlink()
        assert (out / name).read_bytes() == (root / "comp" / name).read_bytes()


def test_temporary_files_are_created_exclusively_with_short_names(tmp_path):
    with publish.OutputFolder(tmp_path / "out") as out:
        track = []
        with out.new_file(track) as f:
            f.write(b"x")
        with out.new_file(track) as f:
            f.write(b"y")
        assert len(set(track)) == 2 and all(len(n) < 40 and publish.is_partial(n) for n in track)
        for name in track:
            os.unlink(out.path / name)


def test_a_link_at_a_final_name_is_refused_not_replaced(tiny_model, made, tmp_path):
    root, _ = made
    out, target = tmp_path / "out", tmp_path / "target.png"
    target.write_bytes(b"not yours")
    out.mkdir()
    os.symlink(target, out / "frame_0002.png")
    fails(lambda: decompress_folder(tiny_model(3), root / "comp", out, RunFlags(overwrite=True)),
          "frame_0002.png into .*: a symbolic link of that name is in the way", outputs=[out])
    assert target.read_bytes() == b"not yours"


# --- 2. all or nothing, and a lock -------------------------------------------------------------------


def test_compress_overwrite_with_report_png_a_folder_leaves_old_archive(tiny_model, made, tmp_path):
    """A final name taken by a non-empty folder stops the run before any rename: the earlier
    archive stays exactly as it was."""
    root, _ = made
    out = tmp_path / "comp"
    shutil.copytree(root / "comp", out)
    (out / REPORT_FILE).mkdir()
    (out / REPORT_FILE / "keep.txt").write_text("mine")
    opts = plan_and_flags(window=2, mode="abs", bounds=(2,), overwrite=True, report=True)
    fails(lambda: compress_folder(tiny_model(3), root / "images", out, *opts), "report.png into .*: a folder",
          inputs=[root / "images"], outputs=[out])


def test_decompress_overwrite_with_a_frame_name_a_folder_leaves_old_frames(tiny_model, made, tmp_path):
    root, _ = made
    out = tmp_path / "out"
    make_sequence(out, n_frames=6, height=16, width=24, channels=3, seed=99)  # earlier, other frames
    (out / "frame_0004.png").unlink()
    (out / "frame_0004.png").mkdir()
    (out / "frame_0004.png" / "x").write_text("x")
    fails(lambda: decompress_folder(tiny_model(3), root / "comp", out, RunFlags(overwrite=True)),
          "frame_0004.png into .*: a folder", outputs=[out])


@pytest.mark.parametrize("fail_at", [1, 2, 4, 5])
def test_rename_failing_midway_rolls_back(tmp_path, monkeypatch, fail_at):
    """Whatever rename fails, files already replaced are put back and new ones removed."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"old a")
    (folder / "b.png").write_bytes(b"old b")
    (folder / "keep.txt").write_bytes(b"keep")
    before = snapshot(folder)
    real_rename, calls = os.rename, []

    def rename(src, dst, **kw):
        calls.append((src, dst))
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, **kw)

    monkeypatch.setattr(publish.os, "rename", rename)
    contents = {"a.png": b"new a", "c.png": b"new c", "b.png": b"new b"}
    with pytest.raises(TezipError, match="No space left on device"):
        with publish.OutputFolder(folder, overwrite=True) as out:
            publish.write_files_atomically(out, contents)
    assert snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["a.png", "b.png", "keep.txt"]


def test_second_run_into_a_locked_out_dir_is_refused(tiny_model, made, tmp_path):
    """While a run holds OUT_DIR, another run into it fails at once with one line (in one process
    here: flock locks conflict between open files; two processes: test_interrupt.py)."""
    root, _ = made
    out = tmp_path / "comp"
    with publish.OutputFolder(out):
        fails(lambda: compress_folder(tiny_model(3), root / "images", out, *plan_and_flags(**OPTIONS)),
              "OUT_DIR .* is in use by another TEZip run")
        fails(lambda: decompress_folder(tiny_model(3), root / "comp", out), "is in use by another TEZip run")
    assert not out.exists()  # the holder created it and published nothing: removed again


def test_ctrl_c_while_locking_leaves_no_lock_behind(tmp_path, monkeypatch):
    """Ctrl-C between creating the lock file and holding it is held until the lock is held, then
    cleaned up like any interrupt: no lock file and no OUT_DIR are left."""
    import signal

    real_flock = publish.fcntl.flock

    def flock(fd, how):
        signal.raise_signal(signal.SIGINT)  # Python's handler: KeyboardInterrupt at the next bytecode
        return real_flock(fd, how)

    monkeypatch.setattr(publish.fcntl, "flock", flock)
    out = tmp_path / "out"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever earlier tests left
    try:
        with pytest.raises(KeyboardInterrupt):
            with publish.OutputFolder(out):
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not out.exists()


def test_stale_lock_of_a_killed_run_does_not_block(tiny_model, made, tmp_path):
    root, _ = made
    out = tmp_path / "comp"
    out.mkdir()
    (out / publish.LOCK_NAME).write_text("12345\n")  # left by a SIGKILLed run: nobody holds it
    compress_folder(tiny_model(3), root / "images", out, *plan_and_flags(**OPTIONS))
    assert sorted(os.listdir(out)) == sorted(archive.ARCHIVE_FILES)


# --- batch: a sequence's folder that is a link ---------------------------------------------------------


def test_batch_refuses_a_sequence_folder_that_is_a_link(tiny_model, tmp_path, capsys):
    runs, comp, elsewhere = tmp_path / "runs", tmp_path / "comp", tmp_path / "elsewhere"
    make_sequence(runs / "a", n_frames=5, height=16, width=24, seed=1)
    make_sequence(runs / "b", n_frames=5, height=16, width=24, seed=2)
    comp.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, comp / "a")
    code = tezip.main(["-c", str(tiny_model(3)), str(runs), str(comp), "-f", "-w", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "a: error: " in err and "is a symbolic link" in err
    assert os.listdir(elsewhere) == []
    assert sorted(os.listdir(comp / "b")) == sorted(archive.ARCHIVE_FILES)
    # the same for -u
    restored, elsewhere2 = tmp_path / "restored", tmp_path / "elsewhere2"
    restored.mkdir()
    elsewhere2.mkdir()
    os.symlink(elsewhere2, restored / "b")
    os.unlink(comp / "a")
    shutil.copytree(comp / "b", comp / "a")
    code = tezip.main(["-u", str(tiny_model(3)), str(comp), str(restored), "-f"])
    assert code == 1 and "is a symbolic link" in capsys.readouterr().err
    assert os.listdir(elsewhere2) == []
