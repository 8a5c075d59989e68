"""medquant: in-loop MED prediction + uniform quantization; every value within the tolerance. (Config,
stacks and frames, CuPy = numba: test_stages.py, for every stage.)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from base.errors import TezipError
from stages.med import MedCoder
from stages.medquant import MedQuantizer

planes = arrays(np.int32, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
                elements=st.integers(-70000, 70000))


@settings(max_examples=150, deadline=None)
@given(values=planes, tolerance=st.sampled_from([0, 1, 2, 3, 8, 100, 65535]))
def test_every_value_within_tolerance_and_decoder_rebuilds_the_same(values, tolerance):
    coder = MedQuantizer(tolerance)
    codes, rec = coder.quantize(values)
    assert codes.dtype == rec.dtype == np.int32 and codes.shape == values.shape
    assert np.abs(rec.astype(np.int64) - values).max() <= tolerance
    np.testing.assert_array_equal(coder.decode(codes), rec)


def test_tolerance_zero_is_lossless_med():
    values = np.random.default_rng(0).integers(-300, 300, (2, 17, 23), dtype=np.int32)
    codes, rec = MedQuantizer(0).quantize(values)
    np.testing.assert_array_equal(rec, values)
    np.testing.assert_array_equal(codes, MedCoder().encode(values))


def test_smooth_noisy_residuals_quantize_mostly_to_zero():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:64, 0:96]
    values = (20 * np.sin(x / 9.0) + 15 * np.cos(y / 7.0) + rng.normal(0, 1.5, (64, 96))).astype(np.int32)[None]
    codes, rec = MedQuantizer(4).quantize(values)
    assert np.abs(rec - values).max() <= 4
    assert np.mean(codes == 0) > 0.65
    # Quantizing first and predicting after leaves far more distinct symbols.
    assert len(np.unique(codes)) < len(np.unique(MedCoder().encode(values)))


@pytest.mark.parametrize("tolerance", [-1, 1.5, True, 2**31])
def test_bad_tolerance_refused(tolerance):
    with pytest.raises(TezipError, match="medquant tolerance"):
        MedQuantizer(tolerance)


def test_corrupt_codes_are_refused():
    codes = np.full((1, 4, 4), 2**31 - 1, np.int32)
    with pytest.raises(TezipError, match="corrupt medquant data"):
        MedQuantizer(1000).decode(codes)
    with pytest.raises(TezipError, match="corrupt medquant data"):
        MedQuantizer(1).decode(codes.astype(np.int64))


def test_encode_keeps_the_codes_only():
    values = np.random.default_rng(3).integers(-300, 300, (2, 3, 9, 11), dtype=np.int32)
    codes, rec = MedQuantizer(2).quantize(values)
    np.testing.assert_array_equal(MedQuantizer(2).encode(values), codes)
    np.testing.assert_array_equal(MedQuantizer(2).decode(codes), rec)
