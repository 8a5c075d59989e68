"""The coders that the window schedule (sequence.windows.run_windows) drives, one per direction,
side by side: each gives the schedule every keyframe and every predicted frame as the decoder has
it. The encoder reads the real frames from a source and hands each frame's chunk to the archive
writer as soon as it is coded; the decoder reads each chunk, rebuilds the frame, checks it against
the checksum the encoder stored and hands it to a sink. Both keep only the last decoded frame of
each lane, so memory does not grow with the run.
"""

import numpy as np
from numba import njit

from base.pixels import frame_checksum
from sequence.bounds import is_lossless
from sequence.framecoder import to_interleaved, to_planar


@njit(cache=True, nogil=True)
def _frame_errors(frame, decoded, prediction, has_prediction):
    """One pass over a frame: (sum of squared decoded errors, max |decoded error|, sum of squared
    prediction errors) in pixel units. frame (H, W, C) as read (uint8 / uint16); decoded and
    prediction planar (C, H, W) integers (prediction read only with has_prediction). Float sums
    of exact integer squares, the order fixed (the reported MSE never depends on threads)."""
    height, width, channels = frame.shape
    sse, pse, worst = 0.0, 0.0, np.int64(0)
    for c in range(channels):
        for i in range(height):
            row_sse, row_pse = np.int64(0), np.int64(0)
            for j in range(width):
                x = np.int64(frame[i, j, c])
                e = np.int64(decoded[c, i, j]) - x
                row_sse += e * e
                worst = max(worst, abs(e))
                if has_prediction:
                    d = x - np.int64(prediction[c, i, j])
                    row_pse += d * d
            sse += float(row_sse)
            pse += float(row_pse)
    return sse, worst, pse


def temporal_candidate(coder, model_prediction, previous, older):
    """The block selector's code-0 prediction of a frame: the model's where it predicted the frame;
    else, in runs that extrapolate (BlockSelector.extrapolate), linear extrapolation from
    `previous` and `older`, the two decoded frames before it in its window (older None: the
    window's first predicted frame, which has no code 0 then)."""
    if coder.selector is None or not coder.selector.extrapolate:
        return model_prediction
    return coder.selector.temporal_candidate(model_prediction, previous, older, coder.max_value)


