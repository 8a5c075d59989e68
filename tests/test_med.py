"""MED (LOCO-I) prediction errors: the predictor, its borders, its range. (Config, round trips on
stacks and frames and CuPy = numba: test_stages.py, for every stage.)"""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import TezipError
from stages.med import SAFE_LIMIT, MedCoder

INT32 = np.iinfo(np.int32)


def reference_errors(values):
    """The documented predictor written out plainly (int64, vectorised over the interior)."""
    x = values.astype(np.int64)
    prediction = np.zeros_like(x)
    if x.size:
        prediction[:, 0, 1:] = x[:, 0, :-1]  # first row: left neighbour; (0, 0): 0
        prediction[:, 1:, 0] = x[:, :-1, 0]  # first column: the pixel above
        a, b, c = x[:, 1:, :-1], x[:, :-1, 1:], x[:, :-1, :-1]
        low, high = np.minimum(a, b), np.maximum(a, b)
        prediction[:, 1:, 1:] = np.where(c >= high, low, np.where(c <= low, high, a + b - c))
    return x - prediction


def check_round_trip(values):
    coder = MedCoder()
    errors = coder.encode(values)
    assert errors.dtype == np.int32 and errors.shape == values.shape
    np.testing.assert_array_equal(errors, reference_errors(values))
    decoded = coder.decode(errors)
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, values)


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        np.int32,
        # (min_side 1: planes with H or W = 0 hit a known bug, see test_empty_planes)
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=12),
        # The documented safe range: every error fits int32.
        elements=st.integers(-SAFE_LIMIT, SAFE_LIMIT - 1),
    )
)
def test_round_trip_random(values):
    check_round_trip(values)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.int32,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=10),
        elements=st.sampled_from([-SAFE_LIMIT, -SAFE_LIMIT + 1, -1, 0, 1, SAFE_LIMIT - 2, SAFE_LIMIT - 1]),
    )
)
def test_round_trip_safe_extremes(values):
    check_round_trip(values)


@settings(max_examples=100, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24)),
    slopes=st.tuples(st.floats(-40, 40), st.floats(-40, 40)),
    curvature=st.floats(-2, 2),
    offset=st.integers(-(2**20), 2**20),
    noise=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_smooth(shape, slopes, curvature, offset, noise, seed):
    p, h, w = shape
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    plane = offset + slopes[0] * i + slopes[1] * j + curvature * (i - h / 2) * (j - w / 2) / 8
    rng = np.random.default_rng(seed)
    values = np.rint(plane)[None] + rng.integers(-noise, noise + 1, size=(p, h, w))
    check_round_trip(values.astype(np.int32))


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 1, 17), (2, 17, 1), (1, 1, 300), (3, 300, 1), (1, 2, 2)])
def test_thin_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    values = rng.integers(-5000, 5000, size=shape).astype(np.int32)
    check_round_trip(values)
    errors = MedCoder().encode(values)
    if shape[1] == 1:  # one row: first differences along it
        np.testing.assert_array_equal(errors[:, 0, 1:], np.diff(values[:, 0, :].astype(np.int64), axis=1))
    if shape[2] == 1:  # one column: first differences down it
        np.testing.assert_array_equal(errors[:, 1:, 0], np.diff(values[:, :, 0].astype(np.int64), axis=1))
    np.testing.assert_array_equal(errors[:, 0, 0], values[:, 0, 0])


@pytest.mark.parametrize("shape", [
    (0, 4, 4),
    (2, 0, 4),
    (2, 4, 0),
])
def test_empty_planes(shape):
    values = np.zeros(shape, dtype=np.int32)
    assert MedCoder().encode(values).shape == shape
    assert MedCoder().decode(values).shape == shape


def test_median_edge_detector_cases():
    # Interior pixel (1, 1) with a = left, b = above, c = above-left.
    def error_at(a, b, c, x):
        values = np.array([[[0, b], [a, x]]], dtype=np.int32)
        values[0, 0, 0] = c
        return int(MedCoder().encode(values)[0, 1, 1])

    assert error_at(a=10, b=20, c=25, x=10) == 0  # c >= max -> min(a, b)
    assert error_at(a=10, b=20, c=5, x=20) == 0  # c <= min -> max(a, b)
    assert error_at(a=10, b=20, c=12, x=18) == 0  # otherwise a + b - c
    assert error_at(a=10, b=20, c=20, x=10) == 0  # c == max counts as an edge
    assert error_at(a=7, b=7, c=7, x=9) == 2


