"""Per-block choice of predictor: PredNet's prediction or the previous decoded frame, moved.

Static parts of real footage repeat exactly from one frame to the next, where PredNet's slightly
blurry prediction leaves a residual everywhere; panning and moving objects repeat too, a few pixels
away. For each block (all channels together) the encoder keeps whichever candidate leaves the
smallest sum of absolute residuals: PredNet's prediction, or the previous decoded frame shifted by a
motion vector (dy, dx) within ±radius (edge pixels repeat beyond the border). Ties keep PredNet,
then the unmoved frame. One byte per block tells the decoder which:

    0 = PredNet          1 + (dy + radius) * (2 radius + 1) + (dx + radius) = previous frame moved
    with `mean`: 1 + S + that index (S = (2 radius + 1)^2) = the mean of PredNet and the previous
    frame moved, (p + m + 1) >> 1 (bi-prediction: two noisy predictions average their errors out;
    tried for the best motion vector of the block only)

(radius 0 is the plain choice PredNet / previous frame). The decoder has the previous decoded frame
(the previous frame of the same window: windows start with keyframes), so it rebuilds the same
prediction. On the dev frames (TEZip end to end) radius 2 made archives 3.5 % (lossless) to 8 %
(abs 1) smaller than the unmoved previous frame alone; radius 4, the default, another 1-3 %;
radius 7 nothing more. Most candidates stop early (a partial sum already beats the best so far).

Integer numba kernels, parallel over blocks; they run on the host in either mode (the frames they
read are host arrays there).
"""

import numpy as np
from numba import njit, prange

from stages._codec import Codec
from base.errors import TezipError

MAX_RADIUS = 7  # (2 * 7 + 1)^2 + 1 = 226 codes: one byte per block in format 2 (which had no mean)


@njit(cache=True, inline="always")
def _block_sad(frame, candidate, y0, y1, x0, x1, dy, dx, limit):
    """Sum of |frame - candidate moved by (dy, dx)| over the block; stops once it reaches `limit`."""
    n_planes, height, width = frame.shape
    total = np.int64(0)
    for c in range(n_planes):
        for i in range(y0, y1):
            si = min(max(i + dy, 0), height - 1)
            for j in range(x0, x1):
                sj = min(max(j + dx, 0), width - 1)
                total += abs(np.int64(frame[c, i, j]) - np.int64(candidate[c, si, sj]))
        if total >= limit:
            return total
    return total


@njit(cache=True, inline="always")
def _block_sad_mean(frame, model, candidate, y0, y1, x0, x1, dy, dx, limit):
    """Sum of |frame - (model + candidate moved + 1) >> 1| over the block; stops at `limit`."""
    n_planes, height, width = frame.shape
    total = np.int64(0)
    for c in range(n_planes):
        for i in range(y0, y1):
            si = min(max(i + dy, 0), height - 1)
            for j in range(x0, x1):
                sj = min(max(j + dx, 0), width - 1)
                m = (np.int64(model[c, i, j]) + np.int64(candidate[c, si, sj]) + 1) >> 1
                total += abs(np.int64(frame[c, i, j]) - m)
        if total >= limit:
            return total
    return total


@njit(cache=True, parallel=True)
def _choose_blocks(frame, model, previous, block, radius, use_model, use_mean, choices):
    ny, nx = choices.shape
    _, height, width = frame.shape
    side = 2 * radius + 1
    centre = radius * side + radius
    for b in prange(ny * nx):
        by, bx = b // nx, b % nx
        y0, x0 = by * block, bx * block
        y1, x1 = min(height, y0 + block), min(width, x0 + block)
        best = np.int64(2) ** 62
        code = 0
        if use_model:
            best = _block_sad(frame, model, y0, y1, x0, x1, 0, 0, best)
        for k in range(side * side):
            index = (centre + k) % (side * side)  # the unmoved frame first, so ties keep it
            dy, dx = index // side - radius, index % side - radius
            sad = _block_sad(frame, previous, y0, y1, x0, x1, dy, dx, best)
            if sad < best:
                best, code = sad, 1 + index
        if use_model and use_mean and code > 0:
            index = code - 1
            dy, dx = index // side - radius, index % side - radius
            sad = _block_sad_mean(frame, model, previous, y0, y1, x0, x1, dy, dx, best)
            if sad < best:
                best, code = sad, 1 + side * side + index
        choices[by, bx] = code


