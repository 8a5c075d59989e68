"""PredNet with a linear skip (`-l --skip K`, prednet.model.LinearSkip): the model predicts a
correction to a learned K x K filter of the two previous frames that starts as linear
extrapolation. Untrained it predicts by extrapolation; the reference kernel follows Keras, keeps
its bits across batches, resets and the emulated CUDA source; training on a drifting smooth field
beats extrapolation; archives made with it decode exactly (lossless) and within the bound. The same
for a skip that sees more previous frames (`--skip-frames N`), whose least-squares taps average
more frames' noise."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from conftest import TINY_STACK  # noqa: E402
from prednet import reference as ref  # noqa: E402
from prednet.scale import ValueScale  # noqa: E402
from test_reference import EmulatedCuda, run_schedule as run_lanes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def drifting_field(n, height, width, seed=0, drift=(0.35, 0.8), sigma=2.0):
    """(n, H, W, 1) uint16: smooth blobs carried by a uniform sub-pixel drift (Fourier shift), with
    Gaussian read noise σ counts: dynamics extrapolation cannot follow and a 3 x 3 filter can."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.zeros((height, width))
    for _ in range(12):
        cy, cx, s = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 8)
        field += rng.uniform(-1, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    ky = np.fft.fftfreq(height)[:, None]
    kx = np.fft.fftfreq(width)[None, :]
    spectrum = np.fft.fft2(field)
    frames = []
    for t in range(n):
        shift = np.exp(-2j * np.pi * (ky * drift[0] * t + kx * drift[1] * t))
        frames.append(np.real(np.fft.ifft2(spectrum * shift)))
    frames = np.stack(frames)
    frames = 8000 + (frames - frames.min()) / (frames.max() - frames.min()) * 40000
    frames += rng.normal(0, sigma, frames.shape)
    return np.clip(np.rint(frames), 0, 65535).astype(np.uint16)[..., None]


def write_tiffs(folder, frames):
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        tifffile.imwrite(folder / f"f_{i:04d}.tif", f[..., 0], photometric="minisblack")
    return folder


def train_on(root, frames, skip, epochs, steps, seed=0, skip_frames=2, frame_input=False, **more):
    from prednet.train import TrainOptions, train
    from train_data_create import create_train_data

    cut = int(len(frames) * 0.75)
    write_tiffs(root / "seqs" / "train", frames[:cut])
    write_tiffs(root / "seqs" / "val", frames[cut:])
    create_train_data(root / "seqs", root / "data", val_dirs=["val"])
    options = TrainOptions(epochs=epochs, steps_per_epoch=steps, batch_size=4, nt=6, val_sequences=8,
                           crop=(32, 32), hidden_stack=TINY_STACK, seed=seed, skip=skip,
                           skip_frames=skip_frames, frame_input=frame_input, **more)
    return root / "model", train(root / "model", root / "data", options)


@pytest.fixture(scope="module")
def skip_model(tmp_path_factory):
    """A tiny 1-channel model with a 3 x 3 skip, trained on a drifting field: (folder, TrainResult)."""
    root = tmp_path_factory.mktemp("skip")
    return train_on(root, drifting_field(40, 48, 48), skip=3, epochs=4, steps=12)


@pytest.fixture(scope="module")
def skip3_model(tmp_path_factory):
    """The same with a 3 x 3 skip that sees 3 previous frames (-l --skip 3 --skip-frames 3)."""
    root = tmp_path_factory.mktemp("skip3")
    return train_on(root, drifting_field(40, 48, 48), skip=3, epochs=2, steps=6, skip_frames=3)


@pytest.fixture(scope="module")
def frame_input_model(tmp_path_factory):
    """The same with a 3 x 3 skip of 3 frames whose planes layer 0 also sees (-l --frame-input),
    its taps started from extrapolation, so that an epoch, not the start, is kept: its correction
    is not zero and depends on the planes."""
    root = tmp_path_factory.mktemp("frame_input")
    return train_on(root, drifting_field(40, 48, 48), skip=3, epochs=2, steps=6, skip_frames=3, frame_input=True,
                    skip_fit=False)


# the tests that hold for any skip model run on all
SKIP_MODELS = ["skip_model", "skip3_model", "frame_input_model"]


def untrained(skip=5, channels=1, frames=2):
    from prednet.model import PredNet, default_config

    net = PredNet(**default_config(channels, TINY_STACK), output_mode="prediction", skip_filt_size=skip,
                  skip_frames=frames, name="prednet")
    net.build()
    return net


def frames01(n=7, height=20, width=28, seed=1):
    v = drifting_field(n, height, width, seed=seed)
    return ValueScale.for_frames(v).to_model(v)


@pytest.mark.parametrize("frames", [2, 4])
def test_untrained_predicts_linear_extrapolation(frames):
    import keras

    x = frames01()[None]  # (1, T, H, W, 1)
    net = untrained(frames=frames)
    keras_out = keras.ops.convert_to_numpy(net(x))[0]
    extrapolation = np.clip(2 * x[0, 1:-1] - x[0, :-2], 0, 1)
    assert np.abs(keras_out[2:] - extrapolation).max() < 1e-6
    assert np.abs(keras_out[1] - x[0, 0]).max() < 1e-6  # one frame seen: no motion yet
    p = ref.ReferencePredictor(net, 20, 28, 1)
    out = []
    for t in range(x.shape[1]):
        out.append(p.predict(np.array([t == 0], np.float32))[0])
        p.update(x[:, t])
    out = np.stack(out)
    assert np.abs(out[2:] - extrapolation).max() < 1e-6
    assert np.abs(out[1] - x[0, 0]).max() < 1e-6


def test_training_beats_extrapolation_on_a_drift(skip_model):
    """The learnt taps follow a sub-pixel drift that extrapolation (and the previous frame) cannot."""
    _, result = skip_model
    assert result.best_val_loss < 0.9 * min(result.extrapolation_val_loss, result.previous_val_loss), result


RESETS = np.array([[1, 1, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]], np.float32)


def lanes_of(n_lanes, steps=7, height=20, width=28):
    return np.stack([frames01(steps, height, width, seed=10 + k) for k in range(n_lanes)], axis=1)


@pytest.mark.parametrize("model", SKIP_MODELS)
def test_reference_close_to_keras_and_the_same_bits_in_any_batch(request, model):
    import keras

    from prednet.modelfile import load_model

    folder, _ = request.getfixturevalue(model)
    weights = ref.ReferenceWeights.from_model_dir(folder)
    frames = lanes_of(3)
    batch = run_lanes(ref.ReferencePredictor(weights, 20, 28, 3), frames, RESETS)
    for k in range(3):
        alone = run_lanes(ref.ReferencePredictor(weights, 20, 28, 1), frames[:, k: k + 1], RESETS[:, k: k + 1])
        assert alone.tobytes() == batch[:, k: k + 1].tobytes()
    # each lane from its last reset on is what Keras predicts for that stretch of frames
    net, _ = load_model(folder)
    for k in range(3):
        start = max(s for s in range(len(RESETS)) if RESETS[s, k])
        keras_out = keras.ops.convert_to_numpy(net(frames[None, start:, k]))[0]
        assert np.abs(batch[start:, k] - keras_out).max() < 1e-4
    assert 0.0 <= batch.min() and batch.max() <= 1.0


@pytest.mark.parametrize("model", SKIP_MODELS)
def test_emulated_cuda_source_equals_numba(request, model, tmp_path_factory):
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("no g++ to compile the CUDA source for the CPU")
    weights = ref.ReferenceWeights.from_model_dir(request.getfixturevalue(model)[0])
    frames = lanes_of(3, steps=4, height=12, width=20)
    numba_out = run_lanes(ref.ReferencePredictor(weights, 12, 20, 3), frames, RESETS[:4])
    gpu = ref.ReferencePredictor(weights, 12, 20, 3, ops=ref.CudaOps(np, EmulatedCuda(tmp_path_factory.mktemp("cu"))))
    assert run_lanes(gpu, frames, RESETS[:4]).tobytes() == numba_out.tobytes()


@pytest.mark.parametrize("model, bound", [("skip_model", 0), ("skip_model", 2), ("skip3_model", 0),
                                          ("frame_input_model", 0), ("frame_input_model", 2)])
def test_archives_with_a_skip_model_round_trip(request, model, tmp_path, bound):
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from sequence.plan import CodecPlan, RunFlags

    frames = drifting_field(14, 40, 56, seed=7)
    images = write_tiffs(tmp_path / "in", frames)
    model = str(request.getfixturevalue(model)[0])
    compress_folder(model, images, tmp_path / "c", CodecPlan.make(window=13, bounds=(bound,)), RunFlags())
    decompress_folder(model, tmp_path / "c", tmp_path / "out", RunFlags())
    import tifffile

    out = np.stack([tifffile.imread(tmp_path / "out" / f"f_{i:04d}.tif") for i in range(14)])
    assert np.abs(out.astype(np.int64) - frames[..., 0]).max() <= bound



def test_model_trial_starts_after_the_skips_history_fills(skip3_model, tmp_path, monkeypatch):
    """A skip over N frames sees the keyframe repeated for a window's first N - 1 predicted frames,
    where it predicts worse than it will: the model's trial (sequence.coding.MODEL_TRIAL frames)
    starts after them. With MODEL_PAYS above every byte the model stops right after its trial:
    frame 1 + (N - 1) + MODEL_TRIAL of each window, not 1 + MODEL_TRIAL; the archive decodes."""
    from compress.pipeline import compress_folder
    from archive import read_archive
    from decompress.pipeline import decompress_folder
    from sequence import coding
    from sequence.plan import CodecPlan, RunFlags

    import tifffile

    monkeypatch.setattr(coding, "MODEL_PAYS", 2.0)
    frames = drifting_field(22, 40, 56, seed=7)
    images = write_tiffs(tmp_path / "in", frames)
    model = str(skip3_model[0])
    compress_folder(model, images, tmp_path / "c", CodecPlan.make(window=10, bounds=(0,)), RunFlags())
    with read_archive(tmp_path / "c") as a:
        assert a.sequence.keyframes == [0, 11] and a.sequence.model["off"] == [k + 3 + coding.MODEL_TRIAL for k in (0, 11)]
    decompress_folder(model, tmp_path / "c", tmp_path / "out", RunFlags())
    out = np.stack([tifffile.imread(tmp_path / "out" / f"f_{i:04d}.tif") for i in range(22)])
    np.testing.assert_array_equal(out, frames[..., 0])

def test_model_files_record_the_skip(skip_model):
    import json

    from prednet.modelfile import SKIP_KEYS, load_weights

    folder, _ = skip_model
    arch = json.loads((folder / "prednet_model.json").read_text())["architecture"]
    assert arch["skip_filt_size"] == 3 and set(SKIP_KEYS) <= set(arch)
    assert "skip_frames" not in arch  # 2, as every skip model before the key: digests unchanged
    weights, _ = load_weights(folder)
    assert weights.skip_filt_size == 3 and weights.skip()[0].shape == (1, 2, 3, 3)


def test_model_files_record_the_skip_frames(skip3_model, tmp_path):
    import json
    import shutil

    from base.errors import TezipError
    from prednet.modelfile import load_weights

    folder, _ = skip3_model
    arch = json.loads((folder / "prednet_model.json").read_text())["architecture"]
    assert arch["skip_frames"] == 3
    weights, _ = load_weights(folder)
    assert weights.skip_frames == 3 and weights.skip()[0].shape == (1, 3, 3, 3)
    # a model file whose frames do not match its skip's weights is refused, not misread
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    doc = json.loads((bad / "prednet_model.json").read_text())
    doc["architecture"]["skip_frames"] = 4
    (bad / "prednet_model.json").write_text(json.dumps(doc))
    with pytest.raises(TezipError, match="skip"):
        load_weights(bad)


def plane_channels(weights):
    """Where layer 0's LSTM input holds the frame input planes: after R_0 and E_0."""
    start = weights.R_stack_sizes[0] + 2 * weights.channels
    return slice(start, start + weights.skip_frames * weights.channels)


def test_model_files_record_the_frame_input(frame_input_model, tmp_path):
    import json
    import shutil

    from base.errors import TezipError
    from prednet.modelfile import load_weights

    folder, _ = frame_input_model
    arch = json.loads((folder / "prednet_model.json").read_text())["architecture"]
    assert len(arch["frame_input_offset"]) == len(arch["frame_input_scale"]) == 3
    weights, _ = load_weights(folder)
    # layer 0's LSTM takes R_0, E_0 (2), the 3 planes and R_1: the planes' weights are used
    w, planes = weights.weights["lstm_0/kernel"], plane_channels(weights)
    assert w.shape[2] == weights.R_stack_sizes[0] + 2 + 3 + weights.R_stack_sizes[1]
    assert np.abs(w[:, :, planes]).max() > 0
    assert weights.frame_input[1].dtype == np.float32
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    doc = json.loads((bad / "prednet_model.json").read_text())
    doc["architecture"]["frame_input_scale"] = [1.0, 1.0]
    (bad / "prednet_model.json").write_text(json.dumps(doc))
    with pytest.raises(TezipError, match="frame input"):
        load_weights(bad)


def test_frame_input_reaches_the_prediction(frame_input_model):
    """The planes change what the reference kernel predicts (zeroing their weights changes it),
    so the Keras agreement above covers them."""
    folder, _ = frame_input_model
    weights = ref.ReferenceWeights.from_model_dir(folder)
    frames = lanes_of(2)
    with_planes = run_lanes(ref.ReferencePredictor(weights, 20, 28, 2), frames, RESETS[:, :2])
    blind = dict(weights.weights)
    blind["lstm_0/kernel"] = blind["lstm_0/kernel"].copy()
    blind["lstm_0/kernel"][:, :, plane_channels(weights)] = 0.0
    without = run_lanes(ref.ReferencePredictor(ref.ReferenceWeights(weights.arch, blind), 20, 28, 2), frames,
                        RESETS[:, :2])
    assert np.abs(with_planes - without)[1:].max() > 1e-6


def test_plane_statistics_normalise_the_planes():
    from prednet.skipfit import plane_statistics

    frames = drifting_field(12, 32, 40, seed=3).astype(np.float32) / 65535.0
    offset, scale = plane_statistics(lambda i: frames[i], list(range(10)), frames=3)
    planes = [frames[2:], frames[2:] - frames[1:-1], frames[1:-1] - frames[:-2]]
    for j, p in enumerate(planes):
        z = (p - offset[j]) * scale[j]
        assert abs(float(z.mean())) < 0.1 and 0.8 < float(z.std()) < 1.2


def test_keras_frame_stepper_refuses_a_skip_model():
    from prednet.predictor import NextFramePredictor

    with pytest.raises(ValueError, match="linear skip"):
        NextFramePredictor(untrained(3), 16, 16, 1)


@pytest.mark.parametrize("args, message", [(["--skip", "3", "--skip-frames", "1"], "--skip-frames must be 2 to 8"),
                                           (["--skip", "3", "--skip-frames", "9"], "--skip-frames must be 2 to 8"),
                                           (["--skip-frames", "3"], "--skip-frames needs --skip K"),
                                           (["--frame-input"], "--frame-input needs --skip K"),
                                           # the loss counts from step N: 8 frames of history on 4-frame sequences
                                           (["--skip", "3", "--skip-frames", "8", "--nt", "4"], "--nt must be at least 9")])
def test_cli_refuses_bad_skip_frames(tmp_path, args, message):
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "d"), *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()[-1]) < 200
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["4", "-1", "17"])
def test_cli_refuses_a_bad_skip(tmp_path, value):
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "d"),
                        "--skip", value], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert "--skip must be 0, auto or an odd filter size" in r.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, message", [(["--skip", "x"], "argument --skip: must be an odd filter size or auto"),
                                           (["--skip", "auto", "--skip-frames", "4"],
                                            "--skip-frames is chosen by --skip auto")])
