"""decompress: archive → chains decode the codes → window schedule (PredNet + frame coder) → verify → frames.

The mirror of compress/pipeline.py: the same schedule drives the same frame coders, each frame
rebuilt from the same prediction the encoder used. Every decoded frame is checked against the
checksum the encoder stored; a mismatch stops before any image is written.
"""

import time

import numpy as np

from archive import Archive, archive_size, frame_checksum, read_archive
from archive.header import ENTROPY_FILE, KEYFRAME_FILE
from base.errors import TezipError, printable
from base.progress import progress_bar
from base.publish import OutputFolder, check_output_folder
from sequence.coding import SequenceDecoder
from sequence.framecoder import FrameCoder, KeyframeCoder
from sequence.plan import RunFlags
from stages import array_module
from stages.chain import Chain


def decode_codes(archive: Archive, xp=np):
    """Every chunk → the heads' codes of all frames (N, C, H, W) int32, the block choices (N, ny, nx)
    or None, and the two frame coders. The mirror of compress.pipeline.encode_chunks."""
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
    try:
        codes[seq.keyframes] = key_chain.tail.decode(archive.keyframe_chunks, fmt.frame_shape, keys.payload_dtype)
    except TezipError as e:
        raise TezipError(f"{KEYFRAME_FILE}: {e}") from None
    try:
        codes[predicted] = residual_chain.tail.decode(archive.residual_chunks, fmt.frame_shape, seq.payload_dtype)
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
    coder = FrameCoder(residual_chain.head, selector, seq.mode, seq.bounds, fmt.max_value, xp)
    return codes, choices, coder, KeyframeCoder(key_chain.head, fmt.max_value)


def check_model(archive: Archive, model_digest):
    digest = archive.sequence.model_digest
    if digest != model_digest:
        from prednet.modelfile import default_model_digest

        which = "the bundled default model" if digest == default_model_digest() else "a different model"
        use = "-u default …" if which.startswith("the bundled") else "the same MODEL_DIR"
        raise TezipError(
            f"this archive was made with {which} (model digest {str(digest)[:12]}…, given model "
            f"{model_digest[:12]}…): decompress with {use}"
        )


def check_decode_memory(prednet, fmt, n_lanes, device="CPU"):
    """Refuse (before anything is allocated) a decode that cannot fit in the memory this process
    may still use: the frames, the codes being decoded (int32, transiently twice), and the model
    stepping `n_lanes` lanes. A header may declare frames far larger than its chunks would make
    one believe (all-zero frames code to a few bytes), and TensorFlow's CPU kernels crash rather
    than fail when an allocation is refused, so this is checked, not left to the allocator. (On a
    GPU the model's memory is the GPU's, which TensorFlow reports as an error.)"""
    from prednet.device import memory_headroom
    from prednet.predictor import model_memory

    values = fmt.n_frames * fmt.height * fmt.width * fmt.channels
    need = values * fmt.dtype.itemsize + 8 * values
    if device != "GPU":
        need += model_memory(prednet, fmt.height, fmt.width, n_lanes)
    headroom = memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(
            f"not enough memory to decode {fmt.n_frames} frames of {fmt.width}x{fmt.height}x{fmt.channels}: it needs "
            f"about {need / 2**30:.1f} GiB, {headroom / 2**30:.1f} GiB are available; nothing was written"
        )


def decode_sequence(prednet, archive: Archive, progress=None, device="CPU"):
    """Decode and verify every frame → frames (N, H, W, C) uint8 or uint16."""
    from prednet.predictor import NextFramePredictor
    from prednet.scale import ValueScale
    from sequence.windows import run_windows

    seq = archive.sequence
    fmt = seq.frames
    check_decode_memory(prednet, fmt, len(seq.lanes), device)
    codes, choices, coder, key_coder = decode_codes(archive, array_module(device))
    frames = np.zeros((fmt.n_frames, fmt.height, fmt.width, fmt.channels), fmt.dtype)
    decoder = SequenceDecoder(frames, codes, choices, coder, key_coder)
    is_key = np.zeros(fmt.n_frames, bool)
    is_key[seq.keyframes] = True
    predictor = NextFramePredictor(prednet, fmt.height, fmt.width, len(seq.lanes))
    scale = ValueScale(*(fmt.value_range or (0, fmt.max_value)))
    run_windows(predictor, fmt.n_frames, seq.lanes, is_key, decoder, closed_loop=seq.loop == "closed", scale=scale,
                progress=progress)
    verify(frames, seq, archive.names, is_key)
    return frames


