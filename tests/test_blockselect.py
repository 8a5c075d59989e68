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


def pan_frames(n, h=64, w=160, step=(3, 23), seed=4):
    """Windows of a smooth random scene sliding `step` (down, right) per frame, jumping back to the
    start every fifth frame (the pan of issue 14's hard content): (n, 3, h, w) int32."""
    rng = np.random.default_rng(seed)
    H, W = h + 5 * step[0], w + 5 * step[1]
    scene = np.cumsum(np.cumsum(rng.integers(-4, 5, (3, H, W)), axis=1), axis=2) // 16
    scene = (scene - scene.min()) % 256
    return np.stack([scene[:, (k % 5) * step[0]:(k % 5) * step[0] + h, (k % 5) * step[1]:(k % 5) * step[1] + w]
                     for k in range(n)]).astype(np.int32)


def test_global_motion_finds_the_pan_and_the_jump_back():
    from sequence.blockselect import estimate_global_motion

    frames = pan_frames(7)
    # frame k shows the scene at (3k, 23k): frame(i, j) = previous(i + 3, j + 23); the jump back -4 steps
    assert estimate_global_motion(frames[1], frames[0], 128) == (3, 23)
    assert estimate_global_motion(frames[5], frames[4], 128) == (-12, -92)
    assert estimate_global_motion(frames[1], frames[0], 10) != (3, 23)  # beyond the range: not found
    assert estimate_global_motion(frames[1], frames[1], 128) == (0, 0)


