"""Shared test helpers: small synthetic image sequences of moving squares.

Plain functions (import them with `from conftest import make_sequence`; pytest puts tests/ on
sys.path because it has no __init__.py):

    moving_squares(n_frames, height, width, channels=3, seed=0, n_squares=3, noise=0)
        -> uint8 array (N, H, W, C): a smooth gradient background with squares that move a
           few pixels per frame and bounce off the borders. channels=3 is RGB, 1 is
           grayscale L. Same arguments, same array. noise > 0 adds uniform noise in
           [-noise, noise] per pixel (clipped), for codecs that must cope with texture.
    detector_frames(n_frames, height, width, seed=0, peak=60000.0, hot_pixels=3)
        -> uint16 array (N, H, W, 1), 16-bit grayscale I;16 frames like a scientific detector's:
           a dim background gradient that brightens and dims over time, a few bright Gaussian
           spots drifting a pixel or so per frame (overlaps saturate at 65535), Poisson (shot)
           noise on all of it, and `hot_pixels` pixels stuck at 65535; values span 0-65535.
           Same arguments, same array.
    write_frames(folder, frames, ext=".png", prefix="frame_") -> list[Path]
        writes frames[i] as folder/f"{prefix}{i:04d}{ext}" (folder created if missing);
        the format follows ext, so use a lossless ext when the values must read back exact.
    make_sequence(folder, n_frames=6, height=24, width=32, channels=3, seed=0, ext=".png",
                  prefix="frame_", noise=0) -> uint8 array (N, H, W, C)
        moving_squares + write_frames: the array is what a lossless reader must return.

    plan_and_flags(**options) -> (CodecPlan, RunFlags)
        the options of one compression as keywords, plan options (window, mode, bounds, ...) and
        run flags (overwrite, verbose, device, report, report_frame) alike, split and validated:
        CodecPlan.make raises OptionError / TezipError for bad ones.
    compress(model_dir, image_dir, out_dir, **options) -> Summary
        compress_folder(model_dir, image_dir, out_dir, *plan_and_flags(**options)).

Fixtures:

    rgb_sequence   -> SequenceOnDisk(folder, frames): 6 RGB frames 24x32 in tmp_path/"rgb"
    gray_sequence  -> SequenceOnDisk(folder, frames): 6 L frames 24x32 in tmp_path/"gray"
    sequence_factory -> make(name, **make_sequence_kwargs) -> SequenceOnDisk, writing into
                        tmp_path/name (for tests that need several sequences)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from PIL import Image

# The repository root (pytest.ini's `pythonpath = .` makes its modules importable).
REPO_ROOT = Path(__file__).resolve().parent.parent


class SequenceOnDisk(NamedTuple):
    folder: Path
    frames: np.ndarray  # uint8 (N, H, W, C), exactly the pixels written


def moving_squares(
    n_frames: int,
    height: int,
    width: int,
    channels: int = 3,
    seed: int = 0,
    n_squares: int = 3,
    noise: int = 0,
) -> np.ndarray:
    """Frames of squares moving over a gradient; see the module docstring."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (L) or 3 (RGB), got {channels}")
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None, None]
    cols = np.linspace(0, 1, width)[None, :, None]
    tint = rng.uniform(0.3, 1.0, size=(1, 1, channels))
    background = (40 + 120 * (0.6 * rows + 0.4 * cols) * tint).astype(np.float64)

    # Squares smaller than the frame, so they always fit and can bounce.
    max_side = max(1, min(height, width) // 3)
    sides = rng.integers(1, max_side + 1, size=n_squares)
    positions = np.stack(
        [rng.uniform(0, height - sides), rng.uniform(0, width - sides)], axis=1
    )
    velocities = rng.uniform(-2.5, 2.5, size=(n_squares, 2))
    colors = rng.integers(0, 256, size=(n_squares, channels))

    frames = np.empty((n_frames, height, width, channels), dtype=np.uint8)
    for index in range(n_frames):
        frame = background.copy()
        for square in range(n_squares):
            top, left = positions[square].astype(int)
            side = sides[square]
            frame[top : top + side, left : left + side] = colors[square]
        if noise:
            frame += rng.integers(-noise, noise + 1, size=frame.shape)
        frames[index] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)

        positions += velocities
        limits = np.stack([height - sides, width - sides], axis=1).astype(float)
        bounced = (positions < 0) | (positions > limits)
        velocities[bounced] *= -1
        positions = np.clip(positions, 0, limits)
    return frames


