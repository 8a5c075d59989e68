"""The context range coder (stages/ctxrange.py): sizes against `-n`'s zigzag + zstd, its contexts, its
rates, its corrupt-input behaviour. (Config, round trips, garbage and truncation for every byte coder:
test_stages.py; thread counts: test_chain.py; zigzag: test_zigzag.py.)"""

from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from PIL import Image
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import TezipError
from stages.ctxrange import ContextRangeCoder
from stages.zigzag import ZigZagCoder
from stages.zstd import ZstdCodec

INT32 = np.iinfo(np.int32)


DEV_FRAMES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "megamind"


def sample_residuals(n=4):
    """Real residual-like codes: MED-predicted differences between consecutive dev frames (360×264)."""
    from stages.med import MedCoder

    paths = sorted(DEV_FRAMES.glob("*.png"))[200 : 200 + n + 1]
    if len(paths) < n + 1:
        pytest.skip(f"the dev frames are not at {DEV_FRAMES}")
    frames = np.stack([np.asarray(Image.open(p).convert("RGB"), np.int32).transpose(2, 0, 1) for p in paths])
    diffs = frames[1:] - frames[:-1]
    return MedCoder().encode(diffs.reshape((-1,) + diffs.shape[2:])).reshape(diffs.shape)


def laplacian_planes(shape, scale, seed, zero_fraction=0.0):
    """Residual-like codes: a smooth activity map times Laplacian noise, with some exact zeros."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    activity = 0.2 + (np.sin(xx / 5.0) * np.cos(yy / 7.0)) ** 2
    values = np.round(rng.laplace(0, scale, shape) * activity)
    values[rng.random(shape) < zero_fraction] = 0
    return values.astype(np.int32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
                  elements=st.integers(INT32.min, INT32.max) | st.integers(-3, 3)))
def test_round_trip_any_int32_planes(values):
    coder = ContextRangeCoder()
    np.testing.assert_array_equal(coder.decode(coder.encode(values), np.empty(values.shape, np.int32)), values)


@pytest.mark.parametrize("make, at_most", [
    (lambda: sample_residuals(3), 0.9),
    (lambda: sample_residuals(3) // 5, 0.9),
    # structureless wide noise: nothing for the contexts to find, so only about as small
    (lambda: laplacian_planes((3, 1, 40, 56), 400.0, seed=1), 1.05),
], ids=["real-residuals", "real-coarse", "16-bit-noise"])
def test_round_trip_and_size_against_zigzag_zstd(make, at_most):
    """Residuals of real frames, fine or coarse, take clearly fewer bytes than `-n`'s zigzag + zstd."""
    frames = make()
    coder = ContextRangeCoder()
    chunks = [coder.encode(f) for f in frames]
    back = np.stack([coder.decode(c, np.empty(frames.shape[1:], np.int32)) for c in chunks])
    np.testing.assert_array_equal(back, frames)
    zstd = ZstdCodec(level=19)
    plain = sum(len(zstd.encode(ZigZagCoder().encode(f))) for f in frames)
    assert sum(map(len, chunks)) < at_most * plain, (sum(map(len, chunks)), plain)


def test_neighbour_contexts_pay_off():
    """Values large where their neighbours are large: the same values shuffled cost clearly more."""
    frames = sample_residuals(1)
    shuffled = np.random.default_rng(0).permutation(frames.ravel()).reshape(frames.shape)
    coder = ContextRangeCoder()
    assert len(coder.encode(frames[0])) < 0.95 * len(coder.encode(shuffled[0]))


def test_all_zero_frames_cost_almost_nothing():
    coder = ContextRangeCoder()
    data = coder.encode(np.zeros((3, 100, 100), np.int32))
    assert len(data) < 40
    assert not coder.decode(data, np.ones((3, 100, 100), np.int32)).any()


def test_truncated_data_is_rejected_or_decodes_wrongly_but_safely():
    frames = laplacian_planes((1, 3, 30, 40), 5.0, seed=4)[0]
    coder = ContextRangeCoder()
    data = coder.encode(frames)
    with pytest.raises(TezipError, match="truncated"):
        coder.decode(data[: len(data) // 2], np.empty(frames.shape, np.int32))
    for cut in (1, 2, 3, 4):  # the tail of the final flush: still decodes or is reported, never crashes
        try:
            coder.decode(data[:-cut], np.empty(frames.shape, np.int32))
        except TezipError:
            pass


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)))
def test_garbage_never_crashes_the_decoder(data, shape):
    try:
        out = ContextRangeCoder().decode(data, np.empty(shape, np.int32))
        assert out.shape == shape and out.dtype == np.int32
    except TezipError:
        pass


def test_decodes_only_into_a_contiguous_int32_frame():
    coder = ContextRangeCoder()
    data = coder.encode(np.ones((2, 3, 4), np.int32))
    for out in (np.empty((2, 3, 4), np.int64), np.empty((24,), np.int32), np.empty((2, 3, 8), np.int32)[:, :, ::2]):
        with pytest.raises(TezipError, match="contiguous int32"):
            coder.decode(data, out)
    with pytest.raises(ValueError):
        coder.encode(np.ones((3, 4), np.int32))  # one frame is (C, H, W)


@pytest.mark.parametrize("config", [{"id": "ctxrange", "fast_rate": 0}, {"id": "ctxrange", "slow_rate": 13},
                                    {"id": "ctxrange", "fast_rate": True}])
def test_rates_are_validated(config):
    with pytest.raises(TezipError, match="ctxrange (fast|slow)_rate must be an integer from 1 to 12"):
        ContextRangeCoder.from_config(config)


def test_rates_change_the_stream():
    frames = laplacian_planes((1, 1, 30, 30), 3.0, seed=5)[0]
    fast, slow = ContextRangeCoder(3, 6), ContextRangeCoder(5, 9)
    assert fast.encode(frames) != slow.encode(frames)
    np.testing.assert_array_equal(slow.decode(slow.encode(frames), np.empty(frames.shape, np.int32)), frames)


def test_ctxrange_chunk_too_small_for_its_declared_shape_is_refused_before_allocating():
    """A few bytes cannot hold 48 M values (a byte carries at most ~11 400): refused before the
    192 MB output would be allocated, whatever the header declared."""
    import tracemalloc

    from stages.chain import Chain

    coder = ContextRangeCoder()
    tracemalloc.start()
    try:
        with pytest.raises(TezipError, match="cannot hold"):
            Chain([coder]).decode([bytes(10)], (3, 4000, 4000))
        with pytest.raises(TezipError, match="cannot hold"):
            coder.check_chunk(bytes(10), (3, 4000, 4000), "int32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    zeros = np.zeros((1, 512, 512), np.int32)  # what a legitimate chunk holds still decodes
    np.testing.assert_array_equal(coder.decode(coder.encode(zeros), np.empty(zeros.shape, np.int32)), zeros)
