"""Per-block choice between PredNet's prediction and the previous decoded frame."""

import numpy as np
import pytest

from compress.blockselect import BlockSelector
from compress.errors import TezipError
from compress.images import read_sequence
from compress.pipeline import CompressOptions, compress_folder
from conftest import moving_squares, write_frames
from decompress.pipeline import decompress_folder


def test_choose_and_combine_pick_the_closer_predictor_per_block():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (3, 20, 36)).astype(np.int32)
    previous = frame.copy()
    previous[:, :8, :8] += 40  # the previous frame is wrong in the top-left block only
    model = frame + rng.integers(-3, 4, frame.shape)  # the model is close everywhere
    sel = BlockSelector(8)
    choice = sel.choose(frame, model, previous)
    assert choice.shape == sel.grid(20, 36) == (3, 5)
    assert not choice[0, 0] and choice.sum() == choice.size - 1
    combined = sel.combine(model, previous, choice)
    np.testing.assert_array_equal(combined[:, :8, :8], model[:, :8, :8])
    np.testing.assert_array_equal(combined[:, 8:, :], frame[:, 8:, :])
    np.testing.assert_array_equal(combined[:, :8, 8:], frame[:, :8, 8:])


def test_pack_unpack_round_trip_and_corruption():
    sel = BlockSelector(16)
    choices = np.random.default_rng(1).random((5, 3, 4)) < 0.5
    buf = sel.pack(choices)
    np.testing.assert_array_equal(sel.unpack(buf, 5, 40, 60), choices)
    with pytest.raises(TezipError):
        sel.unpack(buf[:-1], 5, 40, 60)
    with pytest.raises(TezipError):
        BlockSelector(0)
    assert BlockSelector.from_config(sel.get_config()) == sel


def test_static_background_compresses_smaller_with_block_choice(tiny_model, tmp_path):
    frames = moving_squares(12, 32, 48, 3, seed=4, n_squares=1, noise=0)
    texture = np.random.default_rng(2).integers(-20, 21, frames.shape[1:])
    frames = np.clip(frames.astype(int) + texture, 0, 255).astype(np.uint8)  # a fixed textured background
    write_frames(tmp_path / "img", frames)
    sizes = {}
    for block in (0, 8):
        comp = tmp_path / f"c{block}"
        sizes[block] = compress_folder(tiny_model(3), tmp_path / "img", comp, CompressOptions(window=11, block=block)).compressed_bytes
        decompress_folder(tiny_model(3), comp, tmp_path / f"o{block}")
        np.testing.assert_array_equal(read_sequence(tmp_path / f"o{block}").frames, frames)
    assert sizes[8] < 0.8 * sizes[0], sizes
