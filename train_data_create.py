"""Build PredNet training data (hickle files) from folders of image sequences.

    python train_data_create.py DATA_DIR OUTPUT_DIR [-v VAL_DIR ...] [--seed N]
                                [--val-fraction F]

Each subfolder of DATA_DIR is one time sequence: its images, in frame order (as -c orders them:
frames.read.frame_order). OUTPUT_DIR receives the layout of coxlab PredNet's KITTI data:

    X_train.hkl, X_val.hkl              uint8 (n_frames, H, W, C), all sequences' frames
                                        concatenated in order; uint16 for 16-bit grayscale
                                        (I;16) frames (training scales each sequence by its
                                        own value range, as compression does)
    sources_train.hkl, sources_val.hkl  (n_frames,) the sequence folder name of each frame,
                                        so a generator can find runs of frames of one sequence

Frames smaller than the largest are padded at the bottom and right by repeating their edge
pixels (black borders would teach the model edges that are not there), up to the largest
height and width rounded up to a multiple of 8, as TEZip pads. Without -v, about
--val-fraction of the sequences, drawn at random with --seed, become validation data.

sources_*.hkl hold UTF-8 bytes (numpy dtype S): hickle 5 stores str arrays and lists one
HDF5 dataset per element, hundreds of times slower and larger. load_sources() decodes them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import hickle
import numpy as np

from base.errors import TezipError
from frames.read import MODE_DTYPES, ImageHeader, list_image_files, read_image, sequence_header

OUTPUT_FILES = ("X_train.hkl", "X_val.hkl", "sources_train.hkl", "sources_val.hkl")

# TEZip pads frames to multiples of 8 (the PredNet layers halve the size three times).
SIZE_MULTIPLE = 8

DEFAULT_VAL_FRACTION = 0.1


@dataclass
class _SequencePlan:
    """One sequence folder after the header pass: its files and their shared size."""

    name: str
    paths: list[Path]
    header: ImageHeader
    frame_start: int = 0  # index of its first frame in X_train or X_val


@dataclass
class _Split:
    train: list[_SequencePlan] = field(default_factory=list)
    val: list[_SequencePlan] = field(default_factory=list)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _sequence_folders(data_dir: Path) -> list[Path]:
    if not data_dir.exists():
        raise TezipError(f"{data_dir}: data folder not found")
    if not data_dir.is_dir():
        raise TezipError(f"{data_dir}: not a folder")
    entries = [entry for entry in data_dir.iterdir() if not entry.name.startswith(".")]
    folders = sorted((entry for entry in entries if entry.is_dir()), key=lambda p: p.name)
    if len(folders) < 2:
        stray_files = len(entries) - len(folders)
        hint = (
            f" (its {stray_files} files are ignored: each subfolder is one sequence)"
            if stray_files
            else ""
        )
        raise TezipError(
            f"{data_dir}: found {len(folders)} sequence subfolder(s), need at least two "
            f"(one for training, one for validation){hint}"
        )
    return folders


def _resolve_val_names(val_dirs: Sequence[str | Path], folders: list[Path], data_dir: Path):
    """Names of the sequence folders given by -v, each as a folder name or a path to it."""
    by_name = {folder.name: folder for folder in folders}
    data_dir_resolved = data_dir.resolve()
    names: list[str] = []
    for val_dir in val_dirs:
        text = str(val_dir)
        stripped = text.rstrip("/\\")
        if stripped in by_name:
            name = stripped
        else:
            as_path = Path(text).resolve()
            if as_path.parent != data_dir_resolved or as_path.name not in by_name:
                raise TezipError(
                    f"validation sequence '{text}' is not a subfolder of {data_dir} "
                    f"(sequences: {', '.join(sorted(by_name)[:10])}"
                    f"{', ...' if len(by_name) > 10 else ''})"
                )
            name = as_path.name
        if name not in names:
            names.append(name)
    if len(names) == len(folders):
        raise TezipError(
            f"all {len(folders)} sequences of {data_dir} are named as validation; "
            f"leave at least one for training"
        )
    return set(names)


def _draw_val_names(folders: list[Path], val_fraction: float, seed: int) -> set[str]:
    """About val_fraction of the sequences (at least one, leaving one), drawn with seed."""
    count = len(folders)
    # Round half up: round() would send 0.5 to 0 and 2.5 to 2.
    n_val = min(max(1, math.floor(count * val_fraction + 0.5)), count - 1)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(count, size=n_val, replace=False)
    return {folders[index].name for index in chosen}


def _plan_sequence(folder: Path) -> _SequencePlan:
    """Header pass over one sequence: its files, and one size and mode for all of them."""
    paths = list_image_files(folder)
    return _SequencePlan(name=folder.name, paths=paths, header=sequence_header(paths))


def _fill(frames: np.ndarray, plan: _SequencePlan) -> None:
    """Decode a sequence into its rows of frames, padding by edge replication."""
    height, width = plan.header.height, plan.header.width
    for offset, path in enumerate(plan.paths):
        pixels, mode = read_image(path)
        if mode != plan.header.mode or pixels.shape[:2] != (height, width):
            raise TezipError(f"{path}: changed while being read (size or mode differs)")
        frame = frames[plan.frame_start + offset]
        frame[:height, :width] = pixels
        frame[height:, :width] = frame[height - 1 : height, :width]
        frame[:, width:] = frame[:, width - 1 : width]


def _sources(plans: list[_SequencePlan]) -> np.ndarray:
    names = [plan.name.encode("utf-8") for plan in plans for _ in plan.paths]
    # An empty list would give dtype float; keep the dtype S even then.
    return np.array(names, dtype=np.bytes_) if names else np.empty(0, dtype="S1")


def load_sources(path: str | Path) -> np.ndarray:
    """Read a sources_*.hkl file as a numpy array of str (one sequence name per frame)."""
    sources = hickle.load(str(path))
    if isinstance(sources, np.ndarray) and sources.dtype.kind == "S":
        return np.char.decode(sources, "utf-8")
    return np.asarray(sources, dtype=str)


def _write_outputs(output_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write every file under a temporary name, then rename them all: never half-written."""
    created_dir = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TezipError(f"{output_dir}: exists and is not a folder") from None
    except OSError as error:
        raise TezipError(f"{output_dir}: cannot create folder: {error.strerror}") from None

    temporaries: dict[str, Path] = {}
    finished = False
    try:
        for name, array in arrays.items():
            # Not mkstemp: its files are private (0600), and a rename would keep that mode.
            temporary = output_dir / f".{name}.{os.getpid()}.tmp"
            temporaries[name] = temporary
            try:
                hickle.dump(array, str(temporary), mode="w")
            except OSError as error:
                raise TezipError(f"{output_dir / name}: cannot write: {error}") from None
        for name, temporary in temporaries.items():
            os.replace(temporary, output_dir / name)
        finished = True
    finally:
        if not finished:
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)
        if not finished and created_dir:
            try:
                output_dir.rmdir()
            except OSError:
                pass  # not empty: something else is in there now; leave it


