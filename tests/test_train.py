"""Training (`tezip.py -l`) on a learnable synthetic motion: the validation loss falls."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_sequence
from prednet.train import TrainOptions, baseline_losses, sequence_starts, train
from train_data_create import create_train_data

REPO = Path(__file__).resolve().parents[1]


def make_train_data(root, n_seq=5, n_frames=16, height=32, width=48, channels=3):
    seqs = root / "seqs"
    for i in range(n_seq):
        make_sequence(seqs / f"seq{i}", n_frames=n_frames, height=height, width=width, channels=channels, seed=10 + i)
    create_train_data(seqs, root / "data", val_dirs=["seq0"])
    return root / "data"


def test_sequence_starts_stay_inside_one_source():
    sources = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 6)
    starts = sequence_starts(sources, 4)
    assert list(starts) == [0, 1, 8, 9, 10]


def test_baseline_losses_on_a_steady_brightening():
    # every pixel of frame t is 0.1 + 0.05 t: the previous frame is off by 0.05 everywhere, linear
    # extrapolation is exact from t = 2 on (at t = 1 it has only the previous frame)
    nt = 6
    x = np.broadcast_to((0.1 + 0.05 * np.arange(nt, dtype=np.float32))[None, :, None, None, None], (2, nt, 4, 4, 1))
    black, previous, extrapolation = baseline_losses([(np.array(x), None)])
    assert np.isclose(black, np.mean(0.1 + 0.05 * np.arange(1, nt)) / 2, atol=1e-6)
    assert np.isclose(previous, 0.05 / 2, atol=1e-6)
    assert np.isclose(extrapolation, 0.05 / 2 / (nt - 1), atol=1e-6)
    # from step 2 on (where a skip over 2 frames counts): extrapolation is exact
    black, previous, extrapolation = baseline_losses([(np.array(x), None)], first=2)
    assert np.isclose(black, np.mean(0.1 + 0.05 * np.arange(2, nt)) / 2, atol=1e-6)
    assert np.isclose(previous, 0.05 / 2, atol=1e-6) and extrapolation < 1e-7


def test_skip_models_count_the_loss_from_their_first_steady_step():
    from prednet.model import PredNet, default_config, first_counted_step, loss_weights

    def net(**kw):
        return PredNet(**default_config(1, (4, 8, 8)), **kw)

    assert first_counted_step(net()) == 1 and first_counted_step(net(skip_filt_size=3)) == 2
    assert first_counted_step(net(skip_filt_size=3, skip_frames=4)) == 4
    assert loss_weights(3, 6)[1] == [0.0] + [0.2] * 5
    assert loss_weights(3, 6, first=4)[1] == [0.0] * 4 + [0.5] * 2
    assert loss_weights(3, 3, first=4)[1] == [0.0, 0.0, 1.0]  # never all zero


def test_training_lowers_validation_loss(tmp_path):
    data = make_train_data(tmp_path)
    opts = TrainOptions(epochs=6, steps_per_epoch=12, batch_size=4, nt=6, val_sequences=8, hidden_stack=(8, 16, 16), seed=0)
    result = train(tmp_path / "model", data, opts)
    assert len(result.val_loss) == 6
    # learned something: better than its first epoch and far better than predicting black frames
    assert result.best_val_loss < result.val_loss[0]
    assert result.best_val_loss < 0.5 * result.blank_val_loss
    assert 0 < result.extrapolation_val_loss and 0 < result.previous_val_loss < result.blank_val_loss
    doc = json.loads((tmp_path / "model" / "prednet_model.json").read_text())
    assert doc["architecture"]["stack_sizes"] == [3, 8, 16, 16]
    assert doc["training"]["best_epoch"] == result.best_epoch
    assert (tmp_path / "model" / "prednet_weights.hdf5").stat().st_size > 1000


def test_cli_learn_with_crops_prints_summary(tmp_path):
    data = make_train_data(tmp_path, n_seq=3, n_frames=10, height=40, width=40, channels=1)
    r = subprocess.run(
        [sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(data), "--epochs", "2", "--steps", "2",
         "--batch", "2", "--nt", "4", "--crop", "16", "24", "--stack", "4", "8", "8", "-f", "-v"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "CPU MODE"
    assert lines[-1].startswith("trained 2 epochs")
    assert "previous frame" in lines[-1] and "linear extrapolation" in lines[-1]
    # -v: each epoch's validation loss next to the two predictors that need no training
    assert sum(line.startswith("  val loss") and "linear extrapolation" in line for line in lines) == 2
    doc = json.loads((tmp_path / "m" / "prednet_model.json").read_text())
    assert doc["architecture"]["stack_sizes"] == [1, 4, 8, 8]
    assert doc["training"]["crop"] == [16, 24]


def test_cli_learn_missing_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert not (tmp_path / "m").exists()


def test_cli_learn_bad_numbers_are_argument_errors(tmp_path):
    """QA: --nt 1, --epochs 0 ... exited 1 (a data error); they are argument errors: exit 2, one
    line, nothing written."""
    for option in (["--nt", "1"], ["--epochs", "0"], ["--steps", "0"], ["--batch", "0"], ["--crop", "0", "16"],
                   ["--crop", "-16", "8"], ["--stack", "0", "8", "16"], ["--stack", "4", "8", "200000"],
                   ["--stack", *"1" * 9], ["--val-sequences", "0"]):
        r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path), *option],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (option, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and option[0] in r.stderr
        assert not (tmp_path / "m").exists()


def tiny_options(**kw):
    return TrainOptions(**dict(dict(epochs=1, steps_per_epoch=1, batch_size=2, nt=4, val_sequences=2,
                                    hidden_stack=(2, 4), seed=0), **kw))


def model_files(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_learn_keeps_an_existing_model_unless_overwrite(tmp_path):
    """QA: a second -l into the same MODEL_DIR replaced its model silently, and the archives made
    with it no longer decompressed. Now refused with one line, the model untouched; --overwrite
    replaces it (both files together)."""
    from base.errors import TezipError
    from prednet.modelfile import load_model

    data = make_train_data(tmp_path, n_seq=3, n_frames=8, height=16, width=16, channels=1)
    first = train(tmp_path / "m", data, tiny_options(seed=1))
    before = model_files(tmp_path / "m")
    assert sorted(before) == ["prednet_model.json", "prednet_weights.hdf5"]  # no lock or temporary left
    with pytest.raises(TezipError, match=r"^MODEL_DIR .*m is not empty \(use --overwrite"):
        train(tmp_path / "m", data, tiny_options(seed=2))
    assert model_files(tmp_path / "m") == before
    second = train(tmp_path / "m", data, tiny_options(seed=2, overwrite=True))
    assert second.digest != first.digest
    assert json.loads((tmp_path / "m" / "prednet_model.json").read_text())["digest"] == second.digest
    load_model(tmp_path / "m")  # the two files belong together


def test_learn_refuses_bad_model_dirs_before_reading_data(tmp_path):
    from base.errors import TezipError
    from base.publish import OutputFolder

    data = make_train_data(tmp_path, n_seq=3, n_frames=8, height=16, width=16, channels=1)
    with pytest.raises(TezipError, match="names the bundled model"):
        train("default", data, tiny_options())
    from prednet.modelfile import DEFAULT_MODEL_DIR

    before = model_files(DEFAULT_MODEL_DIR)
    (tmp_path / "link").symlink_to(DEFAULT_MODEL_DIR)
    for path in (DEFAULT_MODEL_DIR, tmp_path / "link"):  # QA: by its path it was replaced with --overwrite
        with pytest.raises(TezipError, match="is the bundled model's folder"):
            train(path, data, tiny_options(overwrite=True))
    assert model_files(DEFAULT_MODEL_DIR) == before
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(TezipError, match="^MODEL_DIR .*dangling is a symbolic link to .*nowhere, which does not exist"):
        train(tmp_path / "dangling", data, tiny_options())
    assert not Path("default").exists()
    with pytest.raises(TezipError, match="^MODEL_DIR .* lies inside DATA_DIR"):
        train(data / "m", data, tiny_options())
    (tmp_path / "file").write_text("x")
    with pytest.raises(TezipError, match="^MODEL_DIR .*file exists and is not a folder"):
        train(tmp_path / "file", data, tiny_options())
    with OutputFolder(tmp_path / "busy", label="MODEL_DIR"):  # another run holds it
        with pytest.raises(TezipError, match="^MODEL_DIR .*busy is in use by another TEZip run"):
            train(tmp_path / "busy", data, tiny_options())
    with pytest.raises(TezipError, match=r"^--crop 2 2 is smaller than the model's minimum size 4x4"):
        train(tmp_path / "m", data, tiny_options(crop=(2, 2)))
    assert not (tmp_path / "m").exists() and not (tmp_path / "busy").exists()


@pytest.mark.parametrize("skip", [0, 3])
def test_ctrl_c_during_training(tmp_path, monkeypatch, skip):
    """Ctrl-C in the first epoch: a skip model has already written its least-squares start, which
    MODEL_DIR keeps and the message names; a model without one leaves no MODEL_DIR."""
    import prednet.train as train_module
    from prednet.modelfile import load_model

    data = make_train_data(tmp_path, n_seq=3, n_frames=8, height=16, width=16, channels=1)

    batch = train_module.SequenceBatches.__getitem__

    def interrupt(self, i):  # the first training batch (the validation batches are fixed)
        if not self.fixed:
            raise KeyboardInterrupt
        return batch(self, i)

    monkeypatch.setattr(train_module.SequenceBatches, "__getitem__", interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        train(tmp_path / "m", data, tiny_options(skip=skip))
    if skip:
        assert isinstance(caught.value, train_module.TrainingInterrupted)
        assert "holds the best model so far (epoch 0, the least-squares start" in caught.value.message
        assert sorted(model_files(tmp_path / "m")) == ["prednet_model.json", "prednet_weights.hdf5"]
        load_model(tmp_path / "m")
    else:
        assert not isinstance(caught.value, train_module.TrainingInterrupted)
        assert not (tmp_path / "m").exists()


def _rewrite_frames(data, transform):
    import hickle

    for name in ("X_train.hkl", "X_val.hkl"):
        hickle.dump(transform(hickle.load(str(data / name))), str(data / name), mode="w")


def test_training_data_of_another_dtype_is_refused(tmp_path):
    """Frames already in [0, 1] as floats were divided by 255 again, int8 ones wrapped, and a model
    was written (QA): TEZip trains on what train_data_create.py writes, uint8 or uint16."""
    from base.errors import TezipError

    data = make_train_data(tmp_path, n_seq=3, n_frames=8, height=16, width=16, channels=1)
    _rewrite_frames(data, lambda x: x.astype(np.float32) / 255)
    with pytest.raises(TezipError, match="hold float32 frames; TEZip trains on uint8 or uint16"):
        train(tmp_path / "m", data, tiny_options())
    assert not (tmp_path / "m").exists()

