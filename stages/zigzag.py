"""Zigzag mapping of signed residual codes to unsigned ones (the "zigzag" codec): the `-n` path's
entropy-shaping stage before byte-shuffled zstd. With entropy coding on, the context range coder
(stages/ctxrange.py) codes signed values directly and needs no mapping.
"""

import numpy as np

from base.errors import TezipError
from stages._codec import Codec, into
from stages._kernels import cupy, is_cupy_array


class ZigZagCoder(Codec):
    """Signed int32 → unsigned (0, -1, 1, -2, … → 0, 1, 2, 3, …): the `-n` path's stage before zstd.
    Small magnitudes of either sign become small unsigned values, whose high bytes are zero — which the byte-plane shuffle before zstd needs (two's complement fills them with 0xFF)."""

    codec_id = "zigzag"
    output_dtypes = ("uint16", "uint32")  # uint16 when every value of the array fits

    def encode(self, values):
        xp = cupy if is_cupy_array(values) else np
        v = xp.asarray(values, dtype=np.int32)
        u = ((v << 1) ^ (v >> 31)).view(np.uint32)
        narrow = u.size == 0 or int(u.max()) <= 0xFFFF
        return u.astype(np.uint16) if narrow else u

    def decode(self, codes, out=None):
        if codes.dtype not in (np.uint16, np.uint32):
            raise TezipError(f"corrupt zigzag data: expected uint16 or uint32, got {codes.dtype}")
        u = codes.astype(np.uint32)
        values = ((u >> 1).view(np.int32) ^ -(u & 1).view(np.int32)).astype(np.int32)
        return into(out, values)
