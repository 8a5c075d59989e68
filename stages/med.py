"""Spatial predictor: LOCO-I / JPEG-LS median edge detector (the "med" codec).

Each plane of an int32 (P, H, W) array is predicted pixel by pixel from three neighbours already
seen in raster order, a = left, b = above, c = above-left, with the median edge detector

    MED(a, b, c) = min(a, b)    if c >= max(a, b)    (an edge: c is on the far side of both)
                   max(a, b)    if c <= min(a, b)
                   a + b - c    otherwise             (smooth: the plane through a, b, c)

and `encode` returns the prediction errors e = x - prediction (int32, same shape). The borders
(where a, b or c would lie outside the plane) are fixed as follows:

    pixel (0, 0)             prediction 0 (its error is the pixel itself)
    first row,    (0, j>0)   prediction x[0, j-1]  (left neighbour: first differences)
    first column, (i>0, 0)   prediction x[i-1, 0]  (the pixel above)
    elsewhere,    (i>0, j>0) MED(x[i, j-1], x[i-1, j], x[i-1, j-1])

(so a 1 x W plane is first differences along the row and an H x 1 plane along the column).
Planes are independent. `decode` is the exact inverse: it rebuilds each plane in raster order
(sequential within a plane, planes in parallel).

Range. The prediction always lies between min(a, b) and max(a, b) (in the third case c lies
strictly between them, so a + b - c does too), so every error fits int32 whenever all inputs lie
in [-2**30, 2**30) — images and quantized residuals are far inside that. Wider inputs are
accepted as long as every error still fits int32; otherwise `encode` raises TezipError. `decode`
raises TezipError("corrupt ...") when a decoded value leaves int32 (only a corrupt archive can
cause that). Arithmetic is done in 64 bits, so nothing wraps silently.

CPU: numba kernels (encode parallel over rows of all planes, decode parallel over planes).
GPU: CuPy kernels beside them, chosen when a cupy array comes in (encode: one thread per pixel;
decode: one block per plane sweeping anti-diagonals, whose pixels depend only on the two
diagonals before; the kernel is medquant's at tolerance 0, in stages/_kernels.py). Integer arithmetic only: identical output on either.
"""

import numpy as np
from numba import njit, prange

from base.errors import TezipError
from stages._codec import Codec, into
from stages._kernels import MED_DEVICE_SOURCE, cupy, cuda_kernel, med_predict, med_sweep_cupy, run_int32_kernel

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# Inputs in [-SAFE_LIMIT, SAFE_LIMIT) always encode: their errors always fit int32.
SAFE_LIMIT = 2**30


# --------------------------------------------------------------------------- numba


@njit(cache=True, parallel=True)
def _med_encode(values, out):
    """Prediction errors of every pixel; returns a per-row flag set when an error left int32.

    Errors depend only on the input, so every row of every plane is independent work."""
    n_planes, height, width = values.shape
    n_rows = n_planes * height
    overflow = np.zeros(n_rows, dtype=np.uint8)
    for r in prange(n_rows):
        p = r // height
        i = r - p * height
        row = values[p, i]
        dst = out[p, i]
        bad = False
        if i == 0:
            previous = np.int64(0)
            for j in range(width):
                current = np.int64(row[j])
                error = current - previous
                bad |= error < _INT32_MIN or error > _INT32_MAX
                dst[j] = error
                previous = current
        elif width > 0:
            up = values[p, i - 1]
            error = np.int64(row[0]) - np.int64(up[0])
            bad |= error < _INT32_MIN or error > _INT32_MAX
            dst[0] = error
            for j in range(1, width):
                error = np.int64(row[j]) - med_predict(np.int64(row[j - 1]), np.int64(up[j]), np.int64(up[j - 1]))
                bad |= error < _INT32_MIN or error > _INT32_MAX
                dst[j] = error
        overflow[r] = bad
    return overflow


