"""The reversible colour transform: the documented differences, extra channels, gray frames.
(Config, round trips on stacks and frames, extremes and CuPy = numba: test_stages.py.)"""

import numpy as np
import pytest

from base.errors import TezipError
from stages.rct import ColourTransform


def test_chain_and_gsub_are_the_documented_differences():
    x = np.random.default_rng(0).integers(0, 65536, (2, 4, 5, 6)).astype(np.int32)  # RGBA stack
    r, g, b, a = (x[:, c].astype(np.int64) for c in range(4))
    for transform, planes in (("chain", (b, g - b, r - g)), ("gsub", (g, b - g, r - g))):
        y = ColourTransform(transform).encode(x)
        np.testing.assert_array_equal(y, np.stack(planes + (a,), axis=1))
        np.testing.assert_array_equal(ColourTransform(transform).decode(y), x)


def test_fewer_than_three_channels_pass_through():
    x = np.arange(2 * 5 * 7, dtype=np.int32).reshape(2, 5, 7)
    np.testing.assert_array_equal(ColourTransform().encode(x), x)
    np.testing.assert_array_equal(ColourTransform().decode(x), x)


def test_overflow_is_refused_either_way():
    x = np.array([[[2**31 - 1]], [[-(2**31)]], [[0]]], np.int32)
    with pytest.raises(TezipError, match="too far apart"):
        ColourTransform().encode(x)
    with pytest.raises(TezipError, match="corrupt rct data"):
        ColourTransform().decode(np.array([[[0]], [[2**31 - 1]], [[2**31 - 1]]], np.int32))


def test_unknown_transform_is_refused():
    with pytest.raises(TezipError):
        ColourTransform("ycocg")
