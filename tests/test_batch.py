"""Batch mode (a folder of sequence folders) and --report, through tezip.main with the real tiny PredNet."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tezip
import archive
from frames.read import read_sequence
from conftest import make_sequence

ARGS = ["-f", "-w", "4", "-m", "abs", "-b", "0"]


@pytest.fixture
def runs(tmp_path):
    """runs/ with three sequences of different sizes, like train_data_create.py's input."""
    root = tmp_path / "runs"
    frames = {
        "a_walk": make_sequence(root / "a_walk", n_frames=9, height=24, width=32, seed=1),
        "b_pan": make_sequence(root / "b_pan", n_frames=7, height=16, width=40, seed=2),
        "c_still": make_sequence(root / "c_still", n_frames=6, height=32, width=24, seed=3),
    }
    return root, frames


def test_batch_compresses_each_sequence_and_restores_the_tree(tiny_model, runs, tmp_path, capsys):
    root, frames = runs
    model = str(tiny_model(3))
    assert tezip.main(["-c", model, str(root), str(tmp_path / "comp"), *ARGS]) == 0
    out = capsys.readouterr().out
    for name in frames:
        assert all((tmp_path / "comp" / name / f).is_file() for f in archive.ARCHIVE_FILES)
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        status, n_frames, ratio, max_err = row.split()[1:5]
        assert (status, int(n_frames), int(max_err)) == ("ok", len(frames[name]), 0)
        assert float(ratio) > 1.0
    assert "compressed 3 of 3 sequences, 0 skipped, 0 failed" in out

    assert tezip.main(["-u", model, str(tmp_path / "comp"), str(tmp_path / "back"), "-f"]) == 0
    assert "decompressed 3 of 3 sequences" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == sorted(frames)
    for name, original in frames.items():
        np.testing.assert_array_equal(read_sequence(tmp_path / "back" / name).frames, original)


