"""Archives of every format version TEZip has written decode today: exactly the frames they were
made from (lossless) or within their bound, through the real command line's decoder."""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import archive
from decompress.pipeline import decompress_folder
from frames.read import read_sequence
from sequence.plan import RunFlags

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
# archive → (model, original frames in originals.npz, mode, bound or None for lossless)
CASES = {
    "v2/rgb_lossless": ("default", "rgb", "abs", None),
    "v2/rgb_abs4": ("default", "rgb", "abs", 4),
    "v2/rgb_rel_n": ("default", "rgb", "rel", 0.02),
    "v2/rgb_medquant": ("default", "rgb", "abs", 2),
    "v2/rgb_open": ("default", "rgb", "pwrel", 0.05),
    "v2/gray16_lossless": ("model1", "gray16", "abs", None),
    "v2/gray16_abs16": ("model1", "gray16", "abs", 16),
    "v2/gray8_dwp": ("model1", "gray8", "absrel", (2, 0.02)),
    "v2/stack16_lossless": ("model1", "stack16", "abs", None),
    "v3/rgb_lossless": ("default", "rgb", "abs", None),
    "v3/rgb_abs4": ("default", "rgb", "abs", 4),
    "v3/rgb_none_abs2": ("none", "rgb", "abs", 2),
    "v3/rgb_rel_n": ("default", "rgb", "rel", 0.02),
    "v3/gray16_default_lossless": ("default", "gray16", "abs", None),
    "v3/gray8_dwp": ("model1", "gray8", "absrel", (2, 0.02)),
    "v3/gray8_hierarchical_abs2": ("none", "gray8", "abs", 2),
    "v3/h5_gray16_lossless": ("none", "gray16", "abs", None),
    "v3/rgb_none_lossless": ("none", "rgb", "abs", None),  # keyframes, intra frames: wpred or MED
    "v3/gray16_none_lossless": ("none", "gray16", "abs", None),
    "v3/gray16_none_abs2": ("none", "gray16", "abs", 2),  # blocks take linear extrapolation (extrapolate)
    "v3/gray16_skip_lossless": ("skip1", "gray16", "abs", None),  # a model with a linear skip, every pixel
    "v3/gray16_skip_abs2": ("skip1", "gray16", "abs", 2),
    "v3/gray16_skip3_lossless": ("skip3", "gray16", "abs", None),  # a skip over 3 previous frames
    "v3/gray16_frame_input_lossless": ("frame1", "gray16", "abs", None),  # layer 0 sees the skip's planes
}


def within_bound(decoded, original, mode, bound):
    x, y = original.astype(np.int64), decoded.astype(np.int64)
    err = np.abs(y - x)
    if mode == "abs":
        return err.max() <= bound
    if mode == "pwrel":
        return (err <= np.floor(bound * np.abs(x))).all()
    rel = bound if mode == "rel" else bound[1]
    span = (x.max(axis=(1, 2), keepdims=True) - x.min(axis=(1, 2), keepdims=True)).astype(np.float64)
    allowed = np.floor(rel * span)
    if mode == "absrel":
        allowed = np.minimum(allowed, bound[0])
    return (err <= allowed).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_archive_decodes(case, tmp_path):
    model, frames_key, mode, bound = CASES[case]
    model_dir = model if model in ("default", "none") else GOLDEN / model
    original = np.load(GOLDEN / "originals.npz")[frames_key]
    decompress_folder(model_dir, GOLDEN / case, tmp_path / "out", RunFlags())
    with archive.read_archive(GOLDEN / case) as read:
        assert read.version == int(case.split("/")[0][1:])
        sink = read.sink_description()
    if sink["kind"] == "hdf5":  # restored as the dataset it was read from, attributes included
        with h5py.File(tmp_path / "out" / sink["file"], "r") as f:
            dataset = f[sink["dataset"]]
            assert dict(dataset.attrs) == {"units": "counts"}
            decoded = dataset[...][..., None]
    else:
        decoded = read_sequence(tmp_path / "out" / sink["stack"] if sink["kind"] == "tiff" else tmp_path / "out").frames
    assert decoded.shape == original.shape and decoded.dtype == original.dtype
    if bound is None:
        np.testing.assert_array_equal(decoded, original)
    else:
        assert within_bound(decoded, original, mode, bound)
        assert not np.array_equal(decoded, original)  # really lossy: the bound was used


