"""Per-block choice of predictor: PredNet's prediction (or, in runs without a model, linear
extrapolation from the two previous decoded frames) or the previous decoded frame, moved.

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

(radius 0 is the plain choice PredNet / previous frame). With `extrapolate` (recorded in the archive)
code 0 of a frame no model predicts (a run without one, or a window where the model's trial stopped
it) is linear extrapolation from the two previous decoded frames of the window, clip(2·x[t-1] -
x[t-2], 0, max): smooth motion and slow intensity changes continue
(on the smooth 16-bit sets of benchmarks/fields.py, -c none, 60 frames: 2-40 % smaller under abs
bounds, 0-14 % losslessly; 0.1-5.5 % on the dev footage at abs 1-8); the first predicted frame of a window
has one previous frame only, and code 0 is that frame. With `global_range` G > 0 (format 3) the
encoder also estimates one global displacement (gy, gx), |gy|, |gx| <= G, of the whole frame against
the previous decoded frame (a camera pan), coarse to fine on 2 x 2-summed luminance pyramids: a full
search at the coarsest level (at most ~64 pixels a side), then +-2 at each finer level, each
displacement scored by its mean absolute difference over the overlap (at least a quarter of the
frame). When the vector lies beyond the ±radius window, each block also searches ±radius around it:

    code = 1 + (window * K + kind) * S + index      window 0: around zero, 1: around (gy, gx);
                                                     kind 0: previous frame moved, 1: the mean (K = 2
                                                     with `mean`, else 1); index as above

(window 0 is the layout above). The vector is stored before the frame's block choices; only the
encoder's choice needs to be good, the decoder reads it. The pan of issue 14's hard content (23 px
right, 3 down per frame, a 97 px jump back every fifth frame) is found exactly, in 7-10 ms per
360 x 264 frame (one thread). In the chunk (format 3): the vector as two zigzag varints, then the
(ny, nx) codes through the context range coder.

Encoder only (nothing recorded): with `colour_cost` (lossless RGB, whose residuals go through the
chain colour transform) blocks are matched by |e_B| + |e_G - e_B| + |e_R - e_G| of their residual
e instead of the plain sum; `choose(..., use_model=False)` leaves the model's candidates out (the
frame coder retries a frame so and keeps the smaller chunk).

The decoder has the previous decoded frame
(the previous frame of the same window: windows start with keyframes), so it rebuilds the same
prediction. On the dev frames (TEZip end to end) radius 2 made archives 3.5 % (lossless) to 8 %
(abs 1) smaller than the unmoved previous frame alone; radius 4, the default, another 1-3 %;
radius 7 nothing more. Most candidates stop early (a partial sum already beats the best so far).

Integer numba kernels, parallel over blocks; they run on the host in either mode (the frames they
read are host arrays there).
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from base.errors import TezipError
from sequence.framecoder import _read_varint, _varint
from stages._codec import Codec

MAX_RADIUS = 7  # (2 * 7 + 1)^2 + 1 = 226 codes: one byte per block in format 2 (which had no mean)
MAX_GLOBAL_RANGE = 4096
GLOBAL_COARSE_SIDE = 64  # the global search starts on a pyramid level at most this many pixels a side
GLOBAL_REFINE = 2  # ± search at each finer level


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


@njit(cache=True, inline="always")
def _block_cost_rct(frame, model, candidate, y0, y1, x0, x1, dy, dx, mean, limit):
    """The block's cost after the chain colour transform (stages/rct.py) of its residual e = frame -
    prediction (the candidate moved, or with `mean` its mean with the model): sum of |e_B| +
    |e_G - e_B| + |e_R - e_G| (+ |e| of further channels), what the lossless RGB residual coder
    sees; stops once a row ends at or beyond `limit`. For frames of 3 or more channels."""
    n_planes, height, width = frame.shape
    total = np.int64(0)
    for i in range(y0, y1):
        si = min(max(i + dy, 0), height - 1)
        for j in range(x0, x1):
            sj = min(max(j + dx, 0), width - 1)
            e0, e1, e2 = np.int64(0), np.int64(0), np.int64(0)
            for c in range(n_planes):
                v = np.int64(candidate[c, si, sj])
                if mean:
                    v = (np.int64(model[c, i, j]) + v + 1) >> 1
                e = np.int64(frame[c, i, j]) - v
                if c == 0:
                    e0 = e
                elif c == 1:
                    e1 = e
                elif c == 2:
                    e2 = e
                else:
                    total += abs(e)
            total += abs(e2) + abs(e1 - e2) + abs(e0 - e1)
        if total >= limit:
            return total
    return total


@njit(cache=True, inline="always")
def _inside_cost(frame, model, candidate, y0, y1, x0, x1, dy, dx, mean, colour, limit):
    """_cost of a block whose moved candidate lies inside the frame: the same sums without the
    border clamp, over row slices with 32-bit row sums (a block row is at most 4096 pixels of
    16-bit values: |e_B| + |e_G - e_B| + |e_R - e_G| <= 5 * 65535 each), which the compiler
    vectorises (about 3x faster). A sum stopped early is still >= limit: the same choices."""
    n_planes = frame.shape[0]
    total = np.int64(0)
    if colour:
        for i in range(y0, y1):
            f0, f1, f2 = frame[0, i, x0:x1], frame[1, i, x0:x1], frame[2, i, x0:x1]
            c0, c1, c2 = (candidate[0, i + dy, x0 + dx:x1 + dx], candidate[1, i + dy, x0 + dx:x1 + dx],
                          candidate[2, i + dy, x0 + dx:x1 + dx])
            m0, m1, m2 = model[0, i, x0:x1], model[1, i, x0:x1], model[2, i, x0:x1]
            row = np.int32(0)
            for j in range(f0.size):
                v0, v1, v2 = c0[j], c1[j], c2[j]
                if mean:
                    v0, v1, v2 = (m0[j] + v0 + 1) >> 1, (m1[j] + v1 + 1) >> 1, (m2[j] + v2 + 1) >> 1
                e0, e1, e2 = f0[j] - v0, f1[j] - v1, f2[j] - v2
                row += np.int32(abs(e2) + abs(e1 - e2) + abs(e0 - e1))
            total += row
            for c in range(3, n_planes):
                total += _row_sad(frame[c, i, x0:x1], candidate[c, i + dy, x0 + dx:x1 + dx], model[c, i, x0:x1], mean)
            if total >= limit:
                return total
        return total
    for c in range(n_planes):
        for i in range(y0, y1):
            total += _row_sad(frame[c, i, x0:x1], candidate[c, i + dy, x0 + dx:x1 + dx], model[c, i, x0:x1], mean)
        if total >= limit:
            return total
    return total


@njit(cache=True, inline="always")
def _row_sad(row, moved, model, mean):
    """sum |row - moved| (with `mean`: |row - (model + moved + 1) >> 1|) over one block row's
    slices, in 32-bit lanes (_inside_cost)."""
    total = np.int32(0)
    for j in range(row.size):
        v = moved[j]
        if mean:
            v = (model[j] + v + 1) >> 1
        total += np.int32(abs(row[j] - v))
    return total


@njit(cache=True, inline="always")
def _cost(frame, model, candidate, y0, y1, x0, x1, dy, dx, mean, colour, limit):
    """The block's matching cost: SAD over the channels, or with `colour` _block_cost_rct."""
    _, height, width = frame.shape
    if y0 + dy >= 0 and y1 + dy <= height and x0 + dx >= 0 and x1 + dx <= width:
        return _inside_cost(frame, model, candidate, y0, y1, x0, x1, dy, dx, mean, colour, limit)
    if colour:
        return _block_cost_rct(frame, model, candidate, y0, y1, x0, x1, dy, dx, mean, limit)
    if mean:
        return _block_sad_mean(frame, model, candidate, y0, y1, x0, x1, dy, dx, limit)
    return _block_sad(frame, candidate, y0, y1, x0, x1, dy, dx, limit)


