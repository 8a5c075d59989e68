"""PredNet model: output shapes for every mode, odd frame sizes, step == call, save/load, backends."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from prednet.model import PredNet, default_config, padded_size  # noqa: E402
from prednet.modelfile import load_model, save_model  # noqa: E402
from prednet.predictor import NextFramePredictor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = (4, 8, 8)  # hidden channels of a 4-layer model small enough for fast CPU tests


def tiny(channels, mode="prediction", **kw):
    return PredNet(**default_config(channels, TINY), output_mode=mode, **kw)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("height,width", [(32, 48), (30, 45), (17, 9)])
def test_output_shapes_every_mode(channels, height, width):
    x = np.random.default_rng(0).random((2, 3, height, width, channels), dtype=np.float32)
    ph, pw = padded_size(height, width, 4)
    assert ph % 8 == 0 and pw % 8 == 0 and ph - height < 8 and pw - width < 8
    expected = {
        "prediction": (2, 3, height, width, channels),
        "error": (2, 3, 4),
        "R0": (2, 3, ph, pw, channels),
        "E1": (2, 3, ph // 2, pw // 2, 2 * TINY[0]),
        "A2": (2, 3, ph // 4, pw // 4, TINY[1]),
        "Ahat3": (2, 3, ph // 8, pw // 8, TINY[2]),
    }
    for mode, shape in expected.items():
        net = tiny(channels, mode)
        y = np.asarray(net(x))
        assert y.shape == shape, mode
        assert tuple(net.compute_output_shape(x.shape)) == shape
        assert np.all(np.isfinite(y))


def test_predictions_bounded_and_errors_nonnegative():
    x = np.random.default_rng(1).random((2, 4, 16, 16, 3), dtype=np.float32)
    pred = np.asarray(tiny(3, "prediction")(x))
    assert pred.min() >= 0.0 and pred.max() <= 1.0  # Ahat_0 saturates at pixel_max
    err = np.asarray(tiny(3, "error")(x))
    assert err.min() >= 0.0


def test_default_architecture_is_tezips():
    net = PredNet(**default_config(3))
    assert net.stack_sizes == (3, 48, 96, 192)
    assert net.R_filt_sizes == (3, 3, 3, 3) and net.A_filt_sizes == (3, 3, 3)
    assert net.LSTM_inner_activation == "hard_sigmoid"


def test_unknown_output_mode_rejected():
    with pytest.raises(ValueError):
        tiny(3, "R9")
    with pytest.raises(ValueError):
        tiny(3, "bogus")


def test_extrapolation_ignores_later_inputs():
    """From extrap_start_time on the model sees only its own predictions."""
    rng = np.random.default_rng(2)
    a = rng.random((1, 5, 16, 16, 3), dtype=np.float32)
    b = a.copy()
    b[:, 2:] = rng.random((1, 3, 16, 16, 3), dtype=np.float32)
    net = tiny(3, "prediction", extrap_start_time=2)
    np.testing.assert_array_equal(np.asarray(net(a)), np.asarray(net(b)))
    plain = tiny(3, "prediction")
    plain.build()
    plain.set_weights(net.get_weights())
    assert not np.array_equal(np.asarray(plain(a)), np.asarray(plain(b)))


def test_step_predictor_matches_whole_sequence_call():
    """predict/update one step at a time computes what `call` computes, for extrapolation (the
    model shown its own prediction) and for real inputs."""
    rng = np.random.default_rng(3)
    x = rng.random((2, 4, 20, 28, 3), dtype=np.float32)
    for extrap_start in (1, None):
        net = tiny(3, "prediction", extrap_start_time=extrap_start)
        full = np.asarray(net(x))
        pred = NextFramePredictor(net, 20, 28, batch=2)
        for t in range(4):
            out = pred.predict(np.full(2, 1.0 if t == 0 else 0.0, np.float32))
            np.testing.assert_allclose(out, full[:, t], atol=1e-5)
            pred.update(out if (extrap_start is not None and t >= extrap_start) else x[:, t])


def test_lanes_are_independent_and_reset_restarts():
    """A lane's predictions do not depend on what other lanes hold; reset zeroes its state."""
    rng = np.random.default_rng(4)
    frames = rng.random((3, 16, 16, 3), dtype=np.float32)
    net = tiny(3, "prediction")
    p1 = NextFramePredictor(net, 16, 16, batch=2)
    p2 = NextFramePredictor(net, 16, 16, batch=2)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    first = p1.predict(ones)
    p2.predict(ones)
    p1.update(np.stack([frames[0], frames[1]]))
    p2.update(np.stack([frames[0], frames[2]]))
    a, b = p1.predict(zeros), p2.predict(zeros)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert not np.allclose(a[1], b[1])
    # a reset lane starts over: the same output as the very first step
    np.testing.assert_array_equal(p1.predict(ones), first)


def test_save_load_gives_identical_predictions(tmp_path):
    net = tiny(1, "prediction")
    x = np.random.default_rng(5).random((1, 3, 24, 24, 1), dtype=np.float32)
    before = np.asarray(net(x))
    digest = save_model(tmp_path / "m", net)
    assert (tmp_path / "m" / "prednet_model.json").is_file()
    assert (tmp_path / "m" / "prednet_weights.hdf5").is_file()
    loaded, doc = load_model(tmp_path / "m", output_mode="prediction")
    assert doc["digest"] == digest
    np.testing.assert_array_equal(np.asarray(loaded(x)), before)


def test_load_model_errors(tmp_path):
    from base.errors import TezipError

    with pytest.raises(TezipError, match="does not exist"):
        load_model(tmp_path / "nothing")
    (tmp_path / "m").mkdir()
    with pytest.raises(TezipError, match="prednet_model.json"):
        load_model(tmp_path / "m")
    save_model(tmp_path / "m", tiny(3))
    (tmp_path / "m" / "prednet_weights.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(TezipError, match="HDF5"):
        load_model(tmp_path / "m")


SECOND_BACKEND = """
import os, sys, numpy as np
os.environ["KERAS_BACKEND"] = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import keras
from prednet.model import PredNet, default_config
assert keras.backend.backend() == sys.argv[1]
net = PredNet(**default_config(3, (4, 8, 8)), output_mode="prediction", extrap_start_time=2)
y = keras.ops.convert_to_numpy(net(np.random.default_rng(0).random((1, 3, 20, 28, 3), dtype=np.float32)))
assert y.shape == (1, 3, 20, 28, 3) and np.isfinite(y).all()
print("ok")
"""


@pytest.mark.parametrize("backend,module", [("jax", "jax"), ("torch", "torch")])
def test_forward_pass_under_second_backend(backend, module):
    pytest.importorskip(module)
    r = subprocess.run([sys.executable, "-c", SECOND_BACKEND, backend, str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
