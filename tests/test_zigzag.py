"""zigzag: signed codes → small unsigned ones for `-n`'s byte-shuffled zstd. (Config, round trips,
CuPy = numpy: test_stages.py, for every stage.)"""

import numpy as np
import pytest

from base.errors import TezipError
from stages.zigzag import ZigZagCoder
from stages.zstd import ZstdCodec


def test_zigzag_round_trip_and_small_magnitudes_stay_small():
    z = ZigZagCoder()
    v = np.array([[0, -1, 1, -2, 2, 300, -300]], np.int32)
    u = z.encode(v)
    assert u.dtype == np.uint16 and list(u[0]) == [0, 1, 2, 3, 4, 600, 599]
    np.testing.assert_array_equal(z.decode(u), v)
    wide = np.array([[np.iinfo(np.int32).min, np.iinfo(np.int32).max, -70000]], np.int32)
    assert z.encode(wide).dtype == np.uint32
    np.testing.assert_array_equal(z.decode(z.encode(wide)), wide)
    with pytest.raises(TezipError):
        z.decode(np.zeros((1, 2), np.int16))


def test_the_whole_array_decides_the_width():
    """uint16 only when every value of the array fits: a stack is one payload dtype (the archive
    records one), even when most frames alone would fit 16 bits."""
    z = ZigZagCoder()
    stack = np.zeros((3, 1, 2, 2), np.int32)
    stack[2, 0, 1, 1] = 40000
    assert z.encode(stack).dtype == np.uint32
    assert z.encode(stack[:2]).dtype == np.uint16
    assert z.encode(np.array([[32767, -32768]], np.int32)).dtype == np.uint16  # 65534, 65535
    assert z.encode(np.array([[32768]], np.int32)).dtype == np.uint32
    assert z.encode(np.zeros((0, 3), np.int32)).dtype == np.uint16
    np.testing.assert_array_equal(z.decode(z.encode(stack)), stack)
    assert ZigZagCoder.output_dtypes == ("uint16", "uint32")


def test_small_codes_shrink_the_shuffled_zstd_stream():
    """Why -n zigzags before zstd: two's complement fills the high bytes of small negative values
    with 0xFF; zigzagged they are zero, and the byte-shuffled planes of zeros cost almost nothing."""
    values = np.round(np.random.default_rng(0).laplace(0, 3, (3, 64, 64))).astype(np.int32)
    zstd = ZstdCodec(level=3)
    assert len(zstd.encode(ZigZagCoder().encode(values))) < 0.8 * len(zstd.encode(values))
