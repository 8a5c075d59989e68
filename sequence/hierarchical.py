"""Hierarchical-B window coding with fitted interpolation (LSI) or raster least squares, per group
of frames whichever is smaller: the coder for smooth, time-evolving fields (issue 15).

Frame order (fixed by the window length T and the anchor spacing G, nothing stored):

    anchors   0, G, 2G, …, and T − 1: the first coded on its own, each other one predicted from
              the two anchors before it (or, with a reference frame before the window, from it)
    levels    h = G/2, G/4, …, 1: every frame t at an odd multiple of h, predicted from the nearest
              decoded frames on both sides (l, r) and, where decoded, t − 3h and t + 3h

Frames of one level with the same reference geometry (distances to l and r, whether t ∓ 3h exist)
form a group; each anchor is a group of its own. Groups are coded in that order, each plane on its
own ("channels as planes"), by one of:

    LSI (stages/_lsi.py)   multilevel interpolation on a 2^L grid, every pass predicted from the
                           four coarser points along its axis and the references at the same pixel
                           with taps fitted once for the whole group (a robust IRLS fit on
                           subsampled points, 10-bit fixed-point coefficients); the codes of each
                           pass are range coded as their own grid, with the pass as a context
    raster LS (stages/_rasterls.py)
                           W, N, NW, NE of the frame and 3x3 of the two nearest references (the
                           pixel itself of the others; without references 10 spatial taps), fitted
                           per frame (refitted on the first try's reconstruction from t = 4)

The encoder predicts each group both ways and keeps the one whose codes the range coder's
estimate says are smaller (one flag per group and plane; see _encode_group). With a tolerance
t ≥ coarse_from, the anchor grid and the first coarse_levels − 1 interpolation levels are
coded within ⌊t/2⌋ (their values are the references of everything finer). Every value is
quantized with step 2t' + 1 and clipped to 0..max_value, so |decoded − frame| ≤ t everywhere.

One chunk per frame, in frame order (see encode_window for the format). A frame's chunk holds its
codes and its side information: the method and the LSI coefficients of its group are in the chunk of
the group's first frame (its leader; coefficients shared by a group are sent once), raster-LS
coefficients in each frame's own chunk. The decoder walks the same order and never fits: all
prediction is integer arithmetic on decoded values with the sent coefficients, so any machine and
any thread count decodes the same pixels, and the encoder's bytes do not depend on its thread count.

Work runs in a thread pool of nogil numba kernels: per group the LSI job and the raster-LS frames,
then the range coding of each frame and plane; decoding range-decodes every stream of the window in
parallel, then reconstructs group by group. Measured on 60 frames 256×256 uint16 of the smooth
sets (benchmarks/bench_smooth.py, 2 cores shared with other work): encode 2.7-8.5 Mpx/s (3.5-6.2
per CPU second; slowest losslessly and where raster LS wins), decode 9-33 Mpx/s.
"""

import bisect
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from base.errors import TezipError
from stages import ctxrange
from stages._codec import MAX_TOLERANCE, check_config
from stages._lsfit import fit as ls_fit
from stages._lsfit import to_fixed
from stages._lsi import FROM_REFS, INTERP, SHIFT, grid_size, kernels_for
from stages._rasterls import raster_frame, raster_samples, stack_planes, taps_for

FORMAT = 1  # the first byte of every chunk
LSI, RASTER = 0, 1
METHODS = {"hybrid": (LSI, RASTER), "lsi": (LSI,), "raster": (RASTER,)}
MAX_VALUE = (1 << 30) - 1
_COEF_LIMIT = 1 << 22  # |coefficient| · 2^14 and |bias| · 2^14 below these keep every sum in int64
_BIAS_LIMIT = 1 << 50
_MAX_PLANES = 4096
# The raster-LS refit on the reconstruction: up to 4.6 % smaller at abs 4 (advdiff) and 1.2 % at
# abs 16 on the smooth sets, 0-0.2 % at abs 1-2, where it costs 15-40 % of the encoding time.
RASTER_REFIT_FROM = 4
SAMPLE_MARGIN = 0.03  # raster LS is tried on all frames of a group unless this much larger on samples
_pools = {}


def _pool(threads):
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hierarchical")
    return _pools[threads]


# --------------------------------------------------------------------------- the frame order


