"""The model runs where it pays (sequence.coding.SequenceEncoder.model_pays, MODEL_TRIAL and
MODEL_PAYS): each window's model predicts its first frames, and the encoder stops it for the rest
of the window when its candidates saved too little; the archive records where (the model record's
"off"), the decoder follows it, and no model step runs while every lane's model is stopped."""

import contextlib
import io

import numpy as np
import pytest

from archive import read_archive
from archive.v3 import SequenceHeader
from base.errors import TezipError
from conftest import compress, make_sequence
from decompress.pipeline import decompress_folder
from frames.read import read_sequence
from sequence import coding
from sequence.windows import run_windows


class CountingPredictor:
    """A stand-in model for the schedule alone: counts its steps, predicts the lane's step number."""

    def __init__(self, batch, h=2, w=3, c=1):
        self.batch, self.height, self.width, self.channels = batch, h, w, c
        self.states, self.steps = [np.zeros(batch)], 0

    def predict(self, reset):
        self.steps += 1
        self.states = [self.states[0] * (1 - np.asarray(reset)) + 1]
        return np.repeat(self.states[0][:, None, None, None] / 255.0, self.height * self.width * self.channels,
                         ).reshape(self.batch, self.height, self.width, self.channels).astype(np.float32)

    def update(self, shown):
        pass


class ScheduleCoder:
    """Records what the schedule hands it; the model stops at the frames in `stop`."""

    def __init__(self, stop=()):
        self.stop, self.asked, self.predictions = set(stop), [], {}

    def model_pays(self, f, keyframe):
        self.asked.append((f, keyframe))
        return f not in self.stop

    def keyframe(self, f):
        return np.zeros((2, 3, 1), np.uint8)

    def frame(self, f, prediction):
        self.predictions[f] = prediction
        return np.zeros((2, 3, 1), np.uint8)


def test_a_stopped_model_is_not_stepped_and_its_frames_get_no_prediction():
    is_key = np.zeros(12, bool)
    is_key[[0, 6]] = True  # one lane, windows 0-5 and 6-11
    predictor, coder = CountingPredictor(1), ScheduleCoder(stop={3})
    run_windows(predictor, 12, [0], is_key, coder)
    assert [f for f in range(12) if f not in (0, 6) and coder.predictions[f] is None] == [3, 4, 5]
    assert predictor.steps == 12 - 3  # frames 3, 4, 5: no step
    assert coder.asked == [(1, 0), (2, 0), (3, 0), (7, 6), (8, 6), (9, 6), (10, 6), (11, 6)]  # the next window asks again


def test_one_lane_stopped_the_other_still_steps():
    is_key = np.zeros(12, bool)
    is_key[[0, 6]] = True  # two lanes of one window each
    predictor, coder = CountingPredictor(2), ScheduleCoder(stop={2})
    run_windows(predictor, 12, [0, 6], is_key, coder)
    assert predictor.steps == 6  # lane 1's model still runs
    assert [f for f in range(12) if coder.predictions.get(f, 0) is None] == [2, 3, 4, 5]
    coder, predictor = ScheduleCoder(stop={2, 8}), CountingPredictor(2)
    run_windows(predictor, 12, [0, 6], is_key, coder)
    assert predictor.steps == 2  # both stopped after their second step


@pytest.mark.parametrize("pays, stops", [(0.0, False), (2.0, True)])
def test_model_trial_end_to_end(tiny_model, tmp_path, monkeypatch, pays, stops):
    """MODEL_PAYS 0: the model always pays, no 'off' record; 2.0 (more than every byte): it never
    does, and stops after MODEL_TRIAL frames of every window. Both decode exactly, at any thread
    count, with the same bytes."""
    monkeypatch.setattr(coding, "MODEL_PAYS", pays)
    frames = make_sequence(tmp_path / "in", n_frames=21, height=32, width=48, seed=5, noise=4)
    model = tiny_model(3)
    archives = {}
    for threads in (1, 3):
        monkeypatch.setattr("base.threads._threads", threads)
        with contextlib.redirect_stdout(io.StringIO()):
            compress(model, tmp_path / "in", tmp_path / f"c{threads}", warmup=1, window=9, lanes=1)
            decompress_folder(model, tmp_path / f"c{threads}", tmp_path / f"o{threads}")
        np.testing.assert_array_equal(read_sequence(tmp_path / f"o{threads}").frames, frames)
        archives[threads] = (tmp_path / f"c{threads}" / "entropy.dat").read_bytes()
        with read_archive(tmp_path / f"c{threads}") as a:
            keys, record = a.sequence.keyframes, a.sequence.model
    assert archives[1] == archives[3]
    assert keys == [0, 10, 20]
    if stops:
        assert record["off"] == [k + 1 + coding.MODEL_TRIAL for k in (0, 10)]  # window 20- has no predicted frame
    else:
        assert "off" not in record


