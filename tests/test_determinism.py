"""Determinism: the same input and options give byte-identical archives whatever the codec thread
counts (numba kernels, zstd chunk threads), and an archive decoded where the model arithmetic
differs stops with the checksum message instead of writing wrong pixels.

TensorFlow's own CPU thread count is *not* free: its convolutions add partial sums in an order that
depends on the intra-op thread count for some layer shapes (see README, "Determinism and
portability"); test_decoding_with_other_tensorflow_threads_is_exact_or_refused checks that such a
difference can only ever end in the clear error.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import archive
import stages.chain
from base.errors import TezipError
from frames.read import read_sequence
from conftest import REPO_ROOT, compress, make_sequence
from decompress.pipeline import decompress_folder

OPTIONS = dict(warmup=1, window=4, mode="abs", bounds=(1,), lanes=2)
CLI_OPTIONS = ["-p", "1", "-w", "4", "-m", "abs", "-b", "1", "--lanes", "2"]


def archive_bytes(folder):
    return {name: (folder / name).read_bytes() for name in archive.ARCHIVE_FILES}


def tezip(*args, **env):
    return subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), "-f", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1", **env))


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det") / "images"
    frames = make_sequence(folder, n_frames=16, height=40, width=56, channels=3, seed=21, noise=5)
    return folder, frames


@pytest.fixture(scope="module")
def reference(tiny_model, sequence, tmp_path_factory):
    """The archive compressed in this process (default thread counts)."""
    comp = tmp_path_factory.mktemp("det_ref") / "comp"
    compress(tiny_model(3), sequence[0], comp, **OPTIONS)
    return comp


def test_codec_thread_count_does_not_change_archive(tiny_model, sequence, reference, tmp_path, monkeypatch):
    for threads in (1, 2, 5):
        monkeypatch.setattr(stages.chain, "CODEC_THREADS", threads)  # the one setting, encoder and decoder
        comp = tmp_path / f"comp{threads}"
        compress(tiny_model(3), sequence[0], comp, **OPTIONS)
        assert archive_bytes(comp) == archive_bytes(reference), f"codec threads {threads}"
        back = decompress_folder(tiny_model(3), comp, tmp_path / f"out{threads}")
        assert np.abs(back.astype(int) - sequence[1]).max() <= 1


def test_numba_thread_count_does_not_change_archive(tiny_model, sequence, reference, tmp_path):
    """This process runs numba with every core (2 in CI); a fresh one with 1 thread must agree byte
    for byte, and decode the other's archive exactly."""
    import numba

    assert numba.config.NUMBA_NUM_THREADS == (os.cpu_count() or 1) or "NUMBA_NUM_THREADS" in os.environ
    single = dict(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = tezip("-c", tiny_model(3), sequence[0], tmp_path / "comp1", *CLI_OPTIONS, **single)
    assert r.returncode == 0, r.stderr
    assert archive_bytes(tmp_path / "comp1") == archive_bytes(reference)
    r = tezip("-u", tiny_model(3), reference, tmp_path / "out1", **single)
    assert r.returncode == 0, r.stderr
    expected = decompress_folder(tiny_model(3), reference, tmp_path / "out_here")
    np.testing.assert_array_equal(read_sequence(tmp_path / "out1").frames, expected)


def test_decoding_with_other_tensorflow_threads_is_exact_or_refused(tiny_model, reference, tmp_path):
    """TensorFlow's single-threaded and multi-threaded convolutions may round differently: the
    decode must then be refused by the checksums (exit 1, one line, nothing written); where the
    arithmetic agrees it is exact."""
    r = tezip("-u", tiny_model(3), reference, tmp_path / "out", TEZIP_MODEL_THREADS="1")
    if r.returncode == 0:
        expected = decompress_folder(tiny_model(3), reference, tmp_path / "out_here")
        np.testing.assert_array_equal(read_sequence(tmp_path / "out").frames, expected)
    else:
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "does not match its checksum" in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bound", [0, 2])
def test_other_model_arithmetic_fails_with_clear_message(tiny_model, sequence, tmp_path, monkeypatch, bound):
    """Another machine's arithmetic, simulated: every prediction of the real model moves by 1.5
    grey levels during decompression. The decoder must name the first frame that no longer
    matches its checksum and write nothing."""
    from prednet.predictor import NextFramePredictor

    comp = tmp_path / "comp"
    # block 0: every pixel predicted by the model (no block may fall back to the previous frame)
    compress(tiny_model(3), sequence[0], comp, **dict(OPTIONS, bounds=(bound,), block=0))
    real_predict = NextFramePredictor.predict

    def other_machine(self, reset):
        out = np.asarray(real_predict(self, reset))
        return out + np.where(out > 0.5, -1.5, 1.5).astype(out.dtype) / 255

    monkeypatch.setattr(NextFramePredictor, "predict", other_machine)
    with pytest.raises(TezipError, match=r"frame \d+ \(frame_\d+\.png, predicted frame\) does not match its checksum"
                                         r".*nothing was written") as e:
        decompress_folder(tiny_model(3), comp, tmp_path / "out")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
