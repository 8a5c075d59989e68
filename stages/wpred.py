"""Self-correcting weighted prediction with its expected error as the coding context (the "wpred"
codec): an exact intra coder of integer planes, prediction and context range coding in one pass.

What it does, per plane of a (C, H, W) int32 frame, pixel by pixel in raster order (planes one
after the other, one adaptive model through the frame):

1. Four sub-predictions, in units of 1/8 (values scaled by 8), from the neighbours already coded
   (W, N, NW, NE, NN) and from the *true errors* of the final prediction at W, N, NW, NE
   (te = prediction − value, in 1/8 units):

       s0 = W + NE − N                                  (the gradient along the row above)
       s1 = N − C1 (teW + teN + teNE) / 32               (N, corrected by the errors around)
       s2 = W − C2 (teW + teN + teNW) / 32               (W, likewise)
       s3 = N − (A teNW + B teN + C teNE + D (NN − N) + E (NW − W)) / 32

2. Each sub-prediction k is weighted by M_k / (1 + its summed absolute error at N, NW, NE, W, WW)
   (errors in 1/8 units; the division through a 64-entry reciprocal table after a shift), and the
   prediction is the weighted mean, rounded. Where the true errors at N, W and NE do not all have
   the same sign the prediction is clamped between the least and the greatest of W, N, NE.
3. The prediction error v = x − round(prediction / 8) (taken modulo 2^32 into int32, so any int32
   input codes; images never come near the wrap) is coded by stages/ctxrange.py's adaptive binary
   range coder with its binarisation (zero?, sign, unary bit length, mantissa). The contexts are
   what makes it pay: the zero flag and the bit length take the weighted mean of the sub-predictors'
   error sums (the predictor's own expected error, on the half-log scale of ctxrange) with the
   magnitude of the previous plane's error at the same pixel; the sign takes the signs of the
   errors at W and N, of the previous plane's, and of the neighbours' true errors (their bias).

This is the idea of the "weighted" (self-correcting) predictor of JPEG XL's modular mode
(ISO/IEC 18181-1, after Alexander Rhatushnyak's self-correcting predictor), with its error
estimate used as the context as JPEG XL's MA trees use its "max error" property, written for this
coder: the constants (C1 = 16, C2 = 2, A = B = 4, C = 1, D = E = 6, M = 7, 6, 12, 15) were fitted
on scene cuts of the dev clip (benchmarks/bench_hard.py) and checked on other frames.

Borders: a missing N is W (on the first row), a missing W, NW, NE or NN is N, a missing true or
sub-predictor error is 0; pixel (0, 0) is predicted 0.

Measured (lossless RCT'd RGB 360 x 264 frames, planes B, G − B, R − G, each frame on its own): 4.5 %
fewer bytes than MED + ctxrange on the 30 scene cuts of benchmarks/bench_hard.py, 4.3 % on the 60
dev frames 200-259. Tried and not kept: LOCO-I's bias cancellation on top (per context of the
expected error and the true errors' signs: 0.5 % larger; the sub-predictors already correct the
bias), the neighbours' error activity beside the expected error as a second context (< 0.1 %).
Where values have gaps between them (8-bit frames scaled to 16 bits) MED's errors keep the gaps
and a weighted mean does not: keyframes take the smaller of this and MED (sequence/plan.py).

It is host code (numba, one sequential pass per frame; frames run in parallel threads, `nogil`).
Integer arithmetic only, in 64 bits with every intermediate bounded (sub-predictions clamped to
±2^34, weights below 2^25), so the encoder and the decoder compute identical predictions on any
machine. Corrupt data decodes to some int32 frame or raises TezipError, never reads or writes out
of bounds; the decoder must end exactly where the encoder's bytes end.
"""

import numpy as np
from numba import njit

from base.errors import TezipError
from stages._codec import Codec
from stages.ctxrange import (_BAD_VALUE, _OK, _OVERRUN, _OVERRUN_SLACK, _PROB_ONE, _check_capacity, _decode_value,
                             _encode_value, _finish_encoder, _halflog, _room, _sign3, _start_decoder, _start_encoder)

