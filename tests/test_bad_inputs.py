"""Bad input, end to end: every case fails with one clear line (TezipError; the CLI prints it and
exits non-zero), leaves its inputs untouched and leaves no partial output behind.

One test per row of README's "What happens with bad input" table, except the rows already tested
elsewhere: option errors -w 0 / -t / -b / -m / -p = N (test_roundtrip.test_bad_options_rejected),
a one-frame sequence and a model for other frames (test_roundtrip), corrupted or truncated .dat
files (test_roundtrip.test_corruption_detected_no_images_written), decompressing with another
model of the same kind (test_roundtrip.test_different_model_refused) and the image-reader details
(test_images). Mutated archives in bulk: test_fuzz.py. Interruption: test_interrupt.py.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tezip
import archive
from archive import container
from archive import names as archive_names
from base import publish
from base.errors import OptionError, TezipError
from frames.read import read_sequence
from compress.pipeline import compress_folder
from conftest import REPO_ROOT, compress, make_sequence, moving_squares, plan_and_flags
from decompress.pipeline import decompress_folder
from sequence.plan import RunFlags

N_FRAMES = 8
OPTIONS = dict(window=3, mode="abs", bounds=(1,))


# --- helpers -------------------------------------------------------------------------------------


def snapshot(folder):
    """Everything about a folder's files that an untouched input keeps: names, bytes, mode, mtime."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if folder.is_file():
        st = folder.stat()
        return {".": (hashlib.sha256(folder.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns)}
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(folder))] = (digest, st.st_mode, st.st_mtime_ns)
    return out


def fails(call, match, inputs=(), outputs=()):
    """call() must raise TezipError matching `match` in one line, change none of `inputs` and
    leave every folder of `outputs` as it was (absent stays absent). Returns the message."""
    before_in = [snapshot(p) for p in inputs]
    before_out = [snapshot(p) for p in outputs]
    with pytest.raises(TezipError, match=match) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message, message
    assert [snapshot(p) for p in inputs] == before_in, "an input was modified"
    assert [snapshot(p) for p in outputs] == before_out, "partial output was left behind"
    for out in outputs:
        if Path(out).is_dir():
            assert not [p for p in Path(out).iterdir() if publish.is_partial(p)]
    return message


def rgb_images(folder, n=N_FRAMES, seed=1, **kw):
    make_sequence(folder, n_frames=n, height=24, width=32, channels=3, seed=seed, **kw)
    return folder


def compress_fails(model, images, out, match, **options):
    """The options are validated inside the call (CodecPlan.make refuses bad ones before any work)."""
    return fails(lambda: compress(model, images, out, **{**OPTIONS, **options}), match, inputs=[images, model],
                 outputs=[out])


def decompress_fails(model, comp, out, match, overwrite=False):
    return fails(lambda: decompress_folder(model, comp, out, RunFlags(overwrite=overwrite)), match,
                 inputs=[comp, model], outputs=[out])


@pytest.fixture(scope="module")
def made(tiny_model, tmp_path_factory):
    """One real archive (and its images) shared by the decompression cases; copy before changing."""
    root = tmp_path_factory.mktemp("bad_inputs")
    images = rgb_images(root / "images")
    compress(tiny_model(3), images, root / "comp", **OPTIONS)
    compress(tiny_model(3), images, root / "comp_b2", window=3, mode="abs", bounds=(2,))
    return root


@pytest.fixture
def comp(made, tmp_path):
    shutil.copytree(made / "comp", tmp_path / "comp")
    return tmp_path / "comp"


# --- the image folder ------------------------------------------------------------------------------


def _mixed_sizes(folder):
    rgb_images(folder)
    Image.fromarray(moving_squares(1, 20, 30, 3, seed=9)[0]).save(folder / "frame_0004.png")


def _mixed_modes(folder):
    rgb_images(folder)
    Image.open(folder / "frame_0001.png").convert("L").save(folder / "frame_0001.png")


def _unsupported_mode(mode):
    def make(folder):
        rgb_images(folder)
        Image.open(folder / "frame_0002.png").convert(mode).save(folder / "frame_0002.png")
    return make