@njit(cache=True, parallel=True)
def _combine_blocks(model, previous, block, radius, choices, out):
    ny, nx = choices.shape
    n_planes, height, width = model.shape
    side = 2 * radius + 1
    for b in prange(ny * nx):
        by, bx = b // nx, b % nx
        y0, x0 = by * block, bx * block
        y1, x1 = min(height, y0 + block), min(width, x0 + block)
        code = np.int64(choices[by, bx])
        mean = code > side * side
        index = (code - 1) % (side * side)
        dy, dx = index // side - radius, index % side - radius
        for c in range(n_planes):
            for i in range(y0, y1):
                for j in range(x0, x1):
                    if code == 0:
                        out[c, i, j] = model[c, i, j]
                    else:
                        v = previous[c, min(max(i + dy, 0), height - 1), min(max(j + dx, 0), width - 1)]
                        if mean:
                            v = (np.int64(model[c, i, j]) + np.int64(v) + 1) >> 1
                        out[c, i, j] = v


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise TezipError(f"{name} must be an integer {lo}-{hi}, got {value!r}")
    return value


class BlockSelector(Codec):
    codec_id = "blockselect"
    config_keys = ("block", "radius")

    def __init__(self, block=16, radius=4, model=True, mean=False):
        self.block = _check_int("block size", block, 1, 4096)
        self.radius = _check_int("motion search radius", radius, 0, MAX_RADIUS)
        for name, flag in (("model", model), ("mean", mean)):
            if not isinstance(flag, bool):
                raise TezipError(f"block selection's {name} flag must be true or false, got {flag!r}")
        self.model = model  # False: no model prediction to choose (code 0 never occurs)
        self.mean = mean and model  # the mean of the model and the previous frame moved may be chosen

    def get_config(self):
        config = super().get_config()
        if not self.model:  # format 2's configs have neither key: the model was always there, no mean
            config["model"] = False
        if self.mean:
            config["mean"] = True
        return config

    @classmethod
    def from_config(cls, config):
        from stages._codec import check_config

        return cls(**check_config(config, cls.codec_id, cls.config_keys + ("model", "mean")))

    @property
    def n_codes(self):
        return 1 + (2 if self.mean else 1) * (2 * self.radius + 1) ** 2

    def grid(self, height, width):
        return -(-height // self.block), -(-width // self.block)

    def choose(self, frame, model_prediction, previous):
        """(ny, nx) uint8 choice codes (module docstring) for planar (C, H, W) integer inputs."""
        choices = np.zeros(self.grid(*frame.shape[1:]), np.int32)
        model_prediction = previous if model_prediction is None else model_prediction
        _choose_blocks(np.ascontiguousarray(frame), np.ascontiguousarray(model_prediction),
                       np.ascontiguousarray(previous), self.block, self.radius, self.model, self.mean, choices)
        return choices

    def combine(self, model_prediction, previous, choices):
        """The prediction made of the chosen candidate in each block."""
        model_prediction = previous if model_prediction is None else model_prediction
        out = np.empty_like(model_prediction)
        _combine_blocks(np.ascontiguousarray(model_prediction), np.ascontiguousarray(previous), self.block,
                        self.radius, np.ascontiguousarray(choices, dtype=np.int32), out)
        return out

    def encode_choices(self, choices, level):
        """(P, ny, nx) choice codes → one zstd chunk (one byte per block)."""
        from stages.zstd import ZstdCodec

        packed = np.ascontiguousarray(choices, dtype=np.uint8).reshape(-1)
        return ZstdCodec(level=level, shuffle=False).encode(packed)

    def encode_frame_choices(self, choices):
        """One frame's (ny, nx) choice codes → bytes (format 3: the context range coder sees the map
        as a small plane, whose neighbouring blocks mostly agree)."""
        from stages.ctxrange import ContextRangeCoder

        return ContextRangeCoder().encode(np.ascontiguousarray(choices, dtype=np.int32)[None])

    def decode_frame_choices(self, data, height, width):
        """The mirror of encode_frame_choices: (ny, nx) uint8, every code checked."""
        from stages.chain import Chain
        from stages.ctxrange import ContextRangeCoder

        choices = Chain([ContextRangeCoder()]).decode([data], (1,) + self.grid(height, width), threads=1)[0, 0]
        self.check_codes(choices)
        return choices

    def check_codes(self, choices):
        if choices.size and (int(choices.max()) >= self.n_codes or int(choices.min()) < (0 if self.model else 1)):
            raise TezipError(f"corrupt block choices: a code outside {0 if self.model else 1}-{self.n_codes - 1}")

    def decode_choices(self, chunk, count, height, width):
        """The mirror of encode_choices: (count, ny, nx) uint8, every code checked."""
        from stages.zstd import ZstdCodec

        ny, nx = self.grid(height, width)
        choices = ZstdCodec(shuffle=False).decode(bytes(chunk), np.empty((count, ny, nx), np.uint8))
        if choices.size and int(choices.max()) >= self.n_codes:
            raise TezipError(f"corrupt block choices: code {int(choices.max())} beyond {self.n_codes - 1}")
        return choices
