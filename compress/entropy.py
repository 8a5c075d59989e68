"""Entropy-shaping stage: partitioned frequency-rank coding (the "freqrank" codec).

Each partition's values are replaced by their frequency rank (most frequent
value -> 0, next -> 1, ...).  Delta-coded residuals then become mostly 0s and
small ranks in 16-bit words, whose high bytes the byte-shuffling zstd stage
squeezes to almost nothing.  The per-partition tables (values in rank order)
are stored alongside so the decoder can map ranks back.

Ordering is by count descending, ties by value ascending, so encoding is
deterministic across runs, thread counts and devices.
"""

import numpy as np
from numba import njit, prange

from compress.codec import Codec
from compress.errors import TezipError

from compress.gpu import cupy, cuda_kernel, is_cupy_array, launch_elementwise

# A dense histogram is used when a partition's value span is at most this many
# slots beyond 4x its length, so the counting array never dwarfs the data;
# wider spans (never produced by delta-coded residuals) fall back to sorting.
_DENSE_SPAN_SLACK = 1 << 16
_DENSE_SPAN_FACTOR = 4

# Ranks fit uint16 while no table is longer than this.
_UINT16_TABLE_LIMIT = 1 << 16


# --------------------------------------------------------------------------- numba


@njit(cache=True, inline="always")
def _dense_span_limit(length):
    return _DENSE_SPAN_FACTOR * np.int64(length) + _DENSE_SPAN_SLACK


@njit(cache=True, parallel=True)
def _build_tables(values, scratch, lengths, mins):
    """Per partition: write its value table (rank order) into scratch[p, :n], n into lengths[p]."""
    n_parts, length = values.shape
    for p in prange(n_parts):
        row = values[p]
        if length == 0:
            lengths[p] = 0
            mins[p] = 0
            continue
        low = row[0]
        high = row[0]
        for i in range(1, length):
            v = row[i]
            if v < low:
                low = v
            if v > high:
                high = v
        mins[p] = low
        span = np.int64(high) - np.int64(low) + 1
        if span <= _dense_span_limit(length):
            counts = np.zeros(span, dtype=np.int64)
            for i in range(length):
                counts[np.int64(row[i]) - low] += 1
            n = 0
            for k in range(span):
                if counts[k] != 0:
                    n += 1
            distinct = np.empty(n, dtype=np.int64)
            distinct_counts = np.empty(n, dtype=np.int64)
            j = 0
            for k in range(span):
                if counts[k] != 0:
                    distinct[j] = k + np.int64(low)
                    distinct_counts[j] = counts[k]
                    j += 1
        else:
            ordered = np.sort(row)
            n = 1
            for i in range(1, length):
                if ordered[i] != ordered[i - 1]:
                    n += 1
            distinct = np.empty(n, dtype=np.int64)
            distinct_counts = np.zeros(n, dtype=np.int64)
            j = 0
            distinct[0] = ordered[0]
            for i in range(length):
                if ordered[i] != distinct[j]:
                    j += 1
                    distinct[j] = ordered[i]
                distinct_counts[j] += 1
        # Distinct values are ascending here, so a stable sort on descending
        # count leaves ties in ascending value order.
        order = np.argsort(-distinct_counts, kind="mergesort")
        for k in range(n):
            scratch[p, k] = distinct[order[k]]
        lengths[p] = n


@njit(cache=True, parallel=True)
def _remap_to_ranks(values, scratch, lengths, mins, ranks):
    n_parts, length = values.shape
    for p in prange(n_parts):
        n = lengths[p]
        if n == 0:
            continue
        row = values[p]
        table = scratch[p, :n]
        low = np.int64(mins[p])
        high = low
        for k in range(n):
            if table[k] > high:
                high = table[k]
        span = high - low + 1
        if span <= _dense_span_limit(length):
            lookup = np.empty(span, dtype=np.uint32)
            for k in range(n):
                lookup[np.int64(table[k]) - low] = k
            for i in range(length):
                ranks[p, i] = lookup[np.int64(row[i]) - low]
        else:
            by_value = np.argsort(table, kind="mergesort")
            sorted_values = table[by_value]
            for i in range(length):
                ranks[p, i] = by_value[np.searchsorted(sorted_values, row[i])]


