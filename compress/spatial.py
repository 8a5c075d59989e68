"""Spatial stage: first differences along each partition (the "delta1d" codec).

After run-merging, neighbouring quantized residuals are often equal, so their
differences are zero; the entropy stage then maps that dominant zero to a
small rank that compresses to almost nothing.
"""

import numpy as np
from numba import njit, prange

from compress.codec import Codec
from compress.errors import TezipError

from compress.gpu import cupy, cuda_kernel, run_int32_kernel, launch_elementwise

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


class DeltaCoder(Codec):
    """First differences along axis 1 of int32 (P, L) arrays; numpy or cupy in, same kind out."""

    codec_id = "delta1d"

    def encode(self, values):
        if values.ndim != 2:
            raise ValueError(f"delta coding expects a (partitions, length) array, got shape {values.shape}")
        out, overflow = run_int32_kernel(values, _delta_encode, _delta_encode_cupy)
        if overflow:
            raise TezipError("values too far apart for int32 delta coding")
        return out

    def decode(self, differences):
        if differences.ndim != 2:
            raise TezipError(f"corrupt delta data: expected a 2-D array, got shape {differences.shape}")
        if differences.dtype != np.int32:
            raise TezipError(f"corrupt delta data: expected int32, got {differences.dtype}")
        out, overflow = run_int32_kernel(differences, _delta_decode, _delta_decode_cupy)
        if overflow:
            raise TezipError("corrupt delta data: decoded values overflow int32")
        return out
