"""train_data_create.py: PredNet training data from folders of sequences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hickle
import numpy as np
import pytest

import train_data_create
from base.errors import TezipError
from conftest import REPO_ROOT, make_sequence
from train_data_create import OUTPUT_FILES, create_train_data, load_sources

SCRIPT = REPO_ROOT / "train_data_create.py"


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )


def load_outputs(output_dir: Path) -> dict:
    return {
        "X_train": hickle.load(output_dir / "X_train.hkl"),
        "X_val": hickle.load(output_dir / "X_val.hkl"),
        "sources_train": load_sources(output_dir / "sources_train.hkl"),
        "sources_val": load_sources(output_dir / "sources_val.hkl"),
    }


def make_data_dir(root: Path, count: int, n_frames: int = 2, size=(8, 8), channels=3) -> Path:
    """count small sequences seq_00, seq_01, ... of n_frames frames each."""
    data_dir = root / "data"
    for index in range(count):
        make_sequence(
            data_dir / f"seq_{index:02d}",
            n_frames=n_frames,
            height=size[0],
            width=size[1],
            channels=channels,
            seed=index,
        )
    return data_dir


def pad_edge(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference padding: replicate the last row and column at the bottom and right."""
    return np.pad(
        frames,
        ((0, 0), (0, height - frames.shape[1]), (0, width - frames.shape[2]), (0, 0)),
        mode="edge",
    )


@pytest.fixture
def mixed_size_data(tmp_path):
    """Four RGB sequences of different sizes and lengths: name -> frames written."""
    data_dir = tmp_path / "data"
    shapes = {"alpha": (3, 24, 32), "bravo": (2, 20, 30), "charlie": (4, 17, 33), "delta": (1, 8, 8)}
    frames = {
        name: make_sequence(data_dir / name, n_frames=n, height=h, width=w, seed=len(name) + n)
        for name, (n, h, w) in shapes.items()
    }
    return data_dir, frames


# --- layout, padding, sources ------------------------------------------------------------


def test_layout_padding_and_sources(mixed_size_data, tmp_path):
    data_dir, frames = mixed_size_data
    output_dir = tmp_path / "out" / "nested"
    summary = create_train_data(data_dir, output_dir, val_dirs=["bravo"])

    # Largest H 24 and W 33, each rounded up to a multiple of 8.
    assert summary["frame_shape"] == (24, 40, 3)
    assert summary["train_sequences"] == ["alpha", "charlie", "delta"]
    assert summary["val_sequences"] == ["bravo"]
    assert (summary["train_frames"], summary["val_frames"]) == (8, 2)
    assert summary["mode"] == "RGB"

    assert sorted(path.name for path in output_dir.iterdir()) == sorted(OUTPUT_FILES)
    out = load_outputs(output_dir)
    assert out["X_train"].dtype == np.uint8 and out["X_val"].dtype == np.uint8
    assert out["X_train"].shape == (8, 24, 40, 3)
    assert out["X_val"].shape == (2, 24, 40, 3)

    expected_train = np.concatenate(
        [pad_edge(frames[name], 24, 40) for name in ("alpha", "charlie", "delta")]
    )
    np.testing.assert_array_equal(out["X_train"], expected_train)
    np.testing.assert_array_equal(out["X_val"], pad_edge(frames["bravo"], 24, 40))
    # Spelled out for one frame: the padded border repeats the last row / column.
    charlie = out["X_train"][3]
    np.testing.assert_array_equal(charlie[:17, :33], frames["charlie"][0])
    np.testing.assert_array_equal(charlie[17:, :33], np.repeat(charlie[16:17, :33], 7, axis=0))
    np.testing.assert_array_equal(charlie[:, 33:], np.repeat(charlie[:, 32:33], 7, axis=1))

    assert list(out["sources_train"]) == ["alpha"] * 3 + ["charlie"] * 4 + ["delta"]
    assert list(out["sources_val"]) == ["bravo"] * 2
    assert out["sources_train"].dtype.kind == "U"


def test_sizes_already_multiple_of_8_are_not_padded(tmp_path):
    data_dir = make_data_dir(tmp_path, 3, size=(16, 24))
    summary = create_train_data(data_dir, tmp_path / "out")
    assert summary["frame_shape"] == (16, 24, 3)


def test_grayscale_sequences(tmp_path):
    data_dir = make_data_dir(tmp_path, 3, n_frames=2, size=(10, 12), channels=1)
    summary = create_train_data(data_dir, tmp_path / "out", val_dirs=["seq_02"])
    assert summary["mode"] == "L"
    out = load_outputs(tmp_path / "out")
    assert out["X_train"].shape == (4, 16, 16, 1)
    first = make_sequence(tmp_path / "again", n_frames=2, height=10, width=12, channels=1, seed=0)
    np.testing.assert_array_equal(out["X_train"][:2], pad_edge(first, 16, 16))