def coding_groups(n_frames, spacing, reference=False):
    """Groups in coding order: [(frames, refs)], frames a tuple of window indices (increasing), refs
    a tuple per frame of its reference indices (all of a group have as many). With `reference`
    the frame before the window is index n_frames and the first anchor is predicted from it."""
    anchors = list(range(0, n_frames, spacing))
    if anchors[-1] != n_frames - 1:
        anchors.append(n_frames - 1)
    chain = ([n_frames] if reference else []) + anchors
    first = 1 if reference else 0
    groups = []
    for k, a in enumerate(anchors):
        pos = k + first
        groups.append(((a,), (tuple(chain[p] for p in (pos - 1, pos - 2) if p >= 0),)))
    coded = sorted(anchors)
    h = spacing // 2
    while h >= 1:
        level = {}
        for t in range(h, n_frames, 2 * h):
            k = bisect.bisect_left(coded, t)
            if k < len(coded) and coded[k] == t:
                continue
            left, right = coded[k - 1], coded[k]
            ll = t - 3 * h if t - left == h and _contains(coded, t - 3 * h) else None
            rr = t + 3 * h if right - t == h and _contains(coded, t + 3 * h) else None
            key = (t - left, right - t, ll is not None, rr is not None)
            level.setdefault(key, []).append((t, tuple(u for u in (left, right, ll, rr) if u is not None)))
        for items in level.values():
            groups.append((tuple(t for t, _ in items), tuple(r for _, r in items)))
        coded = sorted(set(coded) | {t for items in level.values() for t, _ in items})
        h //= 2
    return groups


def _contains(sorted_list, v):
    k = bisect.bisect_left(sorted_list, v)
    return k < len(sorted_list) and sorted_list[k] == v


def lsi_passes(height, width, levels):
    """The grids of a plane in coding order: (level, i0, si, j0, sj, h, axis) with level 0 the
    anchor grid (h = 0), then two passes per interpolation level; and their offsets in the codes."""
    S = 1 << levels
    out = [(0, 0, S, 0, S, 0, -1)]
    s, level = S, 1
    while s > 1:
        h = s // 2
        out += [(level, 0, s, h, s, h, 0), (level, h, s, 0, h, h, 1)]
        s, level = h, level + 1
    offsets, off = [], 0
    for _, i0, si, j0, sj, _, _ in out:
        offsets.append(off)
        off += grid_size(height, i0, si) * grid_size(width, j0, sj)
    assert off == height * width
    return out, offsets


# --------------------------------------------------------------------------- side information bits


