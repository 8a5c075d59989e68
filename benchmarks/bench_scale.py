#!/usr/bin/env python3
"""Memory and speed against the length of the run (issue 16): peak RSS and frames/s of `-c` and
`-u` (whole processes, start-up included) for synthetic 384x288 RGB runs of 100, 500 and 2,000
frames, and for 1,000 frames of 1024x1024 uint16 read from an HDF5 file and restored into one.

    python benchmarks/bench_scale.py [--frames 100 500 2000] [--model default] [--hdf5 1000]
        [--hdf5-model none] [--options -p 1 -w 30 -m abs -b 0] [--tmp DIR] [--json PATH] [--png PATH]

Every run is verified by TEZip itself (each decoded frame against its checksum); the HDF5 round
trip is also compared with the input frame by frame here (bit-exact: lossless). The RGB frames are
a smooth textured background with moving discs and Gaussian noise (sigma 2), written as PNG; the
shorter runs are hard links to the first frames of the longest. The HDF5 input is
benchmarks/bench_frames_io.py's detector-like dataset (bitshuffle-LZ4, one-frame chunks). Needs
about 0.5 GB (RGB) + 3 GB (HDF5: input, archive, output) of free disk in --tmp. Prints a table;
--png draws peak RSS and frames/s against the number of frames. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from bench_frames_io import DATASET, phase_generate  # noqa: E402  (the detector-like HDF5 input)
from bench_speed import timed  # noqa: E402  (wall seconds and peak RSS of one process)

HEIGHT, WIDTH = 288, 384


def rgb_frames(n, seed=0):
    """(HEIGHT, WIDTH, 3) uint8 frames, one at a time: a smooth background, four discs moving at
    constant speeds (bouncing off the edges), Gaussian noise of sigma 2."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    background = np.stack([90 + 50 * np.sin(x / 37 + c) * np.cos(y / 29 - c) + 30 * (x / WIDTH) for c in range(3)], -1)
    centre = rng.uniform((20, 20), (HEIGHT - 20, WIDTH - 20), size=(4, 2))
    speed = rng.uniform(-3, 3, size=(4, 2))
    colour = rng.uniform(20, 235, size=(4, 3))
    for _ in range(n):
        frame = background.copy()
        for k in range(4):
            inside = (y - centre[k, 0]) ** 2 + (x - centre[k, 1]) ** 2 < 18 ** 2
            frame[inside] = colour[k]
        frame += rng.normal(0, 2, frame.shape).astype(np.float32)
        yield np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        centre += speed
        for axis, size in ((0, HEIGHT), (1, WIDTH)):
            out = (centre[:, axis] < 18) | (centre[:, axis] > size - 18)
            speed[out, axis] *= -1


def tezip(*args):
    return [sys.executable, str(REPO / "tezip.py"), *map(str, args)]


def archive_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).iterdir())


def measure(model, source, n, work, tag, options, extra_u=()):
    comp, out = work / f"comp_{tag}", work / f"out_{tag}"
    c_wall, c_rss = timed(tezip("-c", model, source, comp, "-f", *options))
    u_wall, u_rss = timed(tezip("-u", model, comp, out, "-f", *extra_u))
    row = dict(case=tag, model=model, frames=n, archive_bytes=archive_bytes(comp),
               compress_s=round(c_wall, 2), compress_fps=round(n / c_wall, 2), compress_rss_mb=round(c_rss),
               decompress_s=round(u_wall, 2), decompress_fps=round(n / u_wall, 2), decompress_rss_mb=round(u_rss))
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row, comp, out


def run_rgb(args, work):
    longest = max(args.frames)
    pool = work / "rgb_all"
    pool.mkdir()
    for t, frame in enumerate(rgb_frames(longest)):
        Image.fromarray(frame).save(pool / f"frame_{t:05d}.png", compress_level=1)
    rows = []
    for n in sorted(args.frames):
        folder = work / f"rgb_{n}"
        folder.mkdir()
        for t in range(n):
            os.link(pool / f"frame_{t:05d}.png", folder / f"frame_{t:05d}.png")
        row, comp, out = measure(args.model, folder, n, work, f"rgb_{n}", args.options)
        rows.append(row)
        for d in (comp, out):
            for p in d.iterdir():
                p.unlink()
            d.rmdir()
    return rows


def run_hdf5(args, work):
    import h5py
    import hdf5plugin  # noqa: F401  (the input's bitshuffle-LZ4 filter)

    n = args.hdf5
    source = work / "run.h5"
    phase_generate(argparse.Namespace(frames=n, size=(1024, 1024), input=source))
    row, comp, out = measure(args.hdf5_model, f"{source}::{DATASET}", n, work, f"hdf5_{n}", args.options)
    restored = next(out.glob("*.h5"))
    with h5py.File(source, "r") as a, h5py.File(restored, "r") as b:
        x, y = a[DATASET], b[DATASET]
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
        for t in range(n):
            if not np.array_equal(x[t], y[t]):
                raise AssertionError(f"HDF5 frame {t} differs after the round trip")
    row["bit_exact"] = True
    print(f"HDF5 round trip of {n} frames: bit-exact", flush=True)
    return [row]


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = [r for r in rows if r["case"].startswith("rgb")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("compress", "-c"), ("decompress", "-u")):
        a.plot([r["frames"] for r in rgb], [r[f"{key}_rss_mb"] for r in rgb], "o-", label=label)
        b.plot([r["frames"] for r in rgb], [r[f"{key}_fps"] for r in rgb], "o-", label=label)
    a.set(xlabel="frames (384x288 RGB)", ylabel="peak RSS (MB)", xscale="log", ylim=(0, None))
    b.set(xlabel="frames (384x288 RGB)", ylabel="frames/s", xscale="log", ylim=(0, None))
    a.legend(), b.legend()
    fig.suptitle(f"TEZip {rgb[0]['model'] if rgb else ''}: memory and speed against the run's length")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="*", default=[100, 500, 2000])
    p.add_argument("--model", default="default")
    p.add_argument("--hdf5", type=int, default=1000, help="frames of the HDF5 run (0: skip)")
    p.add_argument("--hdf5-model", default="none")
    p.add_argument("--options", nargs=argparse.REMAINDER, default=["-p", "1", "-w", "30", "-m", "abs", "-b", "0"])
    p.add_argument("--tmp")
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        if args.frames:
            rows += run_rgb(args, Path(tmp))
        if args.hdf5:
            rows += run_hdf5(args, Path(tmp))
    print("\n| run | model | frames | -c frames/s | -c peak RSS | -u frames/s | -u peak RSS | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = (HEIGHT * WIDTH * 3) if r["case"].startswith("rgb") else 1024 * 1024 * 2
        print(f"| {r['case']} | {r['model']} | {r['frames']} | {r['compress_fps']} | {r['compress_rss_mb']} MB | "
              f"{r['decompress_fps']} | {r['decompress_rss_mb']} MB | {size * r['frames'] / r['archive_bytes']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.png and any(r["case"].startswith("rgb") for r in rows):
        plot(rows, args.png)


if __name__ == "__main__":
    main()
