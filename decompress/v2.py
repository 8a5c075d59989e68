"""Format 2 archives, written before the streaming format 3, still decode: their codes were coded
as whole-sequence stacks (one chain over all frames, the block choices of all frames in one chunk)
and their predictions came from Keras (TensorFlow's float arithmetic), so they are decoded whole,
in memory, with the model run as Keras runs it and the lanes they recorded."""

import os

import numpy as np

from archive.common import ENTROPY_FILE, KEYFRAME_FILE
from base.errors import TezipError
from sequence.framecoder import FrameCoder, KeyframeCoder, to_interleaved, to_planar
from stages.chain import Chain


class WholeSequenceDecoder:
    """run_windows' coder for format 2: rebuilds frames into `frames` (N, H, W, C) from the heads'
    codes (N, C, H, W) int32 decoded beforehand and the block `choices` (N, ny, nx) or None."""

    def __init__(self, frames, codes, choices, coder: FrameCoder, key_coder: KeyframeCoder):
        self.frames, self.codes, self.choices = frames, codes, choices
        self.coder, self.key_coder = coder, key_coder

    def model_pays(self, f, keyframe):
        """Format 2 ran the model on every frame."""
        return True

    def keyframe(self, f):
        self.frames[f] = to_interleaved(self.key_coder.reconstruct(self.codes[f]), self.frames.dtype)
        return self.frames[f]

    def frame(self, f, model_prediction):
        choices = self.choices[f] if self.choices is not None else None
        decoded = self.coder.reconstruct(self.codes[f], choices, to_planar(model_prediction), to_planar(self.frames[f - 1]))
        self.frames[f] = to_interleaved(decoded, self.frames.dtype)
        return self.frames[f]


def decode_codes(archive, xp=np):
    """Every chunk → the heads' codes of all frames (N, C, H, W) int32, the block choices (N, ny, nx)
    or None, and the two frame coders."""
    from sequence.blockselect import BlockSelector

    seq, keys = archive.sequence, archive.keyframes
    fmt = seq.frames
    is_key = np.zeros(fmt.n_frames, bool)
    is_key[seq.keyframes] = True
    predicted = np.flatnonzero(~is_key)

    residual_chain = Chain.from_config(seq.stages, ENTROPY_FILE)
    if not residual_chain.head.lossy:
        raise TezipError(f"{ENTROPY_FILE} has a stage order this TEZip cannot decode: {[s.codec_id for s in residual_chain.stages]}")
    key_chain = keys.check_head(Chain.from_config(keys.stages, KEYFRAME_FILE))

    codes = np.empty((fmt.n_frames,) + fmt.frame_shape, np.int32)
    key_chunks = [archive.keyframe_chunk(i) for i in range(len(seq.keyframes))]
    residual_chunks = [archive.frame_chunk(i) for i in range(len(predicted))]
    try:
        codes[seq.keyframes] = key_chain.tail.decode(key_chunks, fmt.frame_shape, keys.payload_dtype)
    except TezipError as e:
        raise TezipError(f"{KEYFRAME_FILE}: {e}") from None
    try:
        codes[predicted] = residual_chain.tail.decode(residual_chunks, fmt.frame_shape, seq.payload_dtype)
    except TezipError as e:
        raise TezipError(f"{ENTROPY_FILE}: {e}") from None

    choices_chunk = archive.choices_chunk  # checked even where no block choice is used: every byte is verified
    selector, choices = None, None
    if seq.block_select is not None:
        try:
            selector = BlockSelector.from_config(seq.block_select)
            choices = np.zeros((fmt.n_frames,) + selector.grid(fmt.height, fmt.width), np.uint8)
            choices[predicted] = selector.decode_choices(choices_chunk, len(predicted), fmt.height, fmt.width)
        except TezipError as e:
            raise TezipError(f"{ENTROPY_FILE}: {e}") from None
    coder = FrameCoder(residual_chain.head, [], None, selector, seq.mode, seq.bounds, fmt.max_value, xp)
    return codes, choices, coder, KeyframeCoder(key_chain.head, fmt.max_value)


def decode_sequence_v2(model_dir, archive, progress=None, device="CPU"):
    """Decode a format-2 archive whole → frames (N, H, W, C) uint8 or uint16 (not yet verified)."""
    from prednet.device import import_framework

    import_framework()  # first, so that TensorFlow's start-up notices are silenced: errors stay one line
    from prednet.modelfile import load_model
    from prednet.predictor import NextFramePredictor
    from prednet.scale import ValueScale
    from sequence.windows import run_windows
    from stages import array_module

    seq = archive.sequence
    fmt = seq.frames
    prednet, doc = load_model(model_dir)
    check_model_digest(seq.model_digest, doc["digest"])
    codes, choices, coder, key_coder = decode_codes(archive, array_module(device))
    frames = np.zeros((fmt.n_frames, fmt.height, fmt.width, fmt.channels), fmt.dtype)
    decoder = WholeSequenceDecoder(frames, codes, choices, coder, key_coder)
    is_key = np.zeros(fmt.n_frames, bool)
    is_key[seq.keyframes] = True
    predictor = NextFramePredictor(prednet, fmt.height, fmt.width, len(seq.lanes))
    scale = ValueScale(*(fmt.value_range or (0, fmt.max_value)))
    run_windows(predictor, fmt.n_frames, seq.lanes, is_key, decoder, closed_loop=seq.loop == "closed", scale=scale,
                progress=progress)
    return frames