@njit(cache=True)
def _concatenate_tables(scratch, lengths, offsets, table_values):
    for p in range(lengths.shape[0]):
        start = offsets[p]
        for k in range(lengths[p]):
            table_values[start + k] = scratch[p, k]


@njit(cache=True, parallel=True)
def _ranks_to_values(ranks, table_values, offsets, lengths, out):
    """value = table[rank]; returns a per-partition flag for out-of-range ranks."""
    n_parts, length = ranks.shape
    invalid = np.zeros(n_parts, dtype=np.uint8)
    for p in prange(n_parts):
        n = np.int64(lengths[p])
        start = offsets[p]
        for i in range(length):
            rank = np.int64(ranks[p, i])
            if rank >= n:
                invalid[p] = 1
                break
            out[p, i] = table_values[start + rank]
    return invalid


@njit(cache=True)
def _put_varint(buf, pos, value):
    while value >= 0x80:
        buf[pos] = (value & 0x7F) | 0x80
        value >>= 7
        pos += 1
    buf[pos] = value
    return pos + 1


@njit(cache=True)
def _pack_varints(table_values, table_lengths, buf):
    pos = 0
    for p in range(table_lengths.shape[0]):
        pos = _put_varint(buf, pos, np.int64(table_lengths[p]))
    for k in range(table_values.shape[0]):
        v = np.int64(table_values[k])
        # Zigzag: small magnitudes of either sign become small unsigned numbers.
        zigzag = 2 * v if v >= 0 else -2 * v - 1
        pos = _put_varint(buf, pos, zigzag)
    return pos


# Status codes from the varint readers (turned into messages by unpack_tables).
_OK, _TRUNCATED, _BAD_VARINT = 0, 1, 2


@njit(cache=True)
def _get_varints(buf, pos, out, max_value):
    """Read out.shape[0] varints from buf[pos:]; returns (status, new_pos)."""
    size = buf.shape[0]
    for k in range(out.shape[0]):
        value = np.int64(0)
        shift = 0
        while True:
            if pos >= size:
                return _TRUNCATED, pos
            byte = np.int64(buf[pos])
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 28:  # 5 bytes hold every 32-bit value; more is garbage
                return _BAD_VARINT, pos
        if value > max_value:
            return _BAD_VARINT, pos
        out[k] = value
    return _OK, pos


@njit(cache=True)
def _unzigzag(codes, values):
    for k in range(codes.shape[0]):
        z = codes[k]
        values[k] = (z >> 1) if (z & 1) == 0 else -(z >> 1) - 1


# --------------------------------------------------------------------------- cupy

_HISTOGRAM_CUDA = r"""
extern "C" __global__
void rank_histogram(const int* values, const long long* slot_offsets, const int* mins,
                    unsigned int* counts, long long size, long long length) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    long long p = i / length;
    atomicAdd(counts + slot_offsets[p] + ((long long)values[i] - mins[p]), 1u);
}
"""

_REMAP_CUDA = r"""
extern "C" __global__
void rank_remap_NAME(const int* values, const long long* slot_offsets, const int* mins,
                     const RANK_T* lookup, RANK_T* ranks, long long size, long long length) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    long long p = i / length;
    ranks[i] = lookup[slot_offsets[p] + ((long long)values[i] - mins[p])];
}
"""

_GATHER_CUDA = r"""
extern "C" __global__
void rank_gather_NAME(const RANK_T* ranks, const long long* table_offsets,
                      const int* table_values, int* out, long long size, long long length) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    long long p = i / length;
    out[i] = table_values[table_offsets[p] + (long long)ranks[i]];
}
"""

_CUDA_RANK_TYPES = {np.dtype(np.uint16): ("u16", "unsigned short"), np.dtype(np.uint32): ("u32", "unsigned int")}