def test_planes_are_independent():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 256, size=(4, 20, 30)).astype(np.int32)
    coder = MedCoder()
    together = coder.encode(values)
    for p in range(values.shape[0]):
        np.testing.assert_array_equal(together[p], coder.encode(values[p : p + 1])[0])


def test_errors_beyond_safe_range_still_round_trip_when_they_fit():
    values = np.array([[[INT32.max, INT32.max], [INT32.max, INT32.max - 1]]], dtype=np.int32)
    check_round_trip(values)


def test_encode_refuses_errors_beyond_int32():
    with pytest.raises(TezipError):
        MedCoder().encode(np.array([[[INT32.min, INT32.max]]], dtype=np.int32))  # first row
    with pytest.raises(TezipError):
        MedCoder().encode(np.array([[[INT32.max], [INT32.min]]], dtype=np.int32))  # first column
    interior = np.array([[[0, INT32.max], [INT32.min, INT32.max]]], dtype=np.int32)
    with pytest.raises(TezipError):  # prediction INT32.min, error INT32.max - INT32.min
        MedCoder().encode(interior)


@pytest.mark.parametrize(
    "errors",
    [
        [[[INT32.max, 1]]],  # first row
        [[[INT32.min], [-1]]],  # first column
        [[[0, INT32.max], [0, 1]]],  # interior: prediction INT32.max, + 1
        [[[0, 0], [0, 0]], [[INT32.max, INT32.max], [0, 0]]],  # second plane only
    ],
)
def test_decode_rejects_overflow_as_corrupt(errors):
    with pytest.raises(TezipError, match="corrupt"):
        MedCoder().decode(np.array(errors, dtype=np.int32))


def test_decode_rejects_wrong_shape_or_dtype():
    with pytest.raises(TezipError):
        MedCoder().decode(np.zeros(5, dtype=np.int32))
    with pytest.raises(TezipError):
        MedCoder().decode(np.zeros((1, 4, 5), dtype=np.int64))
    with pytest.raises(TezipError):
        MedCoder().encode(np.zeros(5, dtype=np.int32))


def test_any_leading_axes_are_planes():
    """(H, W), (P, H, W), (F, C, H, W): every (H, W) plane is coded on its own, the same way."""
    rng = np.random.default_rng(2)
    stack = rng.integers(-500, 500, size=(2, 3, 7, 9)).astype(np.int32)
    errors = MedCoder().encode(stack)
    assert errors.shape == stack.shape
    np.testing.assert_array_equal(errors.reshape(6, 7, 9), MedCoder().encode(stack.reshape(6, 7, 9)))
    np.testing.assert_array_equal(MedCoder().encode(stack[1, 2]), errors[1, 2])
    np.testing.assert_array_equal(MedCoder().decode(errors), stack)
    np.testing.assert_array_equal(MedCoder().decode(errors[0, 1]), stack[0, 1])


def test_smooth_gradient_errors_are_mostly_zero():
    """Measured: on a slowly varying image MED leaves ~80% zeros, more than row differences."""
    i, j = np.meshgrid(np.arange(96), np.arange(128), indexing="ij")
    image = np.rint(50 + 0.2 * i + 0.3 * j).astype(np.int32)[None]
    errors = MedCoder().encode(image)
    zero_fraction = np.mean(errors == 0)
    row_difference_zeros = np.mean(np.diff(image, axis=2) == 0)
    assert zero_fraction > 0.75
    assert zero_fraction > row_difference_zeros
    assert np.abs(errors[:, 1:, 1:]).max() <= 1
    # A gradient along one axis only (or along opposite-signed axes) is predicted exactly.
    for slopes in [(3, 0), (0, 5), (3, -2)]:
        ramp = (slopes[0] * i + slopes[1] * j).astype(np.int32)[None]
        assert not MedCoder().encode(ramp)[:, 1:, 1:].any()