def test_the_model_stops_on_content_it_does_not_help(tiny_model, tmp_path):
    """Noise the tiny model cannot predict, lossless: the trial finds its candidates save nothing."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (24, 40, 3))
    frames = np.clip(base[None] + rng.integers(-20, 21, (16, 24, 40, 3)), 0, 255).astype(np.uint8)
    from conftest import write_frames

    write_frames(tmp_path / "in", frames)
    with contextlib.redirect_stdout(io.StringIO()):
        compress(tiny_model(3), tmp_path / "in", tmp_path / "c", warmup=1, window=15, lanes=1)
        decompress_folder(tiny_model(3), tmp_path / "c", tmp_path / "o")
    np.testing.assert_array_equal(read_sequence(tmp_path / "o").frames, frames)
    with read_archive(tmp_path / "c") as a:
        assert a.sequence.model["off"] == [1 + coding.MODEL_TRIAL]


@pytest.mark.parametrize("off", [[0], [10], [3, 3], [7, 2], [25], ["4"], [], 5, [True]])
def test_a_bad_off_record_is_refused(tiny_model, tmp_path, off):
    make_sequence(tmp_path / "in", n_frames=12, height=16, width=24, seed=2)
    with contextlib.redirect_stdout(io.StringIO()):
        compress(tiny_model(3), tmp_path / "in", tmp_path / "c", warmup=1, window=9, lanes=1)
    with read_archive(tmp_path / "c") as a:
        header = a.sequence.to_json()
        names, mode = a.names, a.mode
    header["model"] = dict(header["model"], off=off)
    with pytest.raises(TezipError, match="model stops|model record"):
        SequenceHeader.from_json(header, names, mode)
    header["model"]["off"] = [5]  # a valid one is accepted
    assert SequenceHeader.from_json(header, names, mode).model["off"] == [5]


def test_block_0_keeps_the_model_and_refuses_an_off_record(tiny_model, tmp_path, monkeypatch):
    """--block 0: the model predicts every pixel, so it is never stopped; an archive saying it
    stopped is refused with one line."""
    from decompress import pipeline

    monkeypatch.setattr(coding, "MODEL_PAYS", 2.0)  # would stop it, were there anything else
    frames = make_sequence(tmp_path / "in", n_frames=12, height=16, width=24, seed=2)
    with contextlib.redirect_stdout(io.StringIO()):
        compress(tiny_model(3), tmp_path / "in", tmp_path / "c", warmup=1, window=11, lanes=1, block=0)
        decompress_folder(tiny_model(3), tmp_path / "c", tmp_path / "o")
    np.testing.assert_array_equal(read_sequence(tmp_path / "o").frames, frames)
    with read_archive(tmp_path / "c") as a:
        assert "off" not in a.sequence.model  # the model was never stopped
    real = SequenceHeader.from_json

    def with_off(h, *args, **kw):
        header = real(h, *args, **kw)
        return type(header)(**dict(header.__dict__, model=dict(header.model, off=[3])))

    monkeypatch.setattr(SequenceHeader, "from_json", staticmethod(with_off))
    with read_archive(tmp_path / "c") as a:
        assert a.sequence.model["off"] == [3]  # as the patched reader reports it
        with pytest.raises(TezipError, match="the model stops, but every pixel is predicted by it"):
            pipeline.decode_range(pipeline.load_archive_model(tiny_model(3), a), a, None, (0, 12))


def test_trial_records_of_short_windows_stay_bounded(tiny_model, tmp_path, monkeypatch):
    """Windows shorter than the trial are never judged: their records are dropped beyond
    MAX_TRIAL_RECORDS (memory must not grow with the run), oldest first."""
    monkeypatch.setattr(coding, "MAX_TRIAL_RECORDS", 5)
    seen = []
    real = coding.SequenceEncoder._finish

    def spy(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        seen.append(len(self._paid))
        return out

    monkeypatch.setattr(coding.SequenceEncoder, "_finish", spy)
    frames = make_sequence(tmp_path / "in", n_frames=25, height=16, width=24, seed=3, noise=2)
    with contextlib.redirect_stdout(io.StringIO()):
        compress(tiny_model(3), tmp_path / "in", tmp_path / "c", warmup=1, window=2, lanes=1)  # 2 < MODEL_TRIAL
        decompress_folder(tiny_model(3), tmp_path / "c", tmp_path / "o")
    np.testing.assert_array_equal(read_sequence(tmp_path / "o").frames, frames)
    assert max(seen) == 5 and len(seen) > 10
