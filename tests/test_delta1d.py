"""delta1d: first differences along each frame. (Config, round trips on stacks and frames and
CuPy = numba: test_stages.py, for every stage.)"""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import TezipError
from stages.delta1d import DeltaCoder

INT32 = np.iinfo(np.int32)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        np.int32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
        # Half the int32 range: every difference still fits int32.
        elements=st.integers(-(2**30), 2**30 - 1),
    )
)
def test_round_trip(values):
    coder = DeltaCoder()
    differences = coder.encode(values)
    assert differences.dtype == np.int32 and differences.shape == values.shape
    if values.size:
        np.testing.assert_array_equal(differences[:, 0], values[:, 0])
        np.testing.assert_array_equal(differences[:, 1:], np.diff(values.astype(np.int64), axis=1))
    decoded = coder.decode(differences)
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, values)


def test_merged_runs_become_zeros():
    runs = np.repeat(np.array([[4, -3, -3, 7]], dtype=np.int32), 5, axis=1)
    differences = DeltaCoder().encode(runs)
    assert np.count_nonzero(differences) == 3  # first value plus two run changes (-3 repeats)
    np.testing.assert_array_equal(DeltaCoder().decode(differences), runs)


def test_partitions_are_independent():
    rng = np.random.default_rng(0)
    values = rng.integers(-500, 500, (6, 1000)).astype(np.int32)
    coder = DeltaCoder()
    together = coder.encode(values)
    for p in range(values.shape[0]):
        np.testing.assert_array_equal(together[p], coder.encode(values[p : p + 1])[0])


def test_extreme_values_that_fit_round_trip():
    values = np.array([[INT32.max, INT32.max, 0, -1, INT32.min + INT32.max]], dtype=np.int32)
    coder = DeltaCoder()
    np.testing.assert_array_equal(coder.decode(coder.encode(values)), values)


def test_encode_refuses_differences_beyond_int32():
    with pytest.raises(TezipError):
        DeltaCoder().encode(np.array([[0, 0], [INT32.min, INT32.max]], dtype=np.int32))


@pytest.mark.parametrize(
    "differences",
    [
        [[INT32.max, 1]],
        [[INT32.min, -1]],
        [[0, 0], [2**30, 2**30 + 1]],
        [[INT32.max, INT32.max, INT32.min, INT32.min]],  # leaves and re-enters the range
    ],
)
def test_decode_rejects_overflow_as_corrupt(differences):
    with pytest.raises(TezipError, match="corrupt"):
        DeltaCoder().decode(np.array(differences, dtype=np.int64).astype(np.int32))


def test_decode_rejects_wrong_shape_or_dtype():
    with pytest.raises(TezipError):
        DeltaCoder().decode(np.zeros(5, dtype=np.int32))
    with pytest.raises(TezipError):
        DeltaCoder().decode(np.zeros((1, 1, 2, 2, 5), dtype=np.int32))
    with pytest.raises(TezipError):
        DeltaCoder().decode(np.zeros((2, 5), dtype=np.int64))


def test_differences_run_along_each_frame_plane_after_plane():
    """A (C, H, W) frame is one row in C order; a (F, C, H, W) stack one row per frame."""
    frame = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) ** 2
    differences = DeltaCoder().encode(frame)
    np.testing.assert_array_equal(differences.reshape(-1), np.diff(frame.reshape(-1), prepend=0))
    stack = np.stack([frame, -frame])
    together = DeltaCoder().encode(stack)
    assert together.shape == stack.shape
    np.testing.assert_array_equal(together[0], differences)
    np.testing.assert_array_equal(together[1], -differences)
    np.testing.assert_array_equal(DeltaCoder().decode(together), stack)


def test_empty_inputs():
    coder = DeltaCoder()
    for shape in [(0, 0), (0, 5), (3, 0)]:
        empty = np.zeros(shape, dtype=np.int32)
        assert coder.encode(empty).shape == shape
        assert coder.decode(empty).shape == shape
