"""runmerge: residuals merged into runs along rows, each value within its pixel's tolerance.
(The stage contract — config, round trips, CuPy = numba — is checked for every stage in
test_stages.py; the bounds and tolerances themselves in test_bounds.py.)"""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import TezipError
from sequence.bounds import MODES, is_lossless, pixel_tolerances
from stages.runmerge import REPRESENTATIVES, RunMerge, quantize_residuals
from test_bounds import BOUNDS

MAX_VALUE = 255

# Pixel values biased toward the extremes so residuals of +-255 come up often.
pixel_values = st.one_of(st.sampled_from([0, 255]), st.integers(0, 255))


@st.composite
def frames_and_predictions(draw):
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 5)),
        draw(st.integers(1, 40)),
    )
    frames = draw(hnp.arrays(np.uint8, shape, elements=pixel_values))
    if draw(st.booleans()):
        # Smooth content: a ramp plus small noise, where runs really merge.
        ramp = np.linspace(0, draw(st.integers(0, 255)), shape[-1])
        noise = draw(hnp.arrays(np.int8, shape, elements=st.integers(-2, 2)))
        frames = np.clip(ramp + noise, 0, 255).astype(np.uint8)
    predictions = draw(hnp.arrays(np.int32, shape, elements=pixel_values))
    return frames, predictions


def float_bound(frames, mode, bounds):
    """The real (float) per-pixel error bound the user asked for."""
    x = frames.astype(np.float64)
    value_range = x.max(axis=(-2, -1), keepdims=True) - x.min(axis=(-2, -1), keepdims=True)
    if mode == "abs":
        allowed = np.full(x.shape, bounds[0])
    elif mode == "rel":
        allowed = bounds[0] * value_range
    elif mode == "absrel":
        allowed = np.minimum(bounds[0], bounds[1] * value_range)
    else:
        allowed = bounds[0] * np.abs(x)
    return np.broadcast_to(allowed, x.shape)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("representative", REPRESENTATIVES)
@settings(max_examples=60, deadline=None)
@given(data=frames_and_predictions(), choice=st.data())
def test_decoded_pixels_stay_within_the_error_bound(mode, representative, data, choice):
    frames, predictions = data
    bounds = choice.draw(st.sampled_from(BOUNDS[mode]))
    residuals = frames.astype(np.int32) - predictions
    tolerances = pixel_tolerances(frames, mode, bounds, MAX_VALUE)
    allowed = float_bound(frames, mode, bounds)
    assert tolerances.dtype == np.int32 and tolerances.shape == frames.shape
    assert (tolerances >= 0).all() and (tolerances <= MAX_VALUE).all()
    assert (tolerances <= allowed).all()

    quantized = quantize_residuals(residuals, tolerances, representative)
    assert quantized.dtype == np.int32 and quantized.shape == frames.shape
    assert (np.abs(quantized - residuals) <= tolerances).all()
    decoded = np.clip(predictions + quantized, 0, MAX_VALUE)
    assert (np.abs(decoded - frames.astype(np.int64)) <= allowed).all()
    if is_lossless(mode, bounds):
        assert (tolerances == 0).all()
        np.testing.assert_array_equal(quantized, residuals)


@settings(max_examples=100, deadline=None)
@given(
    residuals=hnp.arrays(np.int32, (3, 17), elements=st.integers(-(2**31), 2**31 - 1)),
    tolerances=hnp.arrays(np.int32, (3, 17), elements=st.integers(0, 2**31 - 1)),
    representative=st.sampled_from(REPRESENTATIVES),
)
def test_guarantee_holds_at_int32_extremes(residuals, tolerances, representative):
    quantized = quantize_residuals(residuals, tolerances, representative)
    assert (np.abs(quantized.astype(np.int64) - residuals) <= tolerances).all()


def test_lossless_tolerances_leave_residuals_unchanged():
    rng = np.random.default_rng(1)
    residuals = rng.integers(-255, 256, (2, 3, 8, 50)).astype(np.int32)
    for representative in REPRESENTATIVES:
        quantized = quantize_residuals(residuals, np.zeros_like(residuals), representative)
        np.testing.assert_array_equal(quantized, residuals)


def run_count(rows):
    return int(np.count_nonzero(np.diff(rows, axis=-1))) + rows.size // rows.shape[-1]


