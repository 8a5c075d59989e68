"""Context-modelled adaptive binary range coding of integer planes (the "ctxrange" codec).

The last stage for residual codes and keyframe codes: one frame's (C, H, W) int32 values become one
byte string. It replaces "rank table + zstd", which codes every value with one distribution per
frame and cannot spend less than about a bit on a zero. Here each value is coded with
probabilities that depend on what the decoder has already seen around it:

- activity: |west| + |north| + (|north-west| + |north-east|) / 2 of the same plane (residuals are
  large together, along edges and moving objects, and small together on flat areas);
- the value at the same pixel of the previous plane (colour channels err together: a wrong
  brightness shows in R, G and B alike), its magnitude for the magnitude and its sign for the sign.

A value v is binarised as: is it zero; its sign; k = bit length of |v| - 1 in unary (each position
of the unary code with its own context); then the k - 1 bits below the leading one. Every decision
is coded with an adaptive probability: the mean of a fast estimate (an exponential average with
rate 2^-fast_rate) and a slow one (the plain average of the decisions seen so far, then an
exponential average with rate 2^-slow_rate once it has seen that many), which follows a frame's
changes quickly without forgetting its long-run statistics, and learns a fresh context fast. The
range coder is the classic 32-bit one with a cached carry (as in LZMA), with 16-bit probabilities.

On the dev frames' PredNet residuals this leaves 21 % (lossless) to 34 % (abs 8) fewer bytes than
the per-frame rank tables + zstd it replaced, and 29-47 % fewer than zigzag + zstd (more at coarser
bounds, where most codes are zero), at 15-30 M values per second per core
(benchmarks/bench_codec.py).

Frames are coded independently (a fresh model per frame), so frames encode and decode in parallel
threads (stages.chain.Chain) and the bytes never depend on the thread count. It is host code: the coder is a sequential
chain of decisions, with nothing for a GPU to run in parallel within a frame; in GPU mode the codes
are already on the host when this stage runs. Corrupt input can make the decoder produce wrong
values (the per-frame checksums catch that) but never read or write out of bounds.
"""

import numpy as np
from numba import njit

from base.errors import TezipError
from stages._codec import Codec

# Probabilities are P(bit = 0) in units of 2^-16, kept away from 0 and 1 so both outcomes stay codable.
_PROB_ONE = 1 << 16
_PROB_MIN = 32
_TOP = 1 << 24  # the range is renormalised (one byte out) whenever it falls below this

# Context sizes. Activity and cross-plane magnitude use a "half-log" scale (below).
_N_ACTIVITY = 24
_N_CROSS = 9  # 0: no previous plane; 1 + halflog(|value above|), capped
_N_CONTEXTS = _N_ACTIVITY * _N_CROSS
_N_SIGN_CONTEXTS = 27  # signs (-, 0, +) of west, north and the previous plane's value
_MAX_BITS = 31  # |v| - 1 < 2^31 for every int32 v

# Model table layout (one row per binary decision kind).
_ZERO = 0
_SIGN = _ZERO + _N_CONTEXTS
_UNARY = _SIGN + _N_SIGN_CONTEXTS  # _N_CONTEXTS * (_MAX_BITS + 1) models
_MANTISSA = _UNARY + _N_CONTEXTS * (_MAX_BITS + 1)  # (_MAX_BITS + 1) * _MAX_BITS models
_N_MODELS = _MANTISSA + (_MAX_BITS + 1) * _MAX_BITS

# Decoder status codes.
_OK, _OVERRUN, _BAD_VALUE = 0, 1, 2
# Past the end of its input the decoder reads zeros; a valid stream needs at most the 4 bytes of
# the final flush beyond what it consumed, so more than this means the data is truncated.
_OVERRUN_SLACK = 8
# What a chunk can hold at most. Every value costs at least one decision, and a decision narrows
# the range by at least the factor 1 - _PROB_MIN / _PROB_ONE (+ rounding): at least 0.0007 bit,
# so a byte carries at most ~11 400 values. A declared shape beyond this many values per byte
# (with room for the slack above) cannot be what the chunk holds: it is refused before the output
# is allocated, whatever the header says.
_MAX_VALUES_PER_BYTE = 1 << 14
_CAPACITY_SLACK = 32


