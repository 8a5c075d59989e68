"""Reversible colour transform of RGB planes (the "rct" codec): exact integer differences between
the colour channels, so that what the three channels share (brightness, and the errors of a
prediction, which show in R, G and B alike) is coded once.

On (..., C, H, W) int32 arrays whose channel axis (-3) holds R, G, B (C >= 3; further channels,
alpha, pass through unchanged; C < 3 passes through whole), per pixel:

    chain   (B, G - B, R - G)      inverse: B = y0, G = y1 + B, R = y2 + G
    gsub    (G, B - G, R - G)      inverse: G = y0, B = y1 + G, R = y2 + G

The output's channel order matters to the context range coder, which models each plane's values
by the same pixel of the plane before it. Lossless intra coding (MED + ctxrange) of the dev frames,
frames 200-219: RGB 5.14, YCoCg-R 5.39, gsub 5.65, chain 5.67; scene cuts 5.02 → 5.36 (chain);
lossless residuals of the previous frame moved: 7.16 → 7.54 (dev), 12.6 → 15.9 (VQ-coded clip).
It is exact, so it serves lossless pixels, and the integer codes of any quantizer (a transform of
the codes, not of the pixels: the bound still holds per RGB pixel).

Range: computed in 64 bits; the differences of int32 inputs within [-2**30, 2**30) always fit
int32, wider inputs are accepted while they do (else `encode` raises TezipError); `decode` raises
TezipError("corrupt ...") when a rebuilt value leaves int32. CPU: a numba kernel parallel over
rows; GPU: a CuPy kernel beside it (one thread per pixel), chosen when a cupy array comes in.
Integer arithmetic only: identical output on either.
"""

import numpy as np
from numba import njit, prange

from base.errors import TezipError
from stages._codec import Codec, into
from stages._kernels import cupy, cuda_kernel, is_cupy_array, launch_elementwise

# name → (first, second, third channel, the channel the third is taken from)
TRANSFORMS = {"chain": (2, 1, 0, 1), "gsub": (1, 2, 0, 1)}

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


@njit(cache=True, parallel=True)
def _rct(values, out, p0, p1, p2, r2, forward):
    """values, out: (N, C, H*W) int32, C >= 3. forward: (x[p0], x[p1] - x[p0], x[p2] - x[r2]);
    else its inverse. Returns a per-row flag set when a value left int32."""
    n, channels, size = values.shape
    overflow = np.zeros(n, np.uint8)
    for k in prange(n):
        bad = False
        for c in range(3, channels):
            for i in range(size):
                out[k, c, i] = values[k, c, i]
        for i in range(size):
            a = np.int64(values[k, 0, i])
            b = np.int64(values[k, 1, i])
            d = np.int64(values[k, 2, i])
            if forward:
                x = (a, b, d)
                base = x[p0]
                y1 = x[p1] - base
                y2 = x[p2] - x[r2]
                bad |= y1 < _INT32_MIN or y1 > _INT32_MAX or y2 < _INT32_MIN or y2 > _INT32_MAX
                out[k, 0, i] = base
                out[k, 1, i] = y1
                out[k, 2, i] = y2
            else:
                v0 = a
                v1 = b + v0
                v2 = d + (v1 if r2 == p1 else v0)
                bad |= v1 < _INT32_MIN or v1 > _INT32_MAX or v2 < _INT32_MIN or v2 > _INT32_MAX
                out[k, p0, i] = v0
                out[k, p1, i] = v1
                out[k, p2, i] = v2
        overflow[k] = bad
    return overflow


_RCT_CUDA = r"""
extern "C" __global__
void rct(const int* values, int* out, unsigned char* overflow, long long n, long long channels,
         long long size, int p0, int p1, int p2, int r2, int forward) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n * size) return;
    long long k = t / size, i = t % size;
    const int* x = values + k * channels * size + i;
    int* y = out + k * channels * size + i;
    for (long long c = 3; c < channels; ++c) y[c * size] = x[c * size];
    long long v[3] = {x[0], x[size], x[2 * size]};
    long long a, b;
    if (forward) {
        a = v[p1] - v[p0];
        b = v[p2] - v[r2];
        y[0] = (int)v[p0];
    } else {
        long long w[3];
        w[p0] = v[0];
        w[p1] = v[1] + v[0];
        w[p2] = v[2] + (r2 == p1 ? w[p1] : v[0]);
        a = w[p1];
        b = w[p2];
        y[p0 * size] = (int)w[p0];
    }
    // Any thread may raise the flag; none clears it, so no atomics needed.
    if (a < -2147483648LL || a > 2147483647LL || b < -2147483648LL || b > 2147483647LL) overflow[0] = 1;
    if (forward) { y[size] = (int)a; y[2 * size] = (int)b; }
    else { y[p1 * size] = (int)a; y[p2 * size] = (int)b; }
}
"""


def _run(values, transform, forward):
    """values (..., C, H, W) int32 on either device → (out, overflow)."""
    on_gpu = is_cupy_array(values)
    xp = cupy if on_gpu else np
    values = xp.ascontiguousarray(values, dtype=np.int32)
    if values.ndim < 3 or values.shape[-3] < 3 or values.size == 0:
        return values.copy(), False
    n = int(np.prod(values.shape[:-3]))
    flat = values.reshape(n, values.shape[-3], values.shape[-2] * values.shape[-1])
    out = xp.empty(flat.shape, np.int32)
    p0, p1, p2, r2 = TRANSFORMS[transform]
    if on_gpu:
        overflow = cupy.zeros(1, dtype=cupy.uint8)
        launch_elementwise(cuda_kernel("rct", _RCT_CUDA), n * flat.shape[2],
                           (flat, out, overflow, np.int64(n), np.int64(flat.shape[1]), np.int64(flat.shape[2]),
                            np.int32(p0), np.int32(p1), np.int32(p2), np.int32(r2), np.int32(forward)))
    else:
        overflow = _rct(flat, out, p0, p1, p2, r2, forward)
    return out.reshape(values.shape), bool(overflow.any())


class ColourTransform(Codec):
    """RGB planes → colour differences and back (module docstring); numpy or cupy in, the same
    kind and shape out."""

    codec_id = "rct"
    config_keys = ("transform",)

    def __init__(self, transform="chain"):
        if not isinstance(transform, str) or transform not in TRANSFORMS:
            raise TezipError(f"rct transform must be one of {', '.join(TRANSFORMS)}, got {str(transform)[:40]!r}")
        self.transform = transform

    def encode(self, values):
        if values.ndim < 2:
            raise TezipError(f"rct input: expected planes (..., C, H, W), got shape {values.shape}")
        out, overflow = _run(values, self.transform, True)
        if overflow:
            raise TezipError("values too far apart for int32 colour differences")
        return out

    def decode(self, codes, out=None):
        if codes.dtype != np.int32:
            raise TezipError(f"corrupt rct data: expected int32, got {codes.dtype}")
        values, overflow = _run(codes, self.transform, False)
        if overflow:
            raise TezipError("corrupt rct data: decoded values overflow int32")
        return into(out, values)