class _BitWriter:
    def __init__(self):
        self.value, self.n = 0, 0

    def bits(self, v, n):
        self.value = (self.value << n) | (v & ((1 << n) - 1))
        self.n += n

    def expgolomb(self, v, k):
        """v >= 0 as Exp-Golomb of order k."""
        u = (v >> k) + 1
        nb = u.bit_length()
        self.bits(0, nb - 1)
        self.bits(u, nb)
        self.bits(v, k)

    def signed_set(self, values):
        """Signed integers, zigzagged, Exp-Golomb with the order that codes them smallest (5 bits;
        the best order lies within a few of log2 of their mean)."""
        z = [2 * v if v >= 0 else -2 * v - 1 for v in values]
        guess = min(max(sum(z) // max(len(z), 1), 1).bit_length() - 1, 31)
        best = min(range(max(guess - 3, 0), min(guess + 3, 31) + 1),
                   key=lambda k: (sum(((v >> k) + 1).bit_length() * 2 - 1 + k for v in z), k))
        self.bits(best, 5)
        for v in z:
            self.expgolomb(v, best)

    def append(self, other):
        self.bits(other.value, other.n)

    def tobytes(self):
        pad = (-self.n) % 8
        return (self.value << pad).to_bytes((self.n + pad) // 8, "big")


class _BitReader:
    def __init__(self, data, start):
        self.data, self.pos, self.end = data, start * 8, len(data) * 8

    def bits(self, n):
        if self.pos + n > self.end:
            raise TezipError("corrupt hierarchical chunk: side information runs past the chunk")
        first, last = self.pos >> 3, (self.pos + n + 7) >> 3
        v = int.from_bytes(self.data[first:last], "big") >> (8 * last - self.pos - n)
        self.pos += n
        return v & ((1 << n) - 1)

    def expgolomb(self, k):
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 62:
                raise TezipError("corrupt hierarchical chunk: an over-long side-information code")
        u = (1 << zeros) | self.bits(zeros)
        return ((u - 1) << k) | self.bits(k)

    def signed_set(self, n):
        k = self.bits(5)
        out = []
        for _ in range(n):
            z = self.expgolomb(k)
            out.append(z >> 1 if z % 2 == 0 else -((z + 1) >> 1))
        return out

    def byte_end(self):
        return (self.pos + 7) // 8


# --------------------------------------------------------------------------- the coder


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise TezipError(f"hierarchical coder: {name} must be an integer {lo}-{hi}, got {value!r}")
    return int(value)


class HierarchicalCoder:
    """Codes windows of frames (T, C, H, W) int32 into one chunk per frame, and back (module doc).

    Decoding needs: tolerance, max_value, anchor_spacing, levels, coef_bits, raster_coef_bits,
    coarse_levels, coarse_from, fast_rate, slow_rate. The encoder alone uses method ("hybrid": per
    group and plane the smaller of LSI and raster LS; "lsi"; "raster"), decide (how "hybrid"
    picks: "estimate" the coded size of both and code the smaller, or "exact": code both),
    fit_rows and raster_fit_rows (points per fit) and irls (robust-fit iterations); they are in the
    config too, so from_config rebuilds the same encoder. Not in the config: device ("GPU" runs the
    LSI passes with CuPy, the same bytes) and threads (default: every core; the same bytes)."""

    codec_id = "hierarchical"
    config_keys = ("tolerance", "max_value", "anchor_spacing", "levels", "coef_bits", "raster_coef_bits",
                   "coarse_levels", "coarse_from", "fast_rate", "slow_rate", "method", "decide", "fit_rows",
                   "raster_fit_rows", "irls")

    def __init__(self, tolerance=0, max_value=65535, anchor_spacing=16, levels=4, coef_bits=10,
                 raster_coef_bits=14, coarse_levels=3, coarse_from=8, fast_rate=4, slow_rate=8,
                 method="hybrid", decide="estimate", fit_rows=8192, raster_fit_rows=8192, irls=6, device="CPU",
                 threads=None):
        self.tolerance = _check_int("tolerance", tolerance, 0, MAX_TOLERANCE)
        self.max_value = _check_int("max_value", max_value, 1, MAX_VALUE)
        self.anchor_spacing = _check_int("anchor_spacing", anchor_spacing, 1, 1 << 16)
        if self.anchor_spacing & (self.anchor_spacing - 1):
            raise TezipError(f"hierarchical coder: anchor_spacing must be a power of two, got {anchor_spacing}")
        self.levels = _check_int("levels", levels, 0, 7)
        self.coef_bits = _check_int("coef_bits", coef_bits, 0, SHIFT)
        self.raster_coef_bits = _check_int("raster_coef_bits", raster_coef_bits, 0, SHIFT)
        self.coarse_levels = _check_int("coarse_levels", coarse_levels, 0, 8)
        self.coarse_from = _check_int("coarse_from", coarse_from, 0, MAX_TOLERANCE)
        self.fast_rate = _check_int("fast_rate", fast_rate, 1, 12)
        self.slow_rate = _check_int("slow_rate", slow_rate, 1, 12)
        if method not in METHODS:
            raise TezipError(f"hierarchical coder: method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        if decide not in ("estimate", "exact"):
            raise TezipError(f"hierarchical coder: decide must be estimate or exact, got {decide!r}")
        self.decide = decide
        self.fit_rows = _check_int("fit_rows", fit_rows, 16, 1 << 24)
        self.raster_fit_rows = _check_int("raster_fit_rows", raster_fit_rows, 16, 1 << 24)
        self.irls = _check_int("irls", irls, 0, 50)
        if device not in ("CPU", "GPU"):
            raise TezipError(f"hierarchical coder: device must be CPU or GPU, got {device!r}")
        self.device = device
        self.threads = threads or os.cpu_count() or 1
        self.n_aux = 2 * self.levels + 2  # grid contexts: anchor grid, 2 per level, raster
        if device == "GPU":
            import cupy  # noqa: F401  (fails here, clearly, without CuPy)

    # ----------------------------------------------------------------- config

    def get_config(self):
        return {"id": self.codec_id, **{k: getattr(self, k) for k in self.config_keys}}

    @classmethod
    def from_config(cls, config, **runtime):
        try:
            return cls(**check_config(config, cls.codec_id, cls.config_keys), **runtime)
        except TypeError as e:
            raise TezipError(f"invalid hierarchical coder config ({e})") from None

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        return f"HierarchicalCoder({', '.join(f'{k}={getattr(self, k)!r}' for k in self.config_keys)})"

    # ----------------------------------------------------------------- helpers

    def level_tolerance(self, level):
        """The bound of an LSI grid level (0 = anchor grid); raster LS uses the full tolerance."""
        t = self.tolerance
        return t // 2 if t >= self.coarse_from and t > 0 and level < self.coarse_levels else t

    @staticmethod
    def _pass_coefs(level, i0, si, j0, sj, n_refs, H, W):
        """How many coefficients an LSI pass may send, or None when it sends nothing (an empty grid,
        or the anchor grid without references, which Lorenzo predicts)."""
        if grid_size(H, i0, si) * grid_size(W, j0, sj) == 0 or (level == 0 and n_refs == 0):
            return None
        return n_refs if level == 0 else 4 + n_refs

    def _lsi_grids(self, H, W, plane_offset=0):
        passes, offsets = lsi_passes(H, W, self.levels)
        return np.array([(plane_offset + o, grid_size(H, p[1], p[2]), grid_size(W, p[3], p[4]), min(k, self.n_aux - 2))
                         for k, (p, o) in enumerate(zip(passes, offsets))], np.int64)

    def _raster_grids(self, H, W):
        return np.array([(0, H, W, self.n_aux - 1)], np.int64)

    def _xp(self):
        if self.device == "GPU":
            import cupy
            return cupy
        return np

    # ----------------------------------------------------------------- LSI

    def _lsi_group(self, rec, x, frames, refs, c, H, W, codes, encode, side=None):
        """Code plane c of a group's frames with LSI. rec, x: (T', C, H, W) int32 (numpy or cupy);
        frames (F,), refs (F, R) int64 (same kind); codes (F, H*W) int32. Encoding returns the side
        information [(fitted coefficients at coef_bits, bias) or None per pass]; decoding takes it."""
        xp = self._xp()
        run_pass, lorenzo, samples = kernels_for(xp)
        passes, offsets = lsi_passes(H, W, self.levels)
        F, R = refs.shape
        shift = SHIFT - self.coef_bits
        out_side = []
        for k, ((level, i0, si, j0, sj, h, axis), off) in enumerate(zip(passes, offsets)):
            tol = self.level_tolerance(level)
            n_points = F * grid_size(H, i0, si) * grid_size(W, j0, sj)
            K = self._pass_coefs(level, i0, si, j0, sj, R, H, W)
            if K is None:  # nothing sent for this pass: empty, or Lorenzo on the anchor grid
                if encode:
                    out_side.append(None)
                if n_points and level == 0:
                    lorenzo(rec, x, codes, frames, c, 1 << self.levels, tol, self.max_value, encode, off)
                continue
            kind = FROM_REFS if level == 0 else INTERP
            if encode:
                fixed = None
                if n_points >= 4 * (K + 1):
                    m = min(self.fit_rows, n_points)
                    A = xp.empty((K, m), np.float64)
                    y = xp.empty(m, np.float64)
                    samples(rec, x, frames, refs, c, i0, si, j0, sj, h, axis, kind, A, y)
                    if xp is not np:
                        A, y = A.get(), y.get()
                    coef, intercept = ls_fit(A, y, self.irls, float(max(2, tol + 1)), 1e-8, 0.0, 1e-9)
                    fixed = to_fixed(coef, intercept, self.coef_bits, _COEF_LIMIT >> shift, _BIAS_LIMIT >> shift)
                out_side.append(fixed)
            else:
                fixed = side[k]
            if fixed is None:
                coefs, bias, fitted = np.zeros(max(K, 1), np.int64), 0, False
            else:
                coefs, bias, fitted = np.asarray(fixed[0], np.int64) << shift, int(fixed[1]) << shift, True
            run_pass(rec, x, codes, frames, refs, c, i0, si, j0, sj, h, axis, kind, fitted,
                     xp.asarray(coefs), bias, tol, self.max_value, encode, off)
        return out_side

    # ----------------------------------------------------------------- raster LS

    def _raster_fit(self, flat, x_plane, nref, H, W, taps):
        m = min(self.raster_fit_rows, H * W)
        A = np.empty((taps.shape[0], m), np.float64)
        y = np.empty(m, np.float64)
        raster_samples(flat, x_plane, nref, H, W, taps, self.max_value, A, y)
        coef, intercept = ls_fit(A, y, 0, 1.0, 0.0, 1e-3, 0.0)
        shift = SHIFT - self.raster_coef_bits
        fixed = to_fixed(coef, intercept, self.raster_coef_bits, _COEF_LIMIT >> shift, _BIAS_LIMIT >> shift)
        if fixed is None:  # degenerate: predict the first tap (west) alone
            first = np.zeros(taps.shape[0], np.int64)
            first[0] = 1 << self.raster_coef_bits
            fixed = first, 0
        return fixed

    def _raster_frame(self, rec, x, t, t_refs, c, H, W, codes, encode, fit=None):
        """Code plane c of frame t (references t_refs, host arrays) with raster LS: codes (H*W,)
        int32; returns (the plane's reconstruction (H, W), (coefficients at raster_coef_bits, bias)).
        Encoding fits (and, from t = RASTER_REFIT_FROM, refits on the first try's reconstruction,
        as the decoder will see the causal taps); decoding takes the fit."""
        nref = len(t_refs)
        taps = taps_for(nref)
        shift = SHIFT - self.raster_coef_bits
        flat = stack_planes(rec, t_refs, c, H, W)
        x_plane = x[t, c] if encode else np.zeros((1, 1), np.int32)
        tries = 2 if encode and self.tolerance >= RASTER_REFIT_FROM else 1
        for k in range(tries):
            if encode:
                if k == 0:
                    flat[:H * W] = x_plane.ravel()
                fit = self._raster_fit(flat, x_plane, nref, H, W, taps)
            raster_frame(flat, x_plane, codes, nref, H, W, taps, np.asarray(fit[0], np.int64) << shift,
                         int(fit[1]) << shift, self.tolerance, self.max_value, encode)
        return flat[:H * W].reshape(H, W), fit

    # ----------------------------------------------------------------- threads

    def _map(self, fn, items):
        """[fn(item) for item in items] in self.threads threads (independent items: the results never
        depend on the thread count)."""
        items = list(items)
        if self.threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        return list(_pool(self.threads).map(fn, items))

    def _submit(self, fn, *args):
        """fn(*args) in the pool (a future), or now (a done one) with one thread."""
        if self.threads <= 1:
            done = Future()
            done.set_result(fn(*args))
            return done
        return _pool(self.threads).submit(fn, *args)

    # ----------------------------------------------------------------- encode

    def encode_window(self, frames, first_is_keyframe=True, reference=None):
        """frames (T, C, H, W) integers in 0..max_value → (chunks, decoded): one bytes chunk per
        frame in frame order, and the decoded window (T, C, H, W) int32, within the tolerance of
        `frames` everywhere (checked: RuntimeError otherwise). first_is_keyframe=False predicts the
        first anchor from `reference` (C, H, W), the decoded frame before the window, which the
        decoder must then be given too.

        Chunk: byte FORMAT, then the side information as bits (per plane: on a group's leader the
        method bit and, for LSI, per pass a fitted bit + coefficients; for raster LS every frame's
        coefficients; signed Exp-Golomb sets), the byte lengths of the range-coded streams of all
        planes but the last, zero bits to a byte boundary, then the streams (stages.ctxrange grids)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or min(frames.shape) < 1:
            raise ValueError(f"encode_window takes (T, C, H, W) frames, got shape {frames.shape}")
        if frames.min() < 0 or frames.max() > self.max_value:
            raise ValueError(f"frame values must lie in 0-{self.max_value}")
        T, C, H, W = frames.shape
        if C > _MAX_PLANES:
            raise ValueError(f"at most {_MAX_PLANES} planes per frame")
        with_ref = self._reference(first_is_keyframe, reference, (C, H, W))
        x = np.zeros((T + with_ref, C, H, W), np.int32)
        x[:T] = frames
        rec = np.zeros_like(x)
        if with_ref:
            rec[T] = x[T] = reference
        xp = self._xp()
        on_gpu = xp is not np
        rec_d, x_d = (xp.asarray(rec), xp.asarray(x)) if on_gpu else (rec, x)
        writers = [_BitWriter() for _ in range(T)]
        streams = [[None] * C for _ in range(T)]
        lsi_grids, raster_grids = self._lsi_grids(H, W), self._raster_grids(H, W)
        for g_frames, g_refs in coding_groups(T, self.anchor_spacing, with_ref):
            fr = np.array(g_frames, np.int64)
            rf = np.array(g_refs, np.int64).reshape(len(g_frames), -1)
            fr_d, rf_d = (xp.asarray(fr), xp.asarray(rf)) if on_gpu else (fr, rf)
            chosen = self._encode_group(rec, x, rec_d, x_d, fr, rf, fr_d, rf_d, C, H, W, lsi_grids, raster_grids)
            for c, (method, sides, _, planes, data, _) in enumerate(chosen):
                rec[fr, c] = planes
                if on_gpu:
                    rec_d[fr_d, c] = xp.asarray(planes)
                w = writers[g_frames[0]]
                w.bits(method, 1)
                if method == LSI:
                    w.append(sides[0])
                for f, t in enumerate(g_frames):
                    if method == RASTER:
                        writers[t].append(sides[f])
                    streams[t][c] = data[f]
        decoded = rec[:T]
        if np.abs(decoded - x[:T]).max() > self.tolerance:  # int32: values are below 2^30
            raise RuntimeError("internal error: a decoded pixel exceeds the error bound")
        chunks = []
        for t in range(T):
            streams[t] = [d.result() if isinstance(d, Future) else d for d in streams[t]]
            w = writers[t]
            for c in range(C - 1):
                w.expgolomb(len(streams[t][c]), 8)
            chunks.append(bytes([FORMAT]) + w.tobytes() + b"".join(streams[t]))
        return chunks, decoded

    def _encode_group(self, rec, x, rec_d, x_d, fr, rf, fr_d, rf_d, C, H, W, lsi_grids, raster_grids):
        """Code every plane of one group both ways as the method asks, pick the smaller per plane:
        [(method, side writers, codes, planes, streams, grids)] per plane.

        Steps (each a batch of independent jobs in the pool): LSI for the whole group and raster LS
        for two sample frames; the coded sizes estimated (ctxrange.estimate_grid_bits, within about
        1 % of the bytes); raster LS for the other frames only where it was not SAMPLE_MARGIN
        larger on the samples; the winners coded. decide="exact" codes everything both ways instead
        (0-0.5 % smaller on the smooth sets, up to a third slower)."""
        xp = self._xp()
        on_gpu = xp is not np
        F, R = rf.shape
        methods = METHODS[self.method]
        both = len(methods) == 2
        exact = self.decide == "exact"
        lsi = [None] * C  # per plane: [side writer, codes (F, H*W), planes (F, H, W), bits per frame, streams]
        raster = [[None] * F for _ in range(C)]  # per plane and frame: [side writer, codes, plane, bits, stream]

        def size_of(codes, grids):
            if exact:
                data = self._code(codes, grids)
                return 8 * len(data), data
            return ctxrange.estimate_grid_bits(codes, grids, self.n_aux), None

        def lsi_job(c):
            codes_d = xp.zeros((F, H * W), np.int32)
            side = self._lsi_group(rec_d, x_d, fr_d, rf_d, c, H, W, codes_d, True)
            codes, planes = (codes_d.get(), rec_d[fr_d, c].get()) if on_gpu else (codes_d, rec[fr, c])
            w = _BitWriter()
            self._write_lsi_side(w, side, R, H, W)
            lsi[c] = [w, codes, planes, [None] * F, [None] * F]

        def lsi_size_job(cf):
            c, f = cf
            lsi[c][3][f], lsi[c][4][f] = size_of(lsi[c][1][f], lsi_grids)

        def raster_job(cf):
            c, f = cf
            codes = np.zeros(H * W, np.int32)
            plane, fit = self._raster_frame(rec, x, int(fr[f]), tuple(int(v) for v in rf[f]), c, H, W, codes, True)
            w = _BitWriter()
            self._write_raster_side(w, fit)
            bits, data = size_of(codes, raster_grids) if both else (0, None)
            raster[c][f] = [w, codes, plane, bits, data]

        def run(jobs):  # ints: LSI planes; (c, f): raster frames; ("size", c, f): LSI sizes
            if on_gpu:  # the device's work queued first (in this thread), the host's meanwhile
                for c in [j for j in jobs if isinstance(j, int)]:
                    lsi_job(c)
                jobs = [j for j in jobs if not isinstance(j, int)]
            self._map(lambda j: lsi_job(j) if isinstance(j, int) else (
                lsi_size_job(j[1:]) if j[0] == "size" else raster_job(j)), jobs)

        sample = sorted({0, F // 2}) if both and not exact and F > 2 else list(range(F))
        run((list(range(C)) if LSI in methods else [])
            + ([(c, f) for c in range(C) for f in sample] if RASTER in methods else []))
        if both:
            run([("size", c, f) for c in range(C) for f in sample])
            rest = []
            for c in range(C):
                if len(sample) < F:
                    lsi_bits = lsi[c][0].n * len(sample) / F + sum(lsi[c][3][f] for f in sample)
                    raster_bits = self._raster_bits([raster[c][f] for f in sample])
                    if raster_bits > (1 + SAMPLE_MARGIN) * lsi_bits:
                        continue  # raster LS clearly larger on the samples: LSI, without the other frames
                rest += [(c, f) for f in range(F) if raster[c][f] is None]
                rest += [("size", c, f) for f in range(F) if lsi[c][3][f] is None]
            run(rest)
        chosen = []
        for c in range(C):
            options = []
            if LSI in methods:
                w, codes, planes, bits, data = lsi[c]
                options.append((self._lsi_bits(lsi[c]), LSI, [w], codes, planes, data, lsi_grids))
            if RASTER in methods and all(raster[c]):
                r = raster[c]
                options.append((self._raster_bits(r), RASTER, [e[0] for e in r], [e[1] for e in r],
                                np.stack([e[2] for e in r]), [e[4] for e in r], raster_grids))
            chosen.append(min(options, key=lambda o: (o[0], o[1]))[1:])
        for c, f in [(c, f) for c in range(C) for f in range(F) if chosen[c][4][f] is None]:
            # coded in the background: the next group needs the reconstruction only
            chosen[c][4][f] = self._submit(self._code, chosen[c][2][f], chosen[c][5])
        return chosen

    @staticmethod
    def _lsi_bits(entry):
        return entry[0].n + sum(b or 0 for b in entry[3])

    @staticmethod
    def _raster_bits(entries):
        return sum(e[0].n + e[3] for e in entries)

    def _reference(self, first_is_keyframe, reference, shape):
        if first_is_keyframe:
            if reference is not None:
                raise ValueError("a reference frame is only used with first_is_keyframe=False")
            return 0
        if reference is None:
            raise ValueError("first_is_keyframe=False needs the decoded frame before the window (reference)")
        reference = np.asarray(reference)
        if reference.shape != shape or reference.min() < 0 or reference.max() > self.max_value:
            raise ValueError(f"the reference frame must be {shape} in 0-{self.max_value}")
        return 1

    def _code(self, codes, grids):
        return ctxrange.encode_grids(codes, grids, self.n_aux, self.fast_rate, self.slow_rate)

    def _write_lsi_side(self, w, side, n_refs, H, W):
        passes, _ = lsi_passes(H, W, self.levels)
        for (level, i0, si, j0, sj, _, _), entry in zip(passes, side):
            if self._pass_coefs(level, i0, si, j0, sj, n_refs, H, W) is None:
                continue
            if entry is None:
                w.bits(0, 1)
                continue
            w.bits(1, 1)
            w.signed_set([int(v) for v in entry[0]])
            w.signed_set([int(entry[1])])

    def _write_raster_side(self, w, fit):
        w.signed_set([int(v) for v in fit[0]])
        w.signed_set([int(fit[1])])

    # ----------------------------------------------------------------- decode

    def decode_window(self, chunks, frame_shape, n_frames, first_is_keyframe=True, reference=None):
        """The mirror of encode_window: chunks (one per frame, frame order), frame_shape (C, H, W),
        n_frames → the decoded window (T, C, H, W) int32. TezipError when the chunks cannot be what
        encode_window made with this config (checked before anything large is allocated)."""
        T = n_frames
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
            raise TezipError(f"hierarchical window: bad frame count {T!r}")
        chunks = list(chunks)
        if len(chunks) != T:
            raise TezipError(f"hierarchical window: {len(chunks)} chunks for {T} frames")
        try:
            C, H, W = (int(v) for v in frame_shape)
        except (TypeError, ValueError):
            raise TezipError(f"hierarchical window: bad frame shape {frame_shape!r}") from None
        if not (1 <= C <= _MAX_PLANES and H >= 1 and W >= 1):
            raise TezipError(f"hierarchical window: bad frame shape {frame_shape!r}")
        for k, chunk in enumerate(chunks):
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TezipError(f"hierarchical window: chunk {k} is not bytes")
            ctxrange.check_capacity(max(len(chunk) - 1, 0), C * H * W)
        with_ref = self._reference(first_is_keyframe, reference, (C, H, W))
        groups = coding_groups(T, self.anchor_spacing, with_ref)
        # 1. side information, in coding order (a group's method is in its leader's chunk)
        plan = [None] * T  # per frame: (group index, per plane (method, side), streams)
        for gi, (g_frames, g_refs) in enumerate(groups):
            R = len(g_refs[0])
            methods, lsi_side = [], []
            for f, t in enumerate(g_frames):
                chunk = bytes(chunks[t])
                if not chunk or chunk[0] != FORMAT:
                    raise TezipError(f"hierarchical window: frame {t}'s chunk is not a version-{FORMAT} chunk")
                r = _BitReader(chunk, 1)
                per_plane = []
                for c in range(C):
                    if f == 0:
                        methods.append(r.bits(1))
                        lsi_side.append(self._read_lsi_side(r, R, H, W) if methods[c] == LSI else None)
                    if methods[c] == RASTER:
                        per_plane.append((RASTER, self._read_raster_side(r, R)))
                    else:
                        per_plane.append((LSI, lsi_side[c]))
                lengths = [r.expgolomb(8) for _ in range(C - 1)]
                start = r.byte_end()
                if start + sum(lengths) > len(chunk):
                    raise TezipError(f"hierarchical window: frame {t}'s chunk is shorter than it declares")
                bounds = np.cumsum([start] + lengths + [len(chunk) - start - sum(lengths)])
                streams = [chunk[bounds[c]:bounds[c + 1]] for c in range(C)]
                for c in range(C):
                    ctxrange.check_capacity(len(streams[c]), H * W)
                plan[t] = (per_plane, streams)
        # 2. the codes of every frame and plane (independent streams: in threads)
        lsi_grids, raster_grids = self._lsi_grids(H, W), self._raster_grids(H, W)
        codes = np.empty((T, C, H * W), np.int32)

        def decode_stream(item):
            t, c = item
            method = plan[t][0][c][0]
            ctxrange.decode_grids(plan[t][1][c], lsi_grids if method == LSI else raster_grids, self.n_aux,
                                  codes[t, c], self.fast_rate, self.slow_rate)

        self._map(decode_stream, [(t, c) for t in range(T) for c in range(C)])
        # 3. the reconstruction, in coding order (planes, and raster-LS frames, in threads)
        xp = self._xp()
        on_gpu = xp is not np
        rec = np.zeros((T + with_ref, C, H, W), np.int32)
        if with_ref:
            rec[T] = reference
        rec_d = xp.asarray(rec) if on_gpu else rec
        dummy = xp.zeros((1, 1, 1, 1), np.int32)
        for g_frames, g_refs in groups:
            fr = np.array(g_frames, np.int64)
            rf = np.array(g_refs, np.int64).reshape(len(g_frames), -1)
            fr_d, rf_d = (xp.asarray(fr), xp.asarray(rf)) if on_gpu else (fr, rf)
            lsi_planes = [c for c in range(C) if plan[g_frames[0]][0][c][0] == LSI]
            raster_jobs = [(c, f) for c in range(C) if plan[g_frames[0]][0][c][0] == RASTER
                           for f in range(len(g_frames))]

            def lsi_job(c):
                group_codes = xp.asarray(np.ascontiguousarray(codes[fr, c]))
                self._lsi_group(rec_d, dummy, fr_d, rf_d, c, H, W, group_codes, False, plan[g_frames[0]][0][c][1])

            def raster_job(cf):
                c, f = cf
                t = g_frames[f]
                plane, _ = self._raster_frame(rec, None, t, g_refs[f], c, H, W, codes[t, c], False, plan[t][0][c][1])
                return plane

            if on_gpu:
                for c in lsi_planes:
                    lsi_job(c)
                planes = self._map(raster_job, raster_jobs)
            else:
                done = self._map(lambda job: lsi_job(job) if isinstance(job, int) else raster_job(job),
                                 lsi_planes + raster_jobs)
                planes = done[len(lsi_planes):]
            for (c, f), plane in zip(raster_jobs, planes):
                rec[g_frames[f], c] = plane
                if on_gpu:
                    rec_d[g_frames[f], c] = xp.asarray(plane)
            if on_gpu and lsi_planes:
                rec[fr[:, None], np.array(lsi_planes)] = rec_d[fr_d[:, None], xp.asarray(lsi_planes)].get()
        return rec[:T]

    def _read_coefs(self, r, n, bits):
        shift = SHIFT - bits
        coefs = r.signed_set(n)
        bias = r.signed_set(1)[0]
        if any(abs(v) >= _COEF_LIMIT >> shift for v in coefs) or abs(bias) >= _BIAS_LIMIT >> shift:
            raise TezipError("corrupt hierarchical chunk: a coefficient beyond the format's limits")
        return np.array(coefs, np.int64), bias

    def _read_lsi_side(self, r, n_refs, H, W):
        passes, _ = lsi_passes(H, W, self.levels)
        side = []
        for level, i0, si, j0, sj, h, axis in passes:
            K = self._pass_coefs(level, i0, si, j0, sj, n_refs, H, W)
            if K is None:
                side.append(None)
                continue
            side.append(self._read_coefs(r, K, self.coef_bits) if r.bits(1) else None)
        return side

    def _read_raster_side(self, r, n_refs):
        return self._read_coefs(r, taps_for(n_refs).shape[0], self.raster_coef_bits)