ONEDNN = "TF_ENABLE_ONEDNN_OPTS"


def decode_verified_v2(model_dir, comp_dir, archive, verify, progress=None, device="CPU"):
    """Decode a format-2 archive whole and check every frame with `verify` (i, frame) → frames
    (N, H, W, C) uint8 or uint16, every one matching its checksum.

    Format 2's predictions are TensorFlow's float results, which depend on whether TensorFlow runs
    its oneDNN CPU kernels, and TensorFlow decides that by the processor when TF_ENABLE_ONEDNN_OPTS
    is unset (since TensorFlow 2.9: on where the processor has AVX-512 VNNI/BF16 or AMX, off
    otherwise).
    Format 2 did not record it, so an archive made on one kind of processor failed its checksums on
    the other. On the CPU a failed decode is therefore run once more in a fresh process with the
    other setting (TensorFlow reads it only when it starts), and only a decode whose every frame
    verifies is returned. Raises the first decode's TezipError when neither verifies."""
    check_archive_model(model_dir, archive.sequence.model_digest)  # before TensorFlow starts (seconds)
    frames = decode_sequence_v2(model_dir, archive, progress, device)
    try:
        _verify_all(frames, verify)
        return frames
    except TezipError as first:
        if device != "CPU":
            raise
        for setting in _other_onednn_settings():
            try:
                frames = _decode_in_fresh_process(model_dir, comp_dir, setting)
                _verify_all(frames, verify)
                return frames
            except TezipError:
                continue
        raise first


def _verify_all(frames, verify):
    for i, frame in enumerate(frames):
        verify(i, frame)


def _other_onednn_settings():
    """The TF_ENABLE_ONEDNN_OPTS values ("0", "1") other than the one this process's TensorFlow
    runs with; both where that cannot be told."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return ["0"] if _pywrap_util_port.IsMklEnabled() else ["1"]
    except Exception:  # another backend, or TensorFlow moved its private query: try both
        return ["1", "0"]


def _decode_in_fresh_process(model_dir, comp_dir, onednn):
    """decode_sequence_v2 in a new Python process (`python -m decompress.v2`) whose TensorFlow
    starts with TF_ENABLE_ONEDNN_OPTS=onednn, the rest of this process's environment (TensorFlow's
    thread counts, hidden GPUs) inherited → its frames, not yet verified. The frames come back
    through a pipe (nothing is written to disk); the child's own messages are discarded. An
    interrupt here (KeyboardInterrupt from tezip's handler) kills the child before it propagates.
    Raises TezipError when the child fails."""
    import io
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)  # the child imports TEZip from where this one did
    env = dict(os.environ, **{ONEDNN: onednn})
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    from prednet.modelfile import is_default_model

    given = model_dir if is_default_model(model_dir) else os.path.abspath(model_dir)  # a folder stays a folder
    child = subprocess.Popen([sys.executable, "-m", "decompress.v2", given, os.path.abspath(comp_dir)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise TezipError(f"the decode with {ONEDNN}={onednn} failed (exit {child.returncode})")
    return np.load(io.BytesIO(out), allow_pickle=False)


def _child_main(model_dir, comp_dir):
    """`python -m decompress.v2 MODEL_DIR COMP_DIR`: the archive's frames, unverified, as one .npy
    on standard output (decode_verified_v2's other oneDNN setting)."""
    import sys

    from archive import read_archive
    from prednet.device import hide_gpus, quiet_framework_logs

    quiet_framework_logs()
    hide_gpus()  # the retry runs on the CPU, as the decode it repeats
    with read_archive(comp_dir) as archive:
        frames = decode_sequence_v2(model_dir, archive)
    np.save(sys.stdout.buffer, frames, allow_pickle=False)
    sys.stdout.buffer.flush()


def check_archive_model(model_dir, recorded):
    """MODEL_DIR's ReferenceWeights (read with h5py: no TensorFlow yet) when its digest is the one
    the archive `recorded`; otherwise TezipError saying which model to give (also for `none`)."""
    from prednet.modelfile import default_model_digest, is_no_model, load_weights

    if is_no_model(model_dir):
        if recorded == default_model_digest():
            raise TezipError("this archive was made with the bundled default model: decompress with -u default …")
        raise TezipError(f"this archive was made with a model of your own (model digest {str(recorded)[:12]}…): "
                         f"decompress with the MODEL_DIR it was made with")
    weights, doc = load_weights(model_dir)
    check_model_digest(recorded, doc["digest"])
    return weights


def check_model_digest(recorded, given):
    """The archive's model must be the one given: refused with what to use instead."""
    if recorded != given:
        from prednet.modelfile import default_model_digest

        which = "the bundled default model" if recorded == default_model_digest() else "a different model"
        use = "-u default …" if which.startswith("the bundled") else "the same MODEL_DIR"
        raise TezipError(
            f"this archive was made with {which} (model digest {str(recorded)[:12]}…, given model "
            f"{str(given)[:12]}…): decompress with {use}"
        )


if __name__ == "__main__":
    import sys

    _child_main(*sys.argv[1:3])
