"""decompress: archive → each frame's chunk → window schedule (model + frame coders) → verify → sink.

The mirror of compress/pipeline.py: the same schedule drives the same frame coders, each frame
rebuilt from the same prediction the encoder used, checked against the checksum the encoder
stored, and handed to the sink (frames.sink: images, a TIFF stack or an HDF5 dataset, as the frames
came), which publishes nothing unless every frame arrived. Frames are decoded and written one at a
time. Format 2 archives are decoded whole (decompress/v2.py).
"""

import time
from dataclasses import dataclass

import numpy as np

from archive import archive_size, frame_checksum, read_archive
from archive.common import ENTROPY_FILE, KEYFRAME_FILE
from archive.v3 import GRAY_ON_COLOUR
from base.errors import TezipError, printable
from base.progress import progress_bar
from base.threads import threads_for
from base.publish import OutputFolder, check_output_folder, note_run_finished
from sequence.coding import SequenceDecoder
from sequence.framecoder import FrameCoder, KeyframeCoder
from sequence.plan import RunFlags
from stages import array_module


@dataclass
class Decoded:
    """What decompress_folder did: frames written, their raw and the archive's bytes, seconds."""

    frames: int
    raw_bytes: int
    compressed_bytes: int
    seconds: float

    @property
    def ratio(self):
        return self.raw_bytes / max(1, self.compressed_bytes)


class Verifier:
    """Checks every decoded frame against the checksum the encoder stored: nothing wrong is ever
    written (the first mismatch stops the run before the sink publishes anything)."""

    def __init__(self, archive):
        self.sequence, self.names = archive.sequence, archive.names
        self.keys = set(archive.sequence.keyframes)

    def __call__(self, i, frame):
        if frame_checksum(frame) != self.sequence.frame_checksums[i]:
            kind = "keyframe" if i in self.keys else "predicted frame"
            raise TezipError(
                f"frame {i} ({printable(self.names[i])}, {kind}) does not match its checksum: the archive is corrupt "
                f"or was made with another model or software{self._hint()}; nothing was written"
            )

    def _hint(self):
        from prednet.device import model_threads

        threads = getattr(self.sequence, "model_threads", None)  # format 2 recorded TensorFlow's thread count
        if isinstance(threads, int) and threads != model_threads():
            return f" (it was compressed with TEZIP_MODEL_THREADS={threads}; set the same value to decode it)"
        return ""


def check_memory(fmt, n_lanes, weights=None, whole=False):
    """Refuse (before anything is allocated) a decode that cannot fit in the memory this process
    may still use: the model stepping `n_lanes` lanes and a few frames per lane (format 2: the
    whole sequence and its codes). A header may declare frames far larger than its chunks would
    make one believe (all-zero frames code to a few bytes), so this is checked, not left to the
    allocator."""
    from prednet.device import memory_headroom

    frame_values = fmt.height * fmt.width * fmt.channels
    need = (fmt.n_frames if whole else 4 * n_lanes) * frame_values * (fmt.dtype.itemsize + 8)
    if weights is not None:
        from prednet.reference import reference_memory

        need += reference_memory(weights, fmt.height, fmt.width, n_lanes)
    headroom = memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(
            f"not enough memory to decode {fmt.n_frames} frames of {fmt.width}x{fmt.height}x{fmt.channels}: it needs "
            f"about {need / 2**30:.1f} GiB, {headroom / 2**30:.1f} GiB are available; nothing was written"
        )


def decode_sequence(model_dir, archive, sink, progress=None, device="CPU"):
    """Decode every frame of a format-3 archive, verify it and write it to `sink`."""
    seq = archive.sequence
    n = seq.frames.n_frames
    if seq.coder.get("id") == "hierarchical":
        return decode_range(None, archive, sink, (0, n), progress, device)
    weights = load_archive_model(model_dir, archive)
    check_memory(seq.frames, len(seq.lanes), weights)
    decode_range(weights, archive, sink, (0, n), progress, device)


def load_archive_model(model_dir, archive):
    """The ReferenceWeights a format-3 archive was made with (MODEL_DIR, its digest checked), or
    None when it was made without a model."""
    from decompress.v2 import check_archive_model

    seq = archive.sequence
    if seq.model is None:
        return None
    return check_archive_model(model_dir, seq.model_digest)


