"""Error-bounded quantization of prediction residuals (the "runmerge" stage).

The encoder stores residual = frame - prediction.  Under a lossy error bound each
residual may be replaced by any integer within its pixel's tolerance; this stage
picks replacements so that neighbouring pixels along a row share one value
("runs"), which the delta stage later turns into long stretches of zeros.

Quantization has no inverse: the decoder simply adds the stored value to its own
prediction.  The guarantee is |q - r| <= t per pixel, and t <= the user's bound,
so clip(prediction + q) stays within the bound of the original pixel.
"""

import numpy as np
from numba import njit, prange

from base.errors import TezipError
from stages._codec import Quantizer, into
from stages._kernels import cupy, cuda_kernel, is_cupy_array

REPRESENTATIVES = ("nearest_previous", "midpoint")

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


@njit(cache=True, inline="always")
def _choose_representative(low, high, previous, midpoint):
    # Keep the choice inside int32 as well as inside [low, high]; the
    # intersection always overlaps int32 because it contains no value above
    # the largest residual or below the smallest one.
    if low < _INT32_MIN:
        low = _INT32_MIN
    if high > _INT32_MAX:
        high = _INT32_MAX
    if midpoint:
        return (low + high) // 2  # floor division, matching the CUDA kernel
    if previous < low:
        return low
    if previous > high:
        return high
    return previous


@njit(cache=True, parallel=True)
def _runmerge_rows(residuals, tolerances, out, midpoint):
    """Quantize every row of 2-D int32 arrays; returns a per-row flag for negative tolerances."""
    n_rows, width = residuals.shape
    negative = np.zeros(n_rows, dtype=np.uint8)
    for row in prange(n_rows):
        r = residuals[row]
        t = tolerances[row]
        o = out[row]
        previous = np.int64(0)
        run_start = 0
        # int64 so that r +- t cannot wrap for any int32 inputs.
        low = np.int64(r[0]) - t[0]
        high = np.int64(r[0]) + t[0]
        sign_bits = t[0]  # OR of all tolerances: negative iff any one is
        for i in range(1, width):
            ti = t[i]
            sign_bits |= ti
            next_low = np.int64(r[i]) - ti
            next_high = np.int64(r[i]) + ti
            merged_low = max(low, next_low)
            merged_high = min(high, next_high)
            if merged_low > merged_high:
                q = _choose_representative(low, high, previous, midpoint)
                for k in range(run_start, i):
                    o[k] = q
                previous = q
                run_start = i
                low = next_low
                high = next_high
            else:
                low = merged_low
                high = merged_high
        q = _choose_representative(low, high, previous, midpoint)
        for k in range(run_start, width):
            o[k] = q
        negative[row] = sign_bits < 0
    return negative


_RUNMERGE_CUDA = r"""
__device__ __forceinline__ long long choose_representative(
        long long low, long long high, long long previous, int midpoint) {
    // Same rules as the numba kernel, including the int32 clamp.
    if (low < -2147483648LL) low = -2147483648LL;
    if (high > 2147483647LL) high = 2147483647LL;
    if (midpoint) {
        long long s = low + high;
        // Floor division: C++ '/' truncates toward zero.
        return s >= 0 ? s / 2 : -((-s + 1) / 2);
    }
    if (previous < low) return low;
    if (previous > high) return high;
    return previous;
}

extern "C" __global__
void runmerge_rows(const int* residuals, const int* tolerances, int* out,
                   unsigned char* negative, long long n_rows, long long width,
                   int midpoint) {
    long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n_rows) return;
    const int* r = residuals + row * width;
    const int* t = tolerances + row * width;
    int* o = out + row * width;
    long long previous = 0;
    long long run_start = 0;
    long long low = (long long)r[0] - t[0];
    long long high = (long long)r[0] + t[0];
    int sign_bits = t[0];  // OR of all tolerances: negative iff any one is
    for (long long i = 1; i < width; ++i) {
        int ti = t[i];
        sign_bits |= ti;
        long long next_low = (long long)r[i] - ti;
        long long next_high = (long long)r[i] + ti;
        long long merged_low = next_low > low ? next_low : low;
        long long merged_high = next_high < high ? next_high : high;
        if (merged_low > merged_high) {
            long long q = choose_representative(low, high, previous, midpoint);
            for (long long k = run_start; k < i; ++k) o[k] = (int)q;
            previous = q;
            run_start = i;
            low = next_low;
            high = next_high;
        } else {
            low = merged_low;
            high = merged_high;
        }
    }
    long long q = choose_representative(low, high, previous, midpoint);
    for (long long k = run_start; k < width; ++k) o[k] = (int)q;
    negative[row] = (unsigned char)(sign_bits < 0);
}
"""