@njit(cache=True, parallel=True)
def _choose_blocks(frame, model, previous, block, radius, use_model, use_mean, kinds, gy, gx, n_windows, colour,
                   choices):
    ny, nx = choices.shape
    _, height, width = frame.shape
    side = 2 * radius + 1
    size = side * side
    centre = radius * side + radius
    for b in prange(ny * nx):
        by, bx = b // nx, b % nx
        y0, x0 = by * block, bx * block
        y1, x1 = min(height, y0 + block), min(width, x0 + block)
        best = np.int64(2) ** 62
        code = 0
        if use_model:
            best = _cost(frame, model, model, y0, y1, x0, x1, 0, 0, False, colour, best)
        best_dy, best_dx = 0, 0
        for window in range(n_windows):
            oy, ox = (0, 0) if window == 0 else (gy, gx)
            for k in range(size):
                index = (centre + k) % size  # the window's centre first, so ties keep it
                dy, dx = oy + index // side - radius, ox + index % side - radius
                sad = _cost(frame, model, previous, y0, y1, x0, x1, dy, dx, False, colour, best)
                if sad < best:
                    best, code, best_dy, best_dx = sad, 1 + window * kinds * size + index, dy, dx
        if use_model and use_mean and code > 0:
            sad = _cost(frame, model, previous, y0, y1, x0, x1, best_dy, best_dx, True, colour, best)
            if sad < best:
                best, code = sad, code + size
        choices[by, bx] = code