def test_cli_refuses_a_bad_skip_auto(tmp_path, args, message):
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "d"), *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()[-1]) < 200
    assert not (tmp_path / "m").exists()


def test_choose_skip_keeps_the_size_that_predicts_validation_best():
    """prednet.skipfit.choose_skip on a noisy drift: a 5 x 5 skip over 6 frames (averages the
    read noise of more history) predicts the validation frames better than 3 x 3 over 2 and is
    chosen; a size needing longer runs than the validation sequence holds is left out; the error
    it reports is the chosen taps' real error on the validation frames."""
    from prednet.skipfit import choose_skip, fit_skip, skip_kernel
    from prednet.train import sequence_starts

    v = drifting_field(40, 40, 40, seed=4, sigma=60.0)
    x = ValueScale.for_frames(v).to_model(v)
    train_x, val_x = x[:30], x[30:]  # validation: 10 frames, runs of at most 10
    train_src, val_src = np.zeros(30, int), np.zeros(10, int)
    seen = []
    K, N, errors, (taps, bias) = choose_skip(lambda i: train_x[i], lambda n: sequence_starts(train_src, n),
                                             lambda i: val_x[i],
                               lambda n: sequence_starts(val_src, n), candidates=((3, 2), (5, 6), (5, 10)),
                               report=lambda k, n, e: seen.append((k, n, e is None)))
    assert (K, N) == (5, 6) and seen == [(3, 2, False), (5, 6, False), (5, 10, True)]  # 5x5/10 reported left out
    assert set(errors) == {"3x3/2", "5x5/6"}
    assert errors["5x5/6"] < 0.9 * errors["3x3/2"], errors
    net = untrained(skip=5, frames=6)
    kernel, bias = fit_skip(lambda i: train_x[i], sequence_starts(train_src, 7), 5, net.skip.gain, frames=6)
    chosen = skip_kernel(taps, bias, 5, net.skip.gain)  # the search's own fit: the same taps
    assert np.array_equal(chosen[0], kernel) and np.array_equal(chosen[1], bias)
    net.skip.kernel.assign(kernel)
    net.skip.bias.assign(bias)
    import keras

    out = keras.ops.convert_to_numpy(net(val_x[None]))[0]
    measured = np.abs(out[6:] - val_x[6:]).mean() / 2  # frames with 6 real previous ones; the loss's units
    assert abs(measured - errors["5x5/6"]) < 0.05 * measured, (measured, errors)



