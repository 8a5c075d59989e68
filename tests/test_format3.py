"""Format 3, end to end: compression without a model (MODEL_DIR none) and without TensorFlow, HDF5
sequences restored as HDF5, and frames decoded one at a time in bounded memory."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc

import h5py
import numpy as np
import pytest

import archive
from archive import names as archive_names
from base.errors import OptionError, TezipError
from conftest import REPO_ROOT, compress, detector_frames, make_sequence, moving_squares
from decompress.pipeline import Decoded, decompress_folder
from frames.read import read_sequence
from sequence.plan import RunFlags

# --- MODEL_DIR none ----------------------------------------------------------------------------------

# Run in a fresh process: round trips without a model (lossless and abs 2, RGB and 16-bit), through
# the library and through the command line, then -c / -u with a real model; prints what it found,
# and which of the frameworks were ever imported.
NO_TENSORFLOW_SCRIPT = r"""
import contextlib, io, json, sys
from pathlib import Path

sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]) / "tests")]
import numpy as np

import tezip
from archive import read_archive
from conftest import compress, detector_frames, make_sequence, write_frames
from decompress.pipeline import decompress_folder
from frames.read import read_sequence

root, model = Path(sys.argv[2]), sys.argv[3]
found = {}
sequences = {"rgb": make_sequence(root / "rgb", n_frames=9, height=24, width=40, channels=3, seed=3, noise=3),
             "gray16": detector_frames(9, 24, 40, seed=2)}
write_frames(root / "gray16", sequences["gray16"])
for name, frames in sequences.items():
    for bound in (0, 2):
        tag = f"{name}_{bound}"
        with contextlib.redirect_stdout(io.StringIO()):
            summary = compress("none", root / name, root / f"c_{tag}", window=4, mode="abs", bounds=(bound,))
            decompress_folder("none", root / f"c_{tag}", root / f"o_{tag}")
        back = read_sequence(root / f"o_{tag}")
        with read_archive(root / f"c_{tag}") as a:
            record = dict(model=a.sequence.model, block_select=a.sequence.coder["block_select"],
                          value_range=a.sequence.frames.value_range)
        found[tag] = dict(record, error=int(np.abs(back.frames.astype(np.int64) - frames).max()),
                          dtype=str(back.frames.dtype), mode=back.mode, ratio=summary.ratio,
                          summary_error=summary.max_abs_error)
cli = [tezip.main(["-c", "none", str(root / "rgb"), str(root / "c_cli"), "-w", "4", "-m", "abs", "-b", "2"]),
       tezip.main(["-u", "none", str(root / "c_cli"), str(root / "o_cli")]),
       tezip.main(["-c", model, str(root / "rgb"), str(root / "c_model"), "-w", "4"]),
       tezip.main(["-u", model, str(root / "c_model"), str(root / "o_model")])]
found["cli"] = dict(codes=cli, error=int(np.abs(read_sequence(root / "o_cli").frames.astype(np.int64)
                                                - sequences["rgb"]).max()),
                    model_exact=bool((read_sequence(root / "o_model").frames == sequences["rgb"]).all()))