def detector_frames(
    n_frames: int, height: int, width: int, seed: int = 0, peak: float = 60000.0, hot_pixels: int = 3
) -> np.ndarray:
    """16-bit grayscale frames with a scientific detector's statistics; see the module docstring."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    n_spots = 4
    centers = rng.uniform((0, 0), (height, width), size=(n_spots, 2))
    velocities = rng.uniform(-1.5, 1.5, size=(n_spots, 2))
    sigmas = rng.uniform(0.08, 0.2, size=n_spots) * min(height, width)
    amplitudes = rng.uniform(0.3, 1.0, size=n_spots) * peak
    hot = rng.integers(0, (height, width), size=(hot_pixels, 2))
    frames = np.empty((n_frames, height, width, 1), dtype=np.uint16)
    for index in range(n_frames):
        # A dim background that breathes over time; its top rows expect ~0 counts, so zeros occur.
        field = 400.0 * (rows / height) * (1 + 0.2 * np.sin(index / 3))
        for spot in range(n_spots):
            cy, cx = centers[spot] + velocities[spot] * index
            field += amplitudes[spot] * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * sigmas[spot] ** 2))
        counts = rng.poisson(field)  # shot noise: variance = expected counts
        counts[hot[:, 0], hot[:, 1]] = 65535  # stuck pixels, saturated in every frame
        frames[index, :, :, 0] = np.clip(counts, 0, 65535)
    return frames


def write_frames(
    folder: str | Path, frames: np.ndarray, ext: str = ".png", prefix: str = "frame_"
) -> list[Path]:
    """Write each frame as folder/{prefix}{index:04d}{ext}; returns the paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"{prefix}{index:04d}{ext}"
        pixels = frame[:, :, 0] if frame.shape[2] == 1 else frame
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        paths.append(path)
    return paths


def make_sequence(
    folder: str | Path,
    n_frames: int = 6,
    height: int = 24,
    width: int = 32,
    channels: int = 3,
    seed: int = 0,
    ext: str = ".png",
    prefix: str = "frame_",
    noise: int = 0,
) -> np.ndarray:
    """Write a moving-squares sequence into folder; returns the uint8 (N, H, W, C) written."""
    frames = moving_squares(n_frames, height, width, channels, seed=seed, noise=noise)
    write_frames(folder, frames, ext=ext, prefix=prefix)
    return frames


def plan_and_flags(**options):
    """Split keyword options into (CodecPlan.make(plan options), RunFlags(run flags))."""
    from dataclasses import fields

    from sequence.plan import CodecPlan, RunFlags

    flag_names = {f.name for f in fields(RunFlags)}
    flags = RunFlags(**{k: v for k, v in options.items() if k in flag_names})
    return CodecPlan.make(**{k: v for k, v in options.items() if k not in flag_names}), flags


def compress(model_dir, image_dir, out_dir, **options):
    """compress_folder with keyword options (plan options and run flags alike)."""
    from compress.pipeline import compress_folder

    return compress_folder(model_dir, image_dir, out_dir, *plan_and_flags(**options))


@pytest.fixture
def rgb_sequence(tmp_path: Path) -> SequenceOnDisk:
    folder = tmp_path / "rgb"
    return SequenceOnDisk(folder, make_sequence(folder, channels=3, seed=1))


@pytest.fixture
def gray_sequence(tmp_path: Path) -> SequenceOnDisk:
    folder = tmp_path / "gray"
    return SequenceOnDisk(folder, make_sequence(folder, channels=1, seed=2))


@pytest.fixture
def sequence_factory(tmp_path: Path) -> Callable[..., SequenceOnDisk]:
    def make(name: str, **kwargs) -> SequenceOnDisk:
        folder = tmp_path / name
        return SequenceOnDisk(folder, make_sequence(folder, **kwargs))

    return make


# ---------------------------------------------------------------------------------------------
# A real, tiny PredNet trained for a few steps on moving squares: end-to-end tests use it (never
# a stand-in predictor). Trained once per test session and channel count.

TINY_STACK = (4, 8, 8)


def train_tiny_model(root: Path, channels: int, seed: int = 0) -> Path:
    from prednet.train import TrainOptions, train
    from train_data_create import create_train_data

    seqs = root / "seqs"
    for i in range(3):
        make_sequence(seqs / f"s{i}", n_frames=10, height=32, width=48, channels=channels, seed=100 + i)
    create_train_data(seqs, root / "data", val_dirs=["s0"])
    options = TrainOptions(epochs=2, steps_per_epoch=6, batch_size=4, nt=5, val_sequences=4,
                           hidden_stack=TINY_STACK, seed=seed)
    train(root / "model", root / "data", options)
    return root / "model"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Callable[[int], Path]:
    """tiny_model(channels) -> folder of a trained tiny model for 1- or 3-channel frames."""
    cache: dict[int, Path] = {}

    def get(channels: int = 3) -> Path:
        if channels not in cache:
            cache[channels] = train_tiny_model(tmp_path_factory.mktemp(f"model{channels}"), channels)
        return cache[channels]

    return get


@pytest.fixture
def cp():
    """CuPy on a CUDA device, for the GPU kernel tests; skipped cleanly without one."""
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    return cupy