def test_choose_skip_stops_after_two_sizes_that_do_not_beat_the_best():
    """On frames of independent noise (nothing to predict: wide fits only overfit) 3 x 3 on 2
    frames beats the two 9 x 9 sizes tried after it, and the search stops there: the size after
    them is never fitted."""
    from prednet.skipfit import choose_skip
    from prednet.train import sequence_starts

    rng = np.random.default_rng(5)
    x = rng.uniform(0.3, 0.7, (40, 32, 32, 1)).astype(np.float32)
    src = np.zeros(20, int)
    seen = []
    K, N, errors, _ = choose_skip(lambda i: x[i], lambda n: sequence_starts(src, n), lambda i: x[20 + i],
                               lambda n: sequence_starts(src, n), candidates=((3, 2), (9, 8), (9, 6), (5, 3)),
                               report=lambda k, n, e: seen.append((k, n)))
    assert (K, N) == (3, 2) and seen == [(3, 2), (9, 8), (9, 6)], errors


def test_ctrl_c_during_the_least_squares_fit_is_one_line(tmp_path):
    """SIGINT during -l --skip auto's search of sizes: one line, exit 130, no MODEL_DIR. (A QA run
    saw it surface from numba's fit as a SystemError and a traceback; that path is pinned by
    test_interrupt's test_ctrl_c_that_a_library_turns_into_its_own_error_is_still_ctrl_c.)"""
    import signal
    import time

    train_on(tmp_path / "a", drifting_field(40, 96, 96, sigma=30.0), skip=3, epochs=0, steps=1)  # the .hkl data
    proc = subprocess.Popen([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "a" / "data"),
                             "--skip", "auto", "--epochs", "0", "--stack", "4", "8", "8", "--crop", "32", "32", "--nt", "10",
                             "--val-sequences", "8", "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    for line in proc.stdout:  # the first size is fitted: the search is in the fits now
        if line.startswith("linear skip 3x3 on 2 frames"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["tezip.py: interrupted; no partial output was left"], err
    assert "Traceback" not in err and not (tmp_path / "m").exists()

def test_cli_skip_auto_records_its_choice(tmp_path):
    """-l --skip auto --epochs 0: the size tried best on the validation frames is the model's (its
    files record K and N and what each size scored), only sizes over fewer than --nt frames are
    tried, the run says which it chose, and archives made with the model decode bit-exact."""
    import json

    from prednet.modelfile import load_weights

    train_on(tmp_path / "a", drifting_field(30, 48, 48, sigma=30.0), skip=3, epochs=0, steps=1)  # the .hkl data
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "a" / "data"),
                        "--skip", "auto", "--epochs", "0", "--stack", "4", "8", "8", "--crop", "32", "32", "--nt", "6",
                        "--val-sequences", "8"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    chose = re.search(r"--skip auto chose (\d+)x\d+ taps on (\d+) frames", r.stdout)
    assert chose, r.stdout
    K, N = int(chose.group(1)), int(chose.group(2))
    weights, _ = load_weights(tmp_path / "m")
    assert (weights.skip_filt_size, weights.skip_frames) == (K, N)
    info = json.loads((tmp_path / "m" / "prednet_model.json").read_text())
    errors = info["training"]["skip_auto_errors"]
    assert min(errors, key=errors.get) == f"{K}x{K}/{N}"
    assert set(errors) <= {"3x3/2", "5x5/3", "7x7/4"} and "3x3/2" in errors  # --nt 6: over at most 5 frames
    frames = drifting_field(8, 48, 48, seed=7, sigma=30.0)
    write_tiffs(tmp_path / "in", frames)
    for args in (["-c", str(tmp_path / "m"), str(tmp_path / "in"), str(tmp_path / "z"), "-w", "7"],
                 ["-u", str(tmp_path / "m"), str(tmp_path / "z"), str(tmp_path / "out")]):
        r = subprocess.run([sys.executable, str(REPO / "tezip.py"), *args], capture_output=True, text=True,
                           cwd=tmp_path, timeout=600)
        assert r.returncode == 0, r.stderr
    import tifffile

    decoded = [tifffile.imread(f) for f in sorted((tmp_path / "out").glob("*.tif"))]
    assert len(decoded) == 8 and all(np.array_equal(d, f[..., 0]) for d, f in zip(decoded, frames))



def test_an_unknown_architecture_key_is_refused(skip_model, tmp_path):
    import json
    import shutil

    from base.errors import TezipError
    from prednet.modelfile import load_weights

    folder = tmp_path / "later"
    shutil.copytree(skip_model[0], folder)
    doc = json.loads((folder / "prednet_model.json").read_text())
    doc["architecture"]["skip_order"] = 3
    (folder / "prednet_model.json").write_text(json.dumps(doc))
    with pytest.raises(TezipError, match="skip_order, which this version of TEZip does not know"):
        load_weights(folder)


def test_least_squares_start_finds_the_drift_taps():
    """fit_skip on a sub-pixel drift: its taps predict held-out frames much better than
    extrapolation, and the model built with them predicts exactly what the taps say."""
    import keras

    from prednet.skipfit import fit_skip

    v = drifting_field(12, 40, 40, seed=3)
    x = ValueScale.for_frames(v).to_model(v)
    net = untrained(skip=5)
    kernel, bias = fit_skip(lambda i: x[i], list(range(8)), 5, net.skip.gain)
    net.skip.kernel.assign(kernel)
    net.skip.bias.assign(bias)
    out = keras.ops.convert_to_numpy(net(x[None, 8:]))[0]
    fitted = np.abs(out[2:] - x[10:]).mean()
    extrapolation = np.abs(np.clip(2 * x[9:11] - x[8:10], 0, 1) - x[10:]).mean()
    assert fitted < 0.5 * extrapolation, (fitted, extrapolation)
    p = ref.ReferencePredictor(net, 40, 40, 1)
    ours = []
    for t in range(4):
        ours.append(p.predict(np.array([t == 0], np.float32))[0])
        p.update(x[None, 8 + t])
    assert np.abs(np.stack(ours)[2:] - out[2:]).max() < 1e-5


def test_more_frames_average_more_noise():
    """On a noisy drift, a least-squares skip over 3 and 4 previous frames predicts held-out frames
    better than one over 2 (the extra changes let it average more frames' read noise); the Keras
    model and the reference kernel predict what the fitted taps say."""
    import keras

    from prednet.skipfit import fit_skip

    v = drifting_field(16, 40, 40, seed=3)
    x = ValueScale.for_frames(v).to_model(v)
    errors = {}
    for n in (2, 3, 4):
        net = untrained(skip=5, frames=n)
        kernel, bias = fit_skip(lambda i: x[i], list(range(11 - n)), 5, net.skip.gain, frames=n)
        assert kernel.shape == (5, 5, n, 1)
        net.skip.kernel.assign(kernel)
        net.skip.bias.assign(bias)
        out = keras.ops.convert_to_numpy(net(x[None, 11:]))[0]
        errors[n] = np.abs(out[n:] - x[11 + n:]).mean()
        p = ref.ReferencePredictor(net, 40, 40, 1)
        ours = []
        for t in range(5):
            ours.append(p.predict(np.array([t == 0], np.float32))[0])
            p.update(x[None, 11 + t])
        assert np.abs(np.stack(ours)[n:] - out[n:5]).max() < 1e-5
    assert errors[3] < 0.85 * errors[2] and errors[4] < 0.75 * errors[2], errors


def test_zero_epochs_fit_the_linear_skip_alone(tmp_path):
    """-l --skip K --epochs 0: the least-squares taps alone, saved as a model (PredNet's correction
    zero), which already beats extrapolation on a drift; without --skip, --epochs 0 is refused."""
    from base.errors import TezipError
    from prednet.modelfile import load_weights

    folder, result = train_on(tmp_path / "a", drifting_field(30, 48, 48), skip=3, epochs=0, steps=1, skip_frames=3)
    assert result.best_epoch == 0 and len(result.val_loss) == 1
    assert result.best_val_loss < 0.9 * min(result.extrapolation_val_loss, result.previous_val_loss), result
    weights, _ = load_weights(folder)
    assert not weights.weights["ahat_0/kernel"].any() and not weights.weights["ahat_0/bias"].any()
    with pytest.raises(TezipError, match="--epochs 0 trains nothing"):
        train_on(tmp_path / "b", drifting_field(30, 48, 48), skip=0, epochs=0, steps=1)
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "d"),
                        "--epochs", "0"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "--epochs must be at least 1" in r.stderr
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "a" / "data"),
                        "--skip", "3", "--epochs", "0", "--stack", "4", "8", "8", "--crop", "32", "32", "--nt", "6",
                        "--val-sequences", "8"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fitted the linear skip alone" in r.stdout and (tmp_path / "m" / "prednet_weights.hdf5").exists()