def _non_image(folder):
    rgb_images(folder)
    (folder / "notes.txt").write_text("not a frame")


def _non_utf8_name(folder):
    rgb_images(folder)
    # Linux file names are bytes; this one cannot be stored in the UTF-8 name list.
    os.rename(folder / "frame_0003.png", os.fsencode(folder) + b"/frame_\xff.png")


@pytest.mark.parametrize("make, match", [
    (None, "folder not found"),
    (lambda f: f.mkdir(), "no image files"),
    (_non_image, "notes.txt: not an image file"),
    (_mixed_sizes, "size 30x20 differs"),
    (_mixed_modes, "mode L differs from mode RGB"),
    (_unsupported_mode("RGBA"), "mode RGBA is not supported"),
    (_unsupported_mode("P"), "mode P is not supported"),
    (_non_utf8_name, "is not valid UTF-8"),
], ids=["missing", "empty", "non-image", "mixed-sizes", "mixed-modes", "rgba", "palette", "non-utf8-name"])
def test_bad_image_folder(tiny_model, tmp_path, make, match):
    images = tmp_path / "images"
    if make:
        make(images)
    compress_fails(tiny_model(3), images, tmp_path / "out", match)


@pytest.mark.parametrize("options, match, exit_code", [
    (dict(warmup=N_FRAMES + 5), f"-p {N_FRAMES + 5} makes every one of the {N_FRAMES} frames a keyframe", 1),
    (dict(window=None, threshold=0.0), "-t must be a positive finite number", 2),
    (dict(window=None, threshold=float("nan")), "-t must be a positive finite number", 2),
    (dict(window=None, threshold=float("inf")), "-t must be a positive finite number", 2),
    (dict(mode="abs", bounds=(float("-inf"),)), "finite, got -inf", 1),
    (dict(mode="pwrel", bounds=(0.1, 0.2)), "pwrel", 1),
    (dict(mode="abs", bounds=()), "abs", 1),
    (dict(mode="ABS"), "unknown error-bound mode 'ABS'", 1),
    (dict(lanes=0), "--lanes must be at least 1", 2),
    (dict(zstd_level=99), "--zstd-level must be 1-22 \\(got 99\\)", 2),
    (dict(block=-1), "--block must be 0 \\(off\\) or a block size up to 4096", 2),
    (dict(motion=8), "--motion must be a search radius 0-7", 2),
    (dict(quantizer="zfp"), "--quantizer must be one of auto, linquant, medquant, runmerge", 2),
    (dict(loop="half"), "--loop must be closed or open", 2),
], ids=["warmup>frames", "t=0", "t=nan", "t=inf", "b=-inf", "pwrel-2-values", "no-bound", "mode-case", "lanes0", "zstd99",
        "block-1", "motion8", "quantizer", "loop"])
def test_bad_options(tiny_model, tmp_path, options, match, exit_code):
    """Option errors are OptionError (exit code 2, like argparse's); bad bounds and a warm-up longer
    than the sequence are TezipError (exit code 1)."""
    images = rgb_images(tmp_path / "images")
    compress_fails(tiny_model(3), images, tmp_path / "out", match, **options)
    with pytest.raises(TezipError) as info:
        compress(tiny_model(3), images, tmp_path / "out", **{**OPTIONS, **options})
    assert info.value.exit_code == exit_code
    assert isinstance(info.value, OptionError) == (exit_code == 2)


# --- the model folder ------------------------------------------------------------------------------


def _model_copy(tiny_model, tmp_path, change):
    model = tmp_path / "model"
    shutil.copytree(tiny_model(3), model)
    change(model)
    return model


def _drop_weight(model):
    import h5py

    with h5py.File(model / "prednet_weights.hdf5", "a") as f:
        keys = []
        f.visit(lambda k: keys.append(k) if isinstance(f[k], h5py.Dataset) else None)
        del f[keys[0]]