def _check_capacity(n_bytes, shape):
    values = int(np.prod(shape, dtype=object))
    if values > (n_bytes + _CAPACITY_SLACK) * _MAX_VALUES_PER_BYTE:
        raise TezipError(f"corrupt ctxrange data: {n_bytes} bytes cannot hold the {values} values declared")


@njit(cache=True, inline="always")
def _halflog(x):
    """0, 1, 2, 3 for x < 4, then two buckets per power of two: 4-5, 6-7, 8-11, 12-15, 16-23, ..."""
    if x < 4:
        return x
    bits = 0
    y = x
    while y > 0:
        bits += 1
        y >>= 1
    return 4 + 2 * (bits - 3) + ((x >> (bits - 2)) & 1)


@njit(cache=True, inline="always")
def _sign3(v):
    return 0 if v < 0 else (1 if v == 0 else 2)


@njit(cache=True, inline="always")
def _contexts(values, c, i, j, width):
    """(magnitude context, sign context) of values[c, i, j] from already coded neighbours."""
    west = np.int64(values[c, i, j - 1]) if j > 0 else np.int64(0)
    north = np.int64(values[c, i - 1, j]) if i > 0 else np.int64(0)
    north_west = np.int64(values[c, i - 1, j - 1]) if i > 0 and j > 0 else np.int64(0)
    north_east = np.int64(values[c, i - 1, j + 1]) if i > 0 and j + 1 < width else np.int64(0)
    activity = abs(west) + abs(north) + ((abs(north_west) + abs(north_east)) >> 1)
    a = min(_halflog(activity), _N_ACTIVITY - 1)
    if c > 0:
        above = np.int64(values[c - 1, i, j])
        x = min(1 + _halflog(abs(above)), _N_CROSS - 1)
        s = _sign3(above)
    else:
        x = 0
        s = 1
    return a * _N_CROSS + x, (_sign3(west) * 3 + _sign3(north)) * 3 + s


@njit(cache=True, inline="always")
def _probability(models, m):
    p = (models[m, 0] + models[m, 1]) >> 1
    return min(max(p, _PROB_MIN), _PROB_ONE - _PROB_MIN)


@njit(cache=True, inline="always")
def _adapt(models, m, bit, fast_rate, slow_rate):
    """models[m] = (fast estimate, slow estimate, decisions seen, capped at 2^slow_rate)."""
    target = _PROB_ONE if bit == 0 else 0
    models[m, 0] += (target - models[m, 0]) >> fast_rate
    seen = models[m, 2]
    models[m, 1] += (target - models[m, 1]) // (seen + 2)  # floor division keeps it within [0, 1]
    if seen + 2 < (np.int64(1) << slow_rate):
        models[m, 2] = seen + 1


@njit(cache=True, inline="always")
def _shift_low(st, buf):
    """Move the top byte of `low` out, resolving a pending carry through the cached 0xFF run.
    st: [low, range, cache, cache_size, out position]."""
    low = st[0]
    if low < 0xFF000000 or low >= (np.int64(1) << 32):
        carry = low >> 32
        byte = st[2]
        while True:
            buf[st[4]] = (byte + carry) & 0xFF
            st[4] += 1
            byte = 0xFF
            st[3] -= 1
            if st[3] == 0:
                break
        st[2] = (low >> 24) & 0xFF
    st[3] += 1
    st[0] = (low & 0x00FFFFFF) << 8


