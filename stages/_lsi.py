"""LSI ("least-squares interpolation") kernels, numba and CuPy side by side, for
sequence/hierarchical.py.

SZ3's multilevel interpolation with fitted taps. A frame plane is coded as a sequence of grids:
the anchor grid (every S = 2^L pixels each way), then for s = S, S/2, …, 2 (h = s/2) two passes,

    pass A  rows i ≡ 0 (mod s),  columns j ≡ h (mod s)    interpolated along j
    pass B  rows i ≡ h (mod s),  columns j ≡ 0 (mod h)    interpolated along i

Every point of a pass is predicted from already reconstructed values only: its four coarser
neighbours along the pass axis at ∓h, ±3h (indices clamped to the coarser grid: a, b, c, e) and each
reference frame's value at the same pixel, as

    base = (9 (b + c) − a − e + 8) >> 4                     (the fixed cubic)
    pred = base + ((Σ cₖ (tapₖ − base) + bias + 2¹³) >> 14)   (fitted: taps b, c, a, e, refs…)
    pred = base                                              (a pass sent without coefficients)

The anchor grid is predicted from the references, pred = (Σ cᵣ refᵣ + bias + 2¹³) >> 14 (or ref₀
unfitted), and without references by Lorenzo on the anchor grid (W + N − NW; W on the first row,
N on the first column, the mid value first). Then pred is clipped to 0..max, and the error
quantized with step 2t + 1: q = sign(e) ⌊(|e| + t) / (2t + 1)⌋, rec = clip(pred + q (2t + 1), 0, max).

Integers only (int64 sums of int32 values times coefficients bounded by the caller), so numba and
CuPy give the same codes and reconstruction on any machine. A pass's points depend only on
earlier passes and on the references, so each pass is one vector operation over every point of
every frame of a group: one GPU thread per point with CuPy; with numba a serial nogil loop (the
caller runs planes and the other coder in threads: fine-grained parallel loops were tried, and
their barriers cost more than they gained on a busy 2-core machine).
"""

import numpy as np
from numba import njit

from stages._kernels import cuda_kernel, cupy
from stages._lsfit import sample_index

SHIFT = 14
HALF = 1 << (SHIFT - 1)
INTERP, FROM_REFS = 0, 1  # pass kinds (the anchor grid with references is FROM_REFS)


def grid_size(n, start, step):
    """Points of range(start, n, step)."""
    return (n - start + step - 1) // step if n > start else 0


_grid_size = njit(cache=True, inline="always")(grid_size)


@njit(cache=True, inline="always")
def _clip(v, maxv):
    return 0 if v < 0 else (maxv if v > maxv else v)


@njit(cache=True, inline="always")
def _quantize(value, pred, tol, step):
    e = value - pred
    q = (abs(e) + tol) // step
    return -q if e < 0 else q


@njit(cache=True, inline="always")
def _line(rec, t, c, i, j, h, axis, lim):
    """The coarser neighbours (a, b, c, e) at -3h, -h, +h, +3h along the pass axis, clamped to 0..lim."""
    if axis == 0:
        return (np.int64(rec[t, c, i, max(j - 3 * h, 0)]), np.int64(rec[t, c, i, max(j - h, 0)]),
                np.int64(rec[t, c, i, min(j + h, lim)]), np.int64(rec[t, c, i, min(j + 3 * h, lim)]))
    return (np.int64(rec[t, c, max(i - 3 * h, 0), j]), np.int64(rec[t, c, max(i - h, 0), j]),
            np.int64(rec[t, c, min(i + h, lim), j]), np.int64(rec[t, c, min(i + 3 * h, lim), j]))