@njit(cache=True, parallel=True)
def _combine_blocks(model, previous, block, radius, kinds, gy, gx, choices, out):
    ny, nx = choices.shape
    n_planes, height, width = model.shape
    side = 2 * radius + 1
    for b in prange(ny * nx):
        by, bx = b // nx, b % nx
        y0, x0 = by * block, bx * block
        y1, x1 = min(height, y0 + block), min(width, x0 + block)
        code = np.int64(choices[by, bx])
        group = (code - 1) // (side * side)
        mean = group % kinds == 1
        index = (code - 1) % (side * side)
        dy, dx = index // side - radius, index % side - radius
        if group >= kinds:
            dy, dx = dy + gy, dx + gx
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


@njit(cache=True)
def _overlap_sad(current, previous, dy, dx, run):
    """(sum of |current - previous moved by (dy, dx)| over their overlap, the overlap's size).
    current, previous: (H, W) int32 (then `run` differences at most add up within int32: partial
    sums in 32-bit lanes, which the compiler vectorises, ~7x faster) or int64 (run ignored)."""
    height, width = current.shape
    y0, y1 = max(0, -dy), min(height, height - dy)
    x0, x1 = max(0, -dx), min(width, width - dx)
    total = np.int64(0)
    wide = current.itemsize > 4
    for i in range(y0, y1):
        row, moved = current[i, x0:x1], previous[i + dy, x0 + dx:x1 + dx]  # slices: no index wraparound
        if wide:
            for j in range(row.size):
                total += abs(np.int64(row[j]) - np.int64(moved[j]))
            continue
        start = 0
        while start < row.size:
            stop = min(row.size, start + run)
            a, b = row[start:stop], moved[start:stop]  # (a loop over a range of indices would not vectorise)
            part = np.int32(0)
            for j in range(a.size):
                d = a[j] - b[j]
                part += np.int32(d if d >= 0 else -d)
            total += part
            start = stop
    return total, max(0, y1 - y0) * max(0, x1 - x0)


