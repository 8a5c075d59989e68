"""Least-squares start for a linear skip (prednet.model.LinearSkip), `tezip.py -l --skip K`.

Gradient steps move the skip's taps slowly and chase the large, smooth part of the error first;
the taps that average the noise of the two previous frames (where, losslessly, the bytes are) get
almost no gradient in a CPU's budget of steps. So training starts from the taps that minimise the
prediction error of the linear part alone over the training sequences, found in one solve:

    x_t - (2 x_{t-1} - x_{t-2}) ≈ Σ_c Σ_d u[d, c] (x_{t-1,c}(p + d) - x_{t-1,c}(p))
                                  + Σ_j Σ_c Σ_d v_j[d, c] Δ_{j,c}(p + d) + bias,
                                  Δ_j = x_{t-1-j} - x_{t-2-j},  j = 0 .. N-2

per output channel, over K x K offsets d (edge-replicated borders, as the model pads), N the frames
the skip sees, which is exactly the skip's parametrisation (skip_taps: gain · kernel on the frame
summing to 1, on the newest change raised by 1 at the centre), solved by stages/_lsfit.fit: a
plain fit, then Cauchy-IRLS with the plain fit's median absolute residual as the scale (the coder
pays about log |error|, so the bulk of the pixels matters, not the few large errors). The gradient
epochs then train the taps and PredNet's correction together from there (`--epochs 0`: the
fitted taps alone).
"""

import numpy as np

from base.errors import TezipError

MAX_VALUES = 20_000_000  # features x samples held at once (float64): 160 MB
MAX_SKIP_FRAMES = 8  # the most previous frames a skip may see (-l --skip-frames)
RUNS = 64  # runs of N + 1 consecutive frames sampled from the training sequences


def _neighbourhoods(frame, K, ys, xs):
    """(K*K, P) float64: frame (H, W) at every offset of a K x K window around the pixels (ys, xs)
    (P each), edge-replicated: only the sampled pixels' values are gathered, so memory grows with
    the samples, not with the frame times K*K."""
    p = K // 2
    padded = np.pad(frame, p, mode="edge")
    return np.stack([padded[ys + dy, xs + dx] for dy in range(K) for dx in range(K)])


def skip_features(history, K, pixels):
    """(F, P) features of the sampled pixels for the skip's least-squares fit and their (C, P)
    target offset (the extrapolation), from the N previous frames (H, W, C) float, newest first,
    and `pixels` (P,) flat indices into H x W: for every input channel the K*K - 1 frame
    differences x(p + d) - x(p) (centre left out: it is 0), then for each change
    x_{t-1-j} - x_{t-2-j} its K*K values, in the skip's plane order."""
    previous = history[0].astype(np.float64)
    H, W, C = previous.shape
    ys, xs = np.divmod(np.asarray(pixels), W)
    centre = (K * K) // 2
    rows = []
    for c in range(C):
        n = _neighbourhoods(previous[..., c], K, ys, xs)
        rows.append(np.delete(n - n[centre], centre, axis=0))
    for j in range(len(history) - 1):
        change = history[j].astype(np.float64) - history[j + 1]
        for c in range(C):
            rows.append(_neighbourhoods(change[..., c], K, ys, xs))
    extrapolation = (2.0 * previous - history[1])[ys, xs].T  # (C, P)
    return np.concatenate(rows), extrapolation


def robust_fit(AT, y, passes=6):
    """(coef (F,) float64, intercept float): the linear fit y ≈ coef @ AT + intercept of the
    targets y (P,) from the features AT (F, P), robust to the few large errors: a plain
    least-squares fit, then `passes` Cauchy-IRLS passes (stages/_lsfit.fit) with the plain fit's
    median absolute residual as the scale (the coder pays about log |error|, so the bulk of the
    pixels matters). Raises TezipError when the system is singular (constant training frames)."""
    from stages._lsfit import fit

    y = np.ascontiguousarray(y, dtype=np.float64)
    coef, intercept = fit(AT, y, 0, 1.0, 1e-9, 0.0, 0.0)
    if coef.size == 0:
        raise TezipError("the linear skip's least-squares fit is singular (are the training frames constant?)")
    scale = float(np.median(np.abs(y - coef @ AT - intercept))) or 1e-6
    coef, intercept = fit(AT, y, passes, scale, 1e-9, 0.0, 0.0)
    if coef.size == 0:  # the plain fit was regular; a reweighted one can still lose rank
        raise TezipError("the linear skip's least-squares fit is singular (are the training frames constant?)")
    return coef, intercept