def test_batch_failure_does_not_stop_the_others_and_rerun_skips_finished(tiny_model, runs, tmp_path, capsys):
    root, frames = runs
    (root / "d_single").mkdir()
    Image.new("RGB", (8, 8)).save(root / "d_single" / "only.png")  # one frame: refused
    model, comp = str(tiny_model(3)), tmp_path / "comp"
    assert tezip.main(["-c", model, str(root), str(comp), *ARGS]) == 1
    captured = capsys.readouterr()
    assert "d_single: error:" in captured.err and "single frame" in captured.err
    assert "compressed 3 of 4 sequences, 0 skipped, 1 failed: d_single" in captured.out
    assert not (comp / "d_single").exists()
    stamps = {name: (comp / name / archive.ENTROPY_FILE).stat().st_mtime_ns for name in frames}

    # Fixed input: only the failed sequence is compressed; the finished ones are skipped untouched.
    make_sequence(root / "d_single", n_frames=5, height=8, width=8, seed=4)
    assert tezip.main(["-c", model, str(root), str(comp), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "compressed 1 of 4 sequences, 3 skipped, 0 failed" in out
    assert {name: (comp / name / archive.ENTROPY_FILE).stat().st_mtime_ns for name in frames} == stamps

    assert tezip.main(["-c", model, str(root), str(comp), *ARGS, "--overwrite"]) == 0
    assert "compressed 4 of 4 sequences, 0 skipped, 0 failed" in capsys.readouterr().out


def test_batch_output_inside_the_input_is_refused(tiny_model, runs, capsys):
    root, _ = runs
    assert tezip.main(["-c", str(tiny_model(3)), str(root), str(root / "comp"), *ARGS]) == 1
    assert "lies inside IMAGE_DIR" in capsys.readouterr().err


def test_report_png(tiny_model, tmp_path, capsys):
    make_sequence(tmp_path / "img", n_frames=10, height=24, width=32, seed=5)
    comp = tmp_path / "comp"
    args = ["-c", str(tiny_model(3)), str(tmp_path / "img"), str(comp), "-f", "-t", "0.002", "--report-frame", "3"]
    assert tezip.main(args) == 0
    with Image.open(comp / "report.png") as png:
        assert png.format == "PNG" and png.size[0] > 600 and png.size[1] > 400
        pixels = np.asarray(png.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # plots and images, not a blank canvas
    # The report is not part of the archive: decompression reads the three archive files only.
    assert tezip.main(["-u", str(tiny_model(3)), str(comp), str(tmp_path / "out"), "-f"]) == 0


@pytest.mark.parametrize("folder, prefix", [("run_$\\frac$", "frame_"), ("run", "f_$x^$_")], ids=["folder", "frame"])
def test_report_with_tex_like_names(tiny_model, tmp_path, capsys, folder, prefix):
    """A `$...$` in a folder or frame name is shown as written, not parsed as TeX (which failed
    with a matplotlib traceback after the archive was written)."""
    images = tmp_path / folder
    make_sequence(images, n_frames=5, height=16, width=24, seed=5, prefix=prefix)
    comp = tmp_path / "comp"
    assert tezip.main(["-c", str(tiny_model(3)), str(images), str(comp), "-f", "-w", "2", "--report"]) == 0, \
        capsys.readouterr().err
    assert sorted(p.name for p in comp.iterdir()) == sorted((*archive.ARCHIVE_FILES, "report.png"))
    with Image.open(comp / "report.png") as png:
        assert png.format == "PNG"


def test_report_frame_out_of_range_fails_before_any_work(tiny_model, tmp_path, capsys):
    make_sequence(tmp_path / "img", n_frames=5, height=16, width=16, seed=6)
    args = ["-c", str(tiny_model(3)), str(tmp_path / "img"), str(tmp_path / "comp"), "-f", "-w", "3", "--report-frame", "5"]
    assert tezip.main(args) == 1
    assert "--report-frame 5 is outside the sequence (frames 0-4)" in capsys.readouterr().err
    assert not (tmp_path / "comp").exists()


def test_default_model_round_trip_and_mismatch_named(tiny_model, tmp_path, capsys):
    frames = make_sequence(tmp_path / "img", n_frames=6, height=24, width=32, seed=8)
    comp = tmp_path / "comp"
    assert tezip.main(["-c", "default", str(tmp_path / "img"), str(comp), "-f", "-w", "3"]) == 0
    assert tezip.main(["-u", "default", str(comp), str(tmp_path / "out"), "-f"]) == 0
    np.testing.assert_array_equal(read_sequence(tmp_path / "out").frames, frames)
    capsys.readouterr()
    assert tezip.main(["-u", str(tiny_model(3)), str(comp), str(tmp_path / "out2"), "-f"]) == 1
    assert "made with the bundled default model" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("finished", [0, 1])
def test_an_interrupted_batch_leaves_no_empty_out_dir(runs, tmp_path, monkeypatch, capsys, finished):
    """Ctrl-C during a batch (QA: an empty OUT_DIR was left): an OUT_DIR the run created is removed
    when nothing was finished in it; finished sequences stay (here: `finished` of them)."""
    import compress.pipeline

    real, calls = compress.pipeline.compress_folder, []

    def interrupted(model_dir, src, out, *args, **kwargs):
        calls.append(src)
        if len(calls) > finished:
            (Path(out).parent).mkdir(parents=True, exist_ok=True)  # as the sequence's OutputFolder makes it
            raise KeyboardInterrupt
        return real(model_dir, src, out, *args, **kwargs)

    monkeypatch.setattr(compress.pipeline, "compress_folder", interrupted)
    root, _ = runs
    out = tmp_path / "out"
    code = tezip.main(["-c", "none", str(root), str(out), "-w", "3"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    if finished:
        assert sorted(p.name for p in out.iterdir()) == ["a_walk"]
    else:
        assert not out.exists()