@njit(cache=True, inline="always")
def _encode_bit(st, buf, models, m, bit, fast_rate, slow_rate):
    bound = (st[1] >> 16) * _probability(models, m)
    if bit == 0:
        st[1] = bound
    else:
        st[0] += bound
        st[1] -= bound
    _adapt(models, m, bit, fast_rate, slow_rate)
    while st[1] < _TOP:
        st[1] <<= 8
        _shift_low(st, buf)


@njit(cache=True, inline="always")
def _decode_bit(st, data, models, m, fast_rate, slow_rate):
    """st: [code, range, position]."""
    bound = (st[1] >> 16) * _probability(models, m)
    if st[0] < bound:
        st[1] = bound
        bit = 0
    else:
        st[0] -= bound
        st[1] -= bound
        bit = 1
    _adapt(models, m, bit, fast_rate, slow_rate)
    while st[1] < _TOP:
        st[1] <<= 8
        byte = np.int64(data[st[2]]) if st[2] < data.shape[0] else np.int64(0)
        st[2] += 1
        st[0] = ((st[0] << 8) | byte) & 0xFFFFFFFF
    return bit


@njit(cache=True, inline="always")
def _room(st, buf, need):
    """buf with room for `need` more bytes after the bytes written and the pending 0xFF run
    (grown, copied, when short): the caller keeps the returned array."""
    if st[4] + st[3] + need > buf.shape[0]:
        grown = np.empty(2 * buf.shape[0] + st[3] + need, np.uint8)
        grown[: st[4]] = buf[: st[4]]
        return grown
    return buf


