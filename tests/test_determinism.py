"""Determinism: the same input and options give byte-identical archives whatever the thread counts
(numba kernels, the codec's chunk threads), and an archive decodes to the same bits whatever the
thread settings of the process decoding it: the model runs as prednet/reference.py's fixed-order
float32 kernel, so NUMBA_NUM_THREADS, OMP_NUM_THREADS and the TensorFlow thread variables that
format 2 depended on do not matter any more. An archive decoded where the model arithmetic differs
(simulated) stops with the checksum message instead of writing wrong pixels, and one that records
an arithmetic this TEZip does not have is refused before anything is decoded.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import archive
import stages.chain
from base.errors import TezipError
from benchmarks import fuzz_decoder as fz
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


@pytest.fixture(scope="module")
def expected(tiny_model, reference, sequence, tmp_path_factory):
    """The reference archive decoded in this process: within the bound of the original."""
    out = tmp_path_factory.mktemp("det_out") / "out"
    decompress_folder(tiny_model(3), reference, out)
    frames = read_sequence(out).frames
    assert 0 < np.abs(frames.astype(int) - sequence[1]).max() <= 1
    return frames


def test_codec_and_numba_thread_counts_do_not_change_archive(tiny_model, sequence, reference, expected, tmp_path,
                                                            monkeypatch):
    import numba

    default = numba.get_num_threads()
    try:
        for threads in (1, 2, 5):
            monkeypatch.setattr(stages.chain, "CODEC_THREADS", threads)  # the one setting, encoder and decoder
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            comp = tmp_path / f"comp{threads}"
            compress(tiny_model(3), sequence[0], comp, **OPTIONS)
            assert archive_bytes(comp) == archive_bytes(reference), f"threads {threads}"
            decompress_folder(tiny_model(3), comp, tmp_path / f"out{threads}")
            np.testing.assert_array_equal(read_sequence(tmp_path / f"out{threads}").frames, expected)
    finally:
        numba.set_num_threads(default)


def test_numba_thread_count_does_not_change_archive(tiny_model, sequence, reference, expected, tmp_path):
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
    np.testing.assert_array_equal(read_sequence(tmp_path / "out1").frames, expected)


THREAD_SETTINGS = {
    "one-thread": dict(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", TEZIP_MODEL_THREADS="1",
                       TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1"),
    "two-threads-workqueue": dict(NUMBA_NUM_THREADS="2", NUMBA_THREADING_LAYER="workqueue", OMP_NUM_THREADS="2",
                                  MKL_NUM_THREADS="2", TEZIP_MODEL_THREADS="7", TF_NUM_INTRAOP_THREADS="3"),
    "four-threads-onednn-on": dict(OMP_NUM_THREADS="4", TEZIP_MODEL_THREADS="4", TF_NUM_INTRAOP_THREADS="4",
                                   TF_ENABLE_ONEDNN_OPTS="1"),
    "sixteen-threads-onednn-off": dict(OMP_NUM_THREADS="16", TEZIP_MODEL_THREADS="16", TF_NUM_INTRAOP_THREADS="16",
                                       TF_NUM_INTEROP_THREADS="16", TF_ENABLE_ONEDNN_OPTS="0"),
}


@pytest.mark.parametrize("setting", list(THREAD_SETTINGS))
def test_decoding_is_bit_identical_under_any_thread_settings(tiny_model, reference, expected, tmp_path, setting):
    """Format 2 depended on TensorFlow's thread count (a decode with another one could only be
    refused); format 3's decoder must give the very same bits under any settings, in a fresh
    process each: exit 0, every frame equal to this process's decode."""
    r = tezip("-u", tiny_model(3), reference, tmp_path / "out", **THREAD_SETTINGS[setting])
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout.splitlines()[-1]
    np.testing.assert_array_equal(read_sequence(tmp_path / "out").frames, expected)


@pytest.mark.parametrize("bound", [0, 2])
def test_other_model_arithmetic_fails_with_clear_message(tiny_model, sequence, tmp_path, monkeypatch, bound):
    """Another machine's arithmetic, simulated: every prediction of the real model moves by 1.5
    grey levels during decompression. The decoder must name the first frame that no longer
    matches its checksum and write nothing."""
    from prednet.reference import ReferencePredictor

    comp = tmp_path / "comp"
    # block 0: every pixel predicted by the model (no block may fall back to the previous frame);
    # no intra frames (coded on their own, they would not need the model at all)
    compress(tiny_model(3), sequence[0], comp, **dict(OPTIONS, bounds=(bound,), block=0, intra=False))
    real_predict = ReferencePredictor.predict
    calls = []

    def other_machine(self, reset):
        out = np.asarray(real_predict(self, reset))
        calls.append(1)
        return out + np.where(out > 0.5, -1.5, 1.5).astype(out.dtype) / 255

    monkeypatch.setattr(ReferencePredictor, "predict", other_machine)
    with pytest.raises(TezipError, match=r"frame \d+ \(frame_\d+\.png, predicted frame\) does not match its checksum"
                                         r".*nothing was written") as e:
        decompress_folder(tiny_model(3), comp, tmp_path / "out")
    assert calls, "the decoder did not run the reference kernel"
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_archive_recording_another_arithmetic_is_refused(tiny_model, reference, tmp_path):
    """An archive whose model record names an arithmetic this TEZip does not have (a future one)
    is refused up front, saying which, rather than decoded with this one's."""
    import shutil

    comp = tmp_path / "comp"
    shutil.copytree(reference, comp)
    path = comp / archive.ENTROPY_FILE
    magic, version, header, chunks = fz.split_dat(path.read_bytes())
    assert header["model"]["arithmetic"] == archive.REFERENCE_ARITHMETIC
    header["model"]["arithmetic"] = "reference-f32/2"
    path.write_bytes(fz.join_dat(magic, version, header, chunks))
    with pytest.raises(TezipError, match="needs model arithmetic 'reference-f32/2', which this TEZip does not have"):
        decompress_folder(tiny_model(3), comp, tmp_path / "out")
    assert not (tmp_path / "out").exists()