def _runmerge_rows_cupy(residuals, tolerances, out, midpoint):
    n_rows, width = residuals.shape
    negative = cupy.zeros(n_rows, dtype=cupy.uint8)
    threads = 128
    blocks = (n_rows + threads - 1) // threads
    cuda_kernel("runmerge_rows", _RUNMERGE_CUDA)(
        (blocks,),
        (threads,),
        (residuals, tolerances, out, negative, np.int64(n_rows), np.int64(width), np.int32(1 if midpoint else 0)),
    )
    return negative


def quantize_residuals(residuals, tolerances, representative="nearest_previous"):
    """Merge residuals into runs sharing one value, each within its pixel's tolerance.

    Rows (the last axis) are independent.  Returns int32 of the input's shape,
    on the same device as the input (numpy or cupy).  |q - r| <= t everywhere;
    with all t == 0 the residuals come back unchanged.
    """
    if representative not in REPRESENTATIVES:
        raise ValueError(f"unknown representative policy {representative!r} (valid: {', '.join(REPRESENTATIVES)})")
    on_gpu = is_cupy_array(residuals)
    xp = cupy if on_gpu else np
    residuals = xp.ascontiguousarray(xp.asarray(residuals), dtype=np.int32)
    tolerances = xp.ascontiguousarray(xp.asarray(tolerances), dtype=np.int32)
    if residuals.shape != tolerances.shape:
        raise ValueError(f"residuals {residuals.shape} and tolerances {tolerances.shape} differ in shape")
    out = xp.empty(residuals.shape, dtype=np.int32)
    if residuals.size == 0:
        return out
    width = residuals.shape[-1]
    rows_r = residuals.reshape(-1, width)
    rows_t = tolerances.reshape(-1, width)
    rows_out = out.reshape(-1, width)
    midpoint = representative == "midpoint"
    if on_gpu:
        negative = _runmerge_rows_cupy(rows_r, rows_t, rows_out, midpoint)
    else:
        negative = _runmerge_rows(rows_r, rows_t, rows_out, midpoint)
    if bool(negative.any()):
        raise ValueError("tolerances must be non-negative")
    return out


class RunMerge(Quantizer):
    """The run-merging quantizer: quantize(residuals, tolerances) -> (q, q), since the decoder adds
    q itself (decode is the identity). tolerances: int32 per value, the same shape (None: all 0,
    lossless). Works along the last axis of any int32 array; numpy or cupy in, the same kind out."""

    codec_id = "runmerge"
    config_keys = ("representative",)

    def __init__(self, representative="nearest_previous"):
        if representative not in REPRESENTATIVES:
            raise TezipError(
                f"unknown representative policy {representative!r} (valid: {', '.join(REPRESENTATIVES)})"
            )
        self.representative = representative

    def quantize(self, residuals, tolerances=None):
        if tolerances is None:
            xp = cupy if is_cupy_array(residuals) else np
            tolerances = xp.zeros(residuals.shape, np.int32)
        q = quantize_residuals(residuals, tolerances, self.representative)
        return q, q

    def decode(self, codes, out=None):
        if codes.dtype != np.int32:
            raise TezipError(f"corrupt runmerge data: expected int32, got {codes.dtype}")
        return into(out, codes)
