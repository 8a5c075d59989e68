"""What every archive format version shares: the file names, the frames' format (FrameFormat), the
checksum of a decoded frame, the digest that binds filename.txt to entropy.dat, the archive id.
Headers are validated as they are read (a header may be corrupt or hostile: every field is checked
before anything is allocated from it)."""

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from base.errors import TezipError
from base.pixels import MODE_DTYPES, SUPPORTED_MODES, frame_checksum, max_value_of  # noqa: F401  (frame_checksum: archives store it)

ENTROPY_FILE, KEYFRAME_FILE = "entropy.dat", "key_frame.dat"
# A declared size beyond this is a corrupt or hostile header, not a sequence.
MAX_PIXELS = 1 << 36
MAX_LANES = 4096
KEYFRAME_HEADS = ("med", "medquant")  # keyframes are predicted from their own pixels


def names_digest(mode, names, stack=None, source=None):
    """Binds filename.txt's names (order included), colour mode, TIFF stack name and source
    description into entropy.dat: an edited filename.txt cannot rename, reorder or re-describe the
    output even with its own checksum recomputed. (Without a stack the digest is what it always was.)"""
    bound = [mode, list(names)] if stack is None else [mode, list(names), stack]
    if source is not None:
        bound.append(source)
    return hashlib.sha256(json.dumps(bound, sort_keys=True).encode()).hexdigest()[:32]


def archive_id(header):
    """Identity of an archive: a hash of its decode settings and frame checksums."""
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:32]


def check_int(h, key, where, lo=0, hi=None):
    v = h.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        raise TezipError(f"{where} is corrupt (bad {key!r} in its header)")
    return v


# The error-bound modes an archive may record and how many bounds each takes (sequence/bounds.py
# defines what they mean; the format only fixes their names and shape).
BOUND_MODES = {"abs": 1, "rel": 1, "absrel": 2, "pwrel": 1}


def check_bound(bound, where):
    """A header's {"mode", "bounds", "lossless"}, checked: a known mode, its number of finite,
    non-negative numbers, a true/false lossless flag; TezipError naming `where` otherwise.
    Returns {"mode": str, "bounds": [float, ...], "lossless": bool}."""
    if not isinstance(bound, dict):
        raise TezipError(f"{where} is corrupt (no error bound)")
    mode, bounds, lossless = bound.get("mode"), bound.get("bounds"), bound.get("lossless")
    if not isinstance(mode, str) or mode not in BOUND_MODES:
        raise TezipError(f"{where} is corrupt (unknown error-bound mode {str(mode)[:20]!r})")
    if not (isinstance(bounds, list) and len(bounds) == BOUND_MODES[mode]
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b >= 0
                    for b in bounds)):
        raise TezipError(f"{where} is corrupt (bad error bounds for mode {mode})")
    if not isinstance(lossless, bool):
        raise TezipError(f"{where} is corrupt (bad lossless flag)")
    return {"mode": mode, "bounds": [float(b) for b in bounds], "lossless": lossless}


def check_lane_plan(lane_starts, keyframes, n_frames):
    """Lanes must start at 0, increase, lie inside the sequence, and begin with keyframes."""
    if not lane_starts or lane_starts[0] != 0:
        return "lanes must start at frame 0"
    if any(b <= a for a, b in zip(lane_starts, lane_starts[1:])) or lane_starts[-1] >= n_frames:
        return "lane starts are not increasing inside the sequence"
    keyset = set(keyframes)
    if any(s not in keyset for s in lane_starts):
        return "a lane does not begin with a keyframe"
    return None


@dataclass(frozen=True)
class FrameFormat:
    """The frames: count, size, channels, sample dtype, and the value range the model was shown
    (16-bit sequences: the range they span; None for the type's full range)."""

    n_frames: int
    height: int
    width: int
    channels: int
    dtype: np.dtype
    value_range: tuple | None = None

    @classmethod
    def of(cls, n_frames, height, width, channels, dtype, scale=None):
        """scale: the ValueScale the model was shown (recorded when it is not the type's full range)."""
        max_value = max_value_of(dtype)
        vr = None if scale is None or (scale.low, scale.high) == (0, max_value) else (scale.low, scale.high)
        return cls(int(n_frames), int(height), int(width), int(channels), np.dtype(dtype), vr)

    @property
    def max_value(self):
        return max_value_of(self.dtype)

    @property
    def frame_shape(self):
        """(C, H, W): the planar shape the stages work on."""
        return (self.channels, self.height, self.width)

    def to_json(self):
        j = {"n_frames": self.n_frames, "height": self.height, "width": self.width, "channels": self.channels,
             "dtype": self.dtype.name, "max_value": self.max_value}
        if self.value_range is not None:
            j["value_range"] = list(self.value_range)
        return j

    @classmethod
    def from_json(cls, h, where, mode=None):
        """mode: filename.txt's colour mode, checked against the channels and dtype."""
        n = check_int(h, "n_frames", where, 1)
        height, width = check_int(h, "height", where, 1), check_int(h, "width", where, 1)
        c = check_int(h, "channels", where, 1, 3)
        dtypes = {d.name: d for d in MODE_DTYPES.values()}
        dtype = dtypes.get(h.get("dtype")) if isinstance(h.get("dtype"), str) else None
        if c not in (1, 3) or dtype is None or h.get("max_value") != max_value_of(dtype):
            raise TezipError(f"{where} declares pixels this TEZip cannot write ({c} channels, {str(h.get('dtype'))[:20]})")
        if n * height * width * c > MAX_PIXELS:
            raise TezipError(f"{where} is corrupt (declares an implausible size {n}x{height}x{width}x{c})")
        if mode is not None and (not isinstance(mode, str) or mode not in SUPPORTED_MODES
                                 or SUPPORTED_MODES[mode] != c or MODE_DTYPES[mode] != dtype):
            raise TezipError(f"filename.txt has colour mode {str(mode)[:20]!r} for {c}-channel {dtype} frames")
        value_range = h.get("value_range")
        if value_range is not None:
            if not (isinstance(value_range, list) and len(value_range) == 2 and all(type(v) is int for v in value_range)
                    and 0 <= value_range[0] <= value_range[1] <= max_value_of(dtype)):
                raise TezipError(f"{where} is corrupt (bad value range {str(value_range)[:40]})")
            value_range = tuple(value_range)
        return cls(n, height, width, c, dtype, value_range)
