"""compress: frames (read one at a time) → window schedule (model + frame coders) → chunks → archive.

The glue only calls the parts in order: the plan (sequence.plan) says what to do, the coders
(sequence.coding, sequence.framecoder) code each frame as the schedule (sequence.windows) reaches
it, the archive writer (archive.ArchiveWriter) spools each chunk and lays the files out at the end.
Memory holds a few frames per lane, never the run. decompress/pipeline.py is its mirror.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archive import ArchiveWriter, FrameFormat, KeyframeHeader, REFERENCE_ARITHMETIC, SequenceHeader, names_digest
from archive.v3 import GRAY_ON_COLOUR
from archive.names import check_names
from base.errors import TezipError, printable
from base.pixels import max_value_of
from base.progress import progress_bar
from base.threads import threads_for
from base.publish import OutputFolder, check_output_folder, note_run_finished
from sequence.coding import FrameStats, SequenceEncoder
from sequence.plan import CodecPlan, RunFlags, default_lanes
from stages import array_module


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
    shown: tuple = field(default=None, repr=False)  # (frame, (H, W, C) frame, (C, H, W) prediction) for --report
    blocks: dict = field(default_factory=dict)  # block choices by kind (model, previous, moved, mean)

    @property
    def ratio(self):
        return self.raw_bytes / max(1, self.compressed_bytes)

    def line(self):
        psnr = "inf" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB"
        return (
            f"compressed {self.frames} frames ({self.keyframes} keyframe{'s' if self.keyframes != 1 else ''}): {self.raw_bytes} -> {self.compressed_bytes} "
            f"bytes, ratio {self.ratio:.2f}, max abs error {self.max_abs_error}, PSNR {psnr}, {self.seconds:.2f} s"
        )


def psnr(max_value, sq_err_sum, count):
    if sq_err_sum == 0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / (sq_err_sum / count))


def check_model_memory(weights, h, w, lanes):
    """Refuse before the model starts when it cannot fit."""
    from prednet.device import memory_headroom
    from prednet.reference import reference_memory

    need, headroom = reference_memory(weights, h, w, lanes), memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(f"not enough memory for the model on {lanes} lane(s) of {w}x{h} frames: it needs about "
                         f"{need / 2**30:.1f} GiB, {headroom / 2**30:.1f} GiB are available (fewer --lanes need less)")


def encode_sequence(model, source, plan: CodecPlan, writer, progress=None, device="CPU", report_frame=None):
    """Code every frame of `source` (frames.source) into `writer` (archive.ArchiveWriter).
    model: (ReferenceWeights, model doc) or None (no model). Returns (SequenceHeader,
    KeyframeHeader, Summary)."""
    t_start = time.time()
    n = source.n_frames
    if plan.order == "hierarchical":
        return _encode_hierarchical(source, plan, writer, progress, device, report_frame, t_start)
    scale = value_scale(model, source)
    is_key, lane_starts = keyframe_schedule(model, source, plan)
    stats = FrameStats(n, max_value_of(source.dtype), scale.span, report_frame)
    checksums, model_off = encode_frames(model, source, plan, writer, stats, is_key, lane_starts, n, scale, device,
                                         progress)
    keyframes = [int(k) for k in np.flatnonzero(is_key)]
    sequence, key_header = sequence_headers(model, source, plan, scale, keyframes, lane_starts, checksums, model_off)
    return sequence, key_header, _summary(source, stats, keyframes, t_start)


def value_scale(model, source):
    """The ValueScale between the frames' integers and the model's [0, 1] (read from the source's
    frames for 16-bit data); the type's range without a model."""
    from prednet.scale import ValueScale

    if model is None:
        return ValueScale(0, max_value_of(source.dtype))
    return ValueScale.for_source(source)


def keyframe_schedule(model, source, plan):
    """(is_key (N,) bool, lane starts) of the whole sequence: the keyframes known in advance (all of
    them under -w; under -t the first and each lane's, the others placed while coding)."""
    n, h, w = source.n_frames, source.height, source.width
    weights = model[0] if model is not None else None
    return plan.keyframe_schedule(n, lambda windows, dynamic: default_lanes(weights, n, h, w, windows, dynamic))