def _cuda_kernel(template, base_name, rank_dtype=None):
    """The kernel of `template` specialised for the rank dtype (uint16 or uint32 ranks)."""
    if rank_dtype is None:
        return cuda_kernel(base_name, template)
    suffix, c_type = _CUDA_RANK_TYPES[np.dtype(rank_dtype)]
    return cuda_kernel(f"{base_name}_{suffix}", template.replace("NAME", suffix).replace("RANK_T", c_type))


def _exclusive_cumsum(xp, counts):
    """[0, c0, c0+c1, ...] in int64 (length len(counts) + 1)."""
    return xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(counts, dtype=np.int64)])


def _encode_cupy(values):
    n_parts, length = values.shape
    if values.size == 0:
        return (
            cupy.zeros((n_parts, length), dtype=np.uint16),
            cupy.zeros(0, dtype=np.int32),
            cupy.zeros(n_parts, dtype=np.int32),
        )
    mins = values.min(axis=1)
    spans = cupy.asnumpy(values.max(axis=1).astype(np.int64) - mins.astype(np.int64) + 1)
    max_span = int(spans.max())
    dense_ok = (
        max_span <= _DENSE_SPAN_FACTOR * length + _DENSE_SPAN_SLACK
        and length < 2**32  # uint32 histogram counters
        and n_parts * (length + 1) * max_span < 2**62  # sort key below must fit int64
    )
    if not dense_ok:
        # Wide spans only come from hostile or unusual data: use the CPU path
        # (identical results) rather than a second GPU algorithm.
        ranks, table_values, table_lengths = _encode_numba(cupy.asnumpy(values))
        return cupy.asarray(ranks), cupy.asarray(table_values), cupy.asarray(table_lengths)

    slot_offsets_host = _exclusive_cumsum(np, spans)
    n_slots = int(slot_offsets_host[-1])
    slot_offsets = cupy.asarray(slot_offsets_host[:-1])
    counts = cupy.zeros(n_slots, dtype=cupy.uint32)
    launch_elementwise(
        _cuda_kernel(_HISTOGRAM_CUDA, "rank_histogram"),
        values.size,
        (values, slot_offsets, mins, counts, np.int64(values.size), np.int64(length)),
    )

    # Every occupied slot is one (partition, value) table entry, already in
    # partition-then-value order; sort by (partition, count desc, value asc).
    occupied = cupy.flatnonzero(counts)
    part = cupy.searchsorted(slot_offsets, occupied, side="right") - 1
    value_offset = occupied - slot_offsets[part]
    entry_counts = counts[occupied].astype(np.int64)
    key = (part * (length + 1) + (length - entry_counts)) * max_span + value_offset
    order = cupy.argsort(key)

    sorted_part = part[order]
    table_values = (value_offset[order] + mins[sorted_part].astype(np.int64)).astype(np.int32)
    table_lengths = cupy.bincount(part, minlength=n_parts).astype(np.int32)
    table_offsets = _exclusive_cumsum(cupy, table_lengths.astype(np.int64))
    rank_dtype = np.uint16 if int(table_lengths.max()) <= _UINT16_TABLE_LIMIT else np.uint32
    ranks_in_order = cupy.arange(order.size, dtype=np.int64) - table_offsets[sorted_part]
    lookup = cupy.zeros(n_slots, dtype=rank_dtype)
    lookup[occupied[order]] = ranks_in_order.astype(rank_dtype)

    ranks = cupy.empty((n_parts, length), dtype=rank_dtype)
    launch_elementwise(
        _cuda_kernel(_REMAP_CUDA, "rank_remap", rank_dtype),
        values.size,
        (values, slot_offsets, mins, lookup, ranks, np.int64(values.size), np.int64(length)),
    )
    return ranks, table_values, table_lengths