class FrameStats:
    """What a run reports, gathered frame by frame: errors, sizes, prediction MSE, and the one
    frame (with its prediction) that --report shows."""

    def __init__(self, n_frames, max_value, scale_span, report_frame=None, first=0):
        """n_frames frames first .. first + n_frames - 1 (a segment of a longer sequence: first > 0);
        frame indices given to `add` and kept in `shown` are the sequence's."""
        self.max_value, self.span, self.report_frame = max_value, float(scale_span), report_frame
        self.first = int(first)
        self.is_key = np.zeros(n_frames, bool)
        self.pred_mse = np.zeros(n_frames)  # pixels in [0, 1] as the model sees them; 0 for keyframes
        self.dec_mse = np.zeros(n_frames)  # pixel units
        self.chunk_bytes = np.zeros(n_frames, np.int64)
        self.max_abs_error, self.sq_error, self.values = 0, 0.0, 0
        self.shown = None  # (frame index, frame (H, W, C), prediction (C, H, W) or None)
        self.blocks = {}  # block choices by kind: "model" (or "extrapolation"), "previous", "moved", "mean", "global",
        #                   "intra"
        self.intra_frames = 0  # predicted frames coded on their own (FrameCoder's intra mode)

    def add_choices(self, selector, choices, extrapolated=False):
        """Count a frame's blocks by kind: model (or extrapolation: code 0 where no model predicted
        the frame), previous (unmoved), moved (around zero), mean, global (the previous frame moved
        around the global vector)."""
        from sequence.blockselect import split_choices

        if choices is None:
            return
        side2 = (2 * selector.radius + 1) ** 2
        centre = 1 + side2 // 2
        codes = np.asarray(split_choices(choices)[0]).reshape(-1)
        group = (codes - 1) // side2
        for kind, n in (("extrapolation" if extrapolated else "model", np.sum(codes == 0)),
                        ("previous", np.sum(codes == centre)),
                        ("moved", np.sum((codes >= 1) & (codes <= side2) & (codes != centre))),
                        ("mean", np.sum((codes > 0) & (group % selector.kinds == 1))),
                        ("global", np.sum((codes > 0) & (group >= selector.kinds) & (group % selector.kinds == 0)))):
            self.blocks[kind] = self.blocks.get(kind, 0) + int(n)

    def add_intra(self, coder, shape):
        """A predicted frame coded on its own: all its blocks count as intra."""
        self.intra_frames += 1
        if coder.selector is not None:
            ny, nx = coder.selector.grid(*shape)
            self.blocks["intra"] = self.blocks.get("intra", 0) + ny * nx

    def add(self, f, frame, decoded, chunk_bytes, prediction=None, key=None):
        """frame (H, W, C) as read; decoded and prediction planar (C, H, W) int32. key: whether f is a
        keyframe (default: no prediction given); a predicted frame without its prediction (the
        hierarchical order keeps none) records its prediction MSE as NaN, unknown."""
        g, f = f, f - self.first  # the sequence's frame index, and this record's
        size = frame.size
        sq, worst, pred_sq = _frame_errors(frame, decoded, decoded if prediction is None else prediction,
                                           prediction is not None)
        self.max_abs_error = max(self.max_abs_error, int(worst))
        self.sq_error += sq
        self.values += size
        self.dec_mse[f] = sq / max(1, size)
        self.chunk_bytes[f] = chunk_bytes
        self.is_key[f] = prediction is None if key is None else key
        if prediction is None and not self.is_key[f]:
            self.pred_mse[f] = np.nan
        if prediction is not None:
            self.pred_mse[f] = pred_sq / self.span ** 2 / max(1, size)
        wanted = g == self.report_frame if self.report_frame is not None else (
            self.shown is None or (prediction is not None and (self.shown[2] is None or
                                                               self.pred_mse[f] > self.pred_mse[self.shown[0] - self.first])))
        if wanted:
            self.shown = (g, np.array(frame), None if prediction is None else np.array(prediction))

    def merge(self, part):
        """Take in the record of a segment (`part`, a FrameStats whose frames lie inside this one's),
        in any order: the result is what one record of the whole run would hold."""
        k = slice(part.first - self.first, part.first - self.first + len(part.is_key))
        for name in ("is_key", "pred_mse", "dec_mse", "chunk_bytes"):
            getattr(self, name)[k] = getattr(part, name)
        self.max_abs_error = max(self.max_abs_error, part.max_abs_error)
        self.sq_error += part.sq_error
        self.values += part.values
        for kind, n in part.blocks.items():
            self.blocks[kind] = self.blocks.get(kind, 0) + n
        if part.shown is not None and (self.shown is None or self._rank(part, part.shown) > self._rank(self, self.shown)):
            self.shown = part.shown

    def _rank(self, record, shown):
        """Which shown frame a whole run keeps: the asked one, else the worst-predicted predicted
        frame (the earliest of equals), else the first frame."""
        f, _, prediction = shown
        if self.report_frame is not None:
            return (f == self.report_frame, 0.0, -f)
        return (prediction is not None, float(record.pred_mse[f - record.first]), -f)

    def per_frame(self):
        """(index, is keyframe, prediction MSE, decoded MSE) of every frame."""
        return [(i, bool(k), float(p), float(d)) for i, (k, p, d) in enumerate(zip(self.is_key, self.pred_mse, self.dec_mse))]


# The model's trial in each window (SequenceEncoder.model_pays): it predicts the first MODEL_TRIAL
# frames of the window (after those whose history is still the keyframe repeated), and goes on to the window's end only if its candidates saved at least
# MODEL_PAYS of those frames' bytes (the encoder codes each frame that took them without them too).
MODEL_TRIAL = 4
MODEL_PAYS = 0.01
# Linear extrapolation's trial (SequenceEncoder._extrapolation_pays), losslessly only, is as long
# with a lower bar: its second coding of a frame is cheap next to a model step, and where it never
# pays (noise-dominated 16-bit frames) it saves exactly nothing. Not under a bound: on the dev
# frames at abs 1-8 it saved nothing in the first frames of each window and 1.4 % over them all.
EXTRAPOLATION_PAYS = 0.002
# Frames of windows shorter than the trial are never judged; their records are dropped, oldest
# first, beyond this many (far more than every lane's trial in progress), so memory stays bounded.
MAX_TRIAL_RECORDS = 1 << 16