def encode_frames(model, source, plan, writer, stats, is_key, lane_starts, end, scale, device="CPU", progress=None,
                  threads=None):
    """Code frames lane_starts[0] .. end-1 (whole windows: the whole sequence, or a segment with
    its own lanes) into `writer` (add(f, chunk)), recording into `stats` (FrameStats); under -t
    `is_key` (N,) bool is updated with the keyframes placed. threads: frames coded at once when
    lossless (sequence.coding.SequenceEncoder; default: the --threads value within a memory budget,
    base.threads.threads_for). Returns (the
    checksums (N entries, None outside the frames coded), the frames from which the model stopped
    for the rest of their window)."""
    from prednet.reference import predictor_for
    from sequence.windows import run_windows

    h, w, c = source.height, source.width, source.channels
    max_value, wide = max_value_of(source.dtype), np.dtype(source.dtype) != np.uint8
    weights = model[0] if model is not None else None
    predictor = None
    if weights is not None:
        if device != "GPU":
            check_model_memory(weights, h, w, len(lane_starts))
        predictor = predictor_for(weights, c, h, w, len(lane_starts), device)
    coder = plan.frame_coder(max_value, wide, weights is not None, array_module(device), c)
    key_coder = plan.keyframe_coder(max_value, wide, c)
    threads = threads_for(h * w * c, threads)
    # a skip over N frames sees the keyframe repeated for the first N - 1 frames of a window
    delay = weights.skip_frames - 1 if weights is not None and weights.skip_filt_size else 0
    with SequenceEncoder(source, coder, key_coder, writer, stats, threads, plan.lossless, trial_delay=delay) as encoder:
        run_windows(predictor, end, lane_starts, is_key, encoder, closed_loop=plan.loop == "closed",
                    threshold=plan.threshold, scale=scale, progress=progress)
    return encoder.checksums, sorted(encoder.model_off)


def sequence_headers(model, source, plan, scale, keyframes, lane_starts, checksums, model_off=()):
    """(SequenceHeader, KeyframeHeader) of a sequence coded in the sequential order: what
    entropy.dat and key_frame.dat record besides the chunks. model_off: the frames from which the
    model stopped for the rest of their window (encode_frames)."""
    n, h, w, c = source.n_frames, source.height, source.width, source.channels
    max_value, wide = max_value_of(source.dtype), np.dtype(source.dtype) != np.uint8
    weights = model[0] if model is not None else None
    coder = plan.frame_coder(max_value, wide, weights is not None, channels=c)
    key_coder = plan.keyframe_coder(max_value, wide, c)
    fmt = FrameFormat.of(n, h, w, c, source.dtype, scale if weights is not None else None)
    model_record = None
    if model is not None:
        model_record = {"digest": model[1]["digest"], "arithmetic": REFERENCE_ARITHMETIC}
        if weights.channels != c:
            model_record["input"] = GRAY_ON_COLOUR
        if model_off:
            model_record["off"] = sorted(int(f) for f in model_off)
    sequence = SequenceHeader(
        frames=fmt, model=model_record, loop=plan.loop, warmup=plan.warmup, window=plan.window,
        threshold=plan.threshold, keyframes=list(keyframes), lanes=[int(s) for s in lane_starts], mode=plan.mode,
        bounds=list(plan.bounds), lossless=plan.lossless, coder=coder.get_config(),
        frame_checksums=list(checksums),
        names_digest=names_digest(source.mode, source.names, _stack(source), _description(source)),
    ).with_id()
    return sequence, KeyframeHeader(fmt, list(keyframes), key_coder.get_config(), sequence.archive_id)


def _encode_hierarchical(source, plan, writer, progress, device, report_frame, t_start):
    """The hierarchical order: windows coded whole by sequence.hierarchical (no model)."""
    from sequence.coding import encode_windows
    from sequence.windows import swp_keyframes

    n = source.n_frames
    max_value = max_value_of(source.dtype)
    keyframes = swp_keyframes(n, plan.warmup, plan.window)
    coder = plan.window_coder(max_value, device)
    stats = FrameStats(n, max_value, max_value, report_frame)
    checksums = encode_windows(source, coder, keyframes, writer, stats, progress)
    sequence, key_header = hierarchical_headers(source, plan, keyframes, checksums)
    return sequence, key_header, _summary(source, stats, keyframes, t_start)


