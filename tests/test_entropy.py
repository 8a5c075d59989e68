"""The entropy back ends: the context range coder (compress/rangecoder.py) and the `-n` path's zigzag."""

from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from PIL import Image
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.entropy import ZigZagCoder
from compress.errors import TezipError
from compress.lossless import ZstdCodec
from compress.rangecoder import ContextRangeCoder

INT32 = np.iinfo(np.int32)


DEV_FRAMES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "megamind"


def sample_residuals(n=4):
    """Real residual-like codes: MED-predicted differences between consecutive dev frames (360×264)."""
    from compress.med import MedCoder

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
    np.testing.assert_array_equal(coder.decode_frame(coder.encode_frame(values), values.shape), values)


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
    chunks = coder.encode_many(frames, threads=2)
    np.testing.assert_array_equal(coder.decode_many(chunks, frames.shape[1:], threads=2), frames)
    zstd = ZstdCodec(level=19)
    plain = sum(len(zstd.encode(ZigZagCoder().encode(f))) for f in frames)
    assert sum(map(len, chunks)) < at_most * plain, (sum(map(len, chunks)), plain)


def test_neighbour_contexts_pay_off():
    """Values large where their neighbours are large: the same values shuffled cost clearly more."""
    frames = sample_residuals(1)
    shuffled = np.random.default_rng(0).permutation(frames.ravel()).reshape(frames.shape)
    coder = ContextRangeCoder()
    assert len(coder.encode_frame(frames[0])) < 0.95 * len(coder.encode_frame(shuffled[0]))


def test_all_zero_frames_cost_almost_nothing():
    coder = ContextRangeCoder()
    data = coder.encode_frame(np.zeros((3, 100, 100), np.int32))
    assert len(data) < 40
    assert not coder.decode_frame(data, (3, 100, 100)).any()


def test_bytes_do_not_depend_on_thread_count():
    frames = laplacian_planes((5, 1, 20, 30), 2.0, seed=3)
    coder = ContextRangeCoder()
    assert coder.encode_many(frames, threads=1) == coder.encode_many(frames, threads=3)


def test_truncated_data_is_rejected_or_decodes_wrongly_but_safely():
    frames = laplacian_planes((1, 3, 30, 40), 5.0, seed=4)[0]
    coder = ContextRangeCoder()
    data = coder.encode_frame(frames)
    with pytest.raises(TezipError, match="truncated"):
        coder.decode_frame(data[: len(data) // 2], frames.shape)
    for cut in (1, 2, 3, 4):  # the tail of the final flush: still decodes or is reported, never crashes
        try:
            coder.decode_frame(data[:-cut], frames.shape)
        except TezipError:
            pass


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)))
def test_garbage_never_crashes_the_decoder(data, shape):
    try:
        out = ContextRangeCoder().decode_frame(data, shape)
        assert out.shape == shape and out.dtype == np.int32
    except TezipError:
        pass


def test_config_round_trip_and_validation():
    coder = ContextRangeCoder(fast_rate=3, slow_rate=8)
    assert coder.get_config() == {"id": "ctxrange", "fast_rate": 3, "slow_rate": 8}
    assert ContextRangeCoder.from_config(coder.get_config()) == coder
    for bad in [{"id": "ctxrange", "fast_rate": 0}, {"id": "ctxrange", "slow_rate": 13},
                {"id": "ctxrange", "fast_rate": True}, {"id": "ctxrange", "order": 2}, {"id": "zstd"}, None]:
        with pytest.raises(TezipError):
            ContextRangeCoder.from_config(bad)


def test_rates_change_the_stream():
    frames = laplacian_planes((1, 1, 30, 30), 3.0, seed=5)[0]
    fast, slow = ContextRangeCoder(3, 6), ContextRangeCoder(5, 9)
    assert fast.encode_frame(frames) != slow.encode_frame(frames)
    np.testing.assert_array_equal(slow.decode_frame(slow.encode_frame(frames), frames.shape), frames)


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


def test_ctxrange_chunk_too_small_for_its_declared_shape_is_refused_before_allocating():
    """A few bytes cannot hold 48 M values (a byte carries at most ~11 400): refused before the
    192 MB output would be allocated, whatever the header declared."""
    import tracemalloc

    coder = ContextRangeCoder()
    tracemalloc.start()
    try:
        with pytest.raises(TezipError, match="cannot hold"):
            coder.decode_many([bytes(10)], (3, 4000, 4000))
        with pytest.raises(TezipError, match="cannot hold"):
            coder.decode_frame(bytes(10), (3, 4000, 4000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    zeros = np.zeros((1, 512, 512), np.int32)  # what a legitimate chunk holds still decodes
    np.testing.assert_array_equal(coder.decode_frame(coder.encode_frame(zeros), zeros.shape), zeros)