def threadsafe_numba():
    """Whether numba's parallel kernels may be called from several threads at once: its threading
    layer (chosen at the first parallel call) is OpenMP or TBB; "workqueue" aborts the process on
    concurrent calls. False before any parallel kernel ran."""
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run yet
        return False


def serial_kernels():
    """A worker thread's initializer: its numba kernels run on this thread alone (numba's thread
    count is per thread). Frames in parallel already use the cores; a parallel region started
    from a busy worker only waits for cores that the other workers hold."""
    import numba

    numba.set_num_threads(1)


def frame_pool(threads, prefix):
    """A thread pool for frames coded or parsed side by side (serial_kernels in each thread)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=prefix, initializer=serial_kernels)


class SequenceEncoder:
    """Codes the frames of `source` (frames.source: read(i) → (H, W, C)) with the frame coders,
    handing each chunk to `writer` (archive.ArchiveWriter) and keeping each frame's checksum.

    threads > 1 with `exact` (lossless: every decoded frame is the frame itself, whatever its chunk
    turns out to be): predicted frames are coded `threads` at a time in worker threads while the
    schedule goes on (the model's next step, reading the next frame); each frame's chunk is then
    finished (the intra choice) and handed on in frame order, so the archive's bytes are the same
    as with one thread. Use as a context manager, or call close() after the schedule: it finishes
    the frames still in flight. A frame's error surfaces at the latest there."""

    def __init__(self, source, coder, key_coder, writer, stats: FrameStats, threads=1, exact=False, trial_delay=0):
        self.source, self.coder, self.key_coder, self.writer, self.stats = source, coder, key_coder, writer, stats
        # predicted frames after a keyframe left out of the model's trial: those whose prediction
        # still sees the keyframe repeated as history (a linear skip over N frames: N - 1). A 9 x 9
        # skip over 6 frames predicts worse than the previous frame there and was switched off for
        # the whole window, by frames that say nothing about the rest of it
        self.trial_delay = int(trial_delay)
        self.checksums = [None] * source.n_frames
        self._last = {}  # frame → its decoded planar frame, until the next frame of its lane is coded
        self._older = {}  # frame → the decoded frame before it in its window (linear extrapolation's)
        self._extrapolated = set()  # frames in flight whose code 0 is linear extrapolation (for the statistics)
        self._window_of = {}  # frame → its window's keyframe, until the next frame of its lane
        # window (its keyframe) → its keyframe chunk's bytes: what coding a frame on its own costs
        # there (intra is tried above a share of it). Per window, not the coder's last keyframe:
        # lanes code several windows' frames in turn, and a window coded alone (a segment, a Dask
        # task, --order auto's trial) must give the very chunks it gives among them.
        self._intra_reference = {}
        self._x_trial = {}  # window (its keyframe) → the frames of extrapolation's trial, or None once judged
        self._x_off = set()  # windows where extrapolation did not pay: not offered for the rest of them
        self.lossless = is_lossless(coder.mode, coder.bounds)
        self._read = (None, None)  # the frame read last (DWP reads a frame before coding it)
        self.threads = int(threads) if exact and coder.xp is np else 1
        self._pool = None
        self._pending = []  # (frame index, frame as read, planar frame, future of code_predicted), in order
        self.model_off = []  # the frames from which the model stopped for the rest of their window
        self._stopping = set()  # frames model_pays said no at (a frame made a keyframe after that is not one)
        self._in_trial = {}  # frames of a window's trial being coded → True
        self._paid = {}  # frame → (bytes the model saved, chunk bytes), until its window's trial is judged

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._shutdown()
        return False

    def close(self):
        """Finish every frame in flight (in order) and stop the worker threads."""
        try:
            self._finish_pending(0)
        finally:
            self._shutdown()

    def _shutdown(self):
        for *_, future in self._pending:
            future.cancel()
        self._pending = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def original(self, f):
        if self._read[0] != f:
            self._read = (f, self.source.read(f))
        return self._read[1]

    def _done(self, f, frame, decoded, chunk, prediction=None, keep=True):
        """Hand frame f's chunk on and record it; keep: the lane's next frame is coded against it
        (a frame finished after its successor was handed out is not kept: it was, already)."""
        self.writer.add(f, chunk)
        out = to_interleaved(decoded, frame.dtype)
        self.checksums[f] = frame_checksum(out)
        self.stats.add(f, frame, decoded, len(chunk), prediction)
        if keep:
            self._last[f] = decoded
        return out

    def model_pays(self, f, keyframe):
        """Whether the model goes on predicting from frame f to the end of its window (the one that
        starts at `keyframe`): yes, except after MODEL_TRIAL predicted frames (the window's first,
        after its first trial_delay) when its candidates saved less than MODEL_PAYS of their bytes;
        then f is recorded (model_off) and the window goes on without the model, as fast as a run
        without one."""
        if self.coder.selector is None:  # --block 0: the model predicts every pixel, nothing else can
            return True
        first = keyframe + 1 + self.trial_delay
        if first <= f < first + MODEL_TRIAL:
            self._in_trial[f] = True
        if f != first + MODEL_TRIAL:
            return True
        self._finish_pending(0)  # the trial's frames, all finished: the same answer at any thread count
        trial = [self._paid.pop(g) for g in range(first, f) if g in self._paid]
        pays = len(trial) < MODEL_TRIAL or sum(s for s, _ in trial) >= MODEL_PAYS * sum(b for _, b in trial)
        if not pays:
            self._stopping.add(f)
        return pays

    def _extrapolation_pays(self, f, window):
        """Whether frame f (of the window that starts at keyframe `window`) is offered linear
        extrapolation: the model's trial (model_pays), for extrapolation, in lossless runs (under a
        bound it is always offered: EXTRAPOLATION_PAYS). The window's first MODEL_TRIAL frames that
        could take it are offered it; after them it goes on to the window's end only if it saved at
        least EXTRAPOLATION_PAYS of their bytes (the frame coder codes each frame that took it also
        without it, and keeps the smaller). Encoder only: where it stops, no block takes code 0,
        which the decoder just reads. Spares the second coding where extrapolation does not pay
        (noise-dominated 16-bit frames)."""
        if not self.lossless:
            return True
        if window in self._x_off:
            return False
        trial = self._x_trial.setdefault(window, [])
        if trial is None:
            return True
        if len(trial) < MODEL_TRIAL:
            trial.append(f)
            self._in_trial[f] = True
            return True
        self._finish_pending(0)  # the trial's frames, all finished: the same answer at any thread count
        paid = [self._paid.pop(g) for g in trial if g in self._paid]
        pays = len(paid) < MODEL_TRIAL or sum(s for s, _ in paid) >= EXTRAPOLATION_PAYS * sum(b for _, b in paid)
        self._x_trial[window] = None
        if not pays:
            self._x_off.add(window)
        return pays

    def keyframe(self, f):
        self._finish_pending(0)  # the frames before a keyframe finish first (their records in frame order)
        self._stopping.discard(f)
        self._in_trial.pop(f, None)
        ended = self._window_of.pop(f - 1, None)  # the window before this one in the lane (DWP: may be f's own)
        if ended is not None:
            self._x_trial.pop(ended, None)
            self._x_off.discard(ended)
            self._intra_reference.pop(ended, None)
        self._window_of[f] = f
        self._x_trial.pop(f, None)
        self._x_off.discard(f)
        frame = self.original(f)
        self._last.pop(f - 1, None)
        self._older.pop(f - 1, None)
        chunk, decoded = self.key_coder.encode_frame(to_planar(frame))
        self._intra_reference[f] = len(chunk)
        return self._done(f, frame, decoded, chunk)

    def prediction_error(self, f, model_prediction):
        """(sum of squared errors, values) of frame f's prediction, in pixel units: the one the frame
        coder codes it from (per block the model's, the previous frame moved, ...), which dynamic
        windows decide keyframes by. Not the model's raw prediction: its first step after a keyframe
        is poor where the block choice takes the previous frame, and judging by it made every frame
        after a keyframe a keyframe again."""
        planar = to_planar(self.original(f))
        previous = self._last[f - 1]
        mp = None if model_prediction is None else to_planar(model_prediction)
        candidate = temporal_candidate(self.coder, mp, previous, self._older.get(f - 1))
        _, prediction = self.coder.choose(planar, candidate, previous)
        d = (planar.astype(np.int64) - prediction).astype(np.float64)
        return float(np.sum(d * d)), d.size

    def frame(self, f, model_prediction):
        if f in self._stopping:
            self._stopping.discard(f)
            self.model_off.append(f)
        frame = self.original(f)
        previous = self._last.pop(f - 1)
        mp = None if model_prediction is None else to_planar(model_prediction)
        older = self._older.pop(f - 1, None)
        window = self._window_of.pop(f - 1)
        self._window_of[f] = window
        if mp is None and older is not None and self.coder.selector is not None and self.coder.selector.extrapolate:
            if self._extrapolation_pays(f, window):
                self._extrapolated.add(f)
            else:
                older = None  # no code 0 for this frame
        # a frame of the model's trial is also coded, only to measure, with what replaces the model where it stops
        rival = (temporal_candidate(self.coder, None, previous, older)
                 if mp is not None and self._in_trial.get(f) and older is not None else None)
        mp = temporal_candidate(self.coder, mp, previous, older)
        self._older[f] = previous
        planar = to_planar(frame)
        if self._parallel():
            self._pending.append((f, frame, planar, self._pool.submit(self.coder.code_predicted, planar, mp, previous,
                                                                      None, rival, self._intra_reference[window])))
            self._last[f] = planar  # exact: the decoded frame is the frame
            self._finish_pending(self.threads)
            return frame
        return self._finish(f, frame, planar, self.coder.code_predicted(planar, mp, previous, rival=rival,
                                                                        intra_reference=self._intra_reference[window]))

    def _parallel(self):
        if self.threads <= 1:
            return False
        if self._pool is None:
            if not threadsafe_numba():
                self.threads = 1
                return False
            self._pool = frame_pool(self.threads, "frames")
        return True

    def _finish_pending(self, keep):
        """Finish the oldest frames in flight until at most `keep` remain."""
        while len(self._pending) > keep:
            f, frame, planar, future = self._pending.pop(0)
            self._finish(f, frame, planar, future.result(), keep=False)  # _last holds f since it was handed out

    def _finish(self, f, frame, planar, coded, keep=True):
        chunk, decoded, prediction = self.coder.finish_frame(planar, coded)
        if self._in_trial.pop(f, False):
            self._paid[f] = (self.coder.last_saving, len(chunk))
            if len(self._paid) > MAX_TRIAL_RECORDS:  # trials of windows too short to be judged, oldest first
                del self._paid[next(iter(self._paid))]
        if self.coder.last_intra:
            self.stats.add_intra(self.coder, frame.shape[:2])
        elif self.coder.selector is not None:
            self.stats.add_choices(self.coder.selector, self.coder.last_choices,
                                   f in self._extrapolated or self.coder.last_rival)
        self._extrapolated.discard(f)
        return self._done(f, frame, decoded, chunk, prediction, keep)


class SequenceDecoder:
    """Rebuilds the frames of an archive (archive.Archive, format 3) with the frame coders, checks
    each against its stored checksum (`verify(f, frame)` raises on a mismatch) and hands it to
    `sink.write(f, frame)`.

    threads > 1: the chunks of the next predicted frames of a window (up to `end`) are parsed ahead
    in worker threads (range decoding and the spatial stages need no earlier frame:
    FrameCoder.parse_frame) while the current one is rebuilt; frames are still rebuilt, checked and
    written one by one in the schedule's order, and a corrupt chunk is reported when its frame is
    reached. Use as a context manager (it stops the threads)."""

    def __init__(self, archive, coder, key_coder, sink, verify, threads=1, end=None):
        self.archive, self.coder, self.key_coder, self.sink, self.verify = archive, coder, key_coder, sink, verify
        seq = archive.sequence
        self.shape = seq.frames.frame_shape
        self.dtype = seq.frames.dtype
        self.key_index = {k: i for i, k in enumerate(seq.keyframes)}
        keys = set(seq.keyframes)
        self.frame_index = {f: i for i, f in enumerate(f for f in range(seq.frames.n_frames) if f not in keys)}
        self._last = {}
        self._older = {}  # as SequenceEncoder's
        self.end = seq.frames.n_frames if end is None else int(end)
        self.model_off = set(seq.model.get("off", ())) if seq.model is not None else set()
        self.threads = int(threads) if coder.xp is np else 1
        self._pool = None
        self._parsed = {}  # frame → future of its parse_frame

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        for future in self._parsed.values():
            future.cancel()
        self._parsed = {}
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        return False

    def _done(self, f, decoded):
        out = to_interleaved(decoded, self.dtype)
        self.verify(f, out)
        self.sink.write(f, out)
        self._last[f] = decoded
        return out

    def model_pays(self, f, keyframe):
        """What the encoder decided (SequenceEncoder.model_pays), as the archive records it."""
        return f not in self.model_off

    def keyframe(self, f):
        self._last.pop(f - 1, None)
        self._older.pop(f - 1, None)
        decoded = self.key_coder.decode_frame(self.archive.keyframe_chunk(self.key_index[f]), self.shape)
        return self._done(f, decoded)

    def frame(self, f, model_prediction):
        previous = self._last.pop(f - 1)
        mp = None if model_prediction is None else to_planar(model_prediction)
        older = self._older.pop(f - 1, None)
        mp = temporal_candidate(self.coder, mp, previous, older)
        self._older[f] = previous
        if self.threads > 1 and self._pool is None and not threadsafe_numba():
            self.threads = 1
        if self.threads > 1:
            if self._pool is None:
                self._pool = frame_pool(self.threads, "parse")
            for g in range(f, min(f + self.threads + 1, self.end)):  # this frame and the next of its window
                if g in self.key_index:
                    break
                if g not in self._parsed:
                    chunk = self.archive.frame_chunk(self.frame_index[g])  # read here: one reader of the archive
                    self._parsed[g] = self._pool.submit(self.coder.parse_frame, chunk, self.shape)
            parsed = self._parsed.pop(f).result()
        else:
            parsed = self.coder.parse_frame(self.archive.frame_chunk(self.frame_index[f]), self.shape)
        rival = temporal_candidate(self.coder, None, previous, older) if parsed[3] else None  # the chunk says
        return self._done(f, self.coder.rebuild(parsed, mp, previous, rival))


def window_bounds(keyframes, n_frames):
    """[(start, end)] of the windows: each keyframe to the next (the last to the end)."""
    ends = list(keyframes[1:]) + [n_frames]
    return list(zip(keyframes, ends))


def encode_windows(source, window_coder, keyframes, writer, stats, progress=None, end=None):
    """The hierarchical order's encoder: each window (a keyframe and the frames up to the next) read
    whole and coded by `window_coder` (sequence.hierarchical.HierarchicalCoder) into one chunk per
    frame; memory holds one window. keyframes, end: the windows to code, the last ending at `end`
    (default: the sequence's end; a segment of whole windows gives its own). Returns the frames'
    checksums (N entries, None for frames not coded)."""
    checksums = [None] * source.n_frames
    for start, end in window_bounds(keyframes, source.n_frames if end is None else end):
        window = source.read_range(start, end)
        chunks, decoded = window_coder.encode_window(to_planar(window))
        for k, (chunk, frame, rec) in enumerate(zip(chunks, window, decoded)):
            writer.add(start + k, chunk)
            out = to_interleaved(rec, frame.dtype)
            checksums[start + k] = frame_checksum(out)
            stats.add(start + k, frame, rec, len(chunk), None, key=k == 0)  # its prediction is not kept
        if progress is not None:
            progress(end - start)
    return checksums


def decode_windows(archive, window_coder, sink, verify, progress=None, frames=None):
    """The mirror of encode_windows: each window's chunks (its keyframe's in key_frame.dat, the
    others in entropy.dat) decoded together, every frame verified and handed to the sink.
    frames: (first, end) of a segment of whole windows to decode alone; default all."""
    seq = archive.sequence
    fmt = seq.frames
    first, last = frames if frames is not None else (0, fmt.n_frames)
    for w, (start, end) in enumerate(window_bounds(seq.keyframes, fmt.n_frames)):
        if not first <= start < last:
            continue
        predicted = start - w  # predicted frames before this window (each window before it has one keyframe)
        chunks = [archive.keyframe_chunk(w)] + [archive.frame_chunk(predicted + k) for k in range(end - start - 1)]
        decoded = window_coder.decode_window(chunks, fmt.frame_shape, end - start)
        for k, rec in enumerate(decoded):
            out = to_interleaved(rec, fmt.dtype)
            verify(start + k, out)
            sink.write(start + k, out)
        if progress is not None:
            progress(end - start)
