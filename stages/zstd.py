"""Lossless back end: byte-plane shuffle + zstd (the "zstd" codec), one frame per chunk.

Ranks and small residuals are mostly below 256, so in little-endian words the
high bytes are nearly all zero.  Grouping byte 0 of every item, then byte 1,
... ("shuffle") turns those into long zero stretches that zstd stores in a
few bytes, instead of interleaved zeros it has to model one by one.
"""

import numpy as np
import zstandard
from numba import njit

from base.errors import TezipError
from stages._codec import Codec

# Measured on delta+rank coded frame differences (benchmarks/bench_codec.py): level 9 is 4-10 %
# smaller than levels 1 and 3 and compresses at ~100 MB/s per thread; level 19 saves another ~10-11 %
# on residuals at ~3 MB/s, which is still small next to the model's prediction time, and decodes as
# fast. It is the default for everything zstd codes (the block choices, and all of `-n`).
DEFAULT_LEVEL = 19


# One contiguous pass per byte plane (rather than a small inner loop per item)
# lets the compiler vectorise; nogil lets the chain's threads (stages.chain)
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
    emits_bytes = True
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

    def check_chunk(self, buf, shape, dtype):
        """Before anything is allocated: does `buf`'s zstd frame declare exactly the bytes of a frame
        of `shape` and `dtype`?"""
        self._declared_size(buf, int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize)

    @staticmethod
    def _declared_size(buf, expected):
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

    def decode(self, buf, out):
        """Decompress exactly out.size items of out.dtype into `out` (the shape and dtype the archive
        header declares) and return it; anything else raises TezipError."""
        dtype, count = out.dtype, int(out.size)
        expected = count * dtype.itemsize
        self._declared_size(buf, expected)
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
            arr = np.frombuffer(raw, dtype=little_endian, count=count)
        np.copyto(out, arr.reshape(out.shape))
        return out