frameworks = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax", "torch"))
print("RESULT " + json.dumps(dict(found=found, frameworks=frameworks)))
"""


def test_model_none_round_trips_and_never_imports_tensorflow(tiny_model, tmp_path):
    """Without a model every predicted frame is predicted from the previous decoded frame, moved
    per block, or by linear extrapolation (except 8-bit lossless): lossless is bit-exact, abs 2 within 2, for RGB and 16-bit frames alike; the archive
    records no model (and no value range: no model is shown the values). Neither that nor -c / -u
    with a real model (the reference kernel) imports TensorFlow or Keras."""
    r = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_SCRIPT, str(REPO_ROOT), str(tmp_path), str(tiny_model(3))],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["frameworks"] == [], result["frameworks"]
    found = result["found"]
    for name, mode, dtype in (("rgb", "RGB", "uint8"), ("gray16", "I;16", "uint16")):
        for bound in (0, 2):
            case = found[f"{name}_{bound}"]
            assert case["model"] is None and case["value_range"] is None, case
            # the previous frame moved in every block; under a bound and for 16-bit frames also linear
            # extrapolation from the two previous decoded frames (code 0), 8-bit lossless not
            extrapolates = bound > 0 or dtype == "uint16"
            assert case["block_select"].get("model", True) is extrapolates, case
            assert case["block_select"].get("extrapolate", False) is extrapolates, case
            assert (case["mode"], case["dtype"]) == (mode, dtype)
            assert case["error"] == case["summary_error"] <= bound, case
            assert case["ratio"] > 1.0, case
        assert found[f"{name}_0"]["error"] == 0 and found[f"{name}_2"]["error"] > 0
    assert found["cli"]["codes"] == [0, 0, 0, 0] and found["cli"]["error"] <= 2 and found["cli"]["model_exact"]


def test_model_none_archive_decodes_with_any_model_dir_and_a_model_archive_needs_its_model(tiny_model, tmp_path):
    frames = make_sequence(tmp_path / "img", n_frames=6, height=16, width=24, seed=4)
    with contextlib.redirect_stdout(io.StringIO()):
        compress("none", tmp_path / "img", tmp_path / "c_none", window=2)
        compress(tiny_model(3), tmp_path / "img", tmp_path / "c_model", window=2)
        for tag, model in (("none", "none"), ("tiny", tiny_model(3)), ("tiny1", tiny_model(1)), ("default", "default")):
            decompress_folder(model, tmp_path / "c_none", tmp_path / f"o_{tag}")
            np.testing.assert_array_equal(read_sequence(tmp_path / f"o_{tag}").frames, frames)
    with pytest.raises(TezipError, match="made with a model of your own .*: decompress with the MODEL_DIR it was made"):
        decompress_folder("none", tmp_path / "c_model", tmp_path / "o_refused")
    assert not (tmp_path / "o_refused").exists()
    with contextlib.redirect_stdout(io.StringIO()):
        compress("default", tmp_path / "img", tmp_path / "c_default", window=2)
    with pytest.raises(TezipError, match="made with the bundled default model: decompress with -u default"):
        decompress_folder("none", tmp_path / "c_default", tmp_path / "o_refused")
    assert not (tmp_path / "o_refused").exists()


def test_model_none_needs_blocks(tmp_path, capsys):
    """--block 0 means "the model's prediction everywhere": without a model that is an option error
    (exit code 2), and nothing is written."""
    import tezip

    make_sequence(tmp_path / "img", n_frames=4, height=16, width=24, seed=5)
    with pytest.raises(OptionError, match="--block 0 predicts every pixel with the model"):
        compress("none", tmp_path / "img", tmp_path / "comp", window=2, block=0)
    assert not (tmp_path / "comp").exists()
    assert tezip.main(["-f", "-c", "none", str(tmp_path / "img"), str(tmp_path / "comp"), "-w", "2", "--block", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--block 0 predicts every pixel with the model" in err
    assert not (tmp_path / "comp").exists()


# --- HDF5 in, HDF5 out ----------------------------------------------------------------------------------


def nexus_file(path, frames):
    """A NeXus-like file: /entry/data/data (N, H, W) or (N, H, W, C), chunked a frame deep and
    gzip-compressed, with attributes of several types on it and on the groups above it, plus a
    second dataset beside it."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = np.bytes_("NXdata")
        data.attrs["signal"] = "data"
        ds = data.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip",
                                 compression_opts=4)
        ds.attrs["units"] = "counts"
        ds.attrs["count_time"] = np.float32(0.25)
        ds.attrs["roi"] = np.array([[0, 1], [2, 3]], dtype=">i4")
        ds.attrs["axes"] = np.array([".", "y", "x"], dtype=h5py.string_dtype())
        f.create_dataset("entry/instrument/dark", data=frames[:2])
    return path


def attributes(obj):
    """{name: (dtype, shape, value)} of an HDF5 object's attributes."""
    out = {}
    for name in obj.attrs:
        aid = obj.attrs.get_id(name)
        value = obj.attrs[name]
        out[name] = (aid.dtype, aid.shape, value.tolist() if isinstance(value, np.ndarray) else value)
    return out