@njit(cache=True)
def _search_global(current, previous, cy, cx, reach, limit, run):
    """The displacement within ±reach of (cy, cx), |d| <= limit, whose mean absolute difference
    over the overlap (at least a quarter of the frame) is smallest; (cy, cx) when none qualifies."""
    height, width = current.shape
    side = 2 * reach + 1
    sads = np.full(side * side, -1, np.int64)
    counts = np.zeros(side * side, np.int64)
    for k in range(side * side):  # one thread: on busy cores a parallel region cost 20x the sums
        dy, dx = cy + k // side - reach, cx + k % side - reach
        if abs(dy) <= limit and abs(dx) <= limit and abs(dy) < height and abs(dx) < width:
            sad, n = _overlap_sad(current, previous, dy, dx, run)
            if 4 * n >= height * width:
                sads[k], counts[k] = sad, n
    best_dy, best_dx, best_sad, best_n = cy, cx, np.int64(-1), np.int64(1)
    for k in range(side * side):  # in a fixed order
        if sads[k] >= 0 and (best_sad < 0 or sads[k] * best_n < best_sad * counts[k]):
            best_dy, best_dx, best_sad, best_n = cy + k // side - reach, cx + k % side - reach, sads[k], counts[k]
    return best_dy, best_dx


@njit(cache=True)
def _channel_sum(frame):
    """(C, H, W) integers → (H, W) int64: the sum over the channels."""
    n_planes, height, width = frame.shape
    out = np.zeros((height, width), np.int64)
    for c in range(n_planes):
        for i in range(height):
            for j in range(width):
                out[i, j] += frame[c, i, j]
    return out


@njit(cache=True)
def _sum_2x2(x):
    """(H, W) int64 → (H // 2, W // 2): sums of 2 x 2 pixels (an odd last row or column dropped)."""
    height, width = x.shape[0] // 2, x.shape[1] // 2
    out = np.empty((height, width), np.int64)
    for i in range(height):
        for j in range(width):
            out[i, j] = x[2 * i, 2 * j] + x[2 * i + 1, 2 * j] + x[2 * i, 2 * j + 1] + x[2 * i + 1, 2 * j + 1]
    return out