def test_sources_file_is_bytes_array(tmp_path):
    # hickle 5 writes str arrays one dataset per element; bytes keep the file small and fast.
    data_dir = make_data_dir(tmp_path, 2)
    create_train_data(data_dir, tmp_path / "out")
    raw = hickle.load(tmp_path / "out" / "sources_train.hkl")
    assert isinstance(raw, np.ndarray) and raw.dtype.kind == "S"


def test_non_ascii_sequence_name(tmp_path):
    data_dir = tmp_path / "data"
    make_sequence(data_dir / "séquence_ü", n_frames=2, height=8, width=8)
    make_sequence(data_dir / "plain", n_frames=1, height=8, width=8)
    create_train_data(data_dir, tmp_path / "out", val_dirs=["plain"])
    assert list(load_sources(tmp_path / "out" / "sources_train.hkl")) == ["séquence_ü"] * 2


def test_inputs_outside_sequences_ignored_and_hidden_skipped(tmp_path):
    data_dir = make_data_dir(tmp_path, 2)
    (data_dir / "README.txt").write_text("notes")
    (data_dir / ".cache").mkdir()
    summary = create_train_data(data_dir, tmp_path / "out")
    assert summary["sequences"] == 2


# --- validation split --------------------------------------------------------------------


@pytest.mark.parametrize("count, n_val", [(2, 1), (4, 1), (10, 1), (15, 2), (20, 2)])
def test_default_split_size(tmp_path, count, n_val):
    data_dir = make_data_dir(tmp_path, count, n_frames=1)
    summary = create_train_data(data_dir, tmp_path / "out")
    assert len(summary["val_sequences"]) == n_val
    assert len(summary["train_sequences"]) == count - n_val
    assert sorted(summary["train_sequences"] + summary["val_sequences"]) == [
        f"seq_{index:02d}" for index in range(count)
    ]


def test_val_fraction(tmp_path):
    data_dir = make_data_dir(tmp_path, 4, n_frames=1)
    summary = create_train_data(data_dir, tmp_path / "out", val_fraction=0.5)
    assert len(summary["val_sequences"]) == 2
    # A fraction that would take every sequence still leaves one for training.
    summary = create_train_data(data_dir, tmp_path / "out", val_fraction=0.99)
    assert len(summary["train_sequences"]) == 1


def test_split_is_seeded(tmp_path):
    data_dir = make_data_dir(tmp_path, 10, n_frames=1)
    draws = [
        create_train_data(data_dir, tmp_path / f"out_{seed}", seed=seed)["val_sequences"]
        for seed in (0, 0, 1, 2, 3, 4)
    ]
    assert draws[0] == draws[1]
    assert len({tuple(draw) for draw in draws}) > 1
    out_a = load_outputs(tmp_path / "out_0")
    assert list(out_a["sources_val"]) == draws[0]


def test_val_dirs_by_name_and_path(tmp_path):
    data_dir = make_data_dir(tmp_path, 4, n_frames=1)
    summary = create_train_data(
        data_dir, tmp_path / "out", val_dirs=["seq_03", str(data_dir / "seq_01") + "/", "seq_03"]
    )
    assert summary["val_sequences"] == ["seq_01", "seq_03"]
    assert summary["train_sequences"] == ["seq_00", "seq_02"]


def test_overwrites_previous_outputs(tmp_path):
    data_dir = make_data_dir(tmp_path, 3, n_frames=1)
    create_train_data(data_dir, tmp_path / "out", val_dirs=["seq_00"])
    create_train_data(data_dir, tmp_path / "out", val_dirs=["seq_01", "seq_02"])
    out = load_outputs(tmp_path / "out")
    assert list(out["sources_val"]) == ["seq_01", "seq_02"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)


# --- in-process errors -------------------------------------------------------------------


def test_bad_val_fraction(tmp_path):
    data_dir = make_data_dir(tmp_path, 2)
    with pytest.raises(TezipError, match="val-fraction"):
        create_train_data(data_dir, tmp_path / "out", val_fraction=1.5)