def _reshape_weight(model):
    import h5py

    with h5py.File(model / "prednet_weights.hdf5", "a") as f:
        keys = []
        f.visit(lambda k: keys.append(k) if isinstance(f[k], h5py.Dataset) else None)
        del f[keys[-1]]
        f.create_dataset(keys[-1], data=np.zeros((2, 2), np.float32))


def _edit_json(**changes):
    def change(model):
        doc = json.loads((model / "prednet_model.json").read_text())
        doc.update(changes)
        (model / "prednet_model.json").write_text(json.dumps(doc))
    return change


MODEL_CASES = [
    (lambda m: shutil.rmtree(m), "model folder .* does not exist"),
    (lambda m: (m / "prednet_model.json").unlink(), "prednet_model.json is missing"),
    (lambda m: (m / "prednet_weights.hdf5").unlink(), "prednet_weights.hdf5 is missing"),
    (lambda m: (m / "prednet_model.json").write_text("{not json"), "is not readable JSON"),
    (_edit_json(format="keras"), "is not a TEZip PredNet model description"),
    (_edit_json(version=99), "has format version 99"),
    (lambda m: (m / "prednet_weights.hdf5").write_bytes(b"\x89HDF\r\n" + bytes(100)), "not a readable HDF5 file"),
    (_drop_weight, "lack .*: they belong to another architecture"),
    (_reshape_weight, "has shape \\(2, 2\\)"),
    # QA: tracebacks (TypeError, RecursionError, ValueError) before
    (_edit_json(version="1"), "is not a TEZip PredNet model description"),
    (lambda m: (m / "prednet_model.json").write_text("[" * 100000 + "]" * 100000), "is not readable JSON"),
    (lambda m: _edit_json(architecture=dict(json.loads((m / "prednet_model.json").read_text())["architecture"],
                                            pixel_max=None))(m), "model .*: float\\(\\) argument"),
]
MODEL_IDS = ["no-folder", "no-json", "no-weights", "bad-json", "foreign-json", "newer-json", "bad-hdf5",
             "missing-weight", "wrong-shape", "text-version", "deep-json", "null-pixel-max"]


@pytest.mark.parametrize("change, match", MODEL_CASES, ids=MODEL_IDS)
def test_bad_model_compress(tiny_model, tmp_path, change, match):
    model = _model_copy(tiny_model, tmp_path, change)
    compress_fails(model, rgb_images(tmp_path / "images"), tmp_path / "out", match)


@pytest.mark.parametrize("change, match", MODEL_CASES[::2] + MODEL_CASES[7:8], ids=MODEL_IDS[::2] + MODEL_IDS[7:8])
def test_bad_model_decompress(tiny_model, comp, tmp_path, change, match):
    model = _model_copy(tiny_model, tmp_path, change)
    decompress_fails(model, comp, tmp_path / "out", match)


def test_model_for_other_channel_count(tiny_model, comp, tmp_path):
    compress_fails(tiny_model(1), rgb_images(tmp_path / "images"), tmp_path / "out", "trained on 1-channel frames")
    decompress_fails(tiny_model(1), comp, tmp_path / "out", "made with a different model")


# --- the output folder -----------------------------------------------------------------------------


def test_out_dir_same_as_or_nested_with_input(tiny_model, comp, tmp_path):
    model, images = tiny_model(3), rgb_images(tmp_path / "images")
    compress_fails(model, images, images, "is the same folder as IMAGE_DIR")
    compress_fails(model, images, images / "comp", "lies inside IMAGE_DIR")
    compress_fails(model, images, tmp_path, "IMAGE_DIR .* lies inside OUT_DIR")
    decompress_fails(model, comp, comp, "is the same folder as COMP_DIR")
    decompress_fails(model, comp, comp / "out", "lies inside COMP_DIR")
    decompress_fails(model, comp, tmp_path, "COMP_DIR .* lies inside OUT_DIR")
    # the same through a symbolic link
    (tmp_path / "link").symlink_to(images)
    compress_fails(model, images, tmp_path / "link" / "comp", "lies inside IMAGE_DIR")


