"""Spatial stage: first differences along each frame's values (the "delta1d" codec).

After run-merging, neighbouring quantized residuals are often equal, so their
differences are zero; the entropy stage then maps that dominant zero to a
small rank that compresses to almost nothing.
"""

import numpy as np
from numba import njit, prange

from base.errors import TezipError
from stages._codec import Codec, into
from stages._kernels import cupy, cuda_kernel, launch_elementwise, run_int32_kernel

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


@njit(cache=True, parallel=True)
def _delta_encode(values, out):
    """Row-wise first differences; returns a per-row flag set when a difference left int32."""
    n_rows, length = values.shape
    overflow = np.zeros(n_rows, dtype=np.uint8)
    for p in prange(n_rows):
        previous = np.int64(0)
        bad = False
        for i in range(length):
            current = np.int64(values[p, i])
            difference = current - previous
            bad |= difference < _INT32_MIN or difference > _INT32_MAX
            out[p, i] = difference
            previous = current
        overflow[p] = bad
    return overflow


@njit(cache=True, parallel=True)
def _delta_decode(differences, out):
    """Row-wise running sums in int64; returns a per-row flag set when a sum left int32."""
    n_rows, length = differences.shape
    overflow = np.zeros(n_rows, dtype=np.uint8)
    for p in prange(n_rows):
        total = np.int64(0)
        bad = False
        for i in range(length):
            total += differences[p, i]
            bad |= total < _INT32_MIN or total > _INT32_MAX
            out[p, i] = total
        overflow[p] = bad
    return overflow


_DELTA_ENCODE_CUDA = r"""
extern "C" __global__
void delta_encode(const int* values, int* out, unsigned char* overflow,
                  long long size, long long length) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    long long current = values[i];
    long long previous = (i % length == 0) ? 0 : (long long)values[i - 1];
    long long difference = current - previous;
    // Any thread may raise the flag; no thread ever clears it, so no atomics needed.
    if (difference < -2147483648LL || difference > 2147483647LL) overflow[0] = 1;
    out[i] = (int)difference;
}
"""

# Narrows the int64 running sums (from cupy.cumsum, a tuned parallel scan) to
# int32, flagging any value a corrupt archive pushed out of range.
_NARROW_CUDA = r"""
extern "C" __global__
void narrow_int32(const long long* sums, int* out, unsigned char* overflow, long long size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    long long total = sums[i];
    if (total < -2147483648LL || total > 2147483647LL) overflow[0] = 1;
    out[i] = (int)total;
}
"""

def _delta_encode_cupy(values, out):
    overflow = cupy.zeros(1, dtype=cupy.uint8)
    launch_elementwise(
        cuda_kernel("delta_encode", _DELTA_ENCODE_CUDA),
        values.size,
        (values, out, overflow, np.int64(values.size), np.int64(values.shape[1])),
    )
    return overflow


def _delta_decode_cupy(differences, out):
    sums = cupy.cumsum(differences, axis=1, dtype=cupy.int64)
    overflow = cupy.zeros(1, dtype=cupy.uint8)
    launch_elementwise(
        cuda_kernel("narrow_int32", _NARROW_CUDA),
        sums.size,
        (sums, out, overflow, np.int64(sums.size)),
    )
    return overflow


def as_rows(array, what):
    """One row per frame: a (C, H, W) frame is one row, a (F, C, H, W) stack F rows, a 2-D array
    its own rows. The differences run along each row in C order (plane after plane)."""
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        return array.reshape(1, -1)
    if array.ndim == 4:
        return array.reshape(array.shape[0], int(np.prod(array.shape[1:])))
    raise TezipError(f"{what}: expected a frame or a stack of frames, got shape {array.shape}")


class DeltaCoder(Codec):
    """First differences along each frame (see as_rows) of int32 arrays; numpy or cupy in, the same
    kind and shape out."""

    codec_id = "delta1d"

    def encode(self, values):
        out, overflow = run_int32_kernel(as_rows(values, "delta input"), _delta_encode, _delta_encode_cupy)
        if overflow:
            raise TezipError("values too far apart for int32 delta coding")
        return out.reshape(values.shape)

    def decode(self, differences, out=None):
        if differences.dtype != np.int32:
            raise TezipError(f"corrupt delta data: expected int32, got {differences.dtype}")
        rows = as_rows(differences, "corrupt delta data")
        values, overflow = run_int32_kernel(rows, _delta_decode, _delta_decode_cupy)
        if overflow:
            raise TezipError("corrupt delta data: decoded values overflow int32")
        values = values.reshape(differences.shape)
        return into(out, values)