def _luminance_pyramid(frame):
    """[the channels' sum, then 2 x 2 sums of it ...] down to at most GLOBAL_COARSE_SIDE a side;
    each level as (values, run): int32 with the number of |differences| that fit an int32 sum
    where its values allow (all levels of 16-bit frames up to ~8k pixels a side), else int64."""
    levels = [_channel_sum(np.ascontiguousarray(frame))]
    while max(levels[-1].shape) > GLOBAL_COARSE_SIDE and min(levels[-1].shape) >= 16:
        levels.append(_sum_2x2(levels[-1]))
    out = []
    for level in levels:
        top = int(level.max()) if level.size else 0  # values are >= 0: |a - b| <= max
        if top < 2**31:
            out.append((level.astype(np.int32), max(1, (2**31 - 1) // max(1, top))))
        else:
            out.append((level, 1))
    return out


def estimate_global_motion(frame, previous, limit):
    """(gy, gx): the displacement of the previous frame that best matches `frame` as a whole
    (|gy|, |gx| <= limit), coarse to fine (module docstring). Encoder only."""
    current, reference = _luminance_pyramid(frame), _luminance_pyramid(previous)
    top = len(current) - 1

    def search(level, cy, cx, reach, bound):
        (a, run_a), (b, run_b) = current[level], reference[level]
        if a.dtype != b.dtype:  # one frame's level fits int32, the other's not
            a, b = a.astype(np.int64), b.astype(np.int64)
        return _search_global(a, b, cy, cx, reach, bound, min(run_a, run_b))

    reach = -(-limit // (1 << top))
    dy, dx = search(top, 0, 0, reach, reach)
    for level in range(top - 1, -1, -1):
        dy, dx = search(level, 2 * dy, 2 * dx, GLOBAL_REFINE, -(-limit // (1 << level)))
    return int(max(-limit, min(limit, dy))), int(max(-limit, min(limit, dx)))


@njit(cache=True, nogil=True)
def _extrapolate(previous, older, max_value, out):
    for c in range(previous.shape[0]):
        for i in range(previous.shape[1]):
            for j in range(previous.shape[2]):
                v = 2 * np.int64(previous[c, i, j]) - np.int64(older[c, i, j])
                out[c, i, j] = min(max(v, 0), max_value)


def extrapolate_frames(previous, older, max_value):
    """Linear extrapolation clip(2·previous - older, 0, max_value) of two planar (C, H, W) integer
    frames → (C, H, W) of previous's dtype (integer arithmetic: the same on every machine)."""
    if previous.shape != older.shape:
        raise ValueError(f"frames of shapes {previous.shape} and {older.shape} cannot be extrapolated")
    out = np.empty_like(previous)
    _extrapolate(previous, older, max_value, out)
    return out


def _zigzag(v):
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u):
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise TezipError(f"{name} must be an integer {lo}-{hi}, got {value!r}")
    return value


class BlockChoices(NamedTuple):
    """A frame's block choices with a global displacement (BlockSelector with global_range > 0)."""

    codes: np.ndarray  # (ny, nx) int32
    vector: tuple  # (gy, gx)


def split_choices(choices):
    """(codes, (gy, gx)) of a frame's choices: BlockChoices, or plain codes (no global vector)."""
    if isinstance(choices, BlockChoices):
        return choices.codes, choices.vector
    return choices, (0, 0)


class BlockSelector(Codec):
    codec_id = "blockselect"
    config_keys = ("block", "radius")

    def __init__(self, block=16, radius=4, model=True, mean=False, global_range=0, extrapolate=False):
        self.block = _check_int("block size", block, 1, 4096)
        self.radius = _check_int("motion search radius", radius, 0, MAX_RADIUS)
        self.global_range = _check_int("global motion range", global_range, 0, MAX_GLOBAL_RANGE)
        for name, flag in (("model", model), ("mean", mean), ("extrapolate", extrapolate)):
            if not isinstance(flag, bool):
                raise TezipError(f"block selection's {name} flag must be true or false, got {flag!r}")
        if extrapolate and not model:
            raise TezipError("block selection's extrapolate flag needs its code 0 (model true)")
        self.model = model  # False: no code-0 prediction to choose (code 0 never occurs)
        self.extrapolate = extrapolate  # code 0 is linear extrapolation where no model predicts the frame
        self.mean = mean and model  # the mean of code 0's prediction and the previous frame moved may be chosen
        # Encoder only (not recorded: the decoder reads the choices): match blocks by the cost of their
        # residual after the chain colour transform, as the lossless RGB residual coder sees it.
        self.colour_cost = False

    def get_config(self):
        config = super().get_config()
        if not self.model:  # format 2's configs have neither key: the model was always there, no mean
            config["model"] = False
        if self.mean:
            config["mean"] = True
        if self.global_range:
            config["global_range"] = self.global_range
        if self.extrapolate:  # unknown to decoders before it, which refuse the archive
            config["extrapolate"] = True
        return config

    @classmethod
    def from_config(cls, config):
        from stages._codec import check_config

        return cls(**check_config(config, cls.codec_id,
                                  cls.config_keys + ("model", "mean", "global_range", "extrapolate")))

    def temporal_candidate(self, model_prediction, previous, older, max_value):
        """Code 0's prediction (C, H, W) int32: the model's where it predicted the frame; else, with
        `extrapolate`, clip(2·previous - older, 0, max_value) from the two previous decoded frames
        of the window; else (or when `older` is None: the window's first predicted frame) None."""
        if model_prediction is not None or not self.extrapolate or older is None:
            return model_prediction
        return extrapolate_frames(np.ascontiguousarray(previous), np.ascontiguousarray(older), int(max_value))

    @property
    def kinds(self):
        return 2 if self.mean else 1

    @property
    def n_codes(self):
        return 1 + (2 if self.global_range else 1) * self.kinds * (2 * self.radius + 1) ** 2

    def grid(self, height, width):
        return -(-height // self.block), -(-width // self.block)

    def global_vector(self, frame, previous):
        """The global displacement each block also searches around, or (0, 0) (none, or within the
        ±radius window already searched)."""
        if not self.global_range:
            return 0, 0
        gy, gx = estimate_global_motion(frame, previous, self.global_range)
        return (0, 0) if max(abs(gy), abs(gx)) <= self.radius else (gy, gx)

    def choose(self, frame, model_prediction, previous, use_model=True, vector=None):
        """The block choices (module docstring) for planar (C, H, W) integer inputs: (ny, nx) int32
        codes, or BlockChoices (the codes and the global vector) with global_range. use_model=False:
        the previous frame moved only (codes the decoder reads as any others); vector: the global
        vector already estimated for this frame (else estimated here)."""
        choices = np.zeros(self.grid(*frame.shape[1:]), np.int32)
        model_prediction = previous if model_prediction is None else model_prediction
        gy, gx = self.global_vector(frame, previous) if vector is None else vector
        use_model = self.model and use_model
        _choose_blocks(np.ascontiguousarray(frame), np.ascontiguousarray(model_prediction),
                       np.ascontiguousarray(previous), self.block, self.radius, use_model, self.mean and use_model,
                       self.kinds, gy, gx,
                       2 if (gy, gx) != (0, 0) else 1, self.colour_cost and frame.shape[0] >= 3, choices)
        return BlockChoices(choices, (gy, gx)) if self.global_range else choices

    def uses_model(self, choices):
        """Whether any block of `choices` takes the model's prediction (alone or in the mean)."""
        codes = np.asarray(split_choices(choices)[0])
        if not self.model or not codes.size:
            return False
        return bool((codes == 0).any() or (self.mean and (((codes - 1) // (2 * self.radius + 1) ** 2) % 2 == 1).any()))

    def combine(self, model_prediction, previous, choices):
        """The prediction made of the chosen candidate in each block."""
        codes, (gy, gx) = split_choices(choices)
        model_prediction = previous if model_prediction is None else model_prediction
        out = np.empty_like(model_prediction)
        _combine_blocks(np.ascontiguousarray(model_prediction), np.ascontiguousarray(previous), self.block,
                        self.radius, self.kinds, int(gy), int(gx), np.ascontiguousarray(codes, dtype=np.int32), out)
        return out

    def encode_choices(self, choices, level):
        """(P, ny, nx) choice codes → one zstd chunk (one byte per block)."""
        from stages.zstd import ZstdCodec

        packed = np.ascontiguousarray(choices, dtype=np.uint8).reshape(-1)
        return ZstdCodec(level=level, shuffle=False).encode(packed)

    def encode_frame_choices(self, choices):
        """One frame's choices → bytes (format 3): with global_range the vector first (two zigzag
        varints), then the (ny, nx) codes through the context range coder, which sees the map as a
        small plane whose neighbouring blocks mostly agree."""
        from stages.ctxrange import ContextRangeCoder

        codes, (gy, gx) = split_choices(choices)
        head = _varint(_zigzag(gy)) + _varint(_zigzag(gx)) if self.global_range else b""
        return head + ContextRangeCoder().encode(np.ascontiguousarray(codes, dtype=np.int32)[None])

    def decode_frame_choices(self, data, height, width):
        """The mirror of encode_frame_choices: every code and the vector checked."""
        from stages.chain import Chain
        from stages.ctxrange import ContextRangeCoder

        data, pos, vector = bytes(data), 0, None
        if self.global_range:
            gy, pos = _read_varint(data, pos)
            gx, pos = _read_varint(data, pos)
            vector = (_unzigzag(gy), _unzigzag(gx))
            if max(abs(vector[0]), abs(vector[1])) > self.global_range:
                raise TezipError(f"corrupt block choices: a global vector beyond ±{self.global_range}")
        choices = Chain([ContextRangeCoder()]).decode([data[pos:]], (1,) + self.grid(height, width), threads=1)[0, 0]
        self.check_codes(choices)
        return BlockChoices(choices, vector) if vector is not None else choices

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
