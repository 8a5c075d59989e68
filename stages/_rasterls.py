"""Raster-order least-squares prediction ("raster LS"), numba, for sequence/hierarchical.py.

Each pixel of a frame plane, in raster order, is predicted from a fixed list of taps (dt, di, dj)
with coefficients fitted per frame by the encoder:

    pred = clip((Σ cₖ tapₖ + bias + 2¹³) >> 14, 0, max)

dt = 0: the current frame at (i + di, j + dj), a causal neighbour (W, N, NW, NE, …), already
reconstructed; dt = r + 1: reference frame r at the clamped position. Where a current-frame tap
falls outside the frame (or is not yet coded), it takes the first reference at the clamped
position, or, without references, the west neighbour, else the north one, else the mid value.
Quantization as everywhere: q = sign(e) ⌊(|e| + t) / (2t + 1)⌋, rec = clip(pred + q (2t + 1)).

The loop is sequential within a plane (each pixel needs its west neighbour): one frame per call,
nogil, so the caller runs the frames of a group in threads; integer arithmetic only, so any thread
count gives the same bytes. It is host code (like the range coder): a GPU has nothing to run in
parallel within a plane. The frame and its references are laid out as one flat array
(plane 0 the frame, 1 + r reference r), so an interior pixel's taps are fixed offsets from it.
"""

import numpy as np
from numba import njit

from stages._lsfit import sample_index

SHIFT = 14
HALF = 1 << (SHIFT - 1)

# Tap patterns.
SPATIAL = ((0, -1), (-1, 0), (-1, -1), (-1, 1))  # W, N, NW, NE
KEY_SPATIAL = SPATIAL + ((0, -2), (-2, 0), (-1, -2), (-2, -1), (-2, 1), (-1, 2))  # + WW NN NWW NNW NNE NEE
AROUND = tuple((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1))  # 3x3 of a near reference


def taps_for(n_refs):
    """(K, 3) int64 taps (dt, di, dj): without references the 10 spatial taps; with, W N NW NE + the
    3x3 around the pixel in the two nearest references + the pixel itself in the others."""
    if n_refs == 0:
        rows = [(0,) + o for o in KEY_SPATIAL]
    else:
        rows = [(0,) + o for o in SPATIAL]
        for r in range(n_refs):
            rows += [(r + 1,) + o for o in (AROUND if r < 2 else ((0, 0),))]
    return np.array(rows, np.int64).reshape(-1, 3)


def stack_planes(rec, t_refs, c, H, W):
    """The flat layout: (1 + R) * H * W int32, plane 0 left for the frame, then the references."""
    flat = np.empty((1 + len(t_refs)) * H * W, np.int32)
    for r, t in enumerate(t_refs):
        flat[(1 + r) * H * W:(2 + r) * H * W] = rec[t, c].ravel()
    return flat


@njit(cache=True, inline="always")
def _tap(flat, nref, i, j, dt, di, dj, H, W, mid):
    ii = i + di
    jj = j + dj
    if dt == 0:
        if ii >= 0 and jj >= 0 and jj < W and ii < H and (ii < i or (ii == i and jj < j)):
            return np.int64(flat[ii * W + jj])
        if nref > 0:
            return np.int64(flat[H * W + min(max(ii, 0), H - 1) * W + min(max(jj, 0), W - 1)])
        if j > 0:
            return np.int64(flat[i * W + j - 1])
        if i > 0:
            return np.int64(flat[(i - 1) * W + j])
        return mid
    return np.int64(flat[dt * H * W + min(max(ii, 0), H - 1) * W + min(max(jj, 0), W - 1)])


@njit(cache=True, nogil=True)
def raster_frame(flat, x, codes, nref, H, W, taps, coefs, bias, tol, maxv, encode):
    """Code one plane in raster order into flat[:H*W] (its reconstruction; the references follow it
    in flat) and codes (H*W,) int32; encode reads x (H, W), decode the codes."""
    K = taps.shape[0]
    step = 2 * np.int64(tol) + 1
    mid = (np.int64(maxv) + 1) // 2
    m = 0
    for k in range(K):
        m = max(m, abs(taps[k, 1]), abs(taps[k, 2]))
    delta = np.empty(K, np.int64)  # interior: tap k is flat[p + delta[k]]
    for k in range(K):
        delta[k] = taps[k, 0] * H * W + taps[k, 1] * W + taps[k, 2]
    for i in range(H):
        inner = i >= m and i < H - m
        for j in range(W):
            p = i * W + j
            acc = bias + HALF
            if inner and j >= m and j < W - m:
                for k in range(K):
                    acc += coefs[k] * np.int64(flat[p + delta[k]])
            else:
                for k in range(K):
                    acc += coefs[k] * _tap(flat, nref, i, j, taps[k, 0], taps[k, 1], taps[k, 2], H, W, mid)
            pred = acc >> SHIFT
            pred = 0 if pred < 0 else (maxv if pred > maxv else pred)
            if encode:
                e = np.int64(x[i, j]) - pred
                q = (abs(e) + tol) // step
                if e < 0:
                    q = -q
                codes[p] = q
            else:
                q = np.int64(codes[p])
            r = pred + q * step
            flat[p] = 0 if r < 0 else (maxv if r > maxv else r)


@njit(cache=True, nogil=True)
def raster_samples(flat, x, nref, H, W, taps, maxv, A, y):
    """The fit's points (encoder only), A (K, m): m pixels spread evenly over the plane, the taps as
    the loop sees them with flat[:H*W] as the current frame (the original for a first fit, the
    reconstruction for a refit); y = x (H, W)."""
    K = taps.shape[0]
    mid = (np.int64(maxv) + 1) // 2
    n = np.int64(H) * W
    m = A.shape[1]
    for k in range(m):
        p = sample_index(k, n, m)
        i = p // W
        j = p - i * W
        for q in range(K):
            A[q, k] = _tap(flat, nref, i, j, taps[q, 0], taps[q, 1], taps[q, 2], H, W, mid)
        y[k] = x[i, j]