@njit(cache=True, inline="always")
def _start_encoder(size):
    """(coder state, output buffer) of a fresh encoder for about `size` values."""
    st = np.zeros(5, np.int64)
    st[1] = 0xFFFFFFFF
    st[3] = 1
    return st, np.empty(max(4096, size // 2), np.uint8)


@njit(cache=True, inline="always")
def _finish_encoder(st, buf):
    """Flush the coder: the coded bytes (uint8 array)."""
    buf = _room(st, buf, 16)
    for _ in range(5):
        _shift_low(st, buf)
    return buf[: st[4]].copy()


@njit(cache=True, inline="always")
def _start_decoder(data):
    """The state of a decoder of `data`: the encoder's first byte is always the initial cache (0);
    the code register takes the next four (zeros past the end)."""
    st = np.zeros(3, np.int64)
    st[1] = 0xFFFFFFFF
    st[2] = 1
    for _ in range(4):
        byte = np.int64(data[st[2]]) if st[2] < data.shape[0] else np.int64(0)
        st[0] = (st[0] << 8) | byte
        st[2] += 1
    return st


@njit(cache=True, inline="always")
def _encode_value(st, buf, models, v, zero, sign, unary, mantissa, fast_rate, slow_rate):
    """Code one value (module docstring): is it zero (model `zero`), its sign (`sign`), the bit
    length k of |v| - 1 in unary (models unary + 0 .., one per position), the k - 1 bits below the
    leading one (models mantissa + k * _MAX_BITS + bit). The model indices are the caller's layout.
    buf must have room for 160 bytes (_room)."""
    if v == 0:
        _encode_bit(st, buf, models, zero, 0, fast_rate, slow_rate)
        return
    _encode_bit(st, buf, models, zero, 1, fast_rate, slow_rate)
    _encode_bit(st, buf, models, sign, 1 if v < 0 else 0, fast_rate, slow_rate)
    m = abs(v) - 1
    k = 0
    while (m >> k) > 0:
        k += 1
    for u in range(k):
        _encode_bit(st, buf, models, unary + u, 1, fast_rate, slow_rate)
    if k < _MAX_BITS:
        _encode_bit(st, buf, models, unary + k, 0, fast_rate, slow_rate)
    bits = mantissa + k * _MAX_BITS
    for b in range(k - 2, -1, -1):
        _encode_bit(st, buf, models, bits + b, (m >> b) & 1, fast_rate, slow_rate)


@njit(cache=True, inline="always")
def _decode_value(st, data, models, zero, sign, unary, mantissa, fast_rate, slow_rate):
    """The mirror of _encode_value: the value (int64; beyond int32 only from corrupt data)."""
    if _decode_bit(st, data, models, zero, fast_rate, slow_rate) == 0:
        return np.int64(0)
    negative = _decode_bit(st, data, models, sign, fast_rate, slow_rate)
    k = 0
    while k < _MAX_BITS and _decode_bit(st, data, models, unary + k, fast_rate, slow_rate) == 1:
        k += 1
    m = np.int64(1) << (k - 1) if k > 0 else np.int64(0)
    bits = mantissa + k * _MAX_BITS
    for b in range(k - 2, -1, -1):
        m |= np.int64(_decode_bit(st, data, models, bits + b, fast_rate, slow_rate)) << b
    return -(m + 1) if negative else m + 1


def _fresh_models():
    models = np.zeros((_N_MODELS, 3), np.int64)
    models[:, :2] = _PROB_ONE // 2
    return models


@njit(cache=True, nogil=True)
def _encode_planes(values, models, fast_rate, slow_rate):
    """values: (C, H, W) int32 → coded bytes (uint8 array)."""
    n_planes, height, width = values.shape
    st, buf = _start_encoder(values.size)
    for c in range(n_planes):
        for i in range(height):
            for j in range(width):
                # room for the worst case of one value: 66 decisions of at most 2 bytes each, plus
                # the pending 0xFF run
                buf = _room(st, buf, 160)
                ctx, sign_ctx = _contexts(values, c, i, j, width)
                _encode_value(st, buf, models, np.int64(values[c, i, j]), _ZERO + ctx, _SIGN + sign_ctx,
                              _UNARY + ctx * (_MAX_BITS + 1), _MANTISSA, fast_rate, slow_rate)
    return _finish_encoder(st, buf)


@njit(cache=True, nogil=True)
def _decode_planes(data, out, models, fast_rate, slow_rate):
    """Fill out (C, H, W) int32 from coded bytes; returns a status code."""
    n_planes, height, width = out.shape
    st = _start_decoder(data)
    for c in range(n_planes):
        for i in range(height):
            for j in range(width):
                ctx, sign_ctx = _contexts(out, c, i, j, width)
                v = _decode_value(st, data, models, _ZERO + ctx, _SIGN + sign_ctx, _UNARY + ctx * (_MAX_BITS + 1),
                                  _MANTISSA, fast_rate, slow_rate)
                if v > 2147483647:
                    return _BAD_VALUE
                out[c, i, j] = v
            if st[2] > data.shape[0] + _OVERRUN_SLACK:
                return _OVERRUN
    return _OK


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= 12:
        raise TezipError(f"ctxrange {name} must be an integer from 1 to 12, got {value!r}")
    return int(value)


class ContextRangeCoder(Codec):
    """One (C, H, W) int32 frame → one byte string, and back. See the module docstring."""

    emits_bytes = True

    codec_id = "ctxrange"
    config_keys = ("fast_rate", "slow_rate")

    def __init__(self, fast_rate=4, slow_rate=8):
        self.fast_rate = _check_rate("fast_rate", fast_rate)
        self.slow_rate = _check_rate("slow_rate", slow_rate)

    def encode(self, planes):
        """One frame's (C, H, W) integers (int32 range) → bytes."""
        planes = np.ascontiguousarray(planes, dtype=np.int32)
        if planes.ndim != 3:
            raise ValueError(f"ctxrange codes (C, H, W) planes, got shape {planes.shape}")
        return _encode_planes(planes, _fresh_models(), self.fast_rate, self.slow_rate).tobytes()

    def check_chunk(self, data, shape, dtype):
        """Before anything is allocated: can `data` hold a frame of `shape`? (A header may declare
        frames far larger than its chunks can code.)"""
        _check_capacity(len(data), shape)

    def decode(self, data, out):
        """bytes → `out`, an int32 (C, H, W) array of the frame's declared shape, which it returns;
        TezipError when the data cannot be what encode made."""
        if out.dtype != np.int32 or out.ndim != 3 or not out.flags.c_contiguous:
            raise TezipError(f"ctxrange decodes into a contiguous int32 (C, H, W) array, got {out.dtype} {out.shape}")
        _check_capacity(len(data), out.shape)
        status = _decode_planes(np.frombuffer(bytes(data), np.uint8), out, _fresh_models(), self.fast_rate, self.slow_rate)
        if status == _OVERRUN:
            raise TezipError("corrupt ctxrange data: truncated")
        if status == _BAD_VALUE:
            raise TezipError("corrupt ctxrange data: a value outside int32")
        return out


# --------------------------------------------------------------------------- grid sequences
#
# A variant for coders whose values come as a sequence of 2-D grids (sequence/hierarchical.py: an
# interpolation level's pass is the grid of the points it predicts, coarse to fine): every grid is
# coded in raster order with the activity of its *own* W, N, NW, NE values (neighbours on the same
# grid, so of the same pass), and with the grid's `aux` number (its pass) as a second context, one
# adaptive model through all grids of the call. On hierarchical-B LSI codes of smooth fields this
# gives 7-14 % fewer bytes at abs 16-64 than coding the frame in raster order with a pass context.
# The binarisation, the probabilities and the range coder are the ones above.

_GRID_SIGN_CONTEXTS = 9  # signs (-, 0, +) of west and north on the grid
MAX_GRID_AUX = 16
_GRID_MODELLED_MANTISSA = 2  # mantissa bits below the top ones are direct (equiprobable) bits


# The grid coder's adaptation: as _adapt, with the slow estimate's division by (seen + 2) done as a
# multiplication by a table of 2^16 / (seen + 2) (a division per decision was a fifth of the time).
_RECIPROCALS = ((1 << 16) // np.arange(2, (1 << 12) + 2)).astype(np.int64)


@njit(cache=True, inline="always")
def _grid_adapt(models, m, bit, fast_rate, slow_rate):
    target = _PROB_ONE if bit == 0 else 0
    models[m, 0] += (target - models[m, 0]) >> fast_rate
    seen = models[m, 2]
    models[m, 1] += ((target - models[m, 1]) * _RECIPROCALS[seen]) >> 16
    if seen + 2 < (np.int64(1) << slow_rate):
        models[m, 2] = seen + 1


@njit(cache=True, inline="always")
def _grid_encode_bit(st, buf, models, m, bit, fast_rate, slow_rate):
    bound = (st[1] >> 16) * _probability(models, m)
    if bit == 0:
        st[1] = bound
    else:
        st[0] += bound
        st[1] -= bound
    _grid_adapt(models, m, bit, fast_rate, slow_rate)
    while st[1] < _TOP:
        st[1] <<= 8
        _shift_low(st, buf)


@njit(cache=True, inline="always")
def _grid_decode_bit(st, data, models, m, fast_rate, slow_rate):
    bound = (st[1] >> 16) * _probability(models, m)
    if st[0] < bound:
        st[1] = bound
        bit = 0
    else:
        st[0] -= bound
        st[1] -= bound
        bit = 1
    _grid_adapt(models, m, bit, fast_rate, slow_rate)
    while st[1] < _TOP:
        st[1] <<= 8
        byte = np.int64(data[st[2]]) if st[2] < data.shape[0] else np.int64(0)
        st[2] += 1
        st[0] = ((st[0] << 8) | byte) & 0xFFFFFFFF
    return bit


@njit(cache=True, inline="always")
def _encode_direct(st, buf, value, n):
    """n <= 16 equiprobable bits at once: the range is split into 2^n equal parts."""
    st[1] >>= n
    st[0] += value * st[1]
    while st[1] < _TOP:
        st[1] <<= 8
        _shift_low(st, buf)


@njit(cache=True, inline="always")
def _decode_direct(st, data, n):
    st[1] >>= n
    value = min(st[0] // st[1], (np.int64(1) << n) - 1)  # the min only matters for corrupt data
    st[0] -= value * st[1]
    while st[1] < _TOP:
        st[1] <<= 8
        byte = np.int64(data[st[2]]) if st[2] < data.shape[0] else np.int64(0)
        st[2] += 1
        st[0] = ((st[0] << 8) | byte) & 0xFFFFFFFF
    return value


@njit(cache=True, inline="always")
def _grid_contexts(values, off, gw, gi, gj, aux, n_aux):
    k = off + gi * gw + gj
    west = abs(np.int64(values[k - 1])) if gj > 0 else np.int64(0)
    north = abs(np.int64(values[k - gw])) if gi > 0 else np.int64(0)
    north_west = abs(np.int64(values[k - gw - 1])) if gi > 0 and gj > 0 else np.int64(0)
    north_east = abs(np.int64(values[k - gw + 1])) if gi > 0 and gj + 1 < gw else np.int64(0)
    a = min(_halflog(west + north + ((north_west + north_east) >> 1)), _N_ACTIVITY - 1)
    sw = _sign3(np.int64(values[k - 1])) if gj > 0 else 1
    sn = _sign3(np.int64(values[k - gw])) if gi > 0 else 1
    return a * n_aux + aux, sw * 3 + sn


def _grid_models(n_aux):
    n_ctx = _N_ACTIVITY * n_aux
    models = np.zeros((n_ctx * (_MAX_BITS + 2) + _GRID_SIGN_CONTEXTS + (_MAX_BITS + 1) * _MAX_BITS, 3), np.int64)
    models[:, :2] = _PROB_ONE // 2
    return models


@njit(cache=True, nogil=True)
def _encode_grid_values(values, grids, n_aux, models, fast_rate, slow_rate):
    """values: flat int32; grids: (G, 4) int64 rows (offset, height, width, aux) → coded bytes."""
    n_ctx = _N_ACTIVITY * n_aux
    sign0 = n_ctx
    unary0 = sign0 + _GRID_SIGN_CONTEXTS
    mantissa0 = unary0 + n_ctx * (_MAX_BITS + 1)
    st, buf = _start_encoder(values.size)
    for g in range(grids.shape[0]):
        off, gh, gw, aux = grids[g, 0], grids[g, 1], grids[g, 2], grids[g, 3]
        for gi in range(gh):
            for gj in range(gw):
                buf = _room(st, buf, 160)
                v = np.int64(values[off + gi * gw + gj])
                ctx, sign_ctx = _grid_contexts(values, off, gw, gi, gj, aux, n_aux)
                if v == 0:
                    _grid_encode_bit(st, buf, models, ctx, 0, fast_rate, slow_rate)
                    continue
                _grid_encode_bit(st, buf, models, ctx, 1, fast_rate, slow_rate)
                _grid_encode_bit(st, buf, models, sign0 + sign_ctx, 1 if v < 0 else 0, fast_rate, slow_rate)
                m = abs(v) - 1
                k = 0
                while (m >> k) > 0:
                    k += 1
                unary = unary0 + ctx * (_MAX_BITS + 1)
                for u in range(k):
                    _grid_encode_bit(st, buf, models, unary + u, 1, fast_rate, slow_rate)
                if k < _MAX_BITS:
                    _grid_encode_bit(st, buf, models, unary + k, 0, fast_rate, slow_rate)
                mantissa = mantissa0 + k * _MAX_BITS
                low = max(k - 1 - _GRID_MODELLED_MANTISSA, 0)  # bits below this are direct
                for b in range(k - 2, low - 1, -1):
                    _grid_encode_bit(st, buf, models, mantissa + b, (m >> b) & 1, fast_rate, slow_rate)
                while low > 0:
                    n = min(low, 16)
                    low -= n
                    _encode_direct(st, buf, (m >> low) & ((np.int64(1) << n) - 1), n)
    return _finish_encoder(st, buf)


@njit(cache=True, nogil=True)
def _decode_grid_values(data, grids, n_aux, out, models, fast_rate, slow_rate):
    """Fill the flat int32 `out` from coded bytes (the mirror of _encode_grid_values); returns
    (status code, bytes read)."""
    n_ctx = _N_ACTIVITY * n_aux
    sign0 = n_ctx
    unary0 = sign0 + _GRID_SIGN_CONTEXTS
    mantissa0 = unary0 + n_ctx * (_MAX_BITS + 1)
    st = _start_decoder(data)
    for g in range(grids.shape[0]):
        off, gh, gw, aux = grids[g, 0], grids[g, 1], grids[g, 2], grids[g, 3]
        for gi in range(gh):
            for gj in range(gw):
                ctx, sign_ctx = _grid_contexts(out, off, gw, gi, gj, aux, n_aux)
                k_out = off + gi * gw + gj
                if _grid_decode_bit(st, data, models, ctx, fast_rate, slow_rate) == 0:
                    out[k_out] = 0
                    continue
                negative = _grid_decode_bit(st, data, models, sign0 + sign_ctx, fast_rate, slow_rate)
                unary = unary0 + ctx * (_MAX_BITS + 1)
                k = 0
                while k < _MAX_BITS and _grid_decode_bit(st, data, models, unary + k, fast_rate, slow_rate) == 1:
                    k += 1
                m = np.int64(1) << (k - 1) if k > 0 else np.int64(0)
                mantissa = mantissa0 + k * _MAX_BITS
                low = max(k - 1 - _GRID_MODELLED_MANTISSA, 0)
                for b in range(k - 2, low - 1, -1):
                    m |= np.int64(_grid_decode_bit(st, data, models, mantissa + b, fast_rate, slow_rate)) << b
                while low > 0:
                    n = min(low, 16)
                    low -= n
                    m |= _decode_direct(st, data, n) << low
                v = -(m + 1) if negative else m + 1
                if v > 2147483647:
                    return _BAD_VALUE, st[2]
                out[k_out] = v
            if st[2] > data.shape[0] + _OVERRUN_SLACK:
                return _OVERRUN, st[2]
    return _OK, st[2]


def check_capacity(n_bytes, n_values):
    """TezipError unless `n_bytes` of coded data can hold `n_values` values (before allocating them)."""
    _check_capacity(n_bytes, (n_values,))


def _check_grids(grids, n_values, n_aux):
    grids = np.ascontiguousarray(grids, dtype=np.int64).reshape(-1, 4)
    if not 1 <= n_aux <= MAX_GRID_AUX:
        raise ValueError(f"grid coder: n_aux must be 1-{MAX_GRID_AUX}, got {n_aux}")
    if len(grids) and (grids[:, 1:3].min() < 0 or grids[:, 0].min() < 0 or grids[:, 3].min() < 0
                       or grids[:, 3].max() >= n_aux
                       or (grids[:, 0] + grids[:, 1] * grids[:, 2]).max() > n_values):
        raise ValueError("grid coder: a grid lies outside the values or has an aux number out of range")
    return grids


def encode_grids(values, grids, n_aux, fast_rate=4, slow_rate=8):
    """Code a flat int32 array laid out as 2-D grids: `grids` rows are (offset, height, width, aux),
    aux in 0..n_aux-1 (n_aux <= MAX_GRID_AUX), coded in the order given; values outside every grid
    are not coded. Returns bytes."""
    values = np.ascontiguousarray(values, dtype=np.int32).ravel()
    grids = _check_grids(grids, values.size, n_aux)
    return _encode_grid_values(values, grids, n_aux, _grid_models(n_aux), fast_rate, slow_rate).tobytes()


def decode_grids(data, grids, n_aux, out, fast_rate=4, slow_rate=8):
    """The mirror of encode_grids: fills the flat int32 `out` (the grids' values) and returns it;
    TezipError when `data` cannot be what encode_grids made (never reads or writes out of bounds).
    The decoder ends exactly where the encoder's bytes end (both renormalise alike), so a stream
    truncated by even one byte, or with bytes after it, is refused."""
    if out.dtype != np.int32 or out.ndim != 1:
        raise TezipError(f"grid decoding fills a flat int32 array, got {out.dtype} {out.shape}")
    grids = _check_grids(grids, out.size, n_aux)
    n_coded = int(grids[:, 1].astype(object).dot(grids[:, 2].astype(object))) if len(grids) else 0
    _check_capacity(len(data), (n_coded,))
    status, read = _decode_grid_values(np.frombuffer(data, np.uint8), grids, n_aux, out, _grid_models(n_aux),
                                       fast_rate, slow_rate)
    if status == _OVERRUN or (status == _OK and read > len(data)):
        raise TezipError("corrupt ctxrange data: truncated")
    if status == _BAD_VALUE:
        raise TezipError("corrupt ctxrange data: a value outside int32")
    if read != len(data):  # the decoder reads exactly the bytes the encoder wrote
        raise TezipError("corrupt ctxrange data: bytes after the end of the coded values")
    return out


@njit(cache=True, nogil=True)
def _count_grid_decisions(values, grids, n_aux, counts):
    """The decisions encode_grids would code, counted per model: counts[model, bit] (mantissa bits
    are counted as such: the coder learns little from them)."""
    n_ctx = _N_ACTIVITY * n_aux
    sign0 = n_ctx
    unary0 = sign0 + _GRID_SIGN_CONTEXTS
    raw_bits = np.int64(0)
    for g in range(grids.shape[0]):
        off, gh, gw, aux = grids[g, 0], grids[g, 1], grids[g, 2], grids[g, 3]
        for gi in range(gh):
            for gj in range(gw):
                v = np.int64(values[off + gi * gw + gj])
                ctx, sign_ctx = _grid_contexts(values, off, gw, gi, gj, aux, n_aux)
                if v == 0:
                    counts[ctx, 0] += 1
                    continue
                counts[ctx, 1] += 1
                counts[sign0 + sign_ctx, 1 if v < 0 else 0] += 1
                m = abs(v) - 1
                k = 0
                while (m >> k) > 0:
                    k += 1
                unary = unary0 + ctx * (_MAX_BITS + 1)
                for u in range(k):
                    counts[unary + u, 1] += 1
                if k < _MAX_BITS:
                    counts[unary + k, 0] += 1
                if k > 1:
                    raw_bits += k - 1
    return raw_bits


def estimate_grid_bits(values, grids, n_aux):
    """About how many bits encode_grids(values, grids, n_aux) makes, far faster: every binary
    decision's model at its empirical entropy plus what adapting to it costs (½ log₂ n + 1 bits for
    n decisions), mantissa bits at one bit each. For an encoder's choices between alternatives."""
    values = np.ascontiguousarray(values, dtype=np.int32).ravel()
    grids = _check_grids(grids, values.size, n_aux)
    counts = np.zeros((len(_grid_models(n_aux)), 2), np.int64)
    raw = _count_grid_decisions(values, grids, n_aux, counts)
    n = counts.sum(1)
    used = n > 0
    c, n = counts[used].astype(np.float64), n[used].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(c > 0, c * np.log2(c / n[:, None]), 0.0)).sum()
    learning = (0.5 * np.log2(n) + 1.0).sum()  # what an adaptive model pays to learn p (≈ ½ log₂ n)
    return float(h + learning) + float(raw)
