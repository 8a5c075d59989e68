"""Format 2 archives, written before the streaming format 3, still decode: their codes were coded
as whole-sequence stacks (one chain over all frames, the block choices of all frames in one chunk)
and their predictions came from Keras (TensorFlow's float arithmetic), so they are decoded whole,
in memory, with the model run as Keras runs it and the lanes they recorded."""

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

    selector, choices = None, None
    if seq.block_select is not None:
        try:
            selector = BlockSelector.from_config(seq.block_select)
            choices = np.zeros((fmt.n_frames,) + selector.grid(fmt.height, fmt.width), np.uint8)
            choices[predicted] = selector.decode_choices(archive.choices_chunk, len(predicted), fmt.height, fmt.width)
        except TezipError as e:
            raise TezipError(f"{ENTROPY_FILE}: {e}") from None
    coder = FrameCoder(residual_chain.head, [], None, selector, seq.mode, seq.bounds, fmt.max_value, xp)
    return codes, choices, coder, KeyframeCoder(key_chain.head, fmt.max_value)


def decode_sequence_v2(model_dir, archive, progress=None, device="CPU"):
    """Decode a format-2 archive whole → frames (N, H, W, C) uint8 or uint16 (not yet verified)."""
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