def test_golden_archives_are_the_format_they_claim():
    """Each folder's .dat files carry the version of the folder they sit in."""
    import struct

    for case in CASES:
        version = int(case.split("/")[0][1:])
        for name in (archive.ENTROPY_FILE, archive.KEYFRAME_FILE):
            data = (GOLDEN / case / name).read_bytes()
            assert struct.unpack_from("<H", data, 8)[0] == version


def test_golden_lossless_rgb_keyframes_decode_through_wpred(tmp_path, monkeypatch):
    """The archive pinning the weighted predictor's format (stages/wpred.py) really holds wpred chunks."""
    from stages.wpred import WeightedPredictionCoder

    calls = []
    decode = WeightedPredictionCoder.decode
    monkeypatch.setattr(WeightedPredictionCoder, "decode", lambda self, data, out: calls.append(1) or decode(self, data, out))
    decompress_folder("none", GOLDEN / "v3" / "rgb_none_lossless", tmp_path / "out", RunFlags())
    assert calls
    np.testing.assert_array_equal(read_sequence(tmp_path / "out").frames, np.load(GOLDEN / "originals.npz")["rgb"])


def test_golden_extrapolating_archive_takes_extrapolation_blocks():
    """v3/gray16_none_abs2 pins linear extrapolation as code 0 of the block choice: it is recorded,
    and its frames take it (code 0) and its mean with the previous frame moved."""
    from sequence.blockselect import split_choices
    from sequence.framecoder import FrameCoder

    arc = archive.read_archive(GOLDEN / "v3" / "gray16_none_abs2")
    seq = arc.sequence
    coder = FrameCoder.from_config(seq.coder, seq.mode, seq.bounds, seq.frames.max_value, "entropy.dat")
    assert coder.selector.extrapolate and coder.selector.mean
    shape = (seq.frames.channels, seq.frames.height, seq.frames.width)
    codes = np.concatenate([np.ravel(split_choices(coder.parse_frame(arc.frame_chunk(i), shape)[1])[0])
                            for i in range(seq.frames.n_frames - len(seq.keyframes))])
    side2 = (2 * coder.selector.radius + 1) ** 2
    assert (codes == 0).sum() > 5 and (codes > side2).sum() > 5


def test_every_golden_archive_is_described_for_u_v():
    """-u -v first prints how the archive was coded: for every format version and coder, from the
    validated headers alone."""
    from decompress.pipeline import describe_archive

    for case, (model, *_rest) in CASES.items():
        with archive.read_archive(GOLDEN / case) as arc:
            lines = describe_archive(arc)
        version = int(case.split("/")[0][1:])
        assert lines[0].startswith(f"format {version}: ") and len(lines) >= 2, (case, lines)
        assert ("model: none" in lines) == (model == "none" and "hierarchical" not in case), (case, lines)
    text = "\n".join(describe_archive(archive.read_archive(GOLDEN / "v3" / "gray16_none_abs2")))
    assert "blocks of 8: linear extrapolation, or the previous frame moved" in text and "abs bound 2" in text
    assert "hierarchical order" in "\n".join(describe_archive(archive.read_archive(GOLDEN / "v3" / "gray8_hierarchical_abs2")))


