"""One sequence compressed in segments: runs of whole windows coded apart (by Dask workers, see
cluster/), the archive assembled from their chunks in frame order.

Windows are independent — a keyframe resets the model, and the prediction arithmetic gives the
same bits in any batch (prednet/reference.py) — so a segment coded on its own gives every frame
the very chunk the whole run gives it, and the archive is byte-identical however the sequence was
cut. Keyframes must be known in advance for that: under -t (dynamic windows) they are placed while
coding, so such a sequence is one segment.

    plan = SegmentPlan.of(model, source, codec_plan, target)      the client: where to cut
    code = encode_segment(model, source, codec_plan, plan.part(i))  a worker: its SegmentCode
    assembly.add(code) … assembly.finish()                         the client: headers, archive
"""

import time
from dataclasses import dataclass, field

import numpy as np

from archive import ArchiveWriter
from base.pixels import max_value_of
from compress.pipeline import (encode_frames, hierarchical_headers, keyframe_schedule, sequence_headers, value_scale,
                               _summary)
from sequence.coding import FrameStats
from sequence.windows import segment_bounds, segment_lanes, swp_keyframes


@dataclass(frozen=True)
class SegmentPlan:
    """Where one sequence is cut. segments: [(start, end)] of whole windows, in order; keyframes:
    those known in advance (all of them unless `dynamic`); lane_starts: the whole run's lanes (the
    archive records them); scale: prednet.scale.ValueScale (the whole sequence's)."""

    segments: list
    keyframes: list
    lane_starts: list
    scale: object
    dynamic: bool

    @classmethod
    def of(cls, model, source, plan, target):
        """Cut `source` (frames.source) into segments of about `target` frames for CodecPlan `plan`."""
        n = source.n_frames
        if plan.order == "hierarchical":
            keyframes = swp_keyframes(n, plan.warmup, plan.window)
            return cls(segment_bounds(keyframes, n, target), keyframes, [0], None, False)
        scale = value_scale(model, source)
        is_key, lane_starts = keyframe_schedule(model, source, plan)
        keyframes = [int(k) for k in np.flatnonzero(is_key)]
        dynamic = plan.threshold is not None
        segments = [(0, n)] if dynamic else segment_bounds(keyframes, n, target)
        return cls(segments, keyframes, [int(s) for s in lane_starts], scale, dynamic)

    def part(self, i):
        """The SegmentPlan of segment i alone, what its task is sent: its keyframes, and as
        lane_starts the lanes it runs (sequence.windows.segment_lanes; under -t the whole run's)."""
        start, end = self.segments[i]
        lanes = self.lane_starts if self.dynamic else segment_lanes(self.lane_starts, start, end)
        return SegmentPlan([(start, end)], [k for k in self.keyframes if start <= k < end], lanes, self.scale,
                           self.dynamic)


@dataclass
class SegmentCode:
    """What coding a segment gives: frames start..end-1's chunks (bytes, frame order) and
    checksums, its keyframes (placed ones included), and its FrameStats (first = start)."""

    start: int
    end: int
    chunks: list
    checksums: list
    keyframes: list
    stats: FrameStats
    model_off: list = field(default_factory=list)  # frames from which the model stopped for their window


class _Chunks:
    """ArchiveWriter's `add` for a segment: the chunks kept in memory, in frame order."""

    def __init__(self, start, end):
        self.start, self.chunks = start, [None] * (end - start)

    def add(self, f, chunk):
        self.chunks[f - self.start] = bytes(chunk)


def encode_segment(model, source, plan, part: SegmentPlan, device="CPU", report_frame=None, threads=1):
    """Code the one segment of `part` (SegmentPlan.part: frames start..end-1 of `source`) alone.
    model: (ReferenceWeights, doc) or None. threads: frames coded at once when lossless (1 on a
    Dask worker, which is one thread: the cluster runs segments side by side; None: the --threads
    value, as compress_folder). Returns its SegmentCode. Raises TezipError as compress_folder does."""
    from sequence.coding import encode_windows

    (start, end), = part.segments
    max_value = max_value_of(source.dtype)
    span = part.scale.span if part.scale is not None else max_value
    mine = report_frame if report_frame is not None and start <= report_frame < end else None
    stats = FrameStats(end - start, max_value, span, -1 if report_frame is not None and mine is None else mine, start)
    chunks = _Chunks(start, end)
    if plan.order == "hierarchical":
        checksums = encode_windows(source, plan.window_coder(max_value, device), part.keyframes, chunks, stats, end=end)
        keyframes, model_off = list(part.keyframes), []
    else:
        is_key = np.zeros(source.n_frames, bool)
        is_key[part.keyframes] = True
        checksums, model_off = encode_frames(model, source, plan, chunks, stats, is_key, part.lane_starts, end,
                                             part.scale, device, threads=threads)
        keyframes = [int(k) for k in np.flatnonzero(is_key[start:end]) + start]
    return SegmentCode(start, end, chunks.chunks, checksums[start:end], keyframes, stats, model_off)


class SegmentAssembly:
    """The client's side: SegmentCodes (in any order) → the archive of one sequence, in `out`
    (base.publish.OutputFolder). Chunks go to an ArchiveWriter's spool as they come, so the
    client's memory holds one SegmentCode at a time."""

    def __init__(self, model, source, plan, cuts: SegmentPlan, out, report_frame=None):
        self.model, self.source, self.plan, self.cuts = model, source, plan, cuts
        n = source.n_frames
        span = cuts.scale.span if cuts.scale is not None else max_value_of(source.dtype)
        self.stats = FrameStats(n, max_value_of(source.dtype), span, report_frame)
        self.writer = ArchiveWriter(out, n)
        self.checksums = [None] * n
        self.keyframes = set() if cuts.dynamic else set(cuts.keyframes)
        self.missing = len(cuts.segments)
        self.model_off = set()
        self.t_start = time.time()

    def add(self, code: SegmentCode):
        for f, chunk in enumerate(code.chunks, code.start):
            self.writer.add(f, chunk)
        self.checksums[code.start:code.end] = code.checksums
        self.keyframes.update(code.keyframes)
        self.model_off.update(code.model_off)
        self.stats.merge(code.stats)
        self.missing -= 1

    def headers(self):
        """(SequenceHeader, KeyframeHeader, Summary) once every segment is in."""
        if self.missing:
            raise RuntimeError(f"internal error: {self.missing} segment(s) missing")
        keyframes = sorted(self.keyframes)
        if self.plan.order == "hierarchical":
            sequence, key_header = hierarchical_headers(self.source, self.plan, keyframes, self.checksums)
        else:
            sequence, key_header = sequence_headers(self.model, self.source, self.plan, self.cuts.scale, keyframes,
                                                    self.cuts.lane_starts, self.checksums, self.model_off)
        return sequence, key_header, _summary(self.source, self.stats, keyframes, self.t_start)

    def close(self):
        self.writer.close()