def decode_range(weights, archive, sink, frames, progress=None, device="CPU", lane_starts=None, threads=None):
    """Decode frames (start, end) of a format-3 archive — whole windows: the whole sequence or a
    segment — verify each and write it to `sink` (write(f, (H, W, C) frame)). weights: from
    load_archive_model. lane_starts: the lanes to run (default the archive's; a segment gives its
    own, sequence.windows.segment_lanes). threads: chunks parsed ahead at once
    (sequence.coding.SequenceDecoder; default: the --threads value within a memory budget,
    base.threads.threads_for)."""
    from prednet.reference import predictor_for
    from prednet.scale import ValueScale
    from sequence.windows import run_windows

    seq = archive.sequence
    fmt = seq.frames
    if seq.coder.get("id") == "hierarchical":
        return _decode_hierarchical(archive, sink, progress, device, frames)
    lanes = list(seq.lanes) if lane_starts is None else lane_starts
    coder = FrameCoder.from_config(seq.coder, seq.mode, seq.bounds, fmt.max_value, ENTROPY_FILE, array_module(device))
    if coder.selector is not None and not coder.selector.model and seq.model is not None:
        raise TezipError(f"{ENTROPY_FILE} is corrupt (block selection without the model it was made with)")
    if seq.model is None and (coder.selector is None or (coder.selector.model and not coder.selector.extrapolate)):
        raise TezipError(f"{ENTROPY_FILE} is corrupt (a model's prediction is used but no model is recorded)")
    if seq.model is not None and seq.model.get("off") and coder.selector is None:
        raise TezipError(f"{ENTROPY_FILE} is corrupt (the model stops, but every pixel is predicted by it)")
    key_coder = KeyframeCoder.from_config(archive.keyframes.coder, fmt.max_value, KEYFRAME_FILE)
    is_key = np.zeros(fmt.n_frames, bool)
    is_key[seq.keyframes] = True
    predictor = None
    if weights is not None:
        if (weights.channels != fmt.channels) != (seq.model.get("input") == GRAY_ON_COLOUR) or (
                weights.channels != fmt.channels and (weights.channels, fmt.channels) != (3, 1)):
            raise TezipError(f"{ENTROPY_FILE} is corrupt (a {weights.channels}-channel model for {fmt.channels}-channel frames)")
        predictor = predictor_for(weights, fmt.channels, fmt.height, fmt.width, len(lanes), device)
    scale = ValueScale(*(fmt.value_range or (0, fmt.max_value)))
    with SequenceDecoder(archive, coder, key_coder, sink, Verifier(archive),
                         threads_for(fmt.height * fmt.width * fmt.channels, threads), frames[1]) as decoder:
        run_windows(predictor, frames[1], lanes, is_key, decoder, closed_loop=seq.loop == "closed", scale=scale,
                    progress=progress)


def _decode_hierarchical(archive, sink, progress, device, frames=None):
    """Format 3 in the hierarchical order: each window decoded whole (sequence.hierarchical)."""
    from sequence.coding import decode_windows
    from sequence.hierarchical import HierarchicalCoder

    seq = archive.sequence
    fmt = seq.frames
    if seq.model is not None or archive.keyframes.coder != {"id": "window"}:
        raise TezipError(f"{ENTROPY_FILE} is corrupt (a hierarchical window coder with a model or a keyframe coder)")
    try:
        coder = HierarchicalCoder.from_config(seq.coder, device=device)
    except TezipError as e:
        raise TezipError(f"{ENTROPY_FILE} is corrupt ({e})") from None
    if coder.max_value != fmt.max_value:
        raise TezipError(f"{ENTROPY_FILE} is corrupt (its window coder's value range is not the frames')")
    longest = max(e - s for s, e in zip(seq.keyframes, list(seq.keyframes[1:]) + [fmt.n_frames]))
    check_memory(fmt, 4 * longest)  # a window is decoded whole: a few copies of its frames
    decode_windows(archive, coder, sink, Verifier(archive), progress, frames)


def decompress_folder(model_dir, comp_dir, out_dir, flags: RunFlags = RunFlags(), label=""):
    """Decode, verify and write one archive folder; prints one summary line (after `label`).
    Returns a Decoded. OUT_DIR is locked for the whole run (base.publish.OutputFolder)."""
    check_output_folder(out_dir, comp_dir, flags.overwrite, what="COMP_DIR")
    with read_archive(comp_dir) as archive, OutputFolder(out_dir, overwrite=flags.overwrite) as out:
        return _decompress_into(model_dir, comp_dir, archive, out, flags, label)


def _decompress_into(model_dir, comp_dir, archive, out, flags, label):
    from frames.sink import open_sink

    t0 = time.time()
    seq = archive.sequence
    fmt = seq.frames
    if flags.verbose:
        try:
            lines = describe_archive(archive, model_dir)
        except Exception:  # settings the decoder has not checked yet: it names what is wrong below
            lines = ["(the archive's coder settings are unreadable)"]
        for line in lines:
            print("  " + line, flush=True)
    progress = progress_bar(fmt.n_frames, "decoding")
    try:
        with open_sink(out, archive.sink_description(), archive.mode, archive.names) as sink:
            if archive.version == 2:
                from decompress.v2 import decode_verified_v2

                check_memory(fmt, len(seq.lanes), whole=True)
                frames = decode_verified_v2(model_dir, comp_dir, archive, Verifier(archive), progress, flags.device)
                for i, frame in enumerate(frames):
                    sink.write(i, frame)
            else:
                decode_sequence(model_dir, archive, sink, progress, flags.device)
    except MemoryError:
        raise TezipError(f"not enough memory to decode {fmt.n_frames} frames of {fmt.width}x{fmt.height}x{fmt.channels}; "
                         "nothing was written") from None
    finally:
        progress.close()
    return report_decoded(archive, comp_dir, out, sink, t0, label)