def test_non_empty_out_dir_refused_unless_overwrite(tiny_model, made, comp, tmp_path):
    model, images = tiny_model(3), made / "images"
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    compress_fails(model, images, out, "is not empty \\(use --overwrite")
    decompress_fails(model, comp, out, "is not empty \\(use --overwrite")
    compress(model, images, out, **OPTIONS, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    for name in archive.ARCHIVE_FILES:
        assert (out / name).read_bytes() == (comp / name).read_bytes()


def test_out_dir_not_a_folder(tiny_model, comp, tmp_path):
    model, images = tiny_model(3), rgb_images(tmp_path / "images")
    afile = tmp_path / "afile"
    afile.write_text("x")
    compress_fails(model, images, afile, "exists and is not a folder")
    decompress_fails(model, comp, afile, "exists and is not a folder")
    # Unwritable in a way that stops root too: the folder would have to be created under a file.
    compress_fails(model, images, afile / "comp", "cannot be created: .*afile is not a folder")
    decompress_fails(model, comp, afile / "sub" / "out", "cannot be created: .*afile is not a folder")
    # QA: a link to nothing said "cannot create OUT_DIR dl (File exists)"
    (tmp_path / "dl").symlink_to(tmp_path / "nowhere")
    compress_fails(model, images, tmp_path / "dl", "OUT_DIR .*dl is a symbolic link to .*nowhere, which does not exist")
    decompress_fails(model, comp, tmp_path / "dl", "is a symbolic link to .*nowhere, which does not exist")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (test_out_dir_not_a_folder covers an "
                                              "OUT_DIR that cannot be written as root)")
def test_out_dir_unwritable(tiny_model, comp, tmp_path):
    model, images = tiny_model(3), rgb_images(tmp_path / "images")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        compress_fails(model, images, locked, "is not writable")
        decompress_fails(model, comp, locked, "is not writable")
        compress_fails(model, images, locked / "new", "cannot be created: .* is not writable")
    finally:
        locked.chmod(0o700)


# --- a full disk (simulated: writes into OUT_DIR fail half-way with ENOSPC) -------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(folder): from now on, every file a run creates in folder (publish.OutputFolder.new_file,
    the one way files get into an output folder) takes half of the first write and then fails with
    ENOSPC, as on a full disk."""
    real_new_file = publish.OutputFolder.new_file

    class Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(bytes(data)[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def start(*folders):
        full = [Path(folder).resolve() for folder in folders]

        def new_file(self, track):
            f = real_new_file(self, track)
            return Full(f) if self.path.resolve() in full else f

        monkeypatch.setattr(publish.OutputFolder, "new_file", new_file)

    return start


def test_full_disk_compress_keeps_previous_archive(tiny_model, made, tmp_path, full_disk):
    out = tmp_path / "out"
    shutil.copytree(made / "comp", out)  # an earlier archive, to be replaced with --overwrite
    images = made / "images"
    full_disk(out)
    plan, flags = plan_and_flags(**OPTIONS, overwrite=True)
    message = fails(lambda: compress_folder(tiny_model(3), images, out, plan, flags), "No space left on device",
                    inputs=[images], outputs=[out])
    assert str(out) in message


def test_full_disk_decompress(tiny_model, comp, tmp_path, full_disk):
    earlier = tmp_path / "earlier"
    decompress_folder(tiny_model(3), comp, earlier)  # a complete earlier output, before the disk fills
    full_disk(tmp_path / "out", earlier)
    decompress_fails(tiny_model(3), comp, tmp_path / "out", "No space left on device")
    # over the earlier output with --overwrite: it stays exactly as it was
    decompress_fails(tiny_model(3), comp, earlier, "No space left on device", overwrite=True)


# --- the archive folder ----------------------------------------------------------------------------


def test_missing_or_empty_comp_dir(tiny_model, tmp_path):
    decompress_fails(tiny_model(3), tmp_path / "nope", tmp_path / "out", "archive folder .* does not exist")
    (tmp_path / "file").write_text("x")
    decompress_fails(tiny_model(3), tmp_path / "file", tmp_path / "out", "archive folder .*file is not a folder")
    (tmp_path / "empty").mkdir()
    decompress_fails(tiny_model(3), tmp_path / "empty", tmp_path / "out", "filename.txt is missing")


@pytest.mark.parametrize("name", archive.ARCHIVE_FILES)
def test_archive_file_missing(tiny_model, comp, tmp_path, name):
    (comp / name).unlink()
    decompress_fails(tiny_model(3), comp, tmp_path / "out", f"{name} is missing: not a complete TEZip archive")


def _png_bytes(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    return (tmp_path / "x.png").read_bytes()


FOREIGN = {
    "png-as-keyframes": "key_frame.dat is not a TEZip archive file",
    "empty-entropy": "entropy.dat is not a TEZip archive file",
    "swapped-dats": "key_frame.dat is not what its name says: it holds a entropy.dat file",
    "folder-as-entropy": "entropy.dat cannot be read",
    "other-archive": "belongs to a different archive than entropy.dat",
    "text-as-names": "filename.txt is not a TEZip file-name list",
    "binary-names": "filename.txt is corrupt \\(not UTF-8 text\\)",
}


@pytest.mark.parametrize("case, match", list(FOREIGN.items()), ids=list(FOREIGN))
def test_foreign_archive_files(tiny_model, made, comp, tmp_path, case, match):
    if case == "png-as-keyframes":
        (comp / archive.KEYFRAME_FILE).write_bytes(_png_bytes(tmp_path))
    elif case == "empty-entropy":
        (comp / archive.ENTROPY_FILE).write_bytes(b"")
    elif case == "swapped-dats":
        k, e = (comp / archive.KEYFRAME_FILE).read_bytes(), (comp / archive.ENTROPY_FILE).read_bytes()
        (comp / archive.KEYFRAME_FILE).write_bytes(e)
        (comp / archive.ENTROPY_FILE).write_bytes(k)
    elif case == "folder-as-entropy":
        (comp / archive.ENTROPY_FILE).unlink()
        (comp / archive.ENTROPY_FILE).mkdir()
    elif case == "other-archive":  # same images, same shape, another bound
        shutil.copy(made / "comp_b2" / archive.KEYFRAME_FILE, comp / archive.KEYFRAME_FILE)
    elif case == "text-as-names":
        (comp / archive.NAMES_FILE).write_text("frame_0000.png\nframe_0001.png\n")
    elif case == "binary-names":
        (comp / archive.NAMES_FILE).write_bytes(_png_bytes(tmp_path))
    decompress_fails(tiny_model(3), comp, tmp_path / "out", match)


def _names(comp):
    head, body = (comp / archive.NAMES_FILE).read_text().split("\n", 1)
    return json.loads(head.split(" ", 1)[1]), body.split("\n")[:-1]


def _write_names(comp, head, names, fix=True):
    body = "".join(n + "\n" for n in names)
    if fix:  # a careful edit: the list's own checksum and count made to match
        head = dict(head, crc32=container.crc32(body.encode()), count=len(names))
    (comp / archive.NAMES_FILE).write_text(f"{archive_names.NAMES_MAGIC} {json.dumps(head)}\n{body}")


@pytest.mark.parametrize("edit, fix, match", [
    (lambda n: n.__setitem__(2, "renamed.png"), False, "was edited or is corrupt"),
    (lambda n: n.__setitem__(2, "../escape.png"), True, "name 3 '../escape.png' is not a plain file name"),
    (lambda n: n.__setitem__(2, "/tmp/escape.png"), True, "is not a plain file name"),
    (lambda n: n.__setitem__(2, "frame.exe"), True, "does not have an image file extension"),
    (lambda n: n.__setitem__(2, n[1]), True, "appears twice"),
    (lambda n: n.pop(), True, f"lists {N_FRAMES - 1} names for {N_FRAMES} frames"),
    (lambda n: n.append("extra.png"), False, "was edited or is corrupt"),
], ids=["renamed", "escape", "absolute", "extension", "duplicate", "line-removed", "line-added"])
def test_filename_txt_edited(tiny_model, comp, tmp_path, edit, fix, match):
    head, names = _names(comp)
    edit(names)
    _write_names(comp, head, names, fix)
    decompress_fails(tiny_model(3), comp, tmp_path / "out", match)
    assert not (tmp_path / "escape.png").exists() and not Path("/tmp/escape.png").exists()


def test_filename_txt_careful_rename_is_refused(tiny_model, comp, tmp_path):
    """Names are bound into entropy.dat: even an edit that recomputes filename.txt's own checksum
    cannot rename or reorder the output."""
    head, names = _names(comp)
    names[0] = "first.png"
    _write_names(comp, head, names)
    decompress_fails(tiny_model(3), comp, tmp_path / "out", "filename.txt was edited")
    names[0], names[1] = names[1], "first.png"
    _write_names(comp, head, names)
    decompress_fails(tiny_model(3), comp, tmp_path / "out", "filename.txt was edited")


@pytest.mark.parametrize("name", archive.ARCHIVE_FILES)
def test_newer_format_version(tiny_model, comp, tmp_path, name):
    path = comp / name
    if name == archive.NAMES_FILE:
        head, names = _names(comp)
        _write_names(comp, dict(head, version=container.FORMAT_VERSION + 1), names, fix=False)
    else:
        data = bytearray(path.read_bytes())
        struct.pack_into("<H", data, 8, container.FORMAT_VERSION + 1)
        path.write_bytes(bytes(data))
    decompress_fails(tiny_model(3), comp, tmp_path / "out",
                     f"{name} was written by a newer TEZip \\(format version {container.FORMAT_VERSION + 1}\\)")


@pytest.mark.parametrize("name", [archive.KEYFRAME_FILE, archive.ENTROPY_FILE])
def test_older_format_version_is_named(tiny_model, comp, tmp_path, name):
    path = comp / name
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, container.OLDEST_DAT_VERSION - 1)
    path.write_bytes(bytes(data))
    decompress_fails(tiny_model(3), comp, tmp_path / "out",
                     f"{name} was written by an older TEZip \\(format version {container.OLDEST_DAT_VERSION - 1}, "
                     "rank-table coding\\), which this one no longer decodes")


def test_decompress_output_same_as_original_folder(tiny_model, made, tmp_path):
    """Decompressing onto the original images is refused (not empty) rather than overwriting them."""
    images = tmp_path / "images"
    shutil.copytree(made / "images", images)
    decompress_fails(tiny_model(3), made / "comp", images, "is not empty")


# --- the command line: one line on stderr, the exit code -------------------------------------------


def _cli(*args):
    return subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))


@pytest.mark.parametrize("args, code, match", [
    (["-c", "M", "I", "O", "-w", "0"], 2, "-w must be at least 1"),
    (["-c", "M", "I", "O", "-t", "-1"], 2, "-t must be a positive finite number"),
    (["-c", "M", "I", "O", "-w", "2", "-b", "nan", "x"], 2, "invalid float value: 'x'"),
    (["-c", "M", "I", "O", "-w", "2", "--lanes", "0"], 2, "--lanes must be at least 1"),
    (["-u", "M", "C"], 2, "expected 3 arguments"),
    (["-c", "M", "I", "O", "-u", "M", "C", "O", "-w", "2"], 2, "exactly one of -l"),
    (["-c", "M", "I", "O", "-w", "2", "--zstd-level", "99"], 2, "--zstd-level must be 1-22 (got 99)"),
    (["-c", "M", "I", "O", "-w", "2", "--motion", "9"], 2, "--motion must be a search radius 0-7"),
    (["-c", "M", "I", "O", "-w", "2", "-m", "rel", "-b", "0.1", "--quantizer", "medquant"], 2,
     "--quantizer medquant serves the abs mode only"),
    (["-c", "M", "I", "O", "-w", "2", "-b", "-1"], 1, "error bound must not be negative"),
    (["-c", "M", "I", "O", "-w", "2", "-m", "lossy"], 1, "unknown error-bound mode 'lossy'"),
    # "" is the current folder to the OS: an unset shell variable ran on whatever folder one was in (QA)
    (["-c", "none", "", "O", "-w", "2"], 2, "IMAGE_DIR is empty"),
    (["-u", "none", "", "O"], 2, "COMP_DIR is empty"),
    (["-c", "", "I", "O", "-w", "2"], 2, "MODEL_DIR is empty"),
    (["-u", "none", "C", ""], 2, "OUT_DIR is empty"),
    (["-l", "M", ""], 2, "DATA_DIR is empty"),
    (["-c", "none", "I", " ", "-w", "2"], 2, "OUT_DIR is empty or blank (' ')"),
    (["-c", "none", "::/entry/data", "O", "-w", "2"], 2, "names no HDF5 file before '::'"),
], ids=["w0", "t-neg", "b-text", "lanes0", "u-2-args", "two-jobs", "zstd99", "motion9", "medquant-rel", "b-neg",
        "mode", "empty-image-dir", "empty-comp-dir", "empty-model-dir", "empty-out-dir", "empty-data-dir", "blank-out-dir",
        "no-hdf5-file"])
def test_cli_argument_errors(args, code, match):
    r = _cli(*args)
    assert r.returncode == code
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("tezip.py: error: ") and match in r.stderr, r.stderr


def test_cli_errors_one_line_exit_1(tiny_model, made, tmp_path):
    """A few run-time errors through the real command line (each run imports TensorFlow, ~6 s)."""
    model = tiny_model(3)
    cases = [
        (["-c", model, tmp_path / "nope", tmp_path / "o1", "-w", "2"], "folder not found"),
        (["-c", model, made / "images", made / "images" / "o", "-w", "2"], "lies inside IMAGE_DIR"),
        (["-u", tmp_path / "nomodel", made / "comp", tmp_path / "o2"], "does not exist"),
    ]
    for args, match in cases:
        r = _cli(*args, "-f")
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("tezip.py: error: ") and match in r.stderr, r.stderr
    assert not (made / "images" / "o").exists() and not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# --- only regular files are read; sizes are checked before reading ---------------------------------


@contextlib.contextmanager
def deadline(seconds):
    """A blocking open or read (a FIFO) fails the test instead of hanging it."""
    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def address_space_limited(extra):
    """Lower this process's address-space limit to what it has mapped + `extra` bytes meanwhile, so
    a read that never ends (a device) fails with MemoryError instead of filling the machine."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_fifo_among_the_images_is_refused_without_blocking(tiny_model, tmp_path):
    images, model = rgb_images(tmp_path / "images"), tiny_model(3)
    os.mkfifo(images / "frame_0003b.png")
    with deadline(20):
        compress_fails(model, images, tmp_path / "out", "frame_0003b.png: is a FIFO \\(named pipe\\), not an image file")