def test_cli_trains_a_frame_input_model(tmp_path):
    """-l --skip K --skip-frames N --frame-input: the model records the planes' normalisation and
    a first layer as wide as the second; with --epochs 0 its correction is still zero."""
    import json

    from prednet.modelfile import load_weights

    folder, _ = train_on(tmp_path / "a", drifting_field(30, 48, 48), skip=3, epochs=0, steps=1, skip_frames=3,
                         frame_input=True)
    weights, _ = load_weights(folder)
    assert weights.frame_input is not None and not weights.weights["ahat_0/kernel"].any()
    r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "a" / "data"),
                        "--skip", "3", "--skip-frames", "3", "--frame-input", "--epochs", "1", "--steps", "2",
                        "--stack", "4", "8", "8", "--crop", "32", "32", "--nt", "6", "--val-sequences", "8"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    arch = json.loads((tmp_path / "m" / "prednet_model.json").read_text())["architecture"]
    assert arch["R_stack_sizes"][:2] == [4, 4] and len(arch["frame_input_scale"]) == 3
    assert arch["frame_input_scale"][1] > 2 * arch["frame_input_scale"][0]  # frame changes are smaller: scaled up more
    # the epoch's weights (correction moved) or, when the epoch did not beat it, the start's
    best_epoch = json.loads((tmp_path / "m" / "prednet_model.json").read_text())["training"]["best_epoch"]
    weights, _ = load_weights(tmp_path / "m")
    assert bool(weights.weights["ahat_0/kernel"].any()) == (best_epoch == 1)
    assert ("(the least-squares start: no epoch beat it)" in r.stdout) == (best_epoch == 0)


