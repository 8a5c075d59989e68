#!/usr/bin/env python3
"""How much could a learned predictor still gain on the smooth sets (issue 15)? Bounds, not archives.

    python benchmarks/bench_headroom.py [--sets advdiff,heat,...] [--size 256] [--frames 200]
        [--eval 60] [--skip 5] [--skip-frames 3] [--mlp-epochs 20] [--gain 0.7] [--json PATH]

For each set of benchmarks/fields.py (frames 0 .. frames-eval-1 to fit on, the last --eval frames
held out, as bench_16bit), the bits per pixel of the rounded residual x_t - prediction on the
held-out frames: its order-0 entropy, or that of its planar high-pass (a - b + c, what the lossless
coder's MED stage approximates) where smaller. An entropy, not a coded size: TEZip's context coder
lands ~5 % below it; only the differences between rows matter here. Rows:

    noise floor       the clean field itself (fields.clean_counts): no predictor can do better,
                      what is left is the read and shot noise
    previous frame    x_{t-1}
    fitted filter     the linear skip's least-squares taps (prednet.skipfit.fit_skip, K x K over N
                      previous frames: what `tezip.py -l --skip K --skip-frames N --epochs 0` stores)
    clean history     the same filter fitted and applied on the clean previous frames: what a
                      predictor that removed all the noise from its history (a perfect temporal
                      denoiser, e.g. a recurrent state) would reach with the same taps
    recursive k       the same K x K x N filter on a denoised history the decoder can rebuild: each
                      frame is kept as x̂_t = p_t + k (x_t - p_t), p_t the filter's prediction from
                      x̂_{t-1..t-N} (a fixed-gain Kalman-style blend), the taps refitted three times
                      (the fitted filter's fit) from x̂ history to the raw frame; k = 1 is the
                      fitted filter
    local MLP         the fitted filter plus a per-pixel MLP (2 x 128, GELU; the K x K x N
                      neighbourhood of planes in, the filter's residual out, L1, Adam) trained on
                      the fit frames: what any local nonlinear correction from the frame input
                      (`-l --frame-input`, PredNet's layer-0 receptive field is 5 x 5) can reach

"gain" columns: 1 - bits / fitted filter's bits, the share of the fitted filter's bits a row saves;
a trained model that is 10 % smaller than the fitted filter needs a row ≥ ~10 % (the coded size
falls somewhat less than the entropy). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import fields  # noqa: E402

PIXEL_MAX = 65535.0
SAMPLES_PER_FRAME = 6000  # pixels per fit frame for the MLP


def bits_per_pixel(residual):
    """Order-0 entropy (bits/pixel) of the rounded residual (H, W), or of its planar high-pass
    r - (left + up - up-left) (edge-replicated) where that is smaller."""
    r = np.rint(residual)
    p = np.pad(r, ((1, 0), (1, 0)), mode="edge")
    planar = r - (p[1:, :-1] + p[:-1, 1:] - p[:-1, :-1])
    out = []
    for a in (r, planar):
        _, counts = np.unique(a.astype(np.int64), return_counts=True)
        q = counts / counts.sum()
        out.append(float(-(q * np.log2(q)).sum()))
    return min(out)


def planes(history):
    """[x_{t-1}, x_{t-1} - x_{t-2}, ...] from the previous frames, newest first: the skip's planes."""
    return [history[0]] + [history[j] - history[j + 1] for j in range(len(history) - 1)]


class FittedFilter:
    """The linear skip's least-squares filter, fitted by prednet.skipfit.fit_skip on `run`
    (T, H, W) frames t < fit_end, applied in counts (float64)."""

    def __init__(self, run, fit_end, K, N):
        from prednet.model import skip_taps
        from prednet.skipfit import fit_skip

        scaled = (run / PIXEL_MAX).astype(np.float32)[..., None]
        kernel, self.bias = fit_skip(lambda i: scaled[i], np.arange(fit_end - N), K, 1.0, frames=N)
        self.taps = np.asarray(skip_taps(kernel, 1.0), np.float64)[:, :, :, 0]  # (K, K, N)
        self.N = N

    def predict(self, history):
        """Prediction (H, W) float64 in counts from the N previous frames (newest first)."""
        out = np.full(history[0].shape, float(self.bias[0]) * PIXEL_MAX)
        for j, plane in enumerate(planes(history)):
            out += ndimage.correlate(plane, self.taps[:, :, j], mode="nearest")
        return out


