"""The frame coders (sequence/framecoder.py) one frame at a time: a predicted frame coded on its own
(intra mode) when that is smaller, the colour transform of lossless keyframes, their configs, and
corrupt chunks (TezipError, never another exception). End to end: test_roundtrip.py."""

import json

import numpy as np
import pytest
from conftest import moving_squares

from base.errors import TezipError
from sequence.framecoder import INTRA, PREDICTED, FrameCoder, KeyframeCoder, to_planar
from sequence.plan import CodecPlan


def frames(n=3, h=40, w=56, seed=0):
    """Squares moving over a still texture whose brightness the three channels share (as in real
    footage, where a colour transform pays)."""
    rng = np.random.default_rng(seed)
    texture = np.cumsum(rng.integers(-6, 7, (h, w)), axis=1) // 2 + rng.integers(-3, 4, (h, w))
    out = []
    for f in moving_squares(n, h, w, 3, seed=seed):
        x = f.astype(np.int64) + (texture[..., None] * np.array([1.0, 0.8, 0.6])).astype(np.int64)
        out.append(to_planar(np.clip(x, 0, 255).astype(np.uint8)))
    return out


def coders(bound=0, **options):
    plan = CodecPlan.make(warmup=1, window=8, bounds=(bound,), **options)
    return plan.frame_coder(255, False, model=False, channels=3), plan.keyframe_coder(255, False, channels=3)


def rebuilt(coder, key_coder):
    """The coders as a decoder rebuilds them from the recorded configs."""
    plan_coder = FrameCoder.from_config(json.loads(json.dumps(coder.get_config())), coder.mode, coder.bounds, 255,
                                        "entropy.dat")
    return plan_coder, KeyframeCoder.from_config(json.loads(json.dumps(key_coder.get_config())), 255, "key_frame.dat")


@pytest.mark.parametrize("bound", [0, 4])
def test_a_scene_cut_is_coded_intra_and_a_similar_frame_predicted(bound):
    coder, key_coder = coders(bound)
    a, b = frames(2, seed=1)
    cut = frames(1, seed=7)[0]
    key_chunk, key_decoded = key_coder.encode_frame(a)
    coder.note_intra(len(key_chunk))
    decoder, key_decoder = rebuilt(coder, key_coder)
    previous = key_decoder.decode_frame(key_chunk, a.shape)
    np.testing.assert_array_equal(previous, key_decoded)
    for frame, mode in ((b, PREDICTED), (cut, INTRA)):
        chunk, decoded, _ = coder.encode_frame(frame, None, previous)
        assert chunk[0] == mode and coder.last_intra == (mode == INTRA)
        back = decoder.decode_frame(chunk, None, previous)
        np.testing.assert_array_equal(back, decoded)
        assert np.abs(back - frame).max() <= bound
        previous = back


def test_intra_is_tried_only_when_the_predicted_chunk_is_large():
    coder, key_coder = coders(0)
    a, b = frames(2, seed=2)
    coder.note_intra(10**9)  # a keyframe far larger than any predicted frame: intra is not tried
    coder.encode_frame(b, None, a)
    assert coder.last_sizes[1] is None and not coder.last_intra
    coder.note_intra(1)
    coder.encode_frame(b, None, a)
    assert coder.last_sizes[1] is not None


def test_without_intra_the_chunk_has_no_mode_byte():
    coder, _ = coders(0, intra=False)
    assert "intra" not in coder.get_config()
    a, b = frames(2, seed=3)
    chunk, decoded, _ = coder.encode_frame(b, None, a)
    np.testing.assert_array_equal(FrameCoder.from_config(coder.get_config(), "abs", [0.0], 255, "e").decode_frame(
        chunk, None, a), decoded)