def test_epochs_that_do_not_beat_the_least_squares_start_are_not_kept(tmp_path):
    """A learning rate that wrecks the model: its epoch's validation loss is above the start's,
    so the saved model is the least-squares start (correction zero), as with --epochs 0."""
    from prednet.modelfile import load_weights

    folder, result = train_on(tmp_path, drifting_field(30, 48, 48), skip=3, epochs=1, steps=3, learning_rate=0.5)
    assert result.val_loss[0] > result.start_val_loss and result.best_epoch == 0
    assert result.best_val_loss == result.start_val_loss
    weights, _ = load_weights(folder)
    assert not weights.weights["ahat_0/kernel"].any()


@pytest.mark.parametrize("train_skip", [False, True])
def test_epochs_keep_the_fitted_taps_unless_asked(tmp_path, monkeypatch, train_skip):
    """By default the epochs train PredNet's correction around the least-squares taps, which stay
    exactly as fitted; with train_skip (-l --train-skip) they move too. The model folder says which."""
    import json

    import prednet.modelfile as modelfile

    seen = []
    save = modelfile.save_model

    def keep(model_dir, prednet, info):  # the start is saved first: its taps are the fitted ones
        if not seen:
            seen.append((prednet, prednet.skip.kernel.numpy().copy()))
        return save(model_dir, prednet, info)

    monkeypatch.setattr(modelfile, "save_model", keep)  # train imports it when it runs
    folder, result = train_on(tmp_path, drifting_field(30, 48, 48), skip=3, epochs=1, steps=3, skip_frames=3,
                              frame_input=True, train_skip=train_skip, learning_rate=3e-3)
    prednet, fitted = seen[0]
    after = prednet.skip.kernel.numpy()  # the model after the epoch, kept or not
    assert prednet.ahat_convs[0].kernel.numpy().any()  # the correction trained
    assert (after == fitted).all() != train_skip, np.abs(after - fitted).max()
    info = json.loads((folder / "prednet_model.json").read_text())["training"]
    assert info["skip_trained"] == train_skip and info["skip_start"] == "least squares"


