"""compress: frames → window schedule (PredNet + frame coder) → residual and keyframe chains → archive.

The glue only calls the parts in order: the plan (sequence.plan) says what to do, the coders
(sequence.coding) code each frame as the schedule (sequence.windows) predicts it, the chains
(stages.chain) turn codes into chunks, and the archive package writes the files.
decompress/pipeline.py is its mirror.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archive import (ENTROPY_FILE, KEYFRAME_FILE, Archive, FrameFormat, KeyframeHeader, SequenceHeader, frame_checksum,
                     names_digest)
from base.errors import TezipError, printable
from base.pixels import max_value_of
from base.progress import progress_bar
from archive.names import check_names
from base.publish import OutputFolder, check_output_folder, write_files_atomically
from sequence.coding import SequenceEncoder
from sequence.framecoder import to_planar
from sequence.plan import CodecPlan, RunFlags, default_lanes
from stages import array_module
from stages.chain import Chain

@dataclass
class Summary:
    frames: int
    keyframes: int
    raw_bytes: int
    compressed_bytes: int
    max_abs_error: int
    psnr: float
    seconds: float
    stage_seconds: dict = field(default_factory=dict)
    stage_bytes: dict = field(default_factory=dict)
    per_frame: list = field(default_factory=list)  # (index, is keyframe, prediction MSE, decoded MSE)
    frame_bytes: list = field(default_factory=list)  # compressed bytes of each frame's own chunk
    predictions: object = field(default=None, repr=False)  # (N, C, H, W) predictions used, for --report

    @property
    def ratio(self):
        return self.raw_bytes / max(1, self.compressed_bytes)

    def line(self):
        psnr = "inf" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB"
        return (
            f"compressed {self.frames} frames ({self.keyframes} keyframes): {self.raw_bytes} -> {self.compressed_bytes} "
            f"bytes, ratio {self.ratio:.2f}, max abs error {self.max_abs_error}, PSNR {psnr}, {self.seconds:.2f} s"
        )


def encode_chunks(chain_head, codes, tails):
    """The heads' codes (F, C, H, W) → (the whole chain, one chunk per frame, payload dtype or None),
    with the smallest of the candidate tails (the plan's back ends, after the head's spatial stages)."""
    best = None
    for tail in tails:
        chain = Chain([chain_head] + tail)
        chunks, payload = chain.tail.encode(codes)
        size = sum(len(c) for c in chunks)
        if best is None or size < best[3]:
            best = (chain, chunks, None if payload == "int32" else payload, size)
    return best[:3]


def encode_sequence(prednet, frames, plan: CodecPlan, model_digest, progress=None, names=("", (), None), device="CPU"):
    """Compress frames (N, H, W, C) uint8 or uint16 → (Archive, Summary). names: (mode, frame
    names, TIFF stack name), bound into the archive."""
    from prednet.predictor import NextFramePredictor
    from prednet.scale import ValueScale
    from sequence.windows import run_windows

    t_start, times = time.time(), {}
    n, h, w, c = frames.shape
    max_value = max_value_of(frames.dtype)

    t = time.time()
    is_key, lane_starts = plan.keyframe_schedule(n, lambda windows, dynamic: default_lanes(prednet, n, h, w, windows, dynamic))
    if device != "GPU":  # on a GPU the model's memory is the GPU's (TensorFlow reports running out)
        check_model_memory(prednet, h, w, len(lane_starts))
    predictor = NextFramePredictor(prednet, h, w, len(lane_starts))
    encoder = SequenceEncoder(frames, plan, array_module(device))
    scale = ValueScale.for_frames(frames)
    run_windows(predictor, n, lane_starts, is_key, encoder, closed_loop=plan.loop == "closed", threshold=plan.threshold,
                scale=scale, progress=progress)
    keyframes, predicted = np.flatnonzero(is_key), np.flatnonzero(~is_key)
    times["predict+quantize"] = time.time() - t

    t = time.time()
    wide = frames.dtype != np.uint8
    head = encoder.residual_head
    residual_chain, residual_chunks, payload = encode_chunks(
        head, encoder.codes[predicted], [plan.spatial_stages(head) + tail for tail in plan.back_ends(wide)])
    key_chain, key_chunks, key_payload = encode_chunks(encoder.keyframe_head, encoder.codes[keyframes], plan.back_ends(wide))
    selector = encoder.coder.selector
    choices_chunk = selector.encode_choices(encoder.choices[predicted], plan.level) if selector else \
        _empty_choices(plan.level)
    times["encode"] = time.time() - t

    fmt = FrameFormat.of(frames, scale)
    mode, frame_names, stack = names
    sequence = SequenceHeader(
        frames=fmt, model_digest=model_digest, model_threads=_model_threads(), loop=plan.loop, warmup=plan.warmup,
        window=plan.window, threshold=plan.threshold, lanes=[int(s) for s in lane_starts],
        keyframes=[int(k) for k in keyframes], mode=plan.mode, bounds=list(plan.bounds), lossless=plan.lossless,
        stages=residual_chain.get_config(), payload_dtype=payload,
        block_select=selector.get_config() if selector else None,
        frame_checksums=[frame_checksum(f) for f in encoder.decoded],
        names_digest=names_digest(mode, frame_names, stack),
    ).with_id()
    key_header = KeyframeHeader(fmt, sequence.keyframes, key_chain.get_config(), key_payload, sequence.archive_id)
    archive = Archive(sequence, key_header, choices_chunk, residual_chunks, key_chunks, mode, list(frame_names), stack)

    summary = summarize(frames, encoder, keyframes, predicted, scale)
    summary.stage_seconds = times
    summary.frame_bytes = [0] * n
    for f, chunk in list(zip(keyframes, key_chunks)) + list(zip(predicted, residual_chunks)):
        summary.frame_bytes[f] = len(chunk)
    summary.seconds = time.time() - t_start
    return archive, summary


def check_model_memory(prednet, h, w, lanes):
    """Refuse before the model starts when it cannot fit (TensorFlow's CPU kernels crash rather
    than fail when an allocation is refused)."""
    from prednet.device import memory_headroom
    from prednet.predictor import model_memory

    need, headroom = model_memory(prednet, h, w, lanes), memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(f"not enough memory for the model on {lanes} lane(s) of {w}x{h} frames: it needs about "
                         f"{need / 2**30:.1f} GiB, {headroom / 2**30:.1f} GiB are available (fewer --lanes need less)")


def _empty_choices(level):
    """The block-choice chunk of a run without block selection: zstd of no bytes."""
    from stages.zstd import ZstdCodec

    return ZstdCodec(level=level, shuffle=False).encode(np.zeros(0, np.uint8))


def _model_threads():
    from prednet.device import model_threads

    return model_threads()


def psnr(max_value, sq_err_sum, count):
    if sq_err_sum == 0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / (sq_err_sum / count))


def summarize(frames, encoder, keyframes, predicted, scale):
    """Sizes are filled in by the caller; errors (keyframes too: lossy ones are quantized) and the
    per-frame detail for -v and --report: prediction MSE (pixels in [0, 1] as the model sees them)
    and MSE after decoding."""
    err = np.abs(to_planar(encoder.decoded) - to_planar(frames))
    sq = float(np.sum(err.astype(np.float64) ** 2))
    summary = Summary(
        frames=len(frames), keyframes=len(keyframes), raw_bytes=int(frames.nbytes), compressed_bytes=0,
        max_abs_error=int(err.max()) if err.size else 0, psnr=psnr(encoder.max_value, sq, frames.size), seconds=0.0,
    )
    dec_mse = (err.astype(np.float64) ** 2).reshape(len(frames), -1).mean(axis=1)
    summary.per_frame = [(int(i), True, 0.0, float(dec_mse[i])) for i in keyframes]
    if len(predicted):
        x, p = to_planar(frames[predicted]), encoder.predictions[predicted]
        pred_mse = (((x - p) / float(scale.span)) ** 2).reshape(len(predicted), -1).mean(axis=1)
        summary.per_frame += [(int(f), False, float(a), float(dec_mse[f])) for f, a in zip(predicted, pred_mse)]
    summary.per_frame.sort()
    summary.predictions = encoder.predictions
    return summary


def compress_folder(model_dir, image_dir, out_dir, plan: CodecPlan, flags: RunFlags = RunFlags(), label=""):
    """Compress one sequence (a folder of images or a TIFF stack) into out_dir; prints one summary
    line (after `label`). Returns the Summary. OUT_DIR is locked for the whole run
    (base.publish.OutputFolder): a second run into it is refused."""
    check_output_folder(out_dir, image_dir, flags.overwrite)
    with OutputFolder(out_dir, overwrite=flags.overwrite) as out:
        return _compress_into(model_dir, image_dir, out, plan, flags, label)


def _compress_into(model_dir, image_dir, out, plan, flags, label):
    from frames.read import read_sequence
    from prednet.modelfile import load_model

    t0 = time.time()
    seq = read_sequence(image_dir)
    check_names(seq.names, seq.stack)
    n = len(seq.frames)
    plan.check_sequence(n, image_dir)
    if flags.report_frame is not None and not 0 <= flags.report_frame < n:
        raise TezipError(f"--report-frame {flags.report_frame} is outside the sequence (frames 0-{n - 1})")
    prednet, model_doc = load_model(model_dir)
    if prednet.channels != seq.frames.shape[-1]:
        raise TezipError(
            f"model {model_dir} was trained on {prednet.channels}-channel frames but {image_dir} holds "
            f"{seq.mode} ({seq.frames.shape[-1]}-channel) images"
        )
    if flags.verbose:
        print(f"  frame order: {seq.order}", flush=True)
    progress = progress_bar(n, "predicting")
    try:
        archive, summary = encode_sequence(prednet, seq.frames, plan, model_doc["digest"], progress,
                                           (seq.mode, seq.names, seq.stack), flags.device)
    finally:
        progress.close()
    files = archive.files()
    summary.stage_bytes = {"keyframes": len(files[KEYFRAME_FILE]), "residuals": len(files[ENTROPY_FILE])}
    summary.compressed_bytes = sum(len(b) for b in files.values())
    if flags.report or flags.report_frame is not None:
        from compress.report import REPORT_FILE, render_report

        files[REPORT_FILE] = render_report(seq.frames, seq.names, summary, plan.threshold, flags.report_frame,
                                           max_value_of(seq.frames.dtype), title=Path(image_dir).name)
    write_files_atomically(out, files)
    summary.seconds = time.time() - t0
    if flags.verbose:
        _print_details(summary, seq.names)
    print(label + summary.line(), flush=True)
    return summary


def _print_details(summary, names):
    for i, is_key, pred_mse, dec_mse in summary.per_frame:
        if is_key:
            how = "stored exactly" if dec_mse == 0 else f"coded on its own within the bound, decoded MSE {dec_mse:.4f}"
            print(f"  frame {i} {printable(names[i])}: keyframe ({how})")
        else:
            print(f"  frame {i} {printable(names[i])}: prediction MSE {pred_mse:.6f}, decoded MSE (pixel units) {dec_mse:.4f}")
    for stage, sec in summary.stage_seconds.items():
        print(f"  stage {stage}: {sec:.3f} s")
    for what, size in summary.stage_bytes.items():
        print(f"  {what}: {size} bytes")
