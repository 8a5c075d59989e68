"""Per-block choice between PredNet's prediction and the previous decoded frame."""

import json

import numpy as np
import pytest

from base.errors import TezipError
from frames.read import read_sequence
from compress.pipeline import compress_folder
from conftest import moving_squares, write_frames
from decompress.pipeline import decompress_folder
from sequence.blockselect import BlockSelector
from sequence.plan import CodecPlan


def test_choose_and_combine_pick_the_closer_predictor_per_block():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (3, 20, 36)).astype(np.int32)
    previous = frame.copy()
    previous[:, :8, :8] += 40  # the previous frame is wrong in the top-left block only
    model = frame + rng.integers(-3, 4, frame.shape)  # the model is close everywhere
    sel = BlockSelector(8, radius=0)
    choice = sel.choose(frame, model, previous)
    assert choice.shape == sel.grid(20, 36) == (3, 5)
    assert choice[0, 0] == 0 and np.count_nonzero(choice == 1) == choice.size - 1  # 1: unmoved previous
    combined = sel.combine(model, previous, choice)
    np.testing.assert_array_equal(combined[:, :8, :8], model[:, :8, :8])
    np.testing.assert_array_equal(combined[:, 8:, :], frame[:, 8:, :])
    np.testing.assert_array_equal(combined[:, :8, 8:], frame[:, :8, 8:])


def test_motion_search_finds_the_shift_and_combine_rebuilds_it():
    rng = np.random.default_rng(3)
    scene = rng.integers(0, 256, (3, 40, 60)).astype(np.int32)
    frame = scene[:, 10:34, 10:50]
    previous = scene[:, 12:36, 9:49]  # the scene moved: frame(i, j) = previous(i - 2, j + 1)
    model = frame + rng.integers(-6, 7, frame.shape)
    sel = BlockSelector(8, radius=2)
    choice = sel.choose(frame, model, previous)
    side = 2 * 2 + 1
    moved = 1 + (-2 + 2) * side + (1 + 2)
    # Blocks away from the top and right edges (where the shift reaches past the frame) find it exactly.
    assert (choice[1:, :-1] == moved).all()
    combined = sel.combine(model, previous, choice)
    np.testing.assert_array_equal(combined[:, 8:, :32], frame[:, 8:, :32])
    # radius 0 cannot move it: PredNet's noisy prediction wins over the unmoved frame
    assert (BlockSelector(8, radius=0).choose(frame, model, previous) == 0).all()


def test_encode_decode_choices_round_trip_and_corruption():
    sel = BlockSelector(16, radius=1)
    choices = np.random.default_rng(1).integers(0, sel.n_codes, (5, 3, 4)).astype(np.uint8)
    chunk = sel.encode_choices(choices, level=3)
    assert isinstance(chunk, bytes)
    decoded = sel.decode_choices(chunk, 5, 40, 60)
    assert decoded.dtype == np.uint8 and decoded.shape == (5, 3, 4)
    np.testing.assert_array_equal(decoded, choices)
    assert sel.encode_choices(choices, level=19) != chunk  # the level is the plan's zstd level
    np.testing.assert_array_equal(sel.decode_choices(sel.encode_choices(choices, level=19), 5, 40, 60), choices)
    with pytest.raises(TezipError):
        sel.decode_choices(chunk[:-1], 5, 40, 60)
    with pytest.raises(TezipError):  # the chunk holds 5 frames' choices, not 4
        sel.decode_choices(chunk, 4, 40, 60)
    with pytest.raises(TezipError):  # nor those of another frame size
        sel.decode_choices(chunk, 5, 40, 80)
    with pytest.raises(TezipError, match="beyond"):
        bad = choices.copy()
        bad[2, 1, 1] = sel.n_codes
        sel.decode_choices(sel.encode_choices(bad, level=3), 5, 40, 60)
    for bad in [dict(block=0), dict(radius=8), dict(radius=-1), dict(block=True)]:
        with pytest.raises(TezipError):
            BlockSelector(**bad)
    assert BlockSelector.from_config(sel.get_config()) == sel
    assert sel.get_config() == {"id": "blockselect", "block": 16, "radius": 1}


