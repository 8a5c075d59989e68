"""Least-squares fitting of predictor taps, for the encoders of sequence/hierarchical.py only (a
decoder reads the fitted coefficients; it never fits).

fit(A, y, ...) fits y ≈ A·c + b by weighted least squares with a ridge, optionally as IRLS on the
Cauchy loss log(1 + r²/s²) (weights 1 / (r² + s²)): plain least squares chases the few large
residuals, where an error-bounded coder pays for each residual about log |r|, so the robust fit
predicts the bulk of the pixels better (15-40 % smaller at abs 16-64 in the prototype of issue 15).

Float arithmetic on the host, one thread: the coefficients, and so the bytes, never depend on the
thread count.
"""

import numpy as np
from numba import njit

@njit(cache=True)
def _solve(G, r):
    """G x = r by Gaussian elimination with partial pivoting (small K); G, r are overwritten.
    Returns x, or an empty array when G is singular."""
    K = G.shape[0]
    for p in range(K):
        best = p
        for q in range(p + 1, K):
            if abs(G[q, p]) > abs(G[best, p]):
                best = q
        if not abs(G[best, p]) > 0.0:
            return np.empty(0, np.float64)
        if best != p:
            for q in range(K):
                G[p, q], G[best, q] = G[best, q], G[p, q]
            r[p], r[best] = r[best], r[p]
        for q in range(p + 1, K):
            f = G[q, p] / G[p, p]
            if f != 0.0:
                for s in range(p, K):
                    G[q, s] -= f * G[p, s]
                r[q] -= f * r[p]
    x = np.empty(K, np.float64)
    for p in range(K - 1, -1, -1):
        acc = r[p]
        for q in range(p + 1, K):
            acc -= G[p, q] * x[q]
        x[p] = acc / G[p, p]
    return x


@njit(cache=True, fastmath=True, nogil=True)
def fit(AT, y, irls, scale, ridge_rel, ridge_per_row, ridge_const):
    """Weighted LS of y on the rows of AT (K, m: one column per fitted point) with an intercept:
    returns (c (K,), intercept), c empty when the system is singular. irls: Cauchy-IRLS iterations
    after the plain fit (scale s as above; fewer once the coefficients change by < 1e-4 relative). Ridge added to the centred Gram matrix's diagonal:
    ridge_rel · trace / K + ridge_per_row · (sum of weights) + ridge_const.

    One thread, contiguous sums over the points (fastmath lets them vectorize; each is one fixed
    sequence of operations, so the thread count never changes the result). Fine-grained parallel
    regions were tried: on a busy machine their barriers cost far more than the sums."""
    K, m = AT.shape
    if m == 0:
        return np.empty(0, np.float64), 0.0
    w = np.ones(m)
    Ac = np.empty((K, m))
    wA = np.empty((K, m))
    yc = np.empty(m)
    res = np.empty(m)
    off = np.empty(K)
    c = np.zeros(K)
    intercept = 0.0
    for it in range(irls + 1):
        sw = 0.0
        for r in range(m):
            sw += w[r]
        for p in range(K):
            a = AT[p]
            s = 0.0
            for r in range(m):
                s += w[r] * a[r]
            off[p] = s / sw
        s = 0.0
        for r in range(m):
            s += w[r] * y[r]
        yo = s / sw
        for r in range(m):
            yc[r] = y[r] - yo
        for p in range(K):
            a, ac, wa, o = AT[p], Ac[p], wA[p], off[p]
            for r in range(m):
                ac[r] = a[r] - o
                wa[r] = w[r] * ac[r]
        G = np.zeros((K, K))
        rhs = np.zeros(K)
        for p in range(K):
            wa = wA[p]
            for q in range(p + 1):
                b = Ac[q]
                s = 0.0
                for r in range(m):
                    s += wa[r] * b[r]
                G[p, q] = s
                G[q, p] = s
            s = 0.0
            for r in range(m):
                s += wa[r] * yc[r]
            rhs[p] = s
        trace = 0.0
        for p in range(K):
            trace += G[p, p]
        ridge = ridge_rel * trace / K + ridge_per_row * sw + ridge_const
        for p in range(K):
            G[p, p] += ridge
        previous = c
        c = _solve(G, rhs)
        if c.size == 0:
            return c, 0.0
        intercept = yo
        for p in range(K):
            intercept -= off[p] * c[p]
        if it > 0:  # settled: stop early
            change, size = 0.0, 1e-12
            for p in range(K):
                change = max(change, abs(c[p] - previous[p]))
                size = max(size, abs(c[p]))
            if change < 1e-4 * size:
                break
        if it < irls:
            s2 = scale * scale
            for r in range(m):
                res[r] = yc[r]
            for p in range(K):
                cp, ac = c[p], Ac[p]
                for r in range(m):
                    res[r] -= ac[r] * cp
            for r in range(m):
                w[r] = 1.0 / (res[r] * res[r] + s2)
    return c, intercept


def to_fixed(c, intercept, bits, limit_coef, limit_bias):
    """Coefficients and intercept rounded to `bits` fractional bits (int64), or None when the fit
    failed or a value is beyond the format's limits (the caller then uses its fixed predictor)."""
    if c.size == 0 or not np.all(np.isfinite(c)) or not np.isfinite(intercept):
        return None
    scale = float(1 << bits)
    if np.abs(c).max(initial=0.0) * scale >= limit_coef or abs(intercept) * scale >= limit_bias:
        return None
    return np.rint(c * scale).astype(np.int64), int(np.rint(intercept * scale))


@njit(cache=True, inline="always")
def sample_index(k, n, m):
    """The k-th of m rows spread evenly over n (m <= n): deterministic subsampling."""
    if m <= 1:
        return np.int64(0)
    return (np.int64(k) * (n - 1)) // (m - 1)