@njit(cache=True, parallel=True)
def _med_decode(errors, out):
    """Rebuild each plane in raster order; returns a per-plane flag set when a value left int32."""
    n_planes, height, width = errors.shape
    overflow = np.zeros(n_planes, dtype=np.uint8)
    for p in prange(n_planes):
        bad = False
        for i in range(height):
            src = errors[p, i]
            row = out[p, i]
            if i == 0:
                total = np.int64(0)
                for j in range(width):
                    total += src[j]
                    bad |= total < _INT32_MIN or total > _INT32_MAX
                    row[j] = total
                    # Continue from what was stored: after an overflow the plane is garbage
                    # anyway, but the arithmetic stays bounded and the flag is already set.
                    total = np.int64(row[j])
            elif width > 0:
                up = out[p, i - 1]
                value = np.int64(src[0]) + np.int64(up[0])
                bad |= value < _INT32_MIN or value > _INT32_MAX
                row[0] = value
                for j in range(1, width):
                    value = np.int64(src[j]) + med_predict(np.int64(row[j - 1]), np.int64(up[j]), np.int64(up[j - 1]))
                    bad |= value < _INT32_MIN or value > _INT32_MAX
                    row[j] = value
        overflow[p] = bad
    return overflow


# --------------------------------------------------------------------------- CUDA

_MED_ENCODE_CUDA = MED_DEVICE_SOURCE + r"""
extern "C" __global__
void med_encode(const int* values, int* out, unsigned char* overflow,
                long long size, long long height, long long width) {
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= size) return;
    long long j = k % width;
    long long i = (k / width) % height;
    long long prediction;
    if (i == 0) {
        prediction = (j == 0) ? 0 : (long long)values[k - 1];
    } else if (j == 0) {
        prediction = values[k - width];
    } else {
        prediction = med(values[k - 1], values[k - width], values[k - width - 1]);
    }
    long long error = (long long)values[k] - prediction;
    // Any thread may raise the flag; none clears it, so no atomics needed.
    if (error < -2147483648LL || error > 2147483647LL) overflow[0] = 1;
    out[k] = (int)error;
}
"""

def _med_encode_cupy(values, out):
    overflow = cupy.zeros(1, dtype=cupy.uint8)
    n_planes, height, width = values.shape
    threads = 256
    blocks = (values.size + threads - 1) // threads
    cuda_kernel("med_encode", _MED_ENCODE_CUDA)(
        (blocks,), (threads,),
        (values, out, overflow, np.int64(values.size), np.int64(height), np.int64(width)),
    )
    return overflow


def _med_decode_cupy(errors, out):
    """MED decoding is medquant decoding with tolerance 0 (step 1): one anti-diagonal sweep kernel
    serves both (compress/medquant.py)."""
    return med_sweep_cupy(errors, 0, cupy.empty((0, 0, 0), dtype=cupy.int32), out, False)


# --------------------------------------------------------------------------- codec


def as_planes(array, what):
    """(..., H, W) → (P, H, W): every plane is independent work for the MED kernels."""
    if array.ndim < 2:
        raise TezipError(f"{what}: expected planes (..., height, width), got shape {array.shape}")
    return array.reshape((int(np.prod(array.shape[:-2])),) + tuple(array.shape[-2:]))


class MedCoder(Codec):
    """MED (LOCO-I) prediction errors of int32 planes: any (..., H, W) array, each plane on its
    own; numpy or cupy in, the same kind and shape out.

    encode(values) -> errors, decode(errors) -> values; see the module docstring for the borders
    and the valid range."""

    codec_id = "med"

    def encode(self, values):
        out, overflow = run_int32_kernel(as_planes(values, "MED input"), _med_encode, _med_encode_cupy)
        if overflow:
            raise TezipError("values too far apart for int32 MED prediction errors")
        return out.reshape(values.shape)

    def decode(self, errors, out=None):
        if errors.dtype != np.int32:
            raise TezipError(f"corrupt MED data: expected int32, got {errors.dtype}")
        values, overflow = run_int32_kernel(as_planes(errors, "corrupt MED data"), _med_decode, _med_decode_cupy)
        if overflow:
            raise TezipError("corrupt MED data: decoded values overflow int32")
        values = values.reshape(errors.shape)
        return into(out, values)