@pytest.mark.parametrize("mean", [False, True])
def test_global_motion_choices_round_trip_and_rebuild_the_moved_frame(mean):
    from sequence.blockselect import BlockChoices

    frames = pan_frames(6)
    sel = BlockSelector(8, radius=2, model=True, mean=mean, global_range=128)
    assert BlockSelector.from_config(sel.get_config()).get_config() == sel.get_config()
    assert sel.get_config()["global_range"] == 128
    model = frames[1] + np.random.default_rng(0).integers(-20, 21, frames[1].shape).astype(np.int32)
    for previous, frame, vector in ((frames[0], frames[1], (3, 23)), (frames[4], frames[5], (-12, -92))):
        choices = sel.choose(frame, model, previous)
        assert isinstance(choices, BlockChoices) and choices.vector == vector
        data = sel.encode_frame_choices(choices)
        back = sel.decode_frame_choices(data, *frame.shape[1:])
        assert back.vector == vector
        np.testing.assert_array_equal(back.codes, choices.codes)
        combined = sel.combine(model, previous, back)
        np.testing.assert_array_equal(combined, sel.combine(model, previous, choices))
        # blocks whose moved source lies inside the previous frame are predicted exactly
        (gy, gx), (h, w) = vector, frame.shape[1:]
        y0, y1 = -(-max(0, -gy) // 8) * 8, min(h, h - gy) // 8 * 8
        x0, x1 = -(-max(0, -gx) // 8) * 8, min(w, w - gx) // 8 * 8
        assert y1 - y0 >= 8 and x1 - x0 >= 8
        np.testing.assert_array_equal(combined[:, y0:y1, x0:x1], frame[:, y0:y1, x0:x1])
    # without a global vector beyond the radius the second window is not searched
    still = sel.choose(frames[1], model, frames[1])
    assert still.vector == (0, 0) and int(still.codes.max()) <= sel.kinds * 25
    # a vector beyond the range, or cut off, is refused
    bad = BlockSelector(8, radius=2, global_range=64)
    with pytest.raises(TezipError, match="global"):
        bad.decode_frame_choices(sel.encode_frame_choices(BlockChoices(choices.codes, (0, 65))), 64, 160)
    for cut in (b"", data[:1]):
        with pytest.raises(TezipError):
            sel.decode_frame_choices(cut, 64, 160)
    with pytest.raises(TezipError):
        BlockSelector(8, global_range=4097)


def test_global_motion_end_to_end_pan_is_exact_and_far_smaller(tmp_path):
    frames = np.ascontiguousarray(pan_frames(10).transpose(0, 2, 3, 1).astype(np.uint8))
    write_frames(tmp_path / "in", frames)
    sizes = {}
    for g in (0, 128):
        plan = CodecPlan.make(warmup=1, window=10, bounds=(0,), global_range=g, intra=False)
        stats = compress_folder("none", tmp_path / "in", tmp_path / f"c{g}", plan)
        decompress_folder("none", tmp_path / f"c{g}", tmp_path / f"d{g}")
        np.testing.assert_array_equal(read_sequence(tmp_path / f"d{g}").frames, frames)
        sizes[g] = stats.compressed_bytes
    assert sizes[128] < 0.5 * sizes[0]


def test_colour_cost_matches_blocks_as_the_colour_transformed_residual_is_coded():
    frame = np.zeros((3, 16, 16), np.int32)
    model = frame - 5  # residual (5, 5, 5): SAD 15, after (B, G - B, R - G) 5 + 0 + 0
    previous = frame.copy()
    previous[2] -= 6  # residual (0, 0, 6): SAD 6, after the transform 6 + 6 + 0
    sel = BlockSelector(8, radius=0)
    assert (sel.choose(frame, model, previous) == 1).all()  # the previous frame by SAD
    sel.colour_cost = True
    assert (sel.choose(frame, model, previous) == 0).all()  # the model by the coded cost
    assert "colour_cost" not in str(sel.get_config())  # encoder only
    assert (sel.choose(frame[:1], model[:1], previous[:1]) == 1).all()  # one channel (R): plain SAD, 0 < 5


def test_extrapolation_is_linear_clipped_and_recorded():
    from sequence.blockselect import extrapolate_frames

    older = np.array([[[10, 200, 65535, 5]]], np.int32)
    previous = np.array([[[20, 100, 65535, 0]]], np.int32)
    np.testing.assert_array_equal(extrapolate_frames(previous, older, 65535), [[[30, 0, 65535, 0]]])
    np.testing.assert_array_equal(extrapolate_frames(previous, older, 255), [[[30, 0, 255, 0]]])
    sel = BlockSelector(8, radius=1, model=True, extrapolate=True)
    assert sel.get_config()["extrapolate"] is True
    assert BlockSelector.from_config(sel.get_config()).extrapolate
    assert "extrapolate" not in BlockSelector(8, radius=1, model=False).get_config()
    with pytest.raises(TezipError, match="extrapolate"):
        BlockSelector.from_config({"id": "blockselect", "block": 8, "radius": 1, "model": False, "extrapolate": True})
    # the window's first predicted frame has no older frame: code 0 falls back to the model slot's None
    assert sel.temporal_candidate(None, previous, None, 255) is None


def brightening_frames(n=10, h=48, w=64, seed=3):
    """16-bit frames of a fixed texture whose contrast grows steadily (each pixel a line in time),
    with read noise: what linear extrapolation predicts and neither the previous frame nor the
    frame's own pixels do."""
    rng = np.random.default_rng(seed)
    texture = rng.uniform(-3000, 3000, (h, w))
    frames = [20000 + texture * (1 + 0.08 * t) + rng.normal(0, 2, (h, w)) for t in range(n)]
    return np.clip(np.rint(frames), 0, 65535).astype(np.uint16)[..., None]


def test_runs_without_a_model_extrapolate_under_a_bound(tmp_path, monkeypatch):
    """abs 4 without a model: blocks take linear extrapolation (recorded, decoded within the bound,
    the window's first predicted frame and frames after a keyframe without it), and the archive is
    smaller than with the previous frame moved alone; 8-bit lossless runs do not extrapolate."""
    import archive

    frames = brightening_frames()
    write_frames(tmp_path / "img", frames)
    plan = CodecPlan.make(window=4, bounds=(4,), block=8)
    summary = compress_folder("none", tmp_path / "img", tmp_path / "c", plan)
    with_x = summary.compressed_bytes
    assert summary.blocks.get("extrapolation", 0) > 0, summary.blocks
    selector = archive.read_archive(tmp_path / "c").sequence.coder["block_select"]
    assert selector.get("extrapolate") is True, selector
    decompress_folder("none", tmp_path / "c", tmp_path / "o")
    decoded = read_sequence(tmp_path / "o").frames.astype(int)
    assert np.abs(decoded - frames.astype(int)).max() <= 4
    monkeypatch.setattr(CodecPlan, "extrapolates", lambda self, max_value: False)
    without = compress_folder("none", tmp_path / "img", tmp_path / "c2", plan).compressed_bytes
    assert with_x < 0.95 * without, (with_x, without)

    monkeypatch.undo()
    eight = moving_squares(6, 32, 48, 1, seed=2, noise=2)
    write_frames(tmp_path / "img8", eight)
    compress_folder("none", tmp_path / "img8", tmp_path / "c8", CodecPlan.make(window=5))
    assert "extrapolate" not in archive.read_archive(tmp_path / "c8").sequence.coder["block_select"]


def test_windows_where_the_models_trial_stopped_it_extrapolate(tiny_model, tmp_path):
    """With a model: once its trial stops it in a window (an untrained model saves nothing), code 0
    of the window's later frames is linear extrapolation; the decoder, reading where the model
    stopped, rebuilds the same frames exactly."""
    import archive

    frames = brightening_frames(n=14)
    write_frames(tmp_path / "img", frames)
    summary = compress_folder(tiny_model(1), tmp_path / "img", tmp_path / "c", CodecPlan.make(window=13, block=8))
    seq = archive.read_archive(tmp_path / "c").sequence
    assert seq.model["off"] == [5], seq.model  # after its 4 trial frames
    assert seq.coder["block_select"]["extrapolate"] is True
    assert summary.blocks.get("extrapolation", 0) > 0, summary.blocks
    decompress_folder(tiny_model(1), tmp_path / "c", tmp_path / "o")
    np.testing.assert_array_equal(read_sequence(tmp_path / "o").frames, frames)


def test_extrapolation_stops_where_its_trial_did_not_pay_the_same_for_any_thread_count(tmp_path, monkeypatch):
    """16-bit lossless, no model: on shot-noise frames of a static scene, extrapolation saves
    nothing in its trial (the window's frames 2-5), so no later frame of the window takes code 0;
    on the brightening texture it pays and later frames keep taking it. The archives are the same
    bytes for 1 and 3 frame threads (the trial is judged on finished frames only)."""
    import archive
    from conftest import detector_frames
    from sequence.blockselect import split_choices
    from sequence.framecoder import FrameCoder

    def code0_per_frame(comp):
        arc = archive.read_archive(comp)
        seq = arc.sequence
        coder = FrameCoder.from_config(seq.coder, seq.mode, seq.bounds, seq.frames.max_value, "entropy.dat")
        assert coder.selector.extrapolate
        shape = (seq.frames.channels, seq.frames.height, seq.frames.width)
        out = []
        for i in range(seq.frames.n_frames - len(seq.keyframes)):
            parsed = coder.parse_frame(arc.frame_chunk(i), shape)
            out.append(None if parsed[1] is None else int((np.asarray(split_choices(parsed[1])[0]) == 0).sum()))
        return out  # predicted frames 1.. of the one window; None: coded on its own (intra)

    noise = detector_frames(14, 48, 64, seed=3)
    write_frames(tmp_path / "noise", noise)
    write_frames(tmp_path / "bright", brightening_frames(n=14))
    codings = []  # residual codings of predicted frames: a frame that took code 0 is coded twice
    real = FrameCoder._predicted_chunk
    monkeypatch.setattr(FrameCoder, "_predicted_chunk", lambda self, *a: codings.append(1) or real(self, *a))
    sizes = {}
    for threads in (1, 3):
        monkeypatch.setattr("base.threads._threads", threads)
        for name in ("noise", "bright"):
            codings.clear()
            compress_folder("none", tmp_path / name, tmp_path / f"{name}{threads}", CodecPlan.make(window=13, block=8))
            sizes[name, threads] = (tmp_path / f"{name}{threads}" / "entropy.dat").read_bytes()
            sizes[name, threads, "codings"] = len(codings)
    assert sizes["noise", 1] == sizes["noise", 3] and sizes["bright", 1] == sizes["bright", 3]
    # 13 predicted frames: the noise's 4 trial frames twice, then once each; the brightening's twice throughout
    assert sizes["noise", 1, "codings"] <= 13 + 4 < sizes["bright", 1, "codings"], sizes
    noisy, bright = code0_per_frame(tmp_path / "noise1"), code0_per_frame(tmp_path / "bright1")
    assert all(not n for n in noisy[5:]), noisy  # predicted frames 6.. of the window: after the trial
    assert all(n for n in bright[5:]), bright
    decompress_folder("none", tmp_path / "noise3", tmp_path / "o")
    np.testing.assert_array_equal(read_sequence(tmp_path / "o").frames, noise)


def test_the_models_trial_frames_may_take_extrapolation_instead(tiny_model, tmp_path):
    """abs 4 with an untrained model on frames that linear extrapolation predicts well (QA: the
    model's trial frames, coded without extrapolation, made the archive 18-53 % larger than
    without a model): each trial frame is also coded with extrapolation in place of the model's
    prediction, and that is kept (mode byte RIVAL) when smaller; the decoder rebuilds it within the
    bound, and the archive is within 3 % of the model-free one (the model's record included)."""
    import archive
    from sequence.framecoder import RIVAL, FrameCoder

    frames = brightening_frames(n=24)
    write_frames(tmp_path / "img", frames)
    sizes = {}
    for name, model in (("none", "none"), ("tiny", tiny_model(1))):
        plan = CodecPlan.make(window=11, bounds=(4,), block=8)
        sizes[name] = compress_folder(model, tmp_path / "img", tmp_path / f"c_{name}", plan).compressed_bytes
        decompress_folder(model, tmp_path / f"c_{name}", tmp_path / f"o_{name}")
        assert np.abs(read_sequence(tmp_path / f"o_{name}").frames.astype(int) - frames.astype(int)).max() <= 4
    arc = archive.read_archive(tmp_path / "c_tiny")
    modes = [arc.frame_chunk(i)[0] for i in range(arc.sequence.n_predicted)]
    assert modes.count(RIVAL) >= 4, modes  # trial frames 2-4 of both windows
    assert sizes["tiny"] <= 1.03 * sizes["none"], sizes
    # a RIVAL chunk where the archive has no extrapolation is corrupt
    seq = arc.sequence
    config = dict(seq.coder, block_select={k: v for k, v in seq.coder["block_select"].items() if k != "extrapolate"})
    plain = FrameCoder.from_config(config, seq.mode, seq.bounds, seq.frames.max_value, "entropy.dat")
    with pytest.raises(TezipError, match="unknown coding mode"):
        plain.parse_frame(arc.frame_chunk(modes.index(RIVAL)), (1, 48, 64))