@pytest.mark.parametrize("case", ["gray16-lossless", "rgb8-abs2-none"])
def test_hdf5_dataset_round_trip_is_restored_as_hdf5(tiny_model, tmp_path, case):
    """`run.h5::/entry/data/data` in; out comes run.h5 with the dataset at the same path, the same
    dtype, shape, chunks, filter and attributes (also those of the groups above it), and frames
    that are the original ones (lossless) or within the bound."""
    if case == "gray16-lossless":
        frames, model, bound = detector_frames(10, 24, 32, seed=6)[..., 0], tiny_model(1), 0
    else:
        frames, model, bound = moving_squares(10, 24, 32, 3, seed=6, noise=4), "none", 2
    source = nexus_file(tmp_path / "run.h5", frames)
    spec = f"{source}::/entry/data/data"
    with contextlib.redirect_stdout(io.StringIO()):
        summary = compress(model, spec, tmp_path / "comp", window=4, mode="abs", bounds=(bound,))
        decoded = decompress_folder(model, tmp_path / "comp", tmp_path / "out")
    assert isinstance(decoded, Decoded) and decoded.frames == 10 and decoded.raw_bytes == frames.nbytes
    assert summary.max_abs_error <= bound
    head, names = archive_names.parse_names((tmp_path / "comp" / archive.NAMES_FILE).read_text())
    assert head["source"]["kind"] == "hdf5" and head["source"]["dataset"] == "/entry/data/data" and len(names) == 10
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run.h5"]
    with h5py.File(source, "r") as a, h5py.File(tmp_path / "out" / "run.h5", "r") as b:
        da, db = a["/entry/data/data"], b["/entry/data/data"]
        assert (db.dtype, db.shape, db.chunks, db.compression) == (da.dtype, da.shape, da.chunks, "gzip")
        for path in ("/", "/entry", "/entry/data", "/entry/data/data"):
            assert attributes(b[path]) == attributes(a[path]), path
        back = db[()]
        assert "instrument" not in b["entry"]  # only the dataset (and the groups on its path) comes back
    error = np.abs(back.astype(np.int64) - frames)
    assert error.max() == summary.max_abs_error <= bound
    if bound == 0:
        np.testing.assert_array_equal(back, frames)


def test_a_folder_of_hdf5_files_is_a_batch(tmp_path):
    """A folder of .h5 files (and sequence folders) is a batch: each file one sequence, compressed
    into OUT/<file name less .h5>/ and restored there as <file name>.h5, bit-exact; a folder and a
    file that would share an output folder are refused with one line before anything is written."""
    import tezip

    runs = tmp_path / "runs"
    originals = {"run_a": detector_frames(6, 16, 24, seed=1)[..., 0], "run_b": detector_frames(5, 16, 24, seed=2)[..., 0]}
    runs.mkdir()
    for name, frames in originals.items():
        nexus_file(runs / f"{name}.h5", frames)
    folder_frames = make_sequence(runs / "seq_c", n_frames=4, height=16, width=24, channels=1, seed=3)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert tezip.main(["-c", "none", str(runs), str(tmp_path / "comp"), "-w", "3"]) == 0
        assert tezip.main(["-u", "none", str(tmp_path / "comp"), str(tmp_path / "out")]) == 0
    assert "compressed 3 of 3 sequences" in printed.getvalue()
    assert sorted(p.name for p in (tmp_path / "comp").iterdir()) == ["run_a", "run_b", "seq_c"]
    for name, frames in originals.items():
        assert sorted(p.name for p in (tmp_path / "out" / name).iterdir()) == [f"{name}.h5"]
        with h5py.File(tmp_path / "out" / name / f"{name}.h5", "r") as f:
            np.testing.assert_array_equal(f["/entry/data/data"][()], frames)
    np.testing.assert_array_equal(read_sequence(tmp_path / "out" / "seq_c").frames, folder_frames)

    (runs / "run_a").mkdir()
    make_sequence(runs / "run_a", n_frames=3, height=16, width=24, channels=1, seed=4)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = tezip.main(["-c", "none", str(runs), str(tmp_path / "comp2"), "-w", "3"])
    assert code != 0 and not (tmp_path / "comp2").exists()
    assert len(err.getvalue().strip().splitlines()) == 1 and "run_a names two sequences (run_a/, run_a.h5)" in err.getvalue()
    # two HDF5 files of one stem: named as such (the line said "a folder and an HDF5 file", QA)
    shutil.rmtree(runs / "run_a")
    shutil.copy(runs / "run_a.h5", runs / "run_a.nxs")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = tezip.main(["-c", "none", str(runs), str(tmp_path / "comp2"), "-w", "3"])
    assert code != 0 and not (tmp_path / "comp2").exists()
    assert "run_a names two sequences (run_a.h5, run_a.nxs)" in err.getvalue()


# --- one frame at a time ---------------------------------------------------------------------------------


def traced_decode_peak(model, comp, out):
    """Python-traced peak memory (numpy arrays, bytes, PIL's buffers) of decompress_folder."""
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            decompress_folder(model, comp, out, RunFlags())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("which", ["none", "tiny"])
def test_frames_are_decoded_one_at_a_time(tiny_model, tmp_path, monkeypatch, which, threads):
    """A 70-frame archive decodes with a traced peak below half the size of its frames (format 2
    held every frame and its codes, several times the sequence), and the peak does not grow with
    the run: 70 frames peak as 10 do (the model's state and a few frames per lane, whatever the run's
    length). With frame threads (chunks parsed ahead, files encoded in workers) a few more frames
    are in flight, but still as many for 70 frames as for 10."""
    monkeypatch.setattr("base.threads._threads", threads)
    _decode_peaks(tiny_model, tmp_path, which, threads)


