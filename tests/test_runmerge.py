import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import TezipError
from sequence.bounds import MODES, is_lossless, pixel_tolerances, validate_bounds
from stages.runmerge import REPRESENTATIVES, RunMerge, quantize_residuals

MAX_VALUE = 255

# Bounds per mode that exercise lossless, sub-integer, integer and
# beyond-the-range tolerances.
BOUNDS = {
    "abs": [(0,), (0.5,), (1,), (1.5,), (2,), (4,), (7.9,), (64,), (1000,)],
    "rel": [(0,), (0.001,), (0.01,), (0.033,), (0.1,), (0.5,), (1,), (3,)],
    "absrel": [(0, 0.1), (2, 0), (1, 0.01), (3, 0.02), (8, 0.5), (1000, 0.1), (0.5, 2)],
    "pwrel": [(0,), (0.01,), (0.1,), (0.25,), (0.5,), (1,), (2,)],
}

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


def test_quantizer_config_round_trip():
    for representative in REPRESENTATIVES:
        quantizer = RunMerge(representative)
        config = quantizer.get_config()
        assert config == {"id": "runmerge", "representative": representative}
        assert RunMerge.from_config(config) == quantizer
    residuals = np.array([[-3, -2]], dtype=np.int32)
    np.testing.assert_array_equal(RunMerge("midpoint").quantize(residuals, np.ones_like(residuals))[0], [[-3, -3]])
    for bad in [{"id": "zstd"}, {"id": "runmerge", "representative": "mean"}, {"id": "runmerge", "x": 1}, []]:
        with pytest.raises(TezipError):
            RunMerge.from_config(bad)


# ---------------------------------------------------------------- CuPy kernels


# The `cp` fixture (CuPy with a CUDA device, else skip) lives in conftest.py.


def test_cupy_quantizer_matches_numba(cp):
    rng = np.random.default_rng(3)
    cases = [
        (rng.integers(-255, 256, (2, 3, 16, 70)), rng.integers(0, 9, (2, 3, 16, 70))),
        (rng.integers(-4, 5, (5, 300)), rng.integers(0, 3, (5, 300))),
        (np.array([[-(2**31), 2**31 - 1, 0, -5]]), np.array([[2**31 - 1, 2**31 - 1, 3, 1]])),
        (np.array([[-3, -2, 9, 9]]), np.array([[1, 1, 0, 0]])),
    ]
    for residuals, tolerances in cases:
        residuals = residuals.astype(np.int32)
        tolerances = tolerances.astype(np.int32)
        for representative in REPRESENTATIVES:
            expected = quantize_residuals(residuals, tolerances, representative)
            got = quantize_residuals(cp.asarray(residuals), cp.asarray(tolerances), representative)
            assert isinstance(got, cp.ndarray)
            np.testing.assert_array_equal(cp.asnumpy(got), expected)
    with pytest.raises(ValueError):
        quantize_residuals(cp.zeros((2, 3), np.int32), cp.full((2, 3), -1, np.int32))


def test_cupy_tolerances_match_numpy(cp):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (2, 3, 9, 11)).astype(np.uint8)
    for mode in MODES:
        for bounds in BOUNDS[mode]:
            expected = pixel_tolerances(frames, mode, bounds, MAX_VALUE)
            got = pixel_tolerances(cp.asarray(frames), mode, bounds, MAX_VALUE)
            assert isinstance(got, cp.ndarray) and got.dtype == np.int32
            np.testing.assert_array_equal(cp.asnumpy(got), expected)