def verify(frames, seq, names, is_key):
    """Every frame against the checksum of what the encoder decoded: nothing wrong is ever written."""
    from prednet.device import model_threads

    for i, (frame, stored) in enumerate(zip(frames, seq.frame_checksums)):
        if frame_checksum(frame) != stored:
            kind = "keyframe" if is_key[i] else "predicted frame"
            threads = seq.model_threads
            hint = ""
            if isinstance(threads, int) and threads != model_threads():
                hint = f" (it was compressed with TEZIP_MODEL_THREADS={threads}; set the same value to decode it)"
            raise TezipError(
                f"frame {i} ({printable(names[i])}, {kind}) does not match its checksum: the archive is corrupt or was made "
                f"on a machine whose model arithmetic differs{hint}; nothing was written"
            )


def write_frames_atomically(out, frames, names, mode, stack=None):
    """Write every frame under its output name into the OutputFolder `out`, all published together
    (base.publish.OutputFolder.publish); or, for frames that came from one multi-page TIFF (`stack`,
    its file name), that one file. Returns the notes about renamed lossy formats."""
    from frames.write import output_names, write_frame, write_tiff_stack

    if stack is not None:
        out_names, notes = [stack], []
        write = lambda i, f: write_tiff_stack(f, frames, mode)  # noqa: E731
    else:
        out_names, notes = output_names(names)
        write = lambda i, f: write_frame(f, frames[i], mode, format_of=out_names[i])  # noqa: E731

    def write_one(i, f):
        try:
            write(i, f)
        except TezipError as e:  # name the frame, not its temporary file
            cause = e.__context__
            if isinstance(cause, OSError):
                raise TezipError(f"cannot write {printable(out_names[i])} into {out.path} "
                                 f"({cause.strerror or cause})") from None
            raise

    out.publish(out_names, write_one)
    return notes


def decompress_folder(model_dir, comp_dir, out_dir, flags: RunFlags = RunFlags(), label=""):
    """Decode, verify and write one archive folder; prints one summary line (after `label`). Returns
    the frames. OUT_DIR is locked for the whole run (base.publish.OutputFolder)."""
    check_output_folder(out_dir, comp_dir, flags.overwrite, what="COMP_DIR")
    with OutputFolder(out_dir, overwrite=flags.overwrite) as out:
        return _decompress_into(model_dir, comp_dir, out, flags, label)


def _decompress_into(model_dir, comp_dir, out, flags, label):
    from prednet.modelfile import load_model

    t0 = time.time()
    archive = read_archive(comp_dir)
    prednet, model_doc = load_model(model_dir)
    check_model(archive, model_doc["digest"])
    fmt = archive.sequence.frames
    progress = progress_bar(fmt.n_frames, "predicting")
    try:
        frames = decode_sequence(prednet, archive, progress, flags.device)
    except MemoryError:
        raise TezipError(
            f"not enough memory to decode {fmt.n_frames} frames of {fmt.width}x{fmt.height}x{fmt.channels}; "
            "nothing was written"
        ) from None
    finally:
        progress.close()
    for note in write_frames_atomically(out, frames, archive.names, archive.mode, archive.stack):
        print(note)
    comp_bytes = archive_size(comp_dir)
    seconds = time.time() - t0
    seq = archive.sequence
    exact = "bit-exact" if seq.lossless else f"within {seq.mode} bound {seq.bounds}"
    print(
        f"{label}decompressed {fmt.n_frames} frames ({len(seq.keyframes)} keyframes) into {out.path}, "
        f"every frame verified against its checksum ({exact}): {comp_bytes} -> {frames.nbytes} bytes, "
        f"ratio {frames.nbytes / max(1, comp_bytes):.2f}, {seconds:.2f} s",
        flush=True,
    )
    return frames