def test_smooth_rows_merge_into_few_runs():
    ramp = np.arange(64, dtype=np.int32)[None, :]
    tolerances = np.full(ramp.shape, 2, dtype=np.int32)
    for representative in REPRESENTATIVES:
        quantized = quantize_residuals(ramp, tolerances, representative)
        # [i-2, i+2] intervals of five consecutive values share exactly one
        # point, six do not: runs of five pixels, 13 of them over 64 pixels.
        assert run_count(quantized) == 13
        assert (np.abs(quantized - ramp) <= 2).all()


def test_representative_policies():
    residuals = np.array([[0, 0, 0, 10, 10, 10], [-3, -2, 9, 9, 9, 9]], dtype=np.int32)
    tolerances = np.array([[4] * 6, [1, 1, 0, 0, 0, 0]], dtype=np.int32)
    # Runs: [-4, 4] then [6, 14]; [-3, -2] then [9, 9].
    np.testing.assert_array_equal(
        quantize_residuals(residuals, tolerances, "nearest_previous"),
        [[0, 0, 0, 6, 6, 6], [-2, -2, 9, 9, 9, 9]],
    )
    np.testing.assert_array_equal(
        quantize_residuals(residuals, tolerances, "midpoint"),
        [[0, 0, 0, 10, 10, 10], [-3, -3, 9, 9, 9, 9]],  # floor(-2.5) == -3
    )


def test_nearest_previous_lets_consecutive_runs_share_a_value():
    residuals = np.array([[0, 6, 6, 12]], dtype=np.int32)
    tolerances = np.array([[3, 3, 3, 3]], dtype=np.int32)
    # [-3, 3] and [3, 9] meet only at 3, so the first run takes 3 (nearest to
    # the row's starting 0); the next run [9, 15] takes 9, the value nearest 3.
    np.testing.assert_array_equal(quantize_residuals(residuals, tolerances), [[3, 3, 3, 9]])


def test_runs_restart_on_every_row():
    rng = np.random.default_rng(2)
    residuals = rng.integers(-20, 21, (4, 3, 30)).astype(np.int32)
    tolerances = rng.integers(0, 6, residuals.shape).astype(np.int32)
    together = quantize_residuals(residuals, tolerances)
    for index in np.ndindex(residuals.shape[:-1]):
        alone = quantize_residuals(residuals[index][None], tolerances[index][None])
        np.testing.assert_array_equal(together[index], alone[0])


def test_quantize_rejects_bad_inputs():
    residuals = np.zeros((2, 3), dtype=np.int32)
    with pytest.raises(ValueError):
        quantize_residuals(residuals, np.zeros((2, 4), dtype=np.int32))
    with pytest.raises(ValueError):
        quantize_residuals(residuals, np.full((2, 3), -1, dtype=np.int32))
    with pytest.raises(ValueError):
        quantize_residuals(residuals, np.zeros((2, 3), dtype=np.int32), "mean")
    assert quantize_residuals(np.zeros((2, 0), np.int32), np.zeros((2, 0), np.int32)).shape == (2, 0)


def test_runmerge_quantize_returns_the_codes_twice_and_decode_is_the_identity():
    """The decoder adds q itself: the codes are the reconstruction."""
    residuals = np.array([[-3, -2, 9, 9]], dtype=np.int32)
    codes, rec = RunMerge("midpoint").quantize(residuals, np.array([[1, 1, 0, 0]], np.int32))
    np.testing.assert_array_equal(codes, [[-3, -3, 9, 9]])
    assert rec is codes
    assert RunMerge().decode(codes) is codes
    np.testing.assert_array_equal(RunMerge().quantize(residuals)[0], residuals)  # no tolerances: lossless


def test_unknown_representative_is_refused():
    with pytest.raises(TezipError, match="unknown representative policy 'mean'"):
        RunMerge("mean")
    with pytest.raises(TezipError):
        RunMerge.from_config({"id": "runmerge", "representative": "mean"})


# ---------------------------------------------------------------- CuPy kernels


# The `cp` fixture (CuPy with a CUDA device, else skip) lives in conftest.py; CuPy = numba on
# every stage, int32 extremes included, is test_stages.py's.


def test_cupy_rows_match_numba_and_refuse_negative_tolerances(cp):
    rng = np.random.default_rng(3)
    residuals = rng.integers(-4, 5, (5, 300)).astype(np.int32)  # 2-D: rows only
    tolerances = rng.integers(0, 3, (5, 300)).astype(np.int32)
    for representative in REPRESENTATIVES:
        got = quantize_residuals(cp.asarray(residuals), cp.asarray(tolerances), representative)
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(got), quantize_residuals(residuals, tolerances, representative))
    with pytest.raises(ValueError):
        quantize_residuals(cp.zeros((2, 3), np.int32), cp.full((2, 3), -1, np.int32))
