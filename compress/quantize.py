"""Error-bounded quantization of prediction residuals (the "runmerge" stage).

The encoder stores residual = frame - prediction.  Under a lossy error bound each
residual may be replaced by any integer within its pixel's tolerance; this stage
picks replacements so that neighbouring pixels along a row share one value
("runs"), which the delta stage later turns into long stretches of zeros.

Quantization has no inverse: the decoder simply adds the stored value to its own
prediction.  The guarantee is |q - r| <= t per pixel, and t <= the user's bound,
so clip(prediction + q) stays within the bound of the original pixel.
"""

import math
from numbers import Real

import numpy as np
from numba import njit, prange

from compress.codec import Codec
from compress.errors import TezipError

from compress.gpu import cupy, cuda_kernel, is_cupy_array

MODES = ("abs", "rel", "absrel", "pwrel")
REPRESENTATIVES = ("nearest_previous", "midpoint")

# How many bounds each mode takes, and what they mean (for error messages).
_BOUND_ARITY = {
    "abs": (1, "one absolute bound"),
    "rel": (1, "one bound relative to each frame channel's value range"),
    "absrel": (2, "two bounds: absolute, then relative"),
    "pwrel": (1, "one point-wise relative bound"),
}

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def validate_bounds(mode, bounds):
    """Check an error-bound mode and its bounds; return the bounds as a tuple of floats."""
    if mode not in MODES:
        raise TezipError(f"unknown error-bound mode {mode!r} (valid modes: {', '.join(MODES)})")
    if isinstance(bounds, (Real, np.number)) and not isinstance(bounds, bool):
        bounds = (bounds,)
    try:
        values = tuple(bounds)
    except TypeError:
        raise TezipError(f"error bounds for mode {mode!r} must be a list of numbers, got {bounds!r}") from None
    count, meaning = _BOUND_ARITY[mode]
    if len(values) != count:
        raise TezipError(f"error-bound mode {mode!r} takes {meaning}; got {len(values)} value(s)")
    result = []
    for value in values:
        if isinstance(value, bool):
            raise TezipError(f"error bound must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TezipError(f"error bound must be a number, got {value!r}") from None
        if math.isnan(number) or math.isinf(number):
            raise TezipError(f"error bound must be finite, got {value!r}")
        if number < 0:
            raise TezipError(f"error bound must not be negative, got {value!r}")
        result.append(number)
    return tuple(result)


def is_lossless(mode, bounds):
    """True when the bounds allow no error at all (for absrel the tighter bound wins, so either 0 suffices)."""
    return any(b == 0 for b in validate_bounds(mode, bounds))


def pixel_tolerances(frames, mode, bounds, max_value):
    """Integer error tolerance per pixel, int32, same shape as `frames` (N, C, H, W).

    The float bound e is computed in float64 and floored, so the integer
    tolerance never exceeds it; the result is clipped to [0, max_value].
    Works on numpy or cupy arrays (returns the same kind).
    """
    bounds = validate_bounds(mode, bounds)
    xp = cupy if is_cupy_array(frames) else np
    frames = xp.asarray(frames)
    if frames.dtype.kind not in "iu":
        raise TypeError(f"frames must be an integer array, got {frames.dtype}")
    if max_value < 0:
        raise ValueError(f"max_value must be >= 0, got {max_value}")
    if any(b == 0 for b in bounds):
        return xp.zeros(frames.shape, dtype=np.int32)

    if mode in ("rel", "absrel"):
        if frames.ndim < 2:
            raise ValueError("rel/absrel tolerances need frames with at least (H, W) axes")
        if frames.size == 0:
            return xp.zeros(frames.shape, dtype=np.int32)
        plane_axes = (-2, -1)
        # Ranges computed in int64 so that e.g. int32 extremes cannot wrap.
        value_range = (
            frames.max(axis=plane_axes, keepdims=True).astype(np.int64)
            - frames.min(axis=plane_axes, keepdims=True).astype(np.int64)
        ).astype(np.float64)
        allowed = bounds[-1] * value_range
        if mode == "absrel":
            allowed = xp.minimum(allowed, bounds[0])
        allowed = xp.broadcast_to(allowed, frames.shape)
    elif mode == "abs":
        allowed = xp.full(frames.shape, bounds[0], dtype=np.float64)
    else:  # pwrel
        allowed = bounds[0] * xp.abs(frames.astype(np.float64))

    # Clip before the int cast: a bound beyond the value range buys nothing and
    # would otherwise overflow int32.
    return xp.clip(xp.floor(allowed), 0, max_value).astype(np.int32)


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


class Quantizer(Codec):
    """Codec record for the run-merging quantizer (encode side only: it has no inverse)."""

    codec_id = "runmerge"
    config_keys = ("representative",)

    def __init__(self, representative="nearest_previous"):
        if representative not in REPRESENTATIVES:
            raise TezipError(
                f"unknown representative policy {representative!r} (valid: {', '.join(REPRESENTATIVES)})"
            )
        self.representative = representative

    def quantize(self, residuals, tolerances):
        return quantize_residuals(residuals, tolerances, self.representative)