# Format 2 did not record whether TensorFlow ran its oneDNN kernels, which TensorFlow decides by the
# processor (on with AVX-512 VNNI/BF16 or AMX, off otherwise, e.g. AVX2 only). The open-loop archive below
# fails its checksum at frame 5 with the other setting than the one it was made with (on), so each
# run forces the first decode's setting: "0" takes the retry in a fresh process, "1" does not.
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_format2_decodes_under_either_onednn_setting(onednn, tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), "-u", "default", str(GOLDEN / "v2/rgb_open"),
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    decoded = read_sequence(tmp_path / "out").frames
    assert within_bound(decoded, np.load(GOLDEN / "originals.npz")["rgb"], "pwrel", 0.05)


def test_format2_retry_keeps_the_first_error_when_no_setting_verifies():
    """A format-2 decode that no oneDNN setting makes verify raises the first attempt's error, after
    one more decode in a fresh process (verify sees frame 0 twice), and this process's setting is
    restored."""
    from base.errors import TezipError
    from decompress.v2 import decode_verified_v2

    seen = []

    def reject(i, frame):
        seen.append(i)
        raise TezipError(f"frame {i} rejected #{len(seen)}")

    before = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    with archive.read_archive(GOLDEN / "v2/rgb_open") as read:
        with pytest.raises(TezipError, match="rejected #1$"):
            decode_verified_v2("default", GOLDEN / "v2/rgb_open", read, reject)
    assert seen[0] == 0 and len(seen) >= 2
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == before


def test_ctrl_c_during_the_format2_retry_exits_at_once_and_leaves_no_process(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the retry's child
    process decodes: tezip exits 130 within seconds, the child is gone, nothing is written."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")  # the first decode fails here: the retry runs
    run = subprocess.Popen([sys.executable, str(REPO_ROOT / "tezip.py"), "-u", "default", str(GOLDEN / "v2/rgb_open"),
                            str(tmp_path / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)

    def children():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if entry.isdigit() and int(fields[1]) == run.pid:  # ppid
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
        return found

    deadline = time.time() + 120
    while not children() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child = children()
    assert child, "the retry's child process never started"
    time.sleep(1.0)  # inside the child's start-up / decode
    os.killpg(run.pid, signal.SIGINT)
    try:
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == "tezip.py: interrupted; no partial output was left"
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                   for pid in child)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_format2_refuses_a_flipped_bit_in_its_unused_block_choice_chunk(tmp_path):
    """rgb_open codes no block choices, but its entropy.dat still holds their (empty-use) chunk 0:
    a flipped bit there is refused like anywhere else, one line, nothing written."""
    import shutil
    import subprocess
    import sys

    from archive.container import _CRC, _PREFIX
    from conftest import REPO_ROOT

    comp = tmp_path / "comp"
    shutil.copytree(GOLDEN / "v2/rgb_open", comp)
    data = bytearray((comp / "entropy.dat").read_bytes())
    _, _, header_length = _PREFIX.unpack_from(data)
    first_chunk = _PREFIX.size + header_length + _CRC.size
    data[first_chunk + 2] ^= 0x10
    (comp / "entropy.dat").write_bytes(bytes(data))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), "-u", "default", str(comp), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = [li for li in done.stderr.splitlines() if li.strip()]
    assert len(lines) == 1 and "block choices" in lines[0] and "corrupt" in lines[0], done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("model, message", [("none", "made with the bundled default model: decompress with -u default"),
                                            ("model1", "made with the bundled default model (model digest")])
def test_format2_names_the_model_it_needs_in_one_line_before_tensorflow(tmp_path, model, message):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    given = model if model == "none" else str(GOLDEN / model)
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO_ROOT / "tezip.py"), "-u", given,
                           str(GOLDEN / "v2/rgb_open"), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = [li for li in done.stderr.splitlines() if li.strip() and not li.startswith("import time:")]
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    imported = {li.split("|")[-1].strip() for li in done.stderr.splitlines() if li.startswith("import time:")}
    assert "tensorflow" not in imported and "keras" not in imported  # refused before the framework starts
