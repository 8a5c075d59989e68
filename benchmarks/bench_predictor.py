#!/usr/bin/env python3
"""What the learned prediction contributes (issue 14): the same frames compressed with no model,
with an untrained model of the same stack (its weights as Keras initialises them, seed 0), and
with the given model, at lossless and each abs bound; the share of blocks where each candidate
wins; seconds in the model and in the codec. Every round trip is decoded and checked.

    python benchmarks/bench_predictor.py MODEL_DIR FRAMES [--first N --count N] [--bounds 0 1 2 4 8]
        [--window 34] [--json PATH]

FRAMES: a folder of images, a TIFF stack or an HDF5 dataset (FILE::/path). MODEL_DIR: a model
folder or `default`. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def untrained_copy(model_dir, dest):
    """A model folder with the given model's architecture and freshly initialised weights (seed 0)."""
    import keras

    from prednet.model import PredNet
    from prednet.modelfile import read_model_json, save_model

    keras.utils.set_random_seed(0)
    arch = read_model_json(model_dir)["architecture"]
    prednet = PredNet(**arch, output_mode="prediction", name="prednet")
    prednet.build()
    save_model(dest, prednet, {"untrained": True})
    return dest


def select_frames(frames, first, count, work):
    """A folder with frames first..first+count-1 of a folder of images (others are used whole)."""
    src = Path(frames)
    if not src.is_dir() or (first is None and count is None):
        return frames
    names = sorted(p.name for p in src.iterdir() if not p.name.startswith("."))
    first = first or 0
    picked = names[first: first + count if count else None]
    dest = work / "frames"
    dest.mkdir()
    for name in picked:
        shutil.copy(src / name, dest / name)
    return dest


class TimedPredictor:
    """Wraps a predictor to time its steps."""

    seconds = 0.0

    def __init__(self, inner):
        self.inner = inner
        self.height, self.width, self.batch, self.channels = inner.height, inner.width, inner.batch, inner.channels

    @property
    def states(self):
        return self.inner.states

    @states.setter
    def states(self, v):
        self.inner.states = v

    def predict(self, reset):
        t = time.perf_counter()
        try:
            return self.inner.predict(reset)
        finally:
            TimedPredictor.seconds += time.perf_counter() - t

    def update(self, frames):
        t = time.perf_counter()
        try:
            return self.inner.update(frames)
        finally:
            TimedPredictor.seconds += time.perf_counter() - t


def run(model, frames, bound, window, work, tag):
    import compress.pipeline as cp
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from frames.source import open_source
    from prednet import reference
    from sequence.plan import CodecPlan, RunFlags

    real = reference.predictor_for
    reference.predictor_for = lambda *a, **k: TimedPredictor(real(*a, **k))
    TimedPredictor.seconds = 0.0
    comp, out = work / f"c_{tag}_{bound}", work / f"d_{tag}_{bound}"
    try:
        t = time.perf_counter()
        s = compress_folder(model, frames, comp, CodecPlan.make(warmup=1, window=window, bounds=(bound,)), RunFlags())
        seconds = time.perf_counter() - t
        model_seconds = TimedPredictor.seconds
    finally:
        reference.predictor_for = real
    decompress_folder(model, comp, out, RunFlags())
    with open_source(frames) as a:
        back = out
        if a.kind != "folder":  # a stack or a dataset comes back as one file of the same name
            file, _, dataset = str(a.spec).partition("::")
            back = f"{out / Path(file).name}::{dataset}" if dataset else out / Path(file).name
        with open_source(back) as b:
            err = max(int(np.abs(a.read(i).astype(np.int64) - b.read(i)).max()) for i in range(a.n_frames))
    assert err <= bound, (tag, bound, err)
    shutil.rmtree(comp)
    shutil.rmtree(out)
    total = sum(s.blocks.values()) or 1
    return dict(model=tag, bound=bound, bytes=s.compressed_bytes, ratio=s.ratio, max_abs_error=err,
                seconds=seconds, model_seconds=model_seconds,
                blocks={k: v / total for k, v in s.blocks.items()})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("frames")
    p.add_argument("--first", type=int)
    p.add_argument("--count", type=int)
    p.add_argument("--bounds", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    p.add_argument("--window", type=int, default=34)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = select_frames(args.frames, args.first, args.count, work)
        models = [("none", "none"), ("untrained", str(untrained_copy(args.model, work / "untrained"))),
                  ("given", args.model)]
        for bound in args.bounds:
            for tag, model in models:
                rows.append(run(model, frames, bound, args.window, work, tag))
                r = rows[-1]
                print(f"bound {bound:>2} {tag:>9}: {r['bytes']:>9} bytes ratio {r['ratio']:7.2f} "
                      f"({r['seconds']:.1f} s, model {r['model_seconds']:.1f} s)", flush=True)
    print()
    print("| bound | no model | untrained | given | given vs no model | blocks: model / previous / moved / mean / global / intra |")
    print("|---|---|---|---|---|---|")
    for bound in args.bounds:
        r = {row["model"]: row for row in rows if row["bound"] == bound}
        gain = 1 - r["given"]["bytes"] / r["none"]["bytes"]
        b = r["given"]["blocks"]
        shares = " / ".join(f"{100 * b.get(k, 0):.0f} %" for k in ("model", "previous", "moved", "mean", "global", "intra"))
        print(f"| {bound or 'lossless'} | {r['none']['ratio']:.2f} | {r['untrained']['ratio']:.2f} | "
              f"{r['given']['ratio']:.2f} | {100 * gain:+.1f} % fewer bytes | {shares} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