def _sample_runs(frames_at, starts, K, frames, seed):
    """(AT (F, P) float64, Y (C, P) float64): skip_features of sampled pixels of up to RUNS runs of
    N + 1 frames from `starts` and their targets x_t - extrapolation, the samples capped by
    MAX_VALUES (features x samples)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(starts, size=min(RUNS, len(starts)), replace=False)
    H, W, C = frames_at(int(picks[0])).shape
    n_features = C * (K * K - 1) + (frames - 1) * C * K * K
    per_run = max(1, min(H * W, MAX_VALUES // (n_features * len(picks))))
    X, Y = [], []
    for i in picks:
        run = [frames_at(int(i) + k).astype(np.float64) for k in range(frames + 1)]
        pixels = rng.choice(H * W, size=per_run, replace=False)
        features, extrapolation = skip_features(run[-2::-1], K, pixels)  # newest first
        X.append(features)
        Y.append(run[-1].reshape(-1, C).T[:, pixels] - extrapolation)
    return np.ascontiguousarray(np.concatenate(X, axis=1)), np.concatenate(Y, axis=1)


def _fit_taps(frames_at, starts, K, seed, frames):
    """(taps (F, C) float64, bias (C,) float64): the robust least-squares fit of fit_skip, in
    skip_features' order."""
    starts = np.asarray(starts)
    if len(starts) == 0:
        raise TezipError(f"the linear skip needs sequences of at least {frames + 1} frames to fit its taps")
    AT, Y = _sample_runs(frames_at, starts, K, frames, seed)
    taps = np.zeros((AT.shape[0], Y.shape[0]))
    bias = np.zeros(Y.shape[0])
    for c in range(Y.shape[0]):
        taps[:, c], bias[c] = robust_fit(AT, Y[c])
    return taps, bias


def fit_skip(frames_at, starts, K, gain, seed=0, frames=2):
    """Fit the kernel (K, K, N·C, C) float32 and bias (C,) float32 of a K x K skip that sees
    N = `frames` previous frames, by least squares.

    frames_at(i) → frame i (H, W, C) float32 in the model's [0, 1]; starts: indices i where
    frames i .. i+N come from one sequence. Raises TezipError when there is no such run of frames
    or the system is singular (a constant sequence: nothing to learn)."""
    return skip_kernel(*_fit_taps(frames_at, starts, K, seed, frames), K, gain)


