#!/usr/bin/env python3
"""The fixed-order reference kernel (prednet/reference.py) against Keras' NextFramePredictor, in
one run: seconds per model step (predict + update) and how far the predictions are apart.

    python benchmarks/bench_reference.py [--frames DIR] [--steps 4] [--tanh] [--fma]

Cases: the bundled default model (stack 16/32/64) on the real frames at their size (megamind:
264 x 360) with 1 and 4 lanes, and a small model (stack 4/8/8, seeded random weights) on the same
frames. Each lane runs closed loop (reset at its first frame, then shown the real frames) from its
own start in the sequence; the first step of each predictor is a warm-up (graph building,
compilation) and not timed. Differences: max |reference - Keras| in model units ([0, 1]) and, after
ValueScale(0, 255).to_pixels, in grey levels, with the fraction of pixel values that differ.

--tanh  also scans every float32 in [0, 9.2] for the reference tanh's error against np.tanh.
--threads N  numba threads for the reference kernel (TensorFlow keeps its own default).
--fma   also compiles the main convolution kernel afresh and counts FMA instructions in it.
Not part of the test suite.
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from prednet import reference as ref  # noqa: E402
from prednet.scale import ValueScale  # noqa: E402

DEFAULT_FRAMES = REPO_ROOT.parent / "shared" / "data" / "megamind"


def read_frames(folder, count):
    from frames.read import list_image_files, read_image

    paths = list_image_files(folder)[:count]
    return np.stack([read_image(p)[0] for p in paths])


def small_model():
    from prednet.model import PredNet, default_config

    net = PredNet(**default_config(3, (4, 8, 8)), output_mode="prediction", name="prednet")
    net.build()
    rng = np.random.default_rng(0)
    for v in net.weights:
        v.assign((rng.standard_normal(v.shape) * (0.5 / np.sqrt(np.prod(v.shape[:-1])))).astype(np.float32))
    return net


def run(predictor, lanes, steps):
    """Closed loop over `steps` frames per lane; returns (predictions, median wall seconds per
    timed step, mean CPU seconds of the process per timed step)."""
    out, times = [], []
    for s in range(steps + 1):
        if s == 1:
            cpu = time.process_time()
        t = time.perf_counter()
        reset = np.float32([1.0 if s == 0 else 0.0] * lanes.shape[1])
        pred = predictor.predict(reset)
        predictor.update(lanes[s])
        if s:
            times.append(time.perf_counter() - t)
        out.append(pred)
    return np.stack(out), float(np.median(times)), (time.process_time() - cpu) / steps


def compare(name, prednet, frames, batch, steps):
    from prednet.predictor import NextFramePredictor

    scale = ValueScale(0, 255)
    n, h, w, _ = frames.shape
    starts = [k * (n - steps - 1) // max(1, batch - 1) if batch > 1 else 0 for k in range(batch)]
    lanes = np.stack([scale.to_model(frames[s: s + steps + 1]) for s in starts], axis=1)  # (T, B, H, W, C)
    keras_pred, keras_s, keras_cpu = run(NextFramePredictor(prednet, h, w, batch), lanes, steps)
    ref_pred, ref_s, ref_cpu = run(ref.ReferencePredictor(prednet, h, w, batch), lanes, steps)
    diff = np.abs(ref_pred.astype(np.float64) - keras_pred)
    px = np.abs(scale.to_pixels(ref_pred) - scale.to_pixels(keras_pred))
    return dict(case=name, size=f"{h}x{w}", batch=batch, keras=keras_s, ref=ref_s, keras_cpu=keras_cpu,
                ref_cpu=ref_cpu, diff=diff.max(),
                px=int(px.max()), frac=float((px > 0).mean()))


def tanh_scan():
    import math

    from numba import njit, prange

    @njit(parallel=True)
    def scan(hi, chunks):
        per = (hi + chunks - 1) // chunks
        worst_ulp, worst_abs, where = np.zeros(chunks), np.zeros(chunks), np.zeros(chunks, np.float32)
        for c in prange(chunks):
            bits = np.empty(1, np.uint32)
            for i in range(c * per, min((c + 1) * per, hi)):
                bits[0] = i
                x = bits.view(np.float32)[0]
                got = np.float64(ref._tanh(x))
                true = math.tanh(np.float64(x))
                t32 = np.float32(true)
                ulp = np.float64(np.nextafter(t32, np.float32(np.inf))) - np.float64(t32)
                d = abs(got - true)
                if d / ulp > worst_ulp[c]:
                    worst_ulp[c], where[c] = d / ulp, x
                worst_abs[c] = max(worst_abs[c], d)
        return worst_ulp, worst_abs, where

    t = time.perf_counter()
    ulps, absolute, where = scan(int(np.float32(9.2).view(np.uint32)) + 1, 512)
    k = int(ulps.argmax())
    print(f"tanh32 vs np.tanh, every float32 in [0, 9.2]: max {ulps[k]:.4f} ulp at x = {where[k]!r}, "
          f"max abs {absolute.max():.3g} ({time.perf_counter() - t:.0f} s)")


def fma_check():
    import numba

    fresh = numba.njit(parallel=True)(ref._conv_numba.py_func)
    xf, w, b = np.ones((1, 4, 300), np.float32), np.ones((8, 4, 3, 3), np.float32), np.ones(8, np.float32)
    fresh(xf, 12, 3, w, b, np.zeros((1, 8, 6, 10), np.float32), 2, np.float32(1), 8, 64, ref.FP_PROBE,
          np.zeros(8, np.uint8))
    asm = "\n".join(fresh.inspect_asm().values())
    fma, mul, add = (len(re.findall(p, asm)) for p in (r"\bv?fn?m(add|sub)", r"\bvmulps\b", r"\bvaddps\b"))
    print(f"_conv_numba machine code: {fma} FMA instructions, {mul} vmulps, {add} vaddps, zmm registers: {'zmm' in asm}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default=str(DEFAULT_FRAMES))
    ap.add_argument("--steps", type=int, default=4, help="timed steps per case (after one warm-up step)")
    ap.add_argument("--tanh", action="store_true")
    ap.add_argument("--fma", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="numba threads (default: numba's, one per CPU)")
    args = ap.parse_args()

    import numba

    from prednet.device import import_framework
    from prednet.modelfile import load_model

    import_framework()
    frames = read_frames(args.frames, 40)
    default, _ = load_model("default")
    cases = [("default 16/32/64", default, 1), ("default 16/32/64", default, 4), ("small 4/8/8", small_model(), 1),
             ("small 4/8/8", small_model(), 4)]
    if args.threads:
        numba.set_num_threads(args.threads)
    print(f"{len(frames)} frames of {args.frames}, {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()} "
          f"({numba.threading_layer() if numba.get_num_threads() > 1 else 'any layer'}), load average before "
          f"{os.getloadavg()[0]:.1f}; s/step: median wall seconds per step (predict + update); CPU s/step: "
          f"the process's CPU seconds per step, all threads")
    print("| case | frame | lanes | Keras s/step | reference s/step | ref/Keras | Keras CPU s/step | reference CPU s/step "
          "| max diff (model) | max diff (grey) | pixels differing |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, net, batch in cases:
        r = compare(name, net, frames, batch, args.steps)
        print(f"| {r['case']} | {r['size']} | {r['batch']} | {r['keras']:.3f} | {r['ref']:.3f} | {r['ref'] / r['keras']:.2f} "
              f"| {r['keras_cpu']:.3f} | {r['ref_cpu']:.3f} | {r['diff']:.2e} | {r['px']} | {100 * r['frac']:.4f} % |",
              flush=True)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    if args.fma:
        fma_check()
    if args.tanh:
        tanh_scan()


if __name__ == "__main__":
    main()