# The predictor's constants (module docstring): sub-predictor corrections /32 and the weights' multipliers.
_C1, _C2 = 16, 2
_A, _B, _C, _D, _E = 4, 4, 1, 6, 6
_M0, _M1, _M2, _M3 = 7, 6, 12, 15
_SUB_LIMIT = np.int64(1) << 34  # |sub-prediction| (1/8 units) is clamped here: int64 products never overflow
_ERR_LIMIT = np.int64(1) << 31  # stored sub-predictor errors are capped here
# 2^20 / (n + 1), n < 64: a weight is M * 2^20 / (1 + error sum) without a division
_RECIPROCAL = ((1 << 20) // np.arange(1, 65)).astype(np.int64)

# Contexts: the expected error on the half-log scale × the previous plane's error magnitude.
_N_EXPECTED = 40
_N_CROSS = 9  # 0: first plane; 1 + halflog(|previous plane's error|), capped
_N_CONTEXTS = _N_EXPECTED * _N_CROSS
_N_SIGN_CONTEXTS = 81  # signs of the errors at W, N, the previous plane's, and of the neighbours' bias
_MAX_BITS = 31

_ZERO = 0
_SIGN = _ZERO + _N_CONTEXTS
_UNARY = _SIGN + _N_SIGN_CONTEXTS
_MANTISSA = _UNARY + _N_CONTEXTS * (_MAX_BITS + 1)
_N_MODELS = _MANTISSA + (_MAX_BITS + 1) * _MAX_BITS

_FAST_RATE, _SLOW_RATE = 5, 9  # slower than ctxrange's 4, 8: 0.2 % fewer bytes here (cuts and dev frames)


@njit(cache=True, inline="always")
def _weight(error_sum, multiplier):
    """≈ multiplier · 2^20 / (1 + error_sum), at least 1 (a table lookup after a shift)."""
    shift = 0
    while (error_sum >> shift) >= 64:
        shift += 1
    return ((multiplier * _RECIPROCAL[error_sum >> shift]) >> shift) + 1


@njit(cache=True, inline="always")
def _clamp_sub(s):
    return min(max(s, -_SUB_LIMIT), _SUB_LIMIT)


@njit(cache=True, inline="always")
def _predict(plane, i, j, width, te, err, sub):
    """(prediction in 1/8 units, expected error in 1/8 units, bias of the neighbours' true errors)
    of plane[i, j]; te: (2, W) true errors of the current (row i & 1) and previous rows; err:
    (2, 4, W) sub-predictor errors; sub: (4,) scratch, filled with the sub-predictions."""
    cur = i & 1
    prev = cur ^ 1
    if i > 0:
        n = np.int64(plane[i - 1, j])
    elif j > 0:
        n = np.int64(plane[i, j - 1])
    else:
        n = np.int64(0)
    w = np.int64(plane[i, j - 1]) if j > 0 else n
    nw = np.int64(plane[i - 1, j - 1]) if i > 0 and j > 0 else n
    ne = np.int64(plane[i - 1, j + 1]) if i > 0 and j + 1 < width else n
    nn = np.int64(plane[i - 2, j]) if i > 1 else n
    te_n = te[prev, j] if i > 0 else np.int64(0)
    te_w = te[cur, j - 1] if j > 0 else np.int64(0)
    te_nw = te[prev, j - 1] if i > 0 and j > 0 else np.int64(0)
    te_ne = te[prev, j + 1] if i > 0 and j + 1 < width else np.int64(0)
    n8, w8, nw8, ne8, nn8 = n << 3, w << 3, nw << 3, ne << 3, nn << 3
    sub[0] = _clamp_sub(w8 + ne8 - n8)
    sub[1] = _clamp_sub(n8 - (((te_w + te_n + te_ne) * _C1) >> 5))
    sub[2] = _clamp_sub(w8 - (((te_w + te_n + te_nw) * _C2) >> 5))
    sub[3] = _clamp_sub(n8 - ((te_nw * _A + te_n * _B + te_ne * _C + (nn8 - n8) * _D + (nw8 - w8) * _E) >> 5))
    num = np.int64(0)
    den = np.int64(0)
    spread = np.int64(0)
    for k in range(4):
        s = np.int64(0)
        if i > 0:
            s += err[prev, k, j]
            if j > 0:
                s += err[prev, k, j - 1]
            if j + 1 < width:
                s += err[prev, k, j + 1]
        if j > 0:
            s += err[cur, k, j - 1]
            if j > 1:
                s += err[cur, k, j - 2]
        m = _M0 if k == 0 else (_M1 if k == 1 else (_M2 if k == 2 else _M3))
        wk = _weight(s, m)
        num += wk * sub[k]
        den += wk
        spread += wk * s
    p = (num + (den >> 1)) // den
    if not ((te_n > 0 and te_w > 0 and te_ne > 0) or (te_n < 0 and te_w < 0 and te_ne < 0)):
        low = min(w8, min(n8, ne8))
        high = max(w8, max(n8, ne8))
        p = min(max(p, low), high)
    if i == 0 and j == 0:
        p = np.int64(0)
    return p, spread // den, te_n + te_w + ((te_nw + te_ne) >> 1)


@njit(cache=True, inline="always")
def _learn(value, p, i, j, te, err, sub):
    """After plane[i, j] = value is known: store the true and the sub-predictors' errors."""
    cur = i & 1
    x8 = np.int64(value) << 3
    te[cur, j] = p - x8
    for k in range(4):
        err[cur, k, j] = min(abs(sub[k] - x8), _ERR_LIMIT)


@njit(cache=True, inline="always")
def _wrap32(v):
    """v modulo 2^32, as a signed 32-bit value."""
    return ((v + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)


@njit(cache=True, inline="always")
def _contexts(errors, c, i, j, expected, bias):
    """(magnitude context, sign context) of the error of plane c at (i, j); errors: (2, H, W), the
    errors of plane c at [c & 1] and of plane c - 1 at [(c & 1) ^ 1]."""
    cur = c & 1
    west = np.int64(errors[cur, i, j - 1]) if j > 0 else np.int64(0)
    north = np.int64(errors[cur, i - 1, j]) if i > 0 else np.int64(0)
    a = min(_halflog(expected), _N_EXPECTED - 1)
    if c > 0:
        above = np.int64(errors[cur ^ 1, i, j])
        x = min(1 + _halflog(abs(above)), _N_CROSS - 1)
        s = _sign3(above)
    else:
        x = 0
        s = 1
    e1 = expected + 1
    sb = 0 if bias * 4 < -e1 else (1 if bias * 4 <= e1 else 2)
    return a * _N_CROSS + x, ((sb * 3 + _sign3(west)) * 3 + _sign3(north)) * 3 + s


def _fresh_models():
    # int32 (ctxrange's are int64): every entry stays within 0..2^16, and a decoder's memory is less
    models = np.zeros((_N_MODELS, 3), np.int32)
    models[:, :2] = _PROB_ONE // 2
    return models


def _scratch(shape):
    return np.empty((2,) + tuple(shape[1:]), np.int32)


@njit(cache=True, nogil=True)
def _encode(values, models, errors):
    """values: (C, H, W) int32 → coded bytes; errors: (2, H, W) int32 scratch (the prediction errors
    of the current and the previous plane)."""
    n_planes, height, width = values.shape
    st, buf = _start_encoder(values.size)
    te = np.zeros((2, max(width, 1)), np.int64)
    err = np.zeros((2, 4, max(width, 1)), np.int64)
    sub = np.zeros(4, np.int64)
    fr, sr = _FAST_RATE, _SLOW_RATE
    for c in range(n_planes):
        plane = values[c]
        for i in range(height):
            for j in range(width):
                buf = _room(st, buf, 160)  # the worst case of one value (ctxrange._encode_value)
                p, expected, bias = _predict(plane, i, j, width, te, err, sub)
                x = np.int64(plane[i, j])
                v = _wrap32(x - ((p + 4) >> 3))
                errors[c & 1, i, j] = v
                _learn(x, p, i, j, te, err, sub)
                ctx, sign_ctx = _contexts(errors, c, i, j, expected, bias)
                _encode_value(st, buf, models, v, _ZERO + ctx, _SIGN + sign_ctx, _UNARY + ctx * (_MAX_BITS + 1),
                              _MANTISSA, fr, sr)
    return _finish_encoder(st, buf)


@njit(cache=True, nogil=True)
def _decode(data, out, models, errors):
    """Fill out (C, H, W) int32 from coded bytes (the mirror of _encode; errors: its scratch);
    returns (status, bytes read)."""
    n_planes, height, width = out.shape
    st = _start_decoder(data)
    te = np.zeros((2, max(width, 1)), np.int64)
    err = np.zeros((2, 4, max(width, 1)), np.int64)
    sub = np.zeros(4, np.int64)
    fr, sr = _FAST_RATE, _SLOW_RATE
    for c in range(n_planes):
        plane = out[c]
        for i in range(height):
            for j in range(width):
                p, expected, bias = _predict(plane, i, j, width, te, err, sub)
                # the contexts read errors at W, N and the previous plane only: set below, before use
                ctx, sign_ctx = _contexts(errors, c, i, j, expected, bias)
                v = _decode_value(st, data, models, _ZERO + ctx, _SIGN + sign_ctx, _UNARY + ctx * (_MAX_BITS + 1),
                                  _MANTISSA, fr, sr)
                if v > 2147483647:
                    return _BAD_VALUE, st[2]
                errors[c & 1, i, j] = v
                x = _wrap32(((p + 4) >> 3) + v)
                plane[i, j] = x
                _learn(x, p, i, j, te, err, sub)
            if st[2] > data.shape[0] + _OVERRUN_SLACK:
                return _OVERRUN, st[2]
    return _OK, st[2]


@njit(cache=True, nogil=True)
def _prediction_errors(values, out):
    n_planes, height, width = values.shape
    te = np.zeros((2, max(width, 1)), np.int64)
    err = np.zeros((2, 4, max(width, 1)), np.int64)
    sub = np.zeros(4, np.int64)
    for c in range(n_planes):
        plane = values[c]
        for i in range(height):
            for j in range(width):
                p, expected, bias = _predict(plane, i, j, width, te, err, sub)
                x = np.int64(plane[i, j])
                out[0, c, i, j] = _wrap32(x - ((p + 4) >> 3))
                out[1, c, i, j] = expected
                out[2, c, i, j] = bias
                _learn(x, p, i, j, te, err, sub)


def prediction_errors(values):
    """(errors, expected, bias) of a (C, H, W) int32 frame, each (C, H, W) int64: the errors the
    coder codes (x − prediction, modulo 2^32), the expected error and the neighbours' bias its
    contexts take (1/8 units). For tests and diagnostics; the coder computes them on the fly."""
    values = np.ascontiguousarray(values, dtype=np.int32)
    out = np.empty((3,) + values.shape, np.int64)
    _prediction_errors(values, out)
    return out[0], out[1], out[2]


class WeightedPredictionCoder(Codec):
    """One (C, H, W) int32 frame of pixels (any int32 values) → one byte string, and back: the
    weighted predictor and the context range coder in one pass (module docstring). A byte coder
    whose input is the pixels themselves, not prediction errors: stages/med.py + stages/ctxrange.py
    in one, smaller. No options: the predictor's constants are part of the codec."""

    emits_bytes = True
    codec_id = "wpred"

    def encode(self, frame):
        planes = np.ascontiguousarray(frame, dtype=np.int32)
        if planes.ndim != 3:
            raise ValueError(f"wpred codes (C, H, W) planes, got shape {planes.shape}")
        return _encode(planes, _fresh_models(), _scratch(planes.shape)).tobytes()

    def check_chunk(self, data, shape, dtype):
        """Before anything is allocated: can `data` hold a frame of `shape`? (Every value costs at
        least one decision, as in ctxrange.)"""
        _check_capacity(len(data), shape)

    def decode(self, data, out):
        """bytes → `out`, an int32 (C, H, W) array of the frame's declared shape, which it returns;
        TezipError when the data cannot be what encode made."""
        if out.dtype != np.int32 or out.ndim != 3 or not out.flags.c_contiguous:
            raise TezipError(f"wpred decodes into a contiguous int32 (C, H, W) array, got {out.dtype} {out.shape}")
        data = bytes(data)
        _check_capacity(len(data), out.shape)
        status, read = _decode(np.frombuffer(data, np.uint8), out, _fresh_models(), _scratch(out.shape))
        if status == _OVERRUN or (status == _OK and read > len(data)):
            raise TezipError("corrupt wpred data: truncated")
        if status == _BAD_VALUE:
            raise TezipError("corrupt wpred data: a value outside int32")
        if read != len(data):  # the decoder reads exactly the bytes the encoder wrote
            raise TezipError("corrupt wpred data: bytes after the end of the coded values")
        return out