def test_lossless_rgb_keyframes_take_the_colour_transform_and_are_smaller():
    frame = frames(1, seed=4)[0]
    with_colour, without = coders(0)[1], coders(0, colour=False)[1]
    assert with_colour.get_config()["colour"] == {"id": "rct", "transform": "chain"}
    assert "colour" not in without.get_config() and "colour" not in coders(4)[1].get_config()
    sizes = []
    for coder in (with_colour, without):
        chunk, decoded = coder.encode_frame(frame)
        np.testing.assert_array_equal(decoded, frame)
        np.testing.assert_array_equal(rebuilt(coders(0)[0], coder)[1].decode_frame(chunk, frame.shape), frame)
        sizes.append(len(chunk))
    assert sizes[0] < sizes[1]
    # lossless residuals go through it too, before MED
    assert [s["id"] for s in coders(0)[0].get_config()["residual"]] == ["runmerge", "rct", "med"]


def test_gray_frames_have_no_colour_transform():
    plan = CodecPlan.make(warmup=1, window=8)
    assert "colour" not in plan.keyframe_coder(255, False, channels=1).get_config()
    assert [s["id"] for s in plan.frame_coder(255, False, model=False, channels=1).get_config()["residual"]] == \
        ["runmerge", "med"]


def test_configs_that_cannot_be_decoded_are_refused():
    coder, key_coder = coders(4)
    config = coder.get_config()
    lossless_key = coders(0)[1].get_config()
    for bad in (dict(config, intra=dict(config["intra"], head={"id": "medquant", "tolerance": 9})),
                dict(config, intra={"id": "keyframe"}), dict(config, intra=3),
                dict(config, intra=dict(config["intra"], colour={"id": "rct"})),  # colour before a lossy head
                dict(config, intra=dict(lossless_key, colour={"id": "med"}))):
        with pytest.raises(TezipError):
            FrameCoder.from_config(bad, "abs", [4.0], 255, "entropy.dat")


@pytest.mark.parametrize("bound", [0, 4])
def test_corrupt_chunks_raise_tezip_error(bound):
    coder, key_coder = coders(bound)
    a, b = frames(2, seed=5)
    cut = frames(1, seed=9)[0]
    decoder = rebuilt(coder, key_coder)[0]
    coder.note_intra(1)
    for frame in (b, cut):
        chunk, decoded, _ = coder.encode_frame(frame, None, a)
        cases = [b"", bytes([7]) + chunk[1:], chunk[:1], chunk[: len(chunk) // 2], chunk[:3]]
        rng = np.random.default_rng(len(chunk))
        for _ in range(20):
            bad = bytearray(chunk)
            for i in rng.integers(0, len(bad), 3):
                bad[i] ^= int(rng.integers(1, 256))
            cases.append(bytes(bad))
        for bad in cases:
            try:
                back = decoder.decode_frame(bad, None, a)
            except TezipError:
                continue
            assert back.shape == a.shape  # undetectable here: the frame checksum catches it


@pytest.mark.parametrize("bound", [0, 2])
def test_a_model_whose_blocks_code_larger_is_dropped_for_the_frame(bound):
    """Blocks pick the model by the smaller sum of absolute residuals; where that codes larger (noise
    against a constant offset) the frame is coded without the model's candidates."""
    plan = CodecPlan.make(warmup=1, window=8, bounds=(bound,), intra=False)
    coder = plan.frame_coder(255, False, model=True, channels=3)
    decoder = FrameCoder.from_config(json.loads(json.dumps(coder.get_config())), coder.mode, coder.bounds, 255, "e")
    previous = frames(1, h=64, w=64, seed=6)[0]
    frame = np.clip(previous + 3 * (bound + 1), 0, 255)  # a constant step: cheap residuals, large sum
    rng = np.random.default_rng(0)
    model = np.clip(frame + rng.integers(-1, 2, frame.shape) * (2 * bound + 1) * 2, 0, 255).astype(np.int32)
    choices, _ = coder.choose(frame, model, previous)
    assert coder.selector.uses_model(choices)  # by the sum of absolute residuals the model wins
    chunk, decoded, _ = coder.encode_frame(frame, model, previous)
    assert not coder.selector.uses_model(coder.last_choices)
    without = plan.frame_coder(255, False, model=False, channels=3).encode_frame(frame, None, previous)[0]
    assert len(chunk) <= len(without)
    back = decoder.decode_frame(chunk, model, previous)
    np.testing.assert_array_equal(back, decoded)
    assert np.abs(back - frame).max() <= bound