def hierarchical_headers(source, plan, keyframes, checksums):
    """(SequenceHeader, KeyframeHeader) of a sequence coded in the hierarchical order."""
    n, h, w, c = source.n_frames, source.height, source.width, source.channels
    coder = plan.window_coder(max_value_of(source.dtype))
    fmt = FrameFormat.of(n, h, w, c, source.dtype)
    sequence = SequenceHeader(
        frames=fmt, model=None, loop=plan.loop, warmup=plan.warmup, window=plan.window, threshold=None,
        keyframes=list(keyframes), lanes=[0], mode=plan.mode, bounds=list(plan.bounds), lossless=plan.lossless,
        coder=coder.get_config(), frame_checksums=list(checksums),
        names_digest=names_digest(source.mode, source.names, _stack(source), _description(source)),
    ).with_id()
    return sequence, KeyframeHeader(fmt, list(keyframes), {"id": "window"}, sequence.archive_id)


def _summary(source, stats, keyframes, t_start):
    n, h, w, c = source.n_frames, source.height, source.width, source.channels
    return Summary(
        frames=n, keyframes=len(keyframes), raw_bytes=n * h * w * c * np.dtype(source.dtype).itemsize,
        compressed_bytes=0, max_abs_error=stats.max_abs_error, psnr=psnr(stats.max_value, stats.sq_error, stats.values),
        seconds=time.time() - t_start, per_frame=stats.per_frame(), frame_bytes=[int(b) for b in stats.chunk_bytes],
        shown=stats.shown, blocks=dict(stats.blocks), stage_seconds={"predict+code": time.time() - t_start},
    )


def _stack(source):
    """The TIFF stack's file name (filename.txt records it), or None."""
    return source.description().get("stack") if source.kind == "tiff" else None


def _description(source):
    """What the decoder needs to write the frames back as they came (a stack, a dataset), or None
    for a folder of images."""
    return None if source.kind == "folder" else source.description()


def load_predictor_model(model_dir):
    """(ReferenceWeights, model doc) of MODEL_DIR, or None for MODEL_DIR `none`."""
    from prednet.modelfile import is_no_model, load_weights

    return None if is_no_model(model_dir) else load_weights(model_dir)


def compress_folder(model_dir, image_dir, out_dir, plan: CodecPlan, flags: RunFlags = RunFlags(), label=""):
    """Compress one sequence (a folder of images, a TIFF stack, or an HDF5 dataset) into out_dir;
    prints one summary line (after `label`). Returns the Summary. OUT_DIR is locked for the whole
    run (base.publish.OutputFolder): a second run into it is refused."""
    from frames.hdf5 import split_spec
    from frames.source import open_source

    spec = split_spec(image_dir)
    check_output_folder(out_dir, spec[0] if spec else image_dir, flags.overwrite)
    with open_source(image_dir) as source, OutputFolder(out_dir, overwrite=flags.overwrite) as out:
        return _compress_into(model_dir, source, out, plan, flags, label)


def _compress_into(model_dir, source, out, plan, flags, label):
    t0 = time.time()
    model = check_source(model_dir, source, plan, flags)
    plan, model, trial = resolve_order(model, source, plan, flags)
    if trial is not None:
        return _compress_reusing_trial(model, source, out, plan, flags, label, trial, t0)
    writer = ArchiveWriter(out, source.n_frames)
    progress = progress_bar(source.n_frames, "coding")
    try:
        sequence, key_header, summary = encode_sequence(model, source, plan, writer, progress, flags.device,
                                                        flags.report_frame)
        progress.close()
        return publish_archive(out, writer, source, sequence, key_header, summary, plan, flags, label, t0)
    finally:
        progress.close()
        writer.close()


def check_source(model_dir, source, plan, flags):
    """Refuse what cannot be compressed before anything is coded: names, frame count, report frame,
    the model's channels. Returns the model ((ReferenceWeights, doc) or None)."""
    check_names(source.names, _stack(source))
    n = source.n_frames
    plan.check_sequence(n, source.spec)
    if flags.report_frame is not None and not 0 <= flags.report_frame < n:
        raise TezipError(f"--report-frame {flags.report_frame} is outside the sequence (frames 0-{n - 1})")
    model = load_predictor_model(model_dir) if plan.order != "hierarchical" else None  # hierarchical: no model
    if model is not None and model[0].channels != source.channels and not (model[0].channels == 3 and source.channels == 1):
        raise TezipError(
            f"model {model_dir} was trained on {model[0].channels}-channel frames but {source.spec} holds "
            f"{source.mode} ({source.channels}-channel) images"
        )
    if flags.verbose:
        print(f"  frame order: {source.order}", flush=True)
    return model


