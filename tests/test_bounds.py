"""Error-bound modes (sequence/bounds.py): validating the bounds, and the integer tolerance each
pixel may move under them. Holding the bound through a quantizer: test_runmerge.py, test_stages.py."""

import math

import numpy as np
import pytest

from base.errors import TezipError
from sequence.bounds import MODES, is_lossless, pixel_tolerances, validate_bounds

MAX_VALUE = 255

# Bounds per mode that exercise lossless, sub-integer, integer and
# beyond-the-range tolerances.
BOUNDS = {
    "abs": [(0,), (0.5,), (1,), (1.5,), (2,), (4,), (7.9,), (64,), (1000,)],
    "rel": [(0,), (0.001,), (0.01,), (0.033,), (0.1,), (0.5,), (1,), (3,)],
    "absrel": [(0, 0.1), (2, 0), (1, 0.01), (3, 0.02), (8, 0.5), (1000, 0.1), (0.5, 2)],
    "pwrel": [(0,), (0.01,), (0.1,), (0.25,), (0.5,), (1,), (2,)],
}


def test_tolerances_are_floored_clipped_and_per_plane():
    frames = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    frames[0, 0] = [[10, 20, 30], [40, 50, 110]]  # range 100
    frames[0, 1] = [[0, 0, 0], [0, 0, 7]]  # range 7
    frames[1, 0] = 200  # range 0
    frames[1, 1] = [[0, 255, 0], [0, 0, 0]]  # range 255
    rel = pixel_tolerances(frames, "rel", [0.025], MAX_VALUE)
    np.testing.assert_array_equal(rel[:, :, 0, 0], [[2, 0], [0, 6]])  # floor(2.5), floor(0.175), 0, floor(6.375)
    assert (rel == rel[:, :, :1, :1]).all()  # one tolerance per channel plane
    absrel = pixel_tolerances(frames, "absrel", [3, 0.025], MAX_VALUE)
    np.testing.assert_array_equal(absrel[:, :, 0, 0], [[2, 0], [0, 3]])
    np.testing.assert_array_equal(pixel_tolerances(frames, "abs", [2.99], MAX_VALUE), np.full(frames.shape, 2))
    np.testing.assert_array_equal(pixel_tolerances(frames, "abs", [1e6], MAX_VALUE), np.full(frames.shape, 255))
    pwrel = pixel_tolerances(frames, "pwrel", [0.1], MAX_VALUE)
    np.testing.assert_array_equal(pwrel[0, 0], [[1, 2, 3], [4, 5, 11]])
    np.testing.assert_array_equal(pixel_tolerances(frames, "pwrel", [0], MAX_VALUE), np.zeros(frames.shape))


def test_tolerances_accept_wide_integer_frames():
    frames = np.array([[[[-(2**31), 2**31 - 1]]]], dtype=np.int32)
    t = pixel_tolerances(frames, "rel", [0.5], 65535)
    assert t.dtype == np.int32
    np.testing.assert_array_equal(t, [[[[65535, 65535]]]])
    np.testing.assert_array_equal(pixel_tolerances(frames, "pwrel", [1e-9], 65535), [[[[2, 2]]]])


def test_tolerances_keep_shape_and_dtype_and_refuse_bad_input():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5)).astype(np.uint8)
    for mode in MODES:
        for bounds in BOUNDS[mode]:
            t = pixel_tolerances(frames, mode, bounds, MAX_VALUE)
            assert t.dtype == np.int32 and t.shape == frames.shape
            assert (t >= 0).all() and (t <= MAX_VALUE).all()
            if is_lossless(mode, bounds):
                assert not t.any()
    with pytest.raises(TypeError):
        pixel_tolerances(frames.astype(np.float32), "abs", (1,), MAX_VALUE)
    with pytest.raises(ValueError):
        pixel_tolerances(frames, "abs", (1,), -1)
    assert pixel_tolerances(np.zeros((0, 3, 4, 5), np.uint8), "rel", (0.1,), MAX_VALUE).shape == (0, 3, 4, 5)


def test_validate_bounds_accepts_and_normalises():
    assert validate_bounds("abs", [1]) == (1.0,)
    assert validate_bounds("absrel", (2, 0.01)) == (2.0, 0.01)
    assert validate_bounds("pwrel", 0.1) == (0.1,)
    assert all(isinstance(b, float) for b in validate_bounds("rel", [np.int64(3)]))


@pytest.mark.parametrize(
    "mode, bounds, fragment",
    [
        ("lossy", [1], "abs, rel, absrel, pwrel"),
        ("abs", [], "got 0"),
        ("abs", [1, 2], "got 2"),
        ("rel", [0.1, 0.2], "got 2"),
        ("pwrel", [], "got 0"),
        ("absrel", [1], "got 1"),
        ("absrel", [1, 2, 3], "got 3"),
        ("abs", [-1], "negative"),
        ("absrel", [1, -0.1], "negative"),
        ("abs", [math.nan], "finite"),
        ("rel", [math.inf], "finite"),
        ("absrel", [-math.inf, 1], "finite"),
        ("abs", ["x"], "number"),
        ("abs", None, "list of numbers"),
    ],
)
def test_validate_bounds_errors(mode, bounds, fragment):
    with pytest.raises(TezipError) as info:
        validate_bounds(mode, bounds)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_is_lossless():
    assert is_lossless("abs", [0])
    assert not is_lossless("abs", [0.5])
    assert is_lossless("absrel", [0, 0.1])
    assert is_lossless("absrel", [2, 0])
    assert not is_lossless("absrel", [2, 0.1])
    assert is_lossless("pwrel", [0.0])
    with pytest.raises(TezipError):
        is_lossless("abs", [-1])


# ---------------------------------------------------------------- CuPy


# The `cp` fixture (CuPy with a CUDA device, else skip) lives in conftest.py.


def test_cupy_tolerances_match_numpy(cp):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (2, 3, 9, 11)).astype(np.uint8)
    for mode in MODES:
        for bounds in BOUNDS[mode]:
            expected = pixel_tolerances(frames, mode, bounds, MAX_VALUE)
            got = pixel_tolerances(cp.asarray(frames), mode, bounds, MAX_VALUE)
            assert isinstance(got, cp.ndarray) and got.dtype == np.int32
            np.testing.assert_array_equal(cp.asnumpy(got), expected)