@njit(cache=True, inline="always")
def _predict(rec, t, refs, f, c, i, j, h, axis, lim, kind, fitted, coefs, bias, maxv):
    R = refs.shape[1]
    if kind == INTERP:
        a, b, cc, e = _line(rec, t, c, i, j, h, axis, lim)
        base = (9 * (b + cc) - a - e + 8) >> 4
        if fitted:
            acc = coefs[0] * (b - base) + coefs[1] * (cc - base) + coefs[2] * (a - base) + coefs[3] * (e - base)
            for r in range(R):
                acc += coefs[4 + r] * (np.int64(rec[refs[f, r], c, i, j]) - base)
            pred = base + ((acc + bias + HALF) >> SHIFT)
        else:
            pred = base
    else:
        if fitted:
            acc = np.int64(0)
            for r in range(R):
                acc += coefs[r] * np.int64(rec[refs[f, r], c, i, j])
            pred = (acc + bias + HALF) >> SHIFT
        else:
            pred = np.int64(rec[refs[f, 0], c, i, j])
    return _clip(pred, maxv)


@njit(cache=True, nogil=True)
def lsi_pass(rec, x, codes, frames, refs, c, i0, si, j0, sj, h, axis, kind, fitted, coefs, bias, tol, maxv,
             encode, off):
    """One pass over the grid (i0::si, j0::sj) of plane c of every frame frames[f] (window indices into
    rec/x, references refs[f]): encode quantizes x into codes[f, off + raster index] and writes rec;
    decode reads the codes. rec (T, C, H, W) int32 is read at coarser points and references and
    written at the pass's points only."""
    F = frames.shape[0]
    H, W = rec.shape[2], rec.shape[3]
    gh, gw = _grid_size(H, i0, si), _grid_size(W, j0, sj)
    step = 2 * np.int64(tol) + 1
    s2 = max(2 * h, 1)  # h = 0: the anchor grid, no line taps
    lim = ((W - 1) // s2) * s2 if axis == 0 else ((H - 1) // s2) * s2
    for idx in range(F * gh):
        f = idx // gh
        i = i0 + (idx - f * gh) * si
        t = frames[f]
        row = off + (idx - f * gh) * gw
        for gj in range(gw):
            j = j0 + gj * sj
            pred = _predict(rec, t, refs, f, c, i, j, h, axis, lim, kind, fitted, coefs, bias, maxv)
            if encode:
                q = _quantize(np.int64(x[t, c, i, j]), pred, tol, step)
                codes[f, row + gj] = q
            else:
                q = np.int64(codes[f, row + gj])
            rec[t, c, i, j] = _clip(pred + q * step, maxv)


@njit(cache=True, nogil=True)
def lorenzo_anchors(rec, x, codes, frames, c, S, tol, maxv, encode, off):
    """The anchor grid (0::S, 0::S) without references: Lorenzo on the grid, sequential per frame."""
    F = frames.shape[0]
    H, W = rec.shape[2], rec.shape[3]
    gh, gw = _grid_size(H, 0, S), _grid_size(W, 0, S)
    step = 2 * np.int64(tol) + 1
    mid = (np.int64(maxv) + 1) // 2
    for f in range(F):
        t = frames[f]
        for gi in range(gh):
            i = gi * S
            for gj in range(gw):
                j = gj * S
                if gi == 0:
                    pred = np.int64(rec[t, c, i, j - S]) if gj > 0 else mid
                elif gj == 0:
                    pred = np.int64(rec[t, c, i - S, j])
                else:
                    pred = _clip(np.int64(rec[t, c, i, j - S]) + np.int64(rec[t, c, i - S, j])
                                 - np.int64(rec[t, c, i - S, j - S]), maxv)
                k = off + gi * gw + gj
                if encode:
                    q = _quantize(np.int64(x[t, c, i, j]), pred, tol, step)
                    codes[f, k] = q
                else:
                    q = np.int64(codes[f, k])
                rec[t, c, i, j] = _clip(pred + q * step, maxv)


@njit(cache=True, nogil=True)
def lsi_samples(rec, x, frames, refs, c, i0, si, j0, sj, h, axis, kind, A, y):
    """The fit's points for a pass (encoder only), A (K, m) one column per point: m points spread
    evenly over the pass's points of all frames; INTERP: A = (b, c, a, e, refs…) − base, y = x − base;
    FROM_REFS: A = refs, y = x."""
    F = frames.shape[0]
    R = refs.shape[1]
    H, W = rec.shape[2], rec.shape[3]
    gh, gw = _grid_size(H, i0, si), _grid_size(W, j0, sj)
    n = np.int64(F) * gh * gw
    m = A.shape[1]
    s2 = max(2 * h, 1)  # h = 0: the anchor grid, no line taps
    lim = ((W - 1) // s2) * s2 if axis == 0 else ((H - 1) // s2) * s2
    for k in range(m):
        p = sample_index(k, n, m)
        f = p // (gh * gw)
        rem = p - f * (gh * gw)
        i = i0 + (rem // gw) * si
        j = j0 + (rem % gw) * sj
        t = frames[f]
        if kind == INTERP:
            a, b, cc, e = _line(rec, t, c, i, j, h, axis, lim)
            base = (9 * (b + cc) - a - e + 8) >> 4
            A[0, k] = b - base
            A[1, k] = cc - base
            A[2, k] = a - base
            A[3, k] = e - base
            for r in range(R):
                A[4 + r, k] = np.int64(rec[refs[f, r], c, i, j]) - base
            y[k] = np.int64(x[t, c, i, j]) - base
        else:
            for r in range(R):
                A[r, k] = rec[refs[f, r], c, i, j]
            y[k] = x[t, c, i, j]


# --------------------------------------------------------------------------- CuPy: the same integers

_CUDA_SOURCE = r"""
__device__ __forceinline__ long long clipv(long long v, long long maxv) { return v < 0 ? 0 : (v > maxv ? maxv : v); }
__device__ __forceinline__ long long lmin(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long lmax(long long a, long long b) { return a > b ? a : b; }
__device__ __forceinline__ long long quantize(long long value, long long pred, long long tol, long long step) {
    long long e = value - pred;
    long long q = ((e < 0 ? -e : e) + tol) / step;
    return e < 0 ? -q : q;
}

// rec, x: (T, C, H, W) int32; codes: (F, n_per_frame) int32; one thread per point of the pass.
extern "C" __global__
void lsi_pass(int* rec, const int* x, int* codes, const long long* frames, const long long* refs,
              long long R, long long C, long long H, long long W, long long c,
              long long i0, long long si, long long j0, long long sj, long long h, int axis, int kind,
              int fitted, const long long* coefs, long long bias, long long tol, long long maxv,
              int encode, long long off, long long n_per_frame, long long F, long long gh, long long gw) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= F * gh * gw) return;
    long long f = idx / (gh * gw);
    long long rem = idx - f * (gh * gw);
    long long gi = rem / gw, gj = rem - (rem / gw) * gw;
    long long i = i0 + gi * si, j = j0 + gj * sj;
    long long t = frames[f];
    long long plane = C * H * W;
    long long cbase = (t * C + c) * H * W;
    long long step = 2 * tol + 1;
    long long pred;
    if (kind == 0) {
        long long a, b, cc, e;
        if (axis == 0) {
            long long lim = ((W - 1) / (2 * h)) * (2 * h);
            a = rec[cbase + i * W + lmax(j - 3 * h, 0)];
            b = rec[cbase + i * W + lmax(j - h, 0)];
            cc = rec[cbase + i * W + lmin(j + h, lim)];
            e = rec[cbase + i * W + lmin(j + 3 * h, lim)];
        } else {
            long long lim = ((H - 1) / (2 * h)) * (2 * h);
            a = rec[cbase + lmax(i - 3 * h, 0) * W + j];
            b = rec[cbase + lmax(i - h, 0) * W + j];
            cc = rec[cbase + lmin(i + h, lim) * W + j];
            e = rec[cbase + lmin(i + 3 * h, lim) * W + j];
        }
        long long base = (9 * (b + cc) - a - e + 8) >> 4;
        if (fitted) {
            long long acc = coefs[0] * (b - base) + coefs[1] * (cc - base)
                          + coefs[2] * (a - base) + coefs[3] * (e - base);
            for (long long r = 0; r < R; ++r)
                acc += coefs[4 + r] * ((long long)rec[refs[f * R + r] * plane + c * H * W + i * W + j] - base);
            pred = base + ((acc + bias + (1LL << 13)) >> 14);
        } else {
            pred = base;
        }
    } else {
        if (fitted) {
            long long acc = 0;
            for (long long r = 0; r < R; ++r)
                acc += coefs[r] * (long long)rec[refs[f * R + r] * plane + c * H * W + i * W + j];
            pred = (acc + bias + (1LL << 13)) >> 14;
        } else {
            pred = rec[refs[f * R] * plane + c * H * W + i * W + j];
        }
    }
    pred = clipv(pred, maxv);
    long long k = f * n_per_frame + off + gi * gw + gj;
    long long q;
    if (encode) {
        q = quantize((long long)x[cbase + i * W + j], pred, tol, step);
        codes[k] = (int)q;
    } else {
        q = codes[k];
    }
    rec[cbase + i * W + j] = (int)clipv(pred + q * step, maxv);
}

// The fit's points of a pass (encoder only), as lsi_samples (A: K x m): one thread per point.
extern "C" __global__
void lsi_samples(const int* rec, const int* x, const long long* frames, const long long* refs, long long R,
                 long long C, long long H, long long W, long long c, long long i0, long long si, long long j0,
                 long long sj, long long h, int axis, int kind, double* A, double* y, long long m, long long K,
                 long long gh, long long gw, long long F) {
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= m) return;
    long long n = F * gh * gw;
    long long p = m <= 1 ? 0 : (k * (n - 1)) / (m - 1);
    long long f = p / (gh * gw), rem = p - (p / (gh * gw)) * (gh * gw);
    long long i = i0 + (rem / gw) * si, j = j0 + (rem - (rem / gw) * gw) * sj;
    long long t = frames[f], plane = C * H * W, cbase = (t * C + c) * H * W;
    if (kind == 0) {
        long long a, b, cc, e;
        if (axis == 0) {
            long long lim = ((W - 1) / (2 * h)) * (2 * h);
            a = rec[cbase + i * W + lmax(j - 3 * h, 0)]; b = rec[cbase + i * W + lmax(j - h, 0)];
            cc = rec[cbase + i * W + lmin(j + h, lim)]; e = rec[cbase + i * W + lmin(j + 3 * h, lim)];
        } else {
            long long lim = ((H - 1) / (2 * h)) * (2 * h);
            a = rec[cbase + lmax(i - 3 * h, 0) * W + j]; b = rec[cbase + lmax(i - h, 0) * W + j];
            cc = rec[cbase + lmin(i + h, lim) * W + j]; e = rec[cbase + lmin(i + 3 * h, lim) * W + j];
        }
        long long base = (9 * (b + cc) - a - e + 8) >> 4;
        A[0 * m + k] = (double)(b - base); A[1 * m + k] = (double)(cc - base);
        A[2 * m + k] = (double)(a - base); A[3 * m + k] = (double)(e - base);
        for (long long r = 0; r < R; ++r)
            A[(4 + r) * m + k] = (double)((long long)rec[refs[f * R + r] * plane + c * H * W + i * W + j] - base);
        y[k] = (double)((long long)x[cbase + i * W + j] - base);
    } else {
        for (long long r = 0; r < R; ++r) A[r * m + k] = (double)rec[refs[f * R + r] * plane + c * H * W + i * W + j];
        y[k] = (double)x[cbase + i * W + j];
    }
}

// The anchor grid without references: one thread per frame, sequential over the grid.
extern "C" __global__
void lorenzo_anchors(int* rec, const int* x, int* codes, const long long* frames, long long C, long long H,
                     long long W, long long c, long long S, long long tol, long long maxv, int encode,
                     long long off, long long n_per_frame, long long F) {
    long long f = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (f >= F) return;
    long long gh = H > 0 ? (H + S - 1) / S : 0, gw = W > 0 ? (W + S - 1) / S : 0;
    long long cbase = (frames[f] * C + c) * H * W;
    long long step = 2 * tol + 1, mid = (maxv + 1) / 2;
    for (long long gi = 0; gi < gh; ++gi) {
        for (long long gj = 0; gj < gw; ++gj) {
            long long i = gi * S, j = gj * S, pred;
            if (gi == 0) pred = gj > 0 ? (long long)rec[cbase + i * W + j - S] : mid;
            else if (gj == 0) pred = rec[cbase + (i - S) * W + j];
            else pred = clipv((long long)rec[cbase + i * W + j - S] + (long long)rec[cbase + (i - S) * W + j]
                              - (long long)rec[cbase + (i - S) * W + j - S], maxv);
            long long k = f * n_per_frame + off + gi * gw + gj, q;
            if (encode) { q = quantize((long long)x[cbase + i * W + j], pred, tol, step); codes[k] = (int)q; }
            else q = codes[k];
            rec[cbase + i * W + j] = (int)clipv(pred + q * step, maxv);
        }
    }
}
"""


def _launch(name, n, args, threads=256):
    if n > 0:
        cuda_kernel(name, _CUDA_SOURCE)(((n + threads - 1) // threads,), (threads,), args)


def lsi_pass_cupy(rec, x, codes, frames, refs, c, i0, si, j0, sj, h, axis, kind, fitted, coefs, bias, tol, maxv,
                  encode, off):
    """lsi_pass on CuPy arrays (rec, x, codes, frames, refs, coefs on the device): the same integers."""
    T, C, H, W = rec.shape
    F, R = refs.shape
    gh, gw = grid_size(H, i0, si), grid_size(W, j0, sj)
    i64 = np.int64
    _launch("lsi_pass", F * gh * gw,
            (rec, x, codes, frames, refs, i64(R), i64(C), i64(H), i64(W), i64(c), i64(i0), i64(si), i64(j0), i64(sj),
             i64(h), np.int32(axis), np.int32(kind), np.int32(bool(fitted)), coefs, i64(bias), i64(tol), i64(maxv),
             np.int32(bool(encode)), i64(off), i64(codes.shape[1]), i64(F), i64(gh), i64(gw)))


def lorenzo_anchors_cupy(rec, x, codes, frames, c, S, tol, maxv, encode, off):
    T, C, H, W = rec.shape
    i64 = np.int64
    _launch("lorenzo_anchors", frames.shape[0],
            (rec, x, codes, frames, i64(C), i64(H), i64(W), i64(c), i64(S), i64(tol), i64(maxv),
             np.int32(bool(encode)), i64(off), i64(codes.shape[1]), i64(frames.shape[0])), threads=32)


def lsi_samples_cupy(rec, x, frames, refs, c, i0, si, j0, sj, h, axis, kind, A, y):
    T, C, H, W = rec.shape
    F, R = refs.shape
    gh, gw = grid_size(H, i0, si), grid_size(W, j0, sj)
    i64 = np.int64
    _launch("lsi_samples", A.shape[1],
            (rec, x, frames, refs, i64(R), i64(C), i64(H), i64(W), i64(c), i64(i0), i64(si), i64(j0), i64(sj),
             i64(h), np.int32(axis), np.int32(kind), A, y, i64(A.shape[1]), i64(A.shape[0]), i64(gh), i64(gw), i64(F)))


def kernels_for(xp):
    """(lsi_pass, lorenzo_anchors, lsi_samples) for numpy or cupy arrays: the same arguments, the
    same integers (and the same sample rows)."""
    if cupy is not None and xp is cupy:
        return lsi_pass_cupy, lorenzo_anchors_cupy, lsi_samples_cupy
    return lsi_pass, lorenzo_anchors, lsi_samples