def skip_kernel(taps, bias, K, gain):
    """fit_skip's (kernel (K, K, N·C, C) float32, bias (C,) float32) from least-squares taps
    (F, C) in skip_features' order and their bias (C,)."""
    C = bias.size
    frames = 1 + (taps.shape[0] - C * (K * K - 1)) // (C * K * K)
    kernel = np.zeros((K, K, frames * C, C))
    centre = (K * K) // 2
    offsets = [d for d in range(K * K) if d != centre]
    for c_in in range(C):
        for j, d in enumerate(offsets):
            kernel[d // K, d % K, c_in] = taps[c_in * (K * K - 1) + j]
    for j in range(frames - 1):
        for c_in in range(C):
            base = C * (K * K - 1) + (j * C + c_in) * K * K
            for d in range(K * K):
                kernel[d // K, d % K, (j + 1) * C + c_in] = taps[base + d]
    return (kernel / gain).astype(np.float32), bias.astype(np.float32)


# (K, N) tried by choose_skip (`-l --skip auto`), small to large. Measured on the smooth sets of
# benchmarks/fields.py (bench_headroom's entropy of the held-out residual against 5 x 5 over 3
# frames): 9 x 9 over 8 frames saves 7 % (heat) to 10 % (advection-diffusion) by averaging the
# read noise over more history, 3-4 % on Gray-Scott spots and the detector, and loses 1 % on the
# vortex flow, whose later frames a wide fit does not carry to: no one size suits every run.
SKIP_CANDIDATES = ((3, 2), (5, 3), (5, 6), (7, 4), (9, 6), (9, 8))


def choose_skip(train_at, train_starts, val_at, val_starts, candidates=SKIP_CANDIDATES, seed=0, report=None):
    """The linear skip's size (K, N) among `candidates` whose least-squares taps (fit_skip's fit on
    the training runs) predict the validation runs best: the smallest mean |x_t - skip prediction| / 2
    over sampled pixels (the units of the training loss: PredNet's layer-0 error averages to half
    the absolute error).
    The candidates are tried in order (small to large: each fit costs about its number of taps) and
    the search stops after two in a row that do not beat the best so far: on camera footage the
    smallest wins and the wide fits (1941 taps for 9 x 9 on 8 RGB frames, minutes each) only
    overfit.

    train_at / val_at(i) → frame i (H, W, C) float32 in [0, 1]; train_starts / val_starts(n) →
    indices i where frames i .. i+n-1 come from one sequence. Candidates without runs of N + 1
    frames in both are left out. report(K, N, error) is called for each one tried, and with error
    None for each one left out. Returns
    (K, N, {"KxK/N": error}, (taps, bias) of the chosen size, for skip_kernel). Raises TezipError
    when no candidate has such runs."""
    errors = {}
    best, worse = None, 0
    for K, N in candidates:
        if worse == 2:
            break
        fit_starts, check_starts = np.asarray(train_starts(N + 1)), np.asarray(val_starts(N + 1))
        if len(fit_starts) == 0 or len(check_starts) == 0:
            if report is not None:
                report(K, N, None)
            continue
        taps, bias = _fit_taps(train_at, fit_starts, K, seed, N)
        AT, Y = _sample_runs(val_at, check_starts, K, N, seed + 1)
        error = float(np.mean(np.abs(Y - (taps.T @ AT + bias[:, None])))) / 2.0
        errors[f"{K}x{K}/{N}"] = error
        if report is not None:
            report(K, N, error)
        if best is None or error < best[2]:
            best, worse = (K, N, error, (taps, bias)), 0
        else:
            worse += 1
    if best is None:
        longest = max(n for _, n in candidates) + 1
        raise TezipError(f"--skip auto needs a training and a validation sequence of at least "
                         f"{min(n for _, n in candidates) + 1} frames each (the sizes it tries need up to {longest})")
    return best[0], best[1], errors, best[3]


def plane_statistics(frames_at, starts, frames=2, seed=0):
    """(offset, scale), N floats each, that normalise the skip's planes [x_{t-1}, x_{t-1} - x_{t-2},
    ...] (N = `frames`) to mean 0 and standard deviation 1 over the training sequences (all channels
    together): the frame input of PredNet's layer 0 (prednet.model.PredNet frame_input_*), so that
    the small frame changes reach its conv-LSTM at the size of its other inputs.

    frames_at, starts: as fit_skip (runs of N frames). A constant plane gets scale 1."""
    starts = np.asarray(starts)
    if len(starts) == 0:
        raise TezipError(f"the frame input needs sequences of at least {frames} frames")
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(starts, size=min(RUNS, len(starts)), replace=False)
    sums = np.zeros((frames, 2))
    count = 0
    for i in picks:
        run = [frames_at(int(i) + k).astype(np.float64) for k in range(frames)][::-1]  # newest first
        planes = [run[0]] + [run[j] - run[j + 1] for j in range(frames - 1)]
        for j, p in enumerate(planes):
            sums[j] += (p.sum(), (p * p).sum())
        count += run[0].size
    mean = sums[:, 0] / count
    std = np.sqrt(np.maximum(sums[:, 1] / count - mean**2, 0.0))
    scale = np.where(std > 1e-9, 1.0 / np.maximum(std, 1e-9), 1.0)
    return [float(v) for v in mean], [float(v) for v in scale]