def resolve_order(model, source, plan, flags):
    """(plan, model, OrderTrial or None) with --order auto resolved by compress.order.choose_order
    (the trial's choice printed under -v); other orders unchanged."""
    from compress.order import choose_order

    plan, model, trial = choose_order(model, source, plan, flags.device, flags.report_frame)
    if trial is not None and flags.verbose:
        print("  " + trial.line(plan.order), flush=True)
    return plan, model, trial


def _compress_reusing_trial(model, source, out, plan, flags, label, trial, t0):
    """After --order auto's trial: the sequence coded window by window (compress.segments, as the
    cluster does; the same archive as coding it whole), the windows the trial coded in the chosen
    order taken as they are."""
    from compress.segments import SegmentAssembly, encode_segment

    cuts = trial.cuts
    assembly = SegmentAssembly(model, source, plan, cuts, out, flags.report_frame)
    assembly.t_start = t0  # the coding time reported includes the trial's
    progress = progress_bar(source.n_frames, "coding")
    try:
        for i in range(len(cuts.segments)):
            code = trial.codes.pop(i, None) or encode_segment(model, source, plan, cuts.part(i), flags.device,
                                                              flags.report_frame, threads=None)
            assembly.add(code)
            progress(code.end - code.start)
        sequence, key_header, summary = assembly.headers()
        progress.close()
        return publish_archive(out, assembly.writer, source, sequence, key_header, summary, plan, flags, label, t0)
    finally:
        progress.close()
        assembly.close()


def publish_archive(out, writer, source, sequence, key_header, summary, plan, flags, label, t0):
    """Lay the archive's files out of `writer`'s spool (and report.png when asked), publish them
    all together into `out` (base.publish.OutputFolder), print the summary line. Returns the
    Summary with its sizes and seconds filled in."""
    files = writer.files(sequence, key_header, source.mode, source.names, _stack(source), _description(source))
    if flags.report or flags.report_frame is not None:
        from compress.report import REPORT_FILE, render_report

        # The report's title shows the ratio: count the archive's bytes before drawing it
        # (publishing, which sets compressed_bytes below, comes after).
        summary.compressed_bytes = sum(_byte_count(write) for write in files.values())
        png = render_report(source.names, summary, plan.threshold, max_value_of(source.dtype),
                            title=Path(str(source.spec)).name)
        files[REPORT_FILE] = lambda f: f.write(png)
    writers = list(files.values())
    out.publish(list(files), lambda i, f: writers[i](f))
    sizes = {name: (out.path / name).stat().st_size for name in files}
    summary.stage_bytes = {"keyframes": sizes["key_frame.dat"], "residuals": sizes["entropy.dat"]}
    summary.compressed_bytes = sizes["key_frame.dat"] + sizes["entropy.dat"] + sizes["filename.txt"]
    summary.seconds = time.time() - t0
    if flags.verbose:
        _print_details(summary, source.names)
    if not label:  # a single sequence, published: its summary is the run's last line
        note_run_finished()
    print(label + summary.line(), flush=True)
    return summary


class _Counter:
    """A file object that only counts what is written to it."""

    def __init__(self):
        self.n = 0

    def write(self, data):
        self.n += len(data)
        return len(data)


def _byte_count(write):
    """Bytes that write(file object) writes."""
    counter = _Counter()
    write(counter)
    return counter.n


def _print_details(summary, names):
    for i, is_key, pred_mse, dec_mse in summary.per_frame:
        if is_key:
            how = "stored exactly" if dec_mse == 0 else f"coded on its own within the bound, decoded MSE {dec_mse:.4f}"
            print(f"  frame {i} {printable(names[i])}: keyframe ({how})")
        else:
            shown = "n/a (not kept in the hierarchical order)" if pred_mse != pred_mse else f"{pred_mse:.3g}"
            print(f"  frame {i} {printable(names[i])}: prediction MSE {shown}, decoded MSE (pixel units) {dec_mse:.4f}")
    for stage, sec in summary.stage_seconds.items():
        print(f"  stage {stage}: {sec:.3f} s")
    for what, size in summary.stage_bytes.items():
        print(f"  {what}: {size} bytes")