def test_mixed_sizes_within_sequence(tmp_path):
    data_dir = make_data_dir(tmp_path, 2, size=(8, 8))
    make_sequence(data_dir / "seq_01", n_frames=1, height=16, width=16, prefix="z_")
    with pytest.raises(TezipError, match="z_0000.png.*16x16.*8x8"):
        create_train_data(data_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    data_dir = make_data_dir(tmp_path, 2)
    calls = []
    real_dump = hickle.dump

    def dump_then_fail(obj, path, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_dump(obj, path, **kwargs)

    monkeypatch.setattr(train_data_create.hickle, "dump", dump_then_fail)
    with pytest.raises(TezipError, match="No space left"):
        create_train_data(data_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    (tmp_path / "existing").mkdir()
    calls.clear()
    with pytest.raises(TezipError):
        create_train_data(data_dir, tmp_path / "existing")
    assert list((tmp_path / "existing").iterdir()) == []


# --- command line ------------------------------------------------------------------------


def test_cli_success(mixed_size_data, tmp_path):
    data_dir, _ = mixed_size_data
    result = run_script(data_dir, tmp_path / "out", "-v", "bravo", "delta")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 5  # one per sequence, then the summary
    assert "alpha: 3 frames 32x24 (train)" in lines[0]
    summary = lines[-1]
    assert "4 sequences" in summary and "10 frames" in summary and "24x40x3" in summary
    assert "train 2 sequences / 7 frames" in summary and "val 2 sequences / 3 frames" in summary
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)


def test_cli_seed_and_fraction(tmp_path):
    data_dir = make_data_dir(tmp_path, 4, n_frames=1)
    result = run_script(data_dir, tmp_path / "out", "--seed", "7", "--val-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    expected = create_train_data(data_dir, tmp_path / "again", seed=7, val_fraction=0.5)
    out = load_outputs(tmp_path / "out")
    assert list(out["sources_val"]) == expected["val_sequences"]


def break_non_image(data_dir: Path) -> str:
    (data_dir / "seq_01" / "notes.txt").write_text("not an image")
    return "notes.txt"


def break_truncated(data_dir: Path) -> str:
    path = data_dir / "seq_02" / "frame_0001.png"
    path.write_bytes(path.read_bytes()[:60])
    return "frame_0001.png"


def break_mixed_modes(data_dir: Path) -> str:
    make_sequence(data_dir / "seq_09", n_frames=1, height=8, width=8, channels=1)
    return "seq_09"


@pytest.mark.parametrize(
    "case, args, damage, fragment",
    [
        ("missing data dir", ["{tmp}/nowhere", "{out}"], None, "nowhere"),
        ("one sequence", ["{tmp}/single", "{out}"], None, "at least two"),
        ("non-image file", ["{data}", "{out}"], break_non_image, None),
        ("unreadable image", ["{data}", "{out}"], break_truncated, None),
        ("mixed modes", ["{data}", "{out}"], break_mixed_modes, None),
        ("unknown -v", ["{data}", "{out}", "-v", "seq_00", "seq_77"], None, "seq_77"),
        ("all -v", ["{data}", "{out}", "-v", "seq_00", "seq_01", "seq_02"], None, "all 3"),
    ],
)
@pytest.mark.parametrize("out_exists", [False, True])
def test_cli_errors(tmp_path, case, args, damage, fragment, out_exists):
    data_dir = make_data_dir(tmp_path, 3)
    make_sequence(tmp_path / "single" / "only", n_frames=1, height=8, width=8)
    if damage is not None:
        fragment = damage(data_dir)
    output_dir = tmp_path / "out"
    if out_exists:
        output_dir.mkdir()
    substitutions = {"tmp": tmp_path, "data": data_dir, "out": output_dir}
    result = run_script(*(arg.format(**substitutions) for arg in args))

    assert result.returncode == 1, case
    stderr_lines = result.stderr.splitlines()
    assert len(stderr_lines) == 1, result.stderr
    assert stderr_lines[0].startswith("train_data_create.py: error: ")
    assert fragment in stderr_lines[0]
    if out_exists:
        assert list(output_dir.iterdir()) == []
    else:
        assert not output_dir.exists()


@pytest.mark.parametrize("where", ["seq_00", "seq_00/deeper", "."])
def test_cli_refuses_output_inside_data_dir(tmp_path, where):
    """An OUTPUT_DIR in DATA_DIR's tree would put .hkl files into a sequence (or make a new
    sequence of its folder): refused with one line, the sequences untouched."""
    data_dir = make_data_dir(tmp_path, 3)
    before = sorted((p.relative_to(data_dir), p.read_bytes()) for p in data_dir.rglob("*") if p.is_file())
    result = run_script(data_dir, data_dir / where)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "lies inside DATA_DIR" in result.stderr, result.stderr
    after = sorted((p.relative_to(data_dir), p.read_bytes()) for p in data_dir.rglob("*") if p.is_file())
    assert after == before
    if where == "seq_00/deeper":
        assert not (data_dir / where).exists()


def test_cli_val_and_fraction_conflict(tmp_path):
    data_dir = make_data_dir(tmp_path, 3)
    result = run_script(data_dir, tmp_path / "out", "-v", "seq_00", "--val-fraction", "0.2")
    assert result.returncode != 0
    assert "either -v or --val-fraction" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fraction", ["1.5", "0", "nan"])
def test_cli_bad_val_fraction_is_an_argument_error(tmp_path, fraction):
    """Checked with the other arguments: exit 2 and argparse's line, nothing read or written."""
    data_dir = make_data_dir(tmp_path, 3)
    result = run_script(data_dir, tmp_path / "out", "--val-fraction", fraction)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("train_data_create.py: error: --val-fraction must be between 0 and 1")
    assert not (tmp_path / "out").exists()


def test_cli_empty_paths_are_argument_errors(tmp_path):
    """"" would be the current folder (an unset shell variable): refused, exit 2."""
    data_dir = make_data_dir(tmp_path, 3)
    for args, name in (([data_dir, ""], "OUTPUT_DIR"), (["", tmp_path / "out"], "DATA_DIR")):
        result = run_script(*args)
        assert result.returncode == 2 and f"{name} is empty" in result.stderr
    assert not (tmp_path / "out").exists()