def _decode_cupy(ranks, table_values, table_lengths):
    n_parts, length = ranks.shape
    lengths_host = cupy.asnumpy(table_lengths).astype(np.int64)
    _check_tables(lengths_host, table_values.shape[0], n_parts)
    out = cupy.empty((n_parts, length), dtype=np.int32)
    if ranks.size == 0:
        return out
    if bool((ranks.max(axis=1).astype(np.int64) >= cupy.asarray(lengths_host)).any()):
        raise TezipError("corrupt rank data: a rank is beyond its partition's table")
    table_offsets = cupy.asarray(_exclusive_cumsum(np, lengths_host)[:-1])
    launch_elementwise(
        _cuda_kernel(_GATHER_CUDA, "rank_gather", ranks.dtype),
        ranks.size,
        (ranks, table_offsets, table_values, out, np.int64(ranks.size), np.int64(length)),
    )
    return out


# --------------------------------------------------------------------------- API


def _encode_numba(values):
    n_parts, length = values.shape
    scratch = np.empty((n_parts, length), dtype=np.int32)
    lengths = np.empty(n_parts, dtype=np.int32)
    mins = np.empty(n_parts, dtype=np.int32)
    _build_tables(values, scratch, lengths, mins)
    rank_dtype = np.uint16 if (n_parts == 0 or int(lengths.max()) <= _UINT16_TABLE_LIMIT) else np.uint32
    ranks = np.empty((n_parts, length), dtype=rank_dtype)
    _remap_to_ranks(values, scratch, lengths, mins, ranks)
    offsets = _exclusive_cumsum(np, lengths.astype(np.int64))
    table_values = np.empty(int(offsets[-1]), dtype=np.int32)
    _concatenate_tables(scratch, lengths, offsets, table_values)
    return ranks, table_values, lengths


def _check_tables(lengths, n_values, n_parts):
    """Validate per-partition table lengths (int64 numpy) against the table data."""
    if lengths.shape != (n_parts,):
        raise TezipError(f"corrupt rank tables: {lengths.shape[0]} table lengths for {n_parts} partitions")
    if n_parts and int(lengths.min()) < 0:
        raise TezipError("corrupt rank tables: negative table length")
    if int(lengths.sum()) != n_values:
        raise TezipError(f"corrupt rank tables: lengths add up to {int(lengths.sum())}, table holds {n_values}")


def _check_decode_inputs(ranks, table_values, table_lengths):
    if ranks.ndim != 2:
        raise TezipError(f"corrupt rank data: expected a 2-D array, got shape {ranks.shape}")
    if ranks.dtype not in (np.uint16, np.uint32):
        raise TezipError(f"corrupt rank data: expected uint16 or uint32 ranks, got {ranks.dtype}")
    if table_values.ndim != 1 or table_lengths.ndim != 1:
        raise TezipError("corrupt rank tables: expected 1-D table arrays")
    if table_values.dtype.kind not in "iu" or table_lengths.dtype.kind not in "iu":
        raise TezipError("corrupt rank tables: expected integer table arrays")


class RankCoder(Codec):
    """Partitioned frequency-rank coding of int32 (P, L) arrays; numpy or cupy in, same kind out."""

    codec_id = "freqrank"

    def encode(self, values):
        """Return (ranks (P, L) uint16/uint32, table_values int32, table_lengths int32 (P,))."""
        if values.ndim != 2:
            raise ValueError(f"rank coding expects a (partitions, length) array, got shape {values.shape}")
        if is_cupy_array(values):
            return _encode_cupy(cupy.ascontiguousarray(values, dtype=np.int32))
        return _encode_numba(np.ascontiguousarray(values, dtype=np.int32))

    def decode(self, ranks, table_values, table_lengths):
        """Map ranks back to values: int32 (P, L).  Corrupt input raises TezipError."""
        _check_decode_inputs(ranks, table_values, table_lengths)
        if is_cupy_array(ranks):
            return _decode_cupy(
                cupy.ascontiguousarray(ranks),
                cupy.ascontiguousarray(cupy.asarray(table_values), dtype=np.int32),
                cupy.asarray(table_lengths),
            )
        ranks = np.ascontiguousarray(ranks)
        table_values = np.ascontiguousarray(table_values, dtype=np.int32)
        lengths = np.asarray(table_lengths).astype(np.int64)
        n_parts, length = ranks.shape
        _check_tables(lengths, table_values.shape[0], n_parts)
        out = np.empty((n_parts, length), dtype=np.int32)
        if ranks.size == 0:
            return out
        offsets = _exclusive_cumsum(np, lengths)
        if _ranks_to_values(ranks, table_values, offsets, lengths, out).any():
            raise TezipError("corrupt rank data: a rank is beyond its partition's table")
        return out


