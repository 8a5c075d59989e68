"""Kernels the stages share, numba and CuPy side by side: the CuPy plumbing (optional import, so
CPU-only installs run everything through numba; dispatch on the array type; lazy compilation, so
importing a stage never needs a GPU; the elementwise launch shape) and the MED predictor (LOCO-I's
median edge detector) that med and medquant both use, with the anti-diagonal sweep kernel that
decodes either on a GPU. Integer arithmetic only: the same numbers on either device."""

import numpy as np
from numba import njit

try:
    import cupy
except ImportError:
    cupy = None

_kernels = {}


def array_module(device):
    """CuPy in GPU mode when it is installed (the stages dispatch on the array type), else numpy.
    Both produce identical integers, so archives decode on either."""
    return cupy if device == "GPU" and cupy is not None else np


def is_cupy_array(x):
    return cupy is not None and isinstance(x, cupy.ndarray)


def cuda_kernel(name, source):
    if name not in _kernels:
        _kernels[name] = cupy.RawKernel(source, name)
    return _kernels[name]


def launch_elementwise(kernel, size, args, threads=256):
    kernel(((size + threads - 1) // threads,), (threads,), args)


def run_int32_kernel(values, cpu_kernel, gpu_kernel):
    """Apply a kernel pair `kernel(values, out) → overflow flags` to an int32 array on whichever
    device holds it. Returns (out, whether any overflow flag is set)."""
    on_gpu = is_cupy_array(values)
    xp = cupy if on_gpu else np
    values = xp.ascontiguousarray(values, dtype=np.int32)
    out = xp.empty(values.shape, dtype=np.int32)
    if values.size == 0:
        return out, False
    overflow = (gpu_kernel if on_gpu else cpu_kernel)(values, out)
    return out, bool(overflow.any())


# --------------------------------------------------------------------------- MED


@njit(cache=True, inline="always")
def med_predict(a, b, c):
    """Median edge detector on int64 neighbours (left, above, above-left)."""
    if a >= b:
        high, low = a, b
    else:
        high, low = b, a
    if c >= high:
        return low
    if c <= low:
        return high
    return a + b - c


MED_DEVICE_SOURCE = r"""
__device__ __forceinline__ long long med(long long a, long long b, long long c) {
    long long high = a >= b ? a : b;
    long long low = a >= b ? b : a;
    if (c >= high) return low;
    if (c <= low) return high;
    return a + b - c;
}
"""

# One block per plane sweeping anti-diagonals: (i, j) needs (i, j-1), (i-1, j), (i-1, j-1), all
# on the two diagonals before. `encode` is 1 to quantize `src` (values) into `codes`, 0 to decode
# `src` (codes). Both write the reconstruction into `rec`.
_MED_SWEEP_CUDA = MED_DEVICE_SOURCE + r"""
extern "C" __global__
void medquant(const int* src, int* codes, int* rec, unsigned char* overflow,
              long long height, long long width, long long tolerance, int encode) {
    long long plane = (long long)blockIdx.x * height * width;
    const int* in = src + plane;
    int* q_out = codes + plane;
    int* r = rec + plane;
    long long step = 2 * tolerance + 1;
    bool bad = false;
    for (long long d = 0; d < height + width - 1; ++d) {
        long long i_first = d - (width - 1) > 0 ? d - (width - 1) : 0;
        long long i_last = d < height - 1 ? d : height - 1;
        for (long long i = i_first + threadIdx.x; i <= i_last; i += blockDim.x) {
            long long j = d - i;
            long long k = i * width + j;
            long long prediction;
            if (i == 0) prediction = (j == 0) ? 0 : (long long)r[k - 1];
            else if (j == 0) prediction = r[k - width];
            else prediction = med(r[k - 1], r[k - width], r[k - width - 1]);
            long long q;
            if (encode) {
                long long error = (long long)in[k] - prediction;
                long long magnitude = error < 0 ? -error : error;
                q = (magnitude + tolerance) / step;
                if (error < 0) q = -q;
                if (q < -2147483648LL || q > 2147483647LL) bad = true;
                q_out[k] = (int)q;
            } else {
                q = in[k];
            }
            long long value = prediction + q * step;
            if (value < -2147483648LL || value > 2147483647LL) bad = true;
            r[k] = (int)value;
        }
        __syncthreads();
    }
    if (bad) overflow[0] = 1;
}
"""


def med_sweep_cupy(src, tolerance, codes, rec, encode):
    """MED prediction + quantization with step 2*tolerance + 1 (tolerance 0: plain MED), encoding
    values `src` into `codes` or decoding codes `src`; both fill `rec`. Returns the overflow flag."""
    overflow = cupy.zeros(1, dtype=cupy.uint8)
    n_planes, height, width = src.shape
    threads = int(min(256, max(32, (min(height, width) + 31) // 32 * 32)))
    cuda_kernel("medquant", _MED_SWEEP_CUDA)(
        (n_planes,), (threads,),
        (src, codes, rec, overflow, np.int64(height), np.int64(width), np.int64(tolerance), np.int32(bool(encode))),
    )
    return overflow