def _skip_note(model_dir):
    """', with a KxK linear skip' (and ' of N frames' when not 2, ' and frame input' when its
    first layer sees the frames) when the model folder given has one (what its JSON says; the
    digest check while decoding is what ties the folder to the archive); '' otherwise."""
    from prednet.modelfile import is_no_model, read_model_json

    if model_dir is None or is_no_model(model_dir):
        return ""
    try:
        arch = read_model_json(model_dir)["architecture"]
        k, n = int(arch.get("skip_filt_size", 0)), int(arch.get("skip_frames", 2))
        frame_input = arch.get("frame_input_offset") is not None
    except Exception:  # the decoder names a bad model folder itself
        return ""
    if not k:
        return ""
    frames = f" of {n} frames" if n != 2 else ""
    return f", with a {k}x{k} linear skip{frames}" + (" and frame input" if frame_input else "")


def describe_archive(archive, model_dir=None):
    """What -u -v prints before decoding: lines naming how the archive was coded (format, frames,
    keyframes, bound, model, prediction, stages), from its validated headers; with `model_dir`
    (the model given to -u), also whether that model has a linear skip."""
    seq = archive.sequence
    fmt = seq.frames
    bound = "lossless" if seq.lossless else f"{seq.mode} bound {', '.join(f'{b:g}' for b in seq.bounds)}"
    lines = [f"format {archive.version}: {fmt.n_frames} frames of {fmt.width}x{fmt.height} {archive.mode}, "
             f"{len(seq.keyframes)} keyframe{'s' if len(seq.keyframes) != 1 else ''}, {len(seq.lanes)} lane(s), {bound}"]
    if archive.version == 2:  # its headers name the model and the stages in other terms
        digest = getattr(seq, "model_digest", None)
        lines.append(f"model: digest {str(digest)[:16]}…" if digest else "model: none")
        return lines
    coder = seq.coder if isinstance(seq.coder, dict) else {}
    if coder.get("id") == "hierarchical":
        lines.append("prediction: hierarchical order (fitted interpolation between decoded frames), no model")
        return lines
    model = seq.model
    if model is None:
        lines.append("model: none")
    else:
        off = model.get("off") or []
        lines.append(f"model: digest {str(model.get('digest'))[:16]}…" + _skip_note(model_dir) + (
            f", stopped by its trial in {len(off)} window(s) (from frames {', '.join(map(str, off[:8]))}"
            f"{', …' if len(off) > 8 else ''})" if off else ""))
    select = coder.get("block_select")
    if isinstance(select, dict):
        candidates = []
        if model is not None:
            candidates.append("the model, else linear extrapolation" if select.get("extrapolate") else "the model")
        elif select.get("extrapolate"):
            candidates.append("linear extrapolation")
        candidates.append(f"the previous frame moved ±{select.get('radius')}"
                          + (f" (global motion ±{select['global_range']})" if select.get("global_range") else ""))
        lines.append(f"blocks of {select.get('block')}: {', or '.join(candidates)}"
                     + (", or their mean" if select.get("mean") and len(candidates) > 1 else ""))
    elif seq.model is not None:
        lines.append("blocks: none (the model predicts every pixel)")
    stages = [c.get("id") for c in coder.get("residual", []) if isinstance(c, dict)]
    tails = [" + ".join(str(c.get("id")) for c in tail if isinstance(c, dict))
             for tail in coder.get("tails") or [] if isinstance(tail, list)]
    lines.append(f"residuals: {' → '.join(map(str, stages))} → {' or '.join(tails)}"
                 + (", intra frames allowed" if coder.get("intra") else ""))
    return lines


def report_decoded(archive, comp_dir, out, sink, t0, label):
    """Print the sink's notes and the summary line of a published decode. Returns a Decoded."""
    seq = archive.sequence
    fmt = seq.frames
    for note in sink.notes:
        print(note)
    comp_bytes = archive_size(comp_dir)
    raw = fmt.n_frames * fmt.height * fmt.width * fmt.channels * fmt.dtype.itemsize
    seconds = time.time() - t0
    exact = "bit-exact" if seq.lossless else f"within {seq.mode} bound {seq.bounds}"
    result = Decoded(fmt.n_frames, raw, comp_bytes, seconds)
    if not label:  # a single sequence, published: its summary is the run's last line
        note_run_finished()
    print(
        f"{label}decompressed {fmt.n_frames} frames ({len(seq.keyframes)} keyframe{'s' if len(seq.keyframes) != 1 else ''}) into {out.path}, "
        f"every frame verified against its checksum ({exact}): {comp_bytes} -> {raw} bytes, "
        f"ratio {result.ratio:.2f}, {seconds:.2f} s",
        flush=True,
    )
    return result