def pack_tables(table_values, table_lengths):
    """Serialise rank tables: P varint lengths, then zigzag varint values (small values take one byte)."""
    if is_cupy_array(table_values):
        table_values = cupy.asnumpy(table_values)
    if is_cupy_array(table_lengths):
        table_lengths = cupy.asnumpy(table_lengths)
    values = np.ascontiguousarray(table_values, dtype=np.int32)
    lengths = np.ascontiguousarray(table_lengths, dtype=np.int64)
    if values.ndim != 1 or lengths.ndim != 1:
        raise ValueError("table_values and table_lengths must be 1-D")
    if lengths.size and (lengths.min() < 0 or lengths.max() > 2**31 - 1):
        raise ValueError("table lengths must be in [0, 2**31 - 1]")
    if int(lengths.sum()) != values.size:
        raise ValueError("table lengths must add up to the number of table values")
    buf = np.empty(5 * (values.size + lengths.size), dtype=np.uint8)
    used = _pack_varints(values, lengths, buf)
    return buf[:used].tobytes()


def unpack_tables(buf, n_partitions):
    """Inverse of pack_tables: returns (table_values int32, table_lengths int32 (n_partitions,))."""
    data = np.frombuffer(buf, dtype=np.uint8)
    n_partitions = int(n_partitions)
    if n_partitions < 0:
        raise TezipError("corrupt rank tables: negative partition count")
    # Every varint takes at least one byte, which bounds every allocation below
    # by the buffer size, whatever the (possibly hostile) header claims.
    if n_partitions > data.size:
        raise TezipError("corrupt rank tables: data truncated")
    lengths = np.empty(n_partitions, dtype=np.int64)
    status, pos = _get_varints(data, 0, lengths, 2**31 - 1)
    _raise_for_status(status)
    n_values = int(lengths.sum())
    if n_values > data.size - pos:
        raise TezipError("corrupt rank tables: data truncated")
    codes = np.empty(n_values, dtype=np.int64)
    status, pos = _get_varints(data, pos, codes, 2**32 - 1)
    _raise_for_status(status)
    if pos != data.size:
        raise TezipError(f"corrupt rank tables: {data.size - pos} unexpected trailing bytes")
    values = np.empty(n_values, dtype=np.int32)
    _unzigzag(codes, values)
    return values, lengths.astype(np.int32)


def _raise_for_status(status):
    if status == _TRUNCATED:
        raise TezipError("corrupt rank tables: data truncated")
    if status == _BAD_VARINT:
        raise TezipError("corrupt rank tables: malformed number")


class ZigZagCoder(Codec):
    """Signed int32 → unsigned (0, -1, 1, -2, … → 0, 1, 2, 3, …): the `-n` path's stage in place of
    rank coding. Small magnitudes of either sign become small unsigned values, whose high bytes are
    zero — which the byte-plane shuffle before zstd needs (two's complement fills them with 0xFF)."""

    codec_id = "zigzag"

    def encode(self, values):
        xp = cupy if is_cupy_array(values) else np
        v = xp.asarray(values, dtype=np.int32)
        u = ((v << 1) ^ (v >> 31)).view(np.uint32)
        narrow = u.size == 0 or int(u.max()) <= 0xFFFF
        return u.astype(np.uint16) if narrow else u

    def decode(self, codes):
        if codes.dtype not in (np.uint16, np.uint32):
            raise TezipError(f"corrupt zigzag data: expected uint16 or uint32, got {codes.dtype}")
        u = codes.astype(np.uint32)
        return ((u >> 1).view(np.int32) ^ -(u & 1).view(np.int32)).astype(np.int32)