@pytest.mark.parametrize("name", archive.ARCHIVE_FILES)
def test_fifo_as_an_archive_file_is_refused_without_blocking(tiny_model, comp, tmp_path, name):
    (comp / name).unlink()
    os.mkfifo(comp / name)
    model = tiny_model(3)
    with deadline(20):
        decompress_fails(model, comp, tmp_path / "out", f"{name} cannot be read \\(it is a FIFO")


def test_link_to_dev_zero_as_an_archive_file_is_refused_unread(tiny_model, comp, tmp_path):
    (comp / archive.KEYFRAME_FILE).unlink()
    os.symlink("/dev/zero", comp / archive.KEYFRAME_FILE)
    model = tiny_model(3)
    with deadline(20), address_space_limited(1 << 30):
        decompress_fails(model, comp, tmp_path / "out", "key_frame.dat cannot be read \\(it is a character device")


@pytest.mark.parametrize("name", [archive.KEYFRAME_FILE, archive.ENTROPY_FILE, archive.NAMES_FILE])
def test_sparse_huge_archive_file_is_refused_after_reading_its_header(tiny_model, comp, tmp_path, name):
    """A file far larger than its header declares (here 1 GiB, sparse) is refused having read only
    its header: the traced memory stays small."""
    import tracemalloc

    os.truncate(comp / name, 1 << 30)
    model = tiny_model(3)
    tracemalloc.start()
    try:
        with pytest.raises(TezipError, match="unexpected bytes at its end|is corrupt") as info:
            decompress_folder(model, comp, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes read for: {info.value}"
    assert not (tmp_path / "out").exists()


# --- names: bound to the archive, written back whatever their length, printed escaped --------------


def test_entropy_dat_without_names_digest_is_refused(tiny_model, comp, tmp_path):
    """The current format binds filename.txt into entropy.dat; a header without the binding (crc made
    valid again) is refused, so names cannot be edited by removing it."""
    from benchmarks import fuzz_decoder as fz

    path = comp / archive.ENTROPY_FILE
    magic, version, header, chunks = fz.split_dat(path.read_bytes())
    del header["names_digest"]
    path.write_bytes(fz.join_dat(magic, version, header, chunks))
    decompress_fails(tiny_model(3), comp, tmp_path / "out", "entropy.dat is corrupt \\(its header lacks 'names_digest'")


def test_frame_names_of_255_bytes_round_trip(tiny_model, tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    stem = "n" * (255 - len("_0000.png"))
    frames = make_sequence(images, n_frames=4, height=16, width=24, prefix=stem + "_")
    assert max(len(p.name.encode()) for p in images.iterdir()) == 255
    compress_folder(tiny_model(3), images, tmp_path / "comp", *plan_and_flags(window=2))
    decompress_folder(tiny_model(3), tmp_path / "comp", out)
    np.testing.assert_array_equal(read_sequence(out).frames, frames)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in images.iterdir())


def test_name_that_could_not_be_written_back_is_refused_at_compression(tiny_model, tmp_path):
    """x.jpg and x.jpeg both become x.png on the way back, so each is written as its name + .png:
    for a 252-byte name that is 256 bytes, which no file system takes. Refused before any work."""
    images = tmp_path / "images"
    images.mkdir()
    stem = "j" * 247
    frames = moving_squares(2, 16, 24, 3, seed=4)
    Image.fromarray(frames[0]).save(images / f"{stem}.jpeg")
    Image.fromarray(frames[1]).save(images / f"{stem}.jpg")
    compress_fails(tiny_model(3), images, tmp_path / "comp", "would be written back as .*longer than 255 bytes",
                   window=1)


def test_names_are_printed_escaped(tiny_model, tmp_path, capsys):
    """A frame name holding a terminal escape sequence is printed escaped (-v, the notes of -u)."""
    images, comp, out = tmp_path / "images", tmp_path / "comp", tmp_path / "out"
    make_sequence(images, n_frames=3, height=16, width=24, ext=".jpg", prefix="f\x1b[2J\x1b]0;owned\x07_")
    assert tezip.main(["-c", str(tiny_model(3)), str(images), str(comp), "-f", "-w", "2", "-v"]) == 0
    assert tezip.main(["-u", str(tiny_model(3)), str(comp), str(out), "-f"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "\x1b" not in printed and "\x07" not in printed
    assert "f\\x1b[2J\\x1b]0;owned\\x07_0000.jpg is written as f\\x1b[2J\\x1b]0;owned\\x07_0000.png" in printed
    assert "frame 0 f\\x1b[2J" in printed
    assert sorted(os.listdir(out)) == [f"f\x1b[2J\x1b]0;owned\x07_{i:04d}.png" for i in range(3)]


@pytest.mark.parametrize("value", ["0", "-2", "abc"])
def test_a_bad_numba_thread_count_is_one_line(tmp_path, value):
    """numba refuses NUMBA_NUM_THREADS=0 at import, deep inside, with a 38-line traceback (QA)."""
    r = subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), "-c", "none", str(tmp_path / "in"),
                        str(tmp_path / "out"), "-w", "2"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NUMBA_NUM_THREADS=value))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"tezip.py: error: NUMBA_NUM_THREADS={value!r} is not a thread count: "
                                             "give a positive integer or unset it"], r.stderr
    assert not (tmp_path / "out").exists()