def create_train_data(
    data_dir: str | Path,
    output_dir: str | Path,
    val_dirs: Sequence[str | Path] | None = None,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Build X_train/X_val/sources_train/sources_val .hkl files in output_dir.

    val_dirs names the validation sequences (folder names under data_dir, or paths to them);
    without it, about val_fraction of the sequences are drawn at random with seed. progress,
    if given, is called with one line per sequence. Raises TezipError for any input problem,
    before output_dir is created; nothing is left half-written.

    Returns a summary: sequences, train_sequences, val_sequences (names), train_frames,
    val_frames, frame_shape (H, W, C), mode, output_dir.
    """
    data_dir = Path(data_dir)
    output_dir = Path(output_dir)
    if not 0 < val_fraction < 1:
        raise TezipError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")

    folders = _sequence_folders(data_dir)
    data_real, output_real = data_dir.resolve(), output_dir.resolve()
    if output_real == data_real or data_real in output_real.parents:
        # its subfolders are the sequences: .hkl files there would become frames of one, or a folder a new one
        raise TezipError(f"{output_dir}: OUTPUT_DIR lies inside DATA_DIR {data_dir} (each of its subfolders is a "
                         f"sequence); choose a folder outside it")
    if val_dirs:
        val_names = _resolve_val_names(val_dirs, folders, data_dir)
    else:
        val_names = _draw_val_names(folders, val_fraction, seed)

    # Pass 1: file lists and headers only, so sizes are known before any pixels are decoded.
    split = _Split()
    for folder in folders:
        plan = _plan_sequence(folder)
        (split.val if plan.name in val_names else split.train).append(plan)

    plans = split.train + split.val
    first = plans[0]
    for plan in plans[1:]:
        if plan.header.mode != first.header.mode:
            raise TezipError(
                f"{plan.paths[0]}: mode {plan.header.mode} differs from mode "
                f"{first.header.mode} of sequence {first.name}; all sequences must be RGB, "
                f"all 8-bit grayscale L or all 16-bit grayscale I;16"
            )
    height = _round_up(max(plan.header.height for plan in plans), SIZE_MULTIPLE)
    width = _round_up(max(plan.header.width for plan in plans), SIZE_MULTIPLE)
    channels = first.header.channels

    # Pass 2: decode straight into the preallocated arrays (one copy of the data in memory).
    outputs: dict[str, np.ndarray] = {}
    for label, group in (("train", split.train), ("val", split.val)):
        frame_start = 0
        for plan in group:
            plan.frame_start = frame_start
            frame_start += len(plan.paths)
        frames = np.empty((frame_start, height, width, channels), dtype=MODE_DTYPES[first.header.mode])
        for plan in group:
            _fill(frames, plan)
            if progress is not None:
                progress(
                    f"{plan.name}: {_count(len(plan.paths), 'frame')} "
                    f"{plan.header.width}x{plan.header.height} ({label})"
                )
        outputs[f"X_{label}.hkl"] = frames
        outputs[f"sources_{label}.hkl"] = _sources(group)

    _write_outputs(output_dir, {name: outputs[name] for name in OUTPUT_FILES})
    return {
        "sequences": len(plans),
        "train_sequences": [plan.name for plan in split.train],
        "val_sequences": [plan.name for plan in split.val],
        "train_frames": int(outputs["X_train.hkl"].shape[0]),
        "val_frames": int(outputs["X_val.hkl"].shape[0]),
        "frame_shape": (height, width, channels),
        "mode": first.header.mode,
        "output_dir": str(output_dir),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Build PredNet training data (X_train.hkl, X_val.hkl, sources_train.hkl, "
            "sources_val.hkl) from DATA_DIR, whose subfolders are image sequences."
        )
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder of sequence subfolders")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the .hkl files go")
    parser.add_argument(
        "-v",
        "--val",
        dest="val_dirs",
        metavar="VAL_DIR",
        nargs="+",
        help="validation sequences: folder names under DATA_DIR or paths to them "
        "(default: a random --val-fraction of the sequences)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the validation draw (default 0)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help=f"share of sequences drawn for validation without -v (default {DEFAULT_VAL_FRACTION})",
    )
    args = parser.parse_args(argv)
    for name, value in (("DATA_DIR", args.data_dir), ("OUTPUT_DIR", args.output_dir)):
        if not value.strip():  # "" is the current folder to the OS: an unset shell variable would run on it
            parser.error(f"{name} is empty or blank ({value!r}); give a path (. for the current folder)")
    if args.val_dirs and args.val_fraction is not None:
        parser.error("give either -v or --val-fraction, not both")
    if args.val_fraction is None:
        args.val_fraction = DEFAULT_VAL_FRACTION
    if not 0 < args.val_fraction < 1:  # an argument error (exit 2), before any file is read
        parser.error(f"--val-fraction must be between 0 and 1 (exclusive), got {args.val_fraction:g}")
    return args


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        summary = create_train_data(
            args.data_dir,
            args.output_dir,
            val_dirs=args.val_dirs,
            seed=args.seed,
            val_fraction=args.val_fraction,
            progress=lambda line: print(line, flush=True),
        )
    except TezipError as error:
        print(f"train_data_create.py: error: {error}", file=sys.stderr)
        return error.exit_code
    height, width, channels = summary["frame_shape"]
    print(
        f"wrote {_count(summary['sequences'], 'sequence')}, "
        f"{_count(summary['train_frames'] + summary['val_frames'], 'frame')} of "
        f"{height}x{width}x{channels} ({summary['mode']}) to {summary['output_dir']}: "
        f"train {_count(len(summary['train_sequences']), 'sequence')} / "
        f"{_count(summary['train_frames'], 'frame')}, "
        f"val {_count(len(summary['val_sequences']), 'sequence')} / "
        f"{_count(summary['val_frames'], 'frame')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
