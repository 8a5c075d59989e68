"""Lossless back end: byte-plane shuffle + zstd (the "zstd" codec).

Ranks and small residuals are mostly below 256, so in little-endian words the
high bytes are nearly all zero.  Grouping byte 0 of every item, then byte 1,
... ("shuffle") turns those into long zero stretches that zstd stores in a
few bytes, instead of interleaved zeros it has to model one by one.
"""

import numpy as np
import zstandard
from numba import njit

from compress.codec import Codec, map_in_threads
from compress.errors import TezipError

# Measured on delta+rank coded frame differences (benchmarks/bench_codec.py):
# level 9 is 4-10% smaller than levels 1 and 3 (1 is both smaller and faster
# than 3 on this data) and compresses at ~100 MB/s per thread, which is
# negligible next to the network's prediction time; decompression speed is
# the same for every level.  Level 19 saves another ~10% but runs at ~3 MB/s.
DEFAULT_LEVEL = 9


# One contiguous pass per byte plane (rather than a small inner loop per item)
# lets the compiler vectorise; nogil lets encode_many/decode_many threads
# shuffle in parallel too.
@njit(cache=True, nogil=True)
def _shuffle_words(words, planes):
    """words: unsigned items -> planes[k] = byte k of every item."""
    for k in range(planes.shape[0]):
        shift = 8 * k
        plane = planes[k]
        for i in range(words.shape[0]):
            plane[i] = (np.uint64(words[i]) >> shift) & 0xFF


@njit(cache=True, nogil=True)
def _unshuffle_words(planes, words):
    """Inverse of _shuffle_words; `words` must start zeroed."""
    for k in range(planes.shape[0]):
        shift = 8 * k
        plane = planes[k]
        for i in range(words.shape[0]):
            words[i] |= np.uint64(plane[i]) << shift


def _unsigned_view(arr):
    return arr.view(np.dtype(f"<u{arr.dtype.itemsize}"))


def _shuffle(arr):
    """Bytes of `arr` (flat, contiguous, little-endian) as byte planes: all byte-0s, then all byte-1s, ..."""
    itemsize = arr.dtype.itemsize
    if itemsize not in (2, 4, 8):  # e.g. complex128: no unsigned view, use numpy's transpose
        return np.ascontiguousarray(arr.view(np.uint8).reshape(arr.size, itemsize).T)
    planes = np.empty((itemsize, arr.size), dtype=np.uint8)
    _shuffle_words(_unsigned_view(arr), planes)
    return planes


def _unshuffle(raw, dtype, count):
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, count)
    if dtype.itemsize not in (2, 4, 8):
        return np.ascontiguousarray(planes.T).view(dtype).reshape(count)
    items = np.zeros(count, dtype=dtype)
    _unshuffle_words(planes, _unsigned_view(items))
    return items


class ZstdCodec(Codec):
    """zstd compression of flat numeric arrays, optionally byte-shuffled first.

    Each call compresses one chunk independently and single-threaded, so the
    bytes depend only on the data, the level and the shuffle flag.
    """

    codec_id = "zstd"
    config_keys = ("level", "shuffle")

    def __init__(self, level=DEFAULT_LEVEL, shuffle=True):
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
            raise TezipError(f"zstd level must be an integer, got {level!r}")
        if not -(1 << 17) <= int(level) <= zstandard.MAX_COMPRESSION_LEVEL:
            raise TezipError(
                f"zstd level must be between {-(1 << 17)} and {zstandard.MAX_COMPRESSION_LEVEL}, got {level}"
            )
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TezipError(f"zstd shuffle flag must be true or false, got {shuffle!r}")
        self.level = int(level)
        self.shuffle = bool(shuffle)

    def encode(self, arr):
        """Compress an array's items (flattened, little-endian) into one zstd frame."""
        arr = np.asarray(arr)
        little_endian = arr.dtype.newbyteorder("<")
        arr = np.ascontiguousarray(arr, dtype=little_endian).reshape(-1)
        if self.shuffle and arr.dtype.itemsize > 1:
            raw = _shuffle(arr)
        else:
            raw = arr.view(np.uint8)
        # A fresh compressor per chunk: contexts are not thread-safe, and
        # threads=0 keeps zstd single-threaded so output never depends on
        # how many workers ran.
        compressor = zstandard.ZstdCompressor(
            level=self.level, write_content_size=True, write_checksum=True, threads=0
        )
        return compressor.compress(raw)

    def decode(self, buf, dtype, count):
        """Decompress exactly `count` items of `dtype`; anything else raises TezipError."""
        dtype = np.dtype(dtype)
        count = int(count)
        if count < 0:
            raise TezipError("corrupt zstd data: negative item count")
        expected = count * dtype.itemsize
        try:
            declared = zstandard.frame_content_size(buf)
        except zstandard.ZstdError:
            raise TezipError("corrupt zstd data: bad frame header") from None
        if declared == zstandard.CONTENTSIZE_UNKNOWN:
            raise TezipError("corrupt zstd data: frame does not declare its size")
        # Checked before decompressing so a hostile header can never make us
        # allocate more than the caller's declared size.
        if declared != expected:
            raise TezipError(f"corrupt zstd data: frame holds {declared} bytes, expected {expected}")
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        try:
            raw = decompressor.decompress(buf)
        except zstandard.ZstdError:
            raise TezipError("corrupt zstd data: decompression failed") from None
        if not decompressor.eof:
            raise TezipError("corrupt zstd data: truncated frame")
        if decompressor.unused_data:
            raise TezipError("corrupt zstd data: unexpected bytes after the frame")
        if len(raw) != expected:
            raise TezipError(f"corrupt zstd data: got {len(raw)} bytes, expected {expected}")
        little_endian = dtype.newbyteorder("<")
        if self.shuffle and dtype.itemsize > 1:
            arr = _unshuffle(raw, little_endian, count)
        else:
            arr = np.frombuffer(raw, dtype=little_endian, count=count).copy()
        return arr.astype(dtype, copy=False)

    def encode_many(self, arrays, threads=1):
        """Compress each array as its own frame, `threads` at a time; bytes are thread-count independent."""
        return map_in_threads(self.encode, arrays, threads)

    def decode_many(self, bufs, dtype, counts, threads=1):
        """Inverse of encode_many: one array of `counts[i]` items per buffer."""
        bufs = list(bufs)
        counts = list(counts)
        if len(bufs) != len(counts):
            raise TezipError(f"corrupt zstd data: {len(bufs)} chunks but {len(counts)} chunk sizes")
        return map_in_threads(lambda job: self.decode(job[0], dtype, job[1]), zip(bufs, counts), threads)