def test_no_predicted_frames_have_no_choices():
    sel = BlockSelector(8, radius=2)
    chunk = sel.encode_choices(np.zeros((0, 3, 4), np.uint8), level=3)
    assert sel.decode_choices(chunk, 0, 24, 32).shape == (0, 3, 4)


@pytest.mark.parametrize("selector", [BlockSelector(16, radius=1), BlockSelector(8, radius=2, mean=True),
                                      BlockSelector(8, radius=1, model=False)], ids=["plain", "mean", "no-model"])
def test_frame_choices_round_trip_and_corruption(selector):
    """Format 3 codes each frame's choices in that frame's own chunk (the context range coder over
    the block map); the decoder checks every code against what the selector can have made."""
    height, width = 40, 60
    lowest = 0 if selector.model else 1  # without a model code 0 (the model's prediction) never occurs
    choices = np.random.default_rng(1).integers(lowest, selector.n_codes, selector.grid(height, width))
    data = selector.encode_frame_choices(choices)
    assert isinstance(data, bytes)
    np.testing.assert_array_equal(selector.decode_frame_choices(data, height, width), choices)
    config = json.loads(json.dumps(selector.get_config()))  # as the archive records it
    again = BlockSelector.from_config(config)
    assert (again.block, again.radius, again.model, again.mean, again.n_codes) == (
        selector.block, selector.radius, selector.model, selector.mean, selector.n_codes)
    np.testing.assert_array_equal(again.decode_frame_choices(data, height, width), choices)
    for bad_code in (selector.n_codes, lowest - 1):
        if bad_code < 0:
            continue
        bad = choices.copy()
        bad[1, 1] = bad_code
        with pytest.raises(TezipError, match="corrupt block choices"):
            selector.decode_frame_choices(selector.encode_frame_choices(bad), height, width)
    with pytest.raises(TezipError):
        selector.decode_frame_choices(data[:2], height, width)


def test_choices_without_a_model_never_take_code_0_and_config_says_so():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (3, 24, 40)).astype(np.int32)
    previous = np.roll(frame, 1, axis=2)
    sel = BlockSelector(8, radius=1, model=False)
    choices = sel.choose(frame, None, previous)
    assert choices.min() >= 1
    side = 3
    assert (choices[:, :-1] == 1 + (0 + 1) * side + (1 + 1)).all()  # found the shift: frame(i, j) = previous(i, j + 1)
    np.testing.assert_array_equal(sel.combine(None, previous, choices)[:, :, :32], frame[:, :, :32])
    assert sel.get_config() == {"id": "blockselect", "block": 8, "radius": 1, "model": False}
    assert BlockSelector(8, radius=1, model=False, mean=True).mean is False  # no model: nothing to average


def test_static_background_compresses_smaller_with_block_choice(tiny_model, tmp_path):
    frames = moving_squares(12, 32, 48, 3, seed=4, n_squares=1, noise=0)
    texture = np.random.default_rng(2).integers(-20, 21, frames.shape[1:])
    frames = np.clip(frames.astype(int) + texture, 0, 255).astype(np.uint8)  # a fixed textured background
    write_frames(tmp_path / "img", frames)
    sizes = {}
    for block in (0, 8):
        comp = tmp_path / f"c{block}"
        sizes[block] = compress_folder(tiny_model(3), tmp_path / "img", comp, CodecPlan.make(window=11, block=block)).compressed_bytes
        decompress_folder(tiny_model(3), comp, tmp_path / f"o{block}")
        np.testing.assert_array_equal(read_sequence(tmp_path / f"o{block}").frames, frames)
    assert sizes[8] < 0.8 * sizes[0], sizes