def neighbourhoods(history, K):
    """(H·W, K·K·N) float32: each pixel's K x K neighbourhood (edge-replicated) of every plane."""
    from numpy.lib.stride_tricks import sliding_window_view

    cols = []
    for plane in planes(history):
        padded = np.pad(plane, K // 2, mode="edge")
        cols.append(sliding_window_view(padded, (K, K)).reshape(plane.size, K * K))
    return np.concatenate(cols, axis=1).astype(np.float32)


def local_mlp(run, fit_end, filt, K, epochs, seed=0):
    """A per-pixel MLP trained on the fitted filter's residual over frames N .. fit_end-1; returns
    predict(history) → the filter's prediction plus the MLP's correction (H, W) float64."""
    import keras

    N = filt.N
    rng = np.random.default_rng(seed)
    X, y = [], []
    for t in range(N, fit_end):
        history = [run[t - 1 - j] for j in range(N)]
        picks = rng.choice(run[t].size, min(SAMPLES_PER_FRAME, run[t].size), replace=False)
        X.append(neighbourhoods(history, K)[picks])
        y.append((run[t] - filt.predict(history)).ravel()[picks])
    X, y = np.concatenate(X), np.concatenate(y)
    offset, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
    y_scale = float(np.median(np.abs(y))) or 1.0
    keras.utils.set_random_seed(seed)
    mlp = keras.Sequential([keras.Input((X.shape[1],)), keras.layers.Dense(128, activation="gelu"),
                            keras.layers.Dense(128, activation="gelu"), keras.layers.Dense(1)])
    mlp.compile(keras.optimizers.Adam(1e-3), "mean_absolute_error")
    mlp.fit((X - offset) / scale, y / y_scale, batch_size=512, epochs=epochs, verbose=0)

    def predict(history):
        f = (neighbourhoods(history, K) - offset) / scale
        correction = mlp.predict(f, batch_size=65536, verbose=0)[:, 0].astype(np.float64) * y_scale
        return filt.predict(history) + correction.reshape(history[0].shape)

    return predict


class RecursiveFilter:
    """The fitted filter's least-squares fit (prednet.skipfit's features and Cauchy-IRLS fit) with
    the history frames and the target decoupled: taps fitted from `history` (T, H, W) frames t-1 ..
    t-N to the raw frame run[t], t in t_range; predict_at(history, t) predicts as FittedFilter does."""

    def __init__(self, history, run, t_range, K, N, seed=0):
        from prednet.skipfit import MAX_VALUES, RUNS, robust_fit, skip_features

        rng = np.random.default_rng(seed)
        picks = rng.choice(np.asarray(t_range), size=min(RUNS, len(t_range)), replace=False)
        n_features = (K * K - 1) + (N - 1) * K * K
        per_run = min(run[0].size, MAX_VALUES // (n_features * len(picks)))
        X, y = [], []
        for t in picks:
            pixels = rng.choice(run[t].size, size=per_run, replace=False)
            features, extrapolation = skip_features(self._frames(history, t, N), K, pixels)
            X.append(features)
            y.append(run[t].ravel()[pixels] / PIXEL_MAX - extrapolation[0])
        AT, y = np.ascontiguousarray(np.concatenate(X, axis=1)), np.concatenate(y)
        self.coef, self.intercept = robust_fit(AT, y)
        self.K, self.N = K, N

    @staticmethod
    def _frames(history, t, N):
        return [history[t - 1 - j][..., None] / PIXEL_MAX for j in range(N)]  # newest first, (H, W, 1)

    def predict_at(self, history, t):
        """Prediction (H, W) float64 in counts of frame t from history[t-1 .. t-N]."""
        from prednet.skipfit import skip_features

        shape = history[t - 1].shape
        features, extrapolation = skip_features(self._frames(history, t, self.N), self.K, np.arange(np.prod(shape)))
        return ((self.coef @ features + self.intercept + extrapolation[0]) * PIXEL_MAX).reshape(shape)


def recursive_denoised(run, fit_end, K, N, gain, refits=3):
    """Predictions (T, H, W) float64 of the K x K x N filter applied to a recursively denoised
    history x̂ (the module docstring's "recursive k"): frames < N are their own history; each
    refit fits the taps from the current x̂ to the raw frames t < fit_end, then rebuilds x̂ in
    order (what a decoder would do: it only needs x_t and its own prediction)."""
    history = run.copy()
    predictions = np.zeros_like(run)
    for _ in range(refits):
        filt = RecursiveFilter(history, run, range(N, fit_end), K, N)
        for t in range(N, len(run)):
            predictions[t] = filt.predict_at(history, t)
            history[t] = np.clip(predictions[t] + gain * (run[t] - predictions[t]), 0.0, PIXEL_MAX)
    return predictions


def measure(name, size, frames, n_eval, K, N, mlp_epochs, gain=0.7):
    run, clean = fields.make(name, size, frames, with_clean=True)
    run = run.astype(np.float64)
    fit_end = frames - n_eval
    held_out = range(fit_end, frames)

    def score(predict, source=run):
        return float(np.mean([bits_per_pixel(run[t] - predict([source[t - 1 - j] for j in range(N)]))
                              for t in held_out]))

    filt = FittedFilter(run, fit_end, K, N)
    clean_filt = FittedFilter(clean, fit_end, K, N)
    row = {
        "noise floor": float(np.mean([bits_per_pixel(run[t] - clean[t]) for t in held_out])),
        "previous frame": score(lambda h: h[0]),
        "fitted filter": score(filt.predict),
        "clean history": score(clean_filt.predict, clean),
    }
    recursive = recursive_denoised(run, fit_end, K, N, gain)
    row[f"recursive {gain:g}"] = float(np.mean([bits_per_pixel(run[t] - recursive[t]) for t in held_out]))
    t0 = time.time()
    row["local MLP"] = score(local_mlp(run, fit_end, filt, K, mlp_epochs))
    row["mlp_s"] = round(time.time() - t0, 1)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(fields.FIELDS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--eval", type=int, default=60)
    ap.add_argument("--skip", type=int, default=5, help="the filter's K (odd)")
    ap.add_argument("--skip-frames", type=int, default=3, help="previous frames the filter sees (N)")
    ap.add_argument("--mlp-epochs", type=int, default=20)
    ap.add_argument("--gain", type=float, default=0.7,
                    help="the recursive row's blend k (below ~0.7 the loop diverged on some sets)")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    names = a.sets.split(",")
    unknown = [n for n in names if n not in fields.FIELDS]
    if unknown:
        ap.error(f"unknown sets {unknown}; choose from {list(fields.FIELDS)}")
    results = {}
    recursive = f"recursive {a.gain:g}"
    cols = ("noise floor", "previous frame", "fitted filter", "clean history", recursive, "local MLP")
    gain_cols = ("clean history", recursive, "local MLP", "noise floor")
    print(f"bits/pixel of the rounded residual on the last {a.eval} of {a.frames} frames, "
          f"{a.size}x{a.size}; filter {a.skip}x{a.skip} over {a.skip_frames} frames\n")
    print("| set | " + " | ".join(cols) + " | gain: " + " / ".join(gain_cols) + " |")
    print("|---|" + "---|" * (len(cols) + 1))
    for name in names:
        row = measure(name, a.size, a.frames, a.eval, a.skip, a.skip_frames, a.mlp_epochs, a.gain)
        results[name] = row
        base = row["fitted filter"]
        gains = " / ".join(f"{100 * (1 - row[c] / base):.1f} %" for c in gain_cols)
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + f" | {gains} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=1))


if __name__ == "__main__":
    main()