def test_cli_refuses_bad_training_options(tmp_path):
    for args, message in ((["--lr", "0"], "--lr must be a learning rate in (0, 1]"),
                          (["--lr", "nan", "--skip", "3"], "--lr must be a learning rate"),
                          (["--train-skip"], "--train-skip needs --skip K"),
                          (["--skip", "3", "--epochs", "0", "--train-skip"], "--train-skip changes what the epochs train"),
                          (["--skip", "3", "--epochs", "0", "--frame-input"], "--frame-input changes what the epochs train")):
        r = subprocess.run([sys.executable, str(REPO / "tezip.py"), "-l", str(tmp_path / "m"), str(tmp_path / "d")]
                           + args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and message in r.stderr and not (tmp_path / "m").exists(), r.stderr


def test_least_squares_start_refuses_constant_frames():
    from base.errors import TezipError
    from prednet.skipfit import fit_skip

    flat = np.full((6, 16, 16, 1), 0.5, np.float32)
    with pytest.raises(TezipError, match="singular"):
        fit_skip(lambda i: flat[i], [0, 1, 2], 3, 4.0)


@pytest.mark.parametrize("model, says", [("skip_model", r"with a 3x3 linear skip(?! of)"),
                                         ("skip3_model", r"with a 3x3 linear skip of 3 frames(?! and)"),
                                         ("frame_input_model", r"with a 3x3 linear skip of 3 frames and frame input")])
def test_verbose_decompress_names_the_skip(request, model, says, tmp_path):
    frames = drifting_field(6, 24, 32, seed=9)
    images = write_tiffs(tmp_path / "in", frames)
    model = str(request.getfixturevalue(model)[0])
    tezip = [sys.executable, str(REPO / "tezip.py")]
    subprocess.run(tezip + ["-c", model, str(images), str(tmp_path / "c"), "-w", "5"], check=True,
                   capture_output=True, timeout=300)
    r = subprocess.run(tezip + ["-u", model, str(tmp_path / "c"), str(tmp_path / "out"), "-v"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert re.search(says, r.stdout), r.stdout