@pytest.mark.parametrize("threads", [1, 3])
def test_frames_are_coded_one_at_a_time(tmp_path, monkeypatch, threads):
    """Compressing 40 frames peaks as 10 do (traced memory): the encoder keeps the last decoded
    frame of each lane and, with frame threads, the few frames in flight, whatever the run's length."""
    monkeypatch.setattr("base.threads._threads", threads)
    for n in (10, 40):
        make_sequence(tmp_path / f"img{n}", n_frames=n, height=64, width=96, seed=7, noise=3)
    with contextlib.redirect_stdout(io.StringIO()):
        compress("none", tmp_path / "img10", tmp_path / "warm", window=9, lanes=1)  # kernels loaded
        peaks = {}
        for n in (10, 40):
            tracemalloc.start()
            try:
                compress("none", tmp_path / f"img{n}", tmp_path / f"c{n}", window=9, lanes=1)
                peaks[n] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    frame_bytes = 64 * 96 * 3
    in_flight = 0 if threads == 1 else (threads + 1) * 3 * 4 * frame_bytes  # planar int32 frames per frame in flight
    assert peaks[40] < peaks[10] + 2 * 4 * frame_bytes + in_flight + (64 << 10), peaks


def _decode_peaks(tiny_model, tmp_path, which, threads):
    model = "none" if which == "none" else tiny_model(3)
    long_run = 70
    frames = make_sequence(tmp_path / "img_long", n_frames=long_run, height=64, width=96, seed=7, noise=3)
    make_sequence(tmp_path / "img_short", n_frames=10, height=64, width=96, seed=7, noise=3)
    with contextlib.redirect_stdout(io.StringIO()):
        for n in ("long", "short"):
            compress(model, tmp_path / f"img_{n}", tmp_path / f"c_{n}", window=9, lanes=1)
        decompress_folder(model, tmp_path / "c_short", tmp_path / "warm")  # kernels loaded, caches filled
    # With frame threads how many frames are in flight at the peak depends on timing: the same
    # archive's peak varies by some 20 frame-bytes between runs. So the long run's lowest of three
    # peaks is held against the short run's highest of two; a leak of one held frame per decoded
    # frame would add 60 frame-bytes to the long run, far above that noise.
    long_tries, short_tries = (1, 1) if threads == 1 else (3, 2)
    long_peak = min(traced_decode_peak(model, tmp_path / "c_long", tmp_path / f"o_long{i}") for i in range(long_tries))
    short_peak = max(traced_decode_peak(model, tmp_path / "c_short", tmp_path / f"o_short{i}") for i in range(short_tries))
    np.testing.assert_array_equal(read_sequence(tmp_path / "o_long0").frames, frames)
    frame_bytes = frames[0].nbytes
    # frames in flight with threads: up to threads + 1 parsed ahead (int32 planes: 4 bytes a value)
    # and `threads` being encoded into files
    in_flight = 0 if threads == 1 else (threads + 1) * 4 * frame_bytes + threads * frame_bytes
    assert long_peak < short_peak + 2 * frame_bytes + in_flight + (64 << 10), (long_peak, short_peak, frame_bytes)
    if which == "none" and threads == 1:
        assert long_peak < 0.5 * frames.nbytes, (long_peak, frames.nbytes)


def test_damaged_archives_name_the_frame_and_say_truncated(tmp_path):
    """A corrupt chunk is reported by its frame (index and file name), a file cut inside its prefix
    as truncated (QA: 'entropy.dat ... holds a entropy.dat file')."""
    from archive import read_archive

    make_sequence(tmp_path / "img", n_frames=9, height=16, width=24, seed=4, noise=3)
    with contextlib.redirect_stdout(io.StringIO()):
        compress("none", tmp_path / "img", tmp_path / "c", warmup=2, window=3)
    with read_archive(tmp_path / "c") as a:
        keys = a.sequence.keyframes
        predicted = [f for f in range(9) if f not in keys]
        assert [a._predicted_frame(i) for i in range(len(predicted))] == predicted
    ent = tmp_path / "c" / "entropy.dat"
    data = bytearray(ent.read_bytes())
    data[-2] ^= 0xFF  # the last chunk: the last predicted frame's
    ent.write_bytes(bytes(data))
    last = predicted[-1]
    with pytest.raises(TezipError, match=rf"the chunk of frame {last} \(predicted frame {len(predicted) - 1}, "
                                         rf"frame_{last:04d}.png\) is corrupt"):
        decompress_folder("none", tmp_path / "c", tmp_path / "o")
    ent.write_bytes(bytes(data[:10]))
    with pytest.raises(TezipError, match="entropy.dat is truncated"):
        decompress_folder("none", tmp_path / "c", tmp_path / "o")
