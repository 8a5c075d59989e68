#!/usr/bin/env python3
"""Generate the bundled sample sequences in examples/sample/ (committed; re-run to reproduce).

A camera pans slowly over a smooth procedural landscape while a disc moves across it: the kind of
near-identical consecutive frames TEZip is for, small enough to train and compress in seconds.
train/ holds three sequences (different pans) for train_data_create.py; test/ one unseen sequence.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH, FRAMES = 48, 64, 16


def landscape(rng, size=256):
    y, x = np.mgrid[0:size, 0:size] / size
    field = np.zeros((size, size, 3))
    for _ in range(12):
        fy, fx = rng.uniform(1, 6, 2)
        phase = rng.uniform(0, 2 * np.pi, 3)
        amp = rng.uniform(10, 35, 3)
        field += amp * np.sin(2 * np.pi * (fy * y + fx * x)[..., None] + phase)
    return 120 + field


def sequence(rng, field, velocity, start):
    frames = []
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    disc = np.array([rng.uniform(8, HEIGHT - 8), rng.uniform(8, WIDTH - 8)])
    disc_v = rng.uniform(-1.5, 1.5, 2)
    colour = rng.uniform(20, 235, 3)
    for t in range(FRAMES):
        oy, ox = (np.array(start) + t * np.array(velocity)).astype(int)
        frame = field[oy : oy + HEIGHT, ox : ox + WIDTH].copy()
        inside = (yy - disc[0]) ** 2 + (xx - disc[1]) ** 2 < 36
        frame[inside] = colour
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        disc += disc_v
    return frames


def main():
    rng = np.random.default_rng(2026)
    field = landscape(rng)
    root = Path(__file__).resolve().parent / "sample"
    plans = {"train/pan_right": ((0, 1), (20, 10)), "train/pan_down": ((1, 0), (60, 90)),
             "train/pan_diagonal": ((1, 1), (100, 40)), "test": ((0, 1), (150, 120))}
    for name, (velocity, start) in plans.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(sequence(rng, field, velocity, start)):
            Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    print(f"wrote {len(plans)} sequences of {FRAMES} frames {WIDTH}x{HEIGHT} into {root}")


if __name__ == "__main__":
    main()
