"""linquant: uniform bins of width 2t + 1 for residuals; every value within the tolerance. (Config,
stacks and frames, CuPy = numpy: test_stages.py, for every stage.)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from base.errors import TezipError
from stages.linquant import LinearQuantizer
from stages.medquant import MedQuantizer
from stages.ctxrange import ContextRangeCoder

residuals = arrays(np.int32, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
                   elements=st.integers(-(2**31) + 2**30, 2**31 - 1 - 2**30) | st.integers(-40, 40))


@settings(max_examples=150, deadline=None)
@given(values=residuals, tolerance=st.sampled_from([0, 1, 2, 3, 8, 100, 65535]))
def test_every_value_within_tolerance_and_decoder_rebuilds_the_same(values, tolerance):
    coder = LinearQuantizer(tolerance)
    codes, rec = coder.quantize(values)
    assert codes.dtype == rec.dtype == np.int32 and codes.shape == values.shape
    assert np.abs(rec.astype(np.int64) - values).max() <= tolerance
    np.testing.assert_array_equal(coder.decode(codes), rec)


def test_bins_are_centred_on_zero():
    codes, rec = LinearQuantizer(2).quantize(np.arange(-8, 9, dtype=np.int32))
    assert codes.tolist() == [-2, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    assert rec.tolist() == [-10, -5, -5, -5, -5, -5, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 10]


def test_tolerance_zero_is_the_identity():
    values = np.random.default_rng(0).integers(-300, 300, (2, 17, 23), dtype=np.int32)
    codes, rec = LinearQuantizer(0).quantize(values)
    np.testing.assert_array_equal(codes, values)
    np.testing.assert_array_equal(rec, values)


def test_noisy_residuals_cost_fewer_bytes_than_medquant_codes():
    """Why linquant is the default: on noise-like residuals the neighbours medquant predicts from
    carry quantization noise; the plain bins, context coded, come out smaller."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:96, 0:128]
    edges = (np.abs(np.sin(x / 11.0) * np.cos(y / 13.0)) > 0.8) * 12.0  # large where objects move
    values = np.round(rng.laplace(0, 1.0 + edges, (3, 96, 128))).astype(np.int32)
    coder = ContextRangeCoder()
    for tolerance in (2, 8):
        linear = coder.encode(LinearQuantizer(tolerance).encode(values))
        med = coder.encode(MedQuantizer(tolerance).encode(values))
        assert len(linear) < len(med)


@pytest.mark.parametrize("tolerance", [-1, 1.5, True, 2**31])
def test_bad_tolerance_refused(tolerance):
    with pytest.raises(TezipError, match="linquant tolerance"):
        LinearQuantizer(tolerance)


def test_corrupt_codes_are_refused():
    with pytest.raises(TezipError, match="corrupt linquant data"):
        LinearQuantizer(1000).decode(np.full((1, 4, 4), 2**31 - 1, np.int32))
    with pytest.raises(TezipError, match="corrupt linquant data"):
        LinearQuantizer(1).decode(np.zeros((1, 4, 4), np.int64))
