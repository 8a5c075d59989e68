"""Error-bound modes: what a bound means per pixel, as the integer tolerance each pixel may move.

    abs      |x' - x| <= b
    rel      |x' - x| <= b * (value range of the frame's channel)
    absrel   the tighter of abs b1 and rel b2
    pwrel    |x' - x| <= b * |x|

Tolerances are floored to integers (pixels are integers, so nothing is lost), so every decoded pixel
within its tolerance is within the user's bound.
"""

import math
from numbers import Real

import numpy as np

from base.errors import TezipError
from stages._kernels import cupy, is_cupy_array

MODES = ("abs", "rel", "absrel", "pwrel")

# How many bounds each mode takes, and what they mean (for error messages).
_BOUND_ARITY = {
    "abs": (1, "one absolute bound"),
    "rel": (1, "one bound relative to each frame channel's value range"),
    "absrel": (2, "two bounds: absolute, then relative"),
    "pwrel": (1, "one point-wise relative bound"),
}



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
