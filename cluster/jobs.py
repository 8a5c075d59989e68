"""The client's side of one sequence on the cluster: a job opens its input and OUT_DIR, cuts the
sequence into segments (one task each), takes the tasks' results as they come, in any order, and
publishes the output all together when the last is in — or discards everything on failure.

    job.open() → [(task function, args)]   job.add(i, result)   job.finish() → SequenceResult
    job.abort()                                                   (FAILED, nothing left behind)
"""

import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from base.batch import SequenceResult
from base.publish import OutputFolder, check_output_folder
from cluster import tasks

# Segments: about a quarter of a worker's share of the sequence, so the cluster stays busy to the
# end, but never more than MAX_SEGMENT_FRAMES frames nor (decoding, whose tasks return frames) more
# than MAX_SEGMENT_BYTES of frames, so a task's result stays small.
SEGMENTS_PER_WORKER = 4
MAX_SEGMENT_FRAMES = 256
MAX_SEGMENT_BYTES = 256 << 20


def segment_target(n_frames, workers, frame_bytes=0):
    """Frames per segment for a sequence of n_frames on `workers` workers (a whole window at
    least, sequence.windows.segment_bounds)."""
    target = -(-n_frames // (SEGMENTS_PER_WORKER * max(1, workers)))
    if frame_bytes:
        target = min(target, MAX_SEGMENT_BYTES // frame_bytes)
    return max(1, min(target, MAX_SEGMENT_FRAMES))


def _absolute(path):
    """Workers may run elsewhere (another working directory): paths go to them absolute."""
    return str(Path(path).absolute())


def _model_path(model_dir):
    """MODEL_DIR as workers get it: the keywords `default` and `none` as they are, a folder absolute."""
    from prednet.modelfile import is_default_model, is_no_model

    return model_dir if is_default_model(model_dir) or is_no_model(model_dir) else _absolute(model_dir)


class _Job:
    """What both directions' jobs share: paths, label, the run token, what to close."""

    def __init__(self, src, out_dir, label, workers):
        self.src, self.out_dir, self.label, self.workers = src, Path(out_dir), label, workers
        self.name = Path(str(src)).name
        self.token = uuid.uuid4().hex
        self.stack = ExitStack()
        self.missing = 0
        self.t0 = None
        self.error = None  # what failed it (cluster.run)

    @property
    def complete(self):
        return self.missing == 0

    def abort(self):
        """Discard everything this job made (spool, temporaries, folders it created)."""
        self._discard()
        self.stack.close()

    def _discard(self):
        pass


class CompressJob(_Job):
    """One sequence (a folder of images, a TIFF stack, an HDF5 dataset) → its archive in out_dir."""

    def __init__(self, model_dir, src, out_dir, plan, flags, label="", workers=1):
        super().__init__(src, out_dir, label, workers)
        self.model_dir, self.plan, self.flags = model_dir, plan, flags

    def open(self):
        from compress.pipeline import check_source, resolve_order
        from compress.segments import SegmentAssembly, SegmentPlan
        from frames.hdf5 import split_spec
        from frames.source import open_source

        self.t0 = time.time()
        spec = split_spec(self.src)
        check_output_folder(self.out_dir, spec[0] if spec else self.src, self.flags.overwrite)
        try:
            self.source = self.stack.enter_context(open_source(self.src))
            out = self.stack.enter_context(OutputFolder(self.out_dir, overwrite=self.flags.overwrite))
            model = check_source(self.model_dir, self.source, self.plan, self.flags)
            self.plan, model, _ = resolve_order(model, self.source, self.plan, self.flags)  # the cluster codes every window
            self.cuts = SegmentPlan.of(model, self.source, self.plan, segment_target(self.source.n_frames, self.workers))
            self.assembly = SegmentAssembly(model, self.source, self.plan, self.cuts, out, self.flags.report_frame)
            self.stack.callback(self.assembly.close)
            self.out = out
        except BaseException:
            self.stack.close()
            raise
        s = self.source
        expected = (s.n_frames, s.height, s.width, s.channels, str(s.dtype), s.mode)
        digest = None if model is None else model[1]["digest"]
        self.missing = len(self.cuts.segments)
        return [(tasks.encode_task, (self.token, _model_path(self.model_dir), digest, self._worker_spec(), expected,
                                     self.plan, self.cuts.part(i), self.flags.device, self.flags.report_frame))
                for i in range(len(self.cuts.segments))]

    def _worker_spec(self):
        """The sequence's spec with its file or folder absolute (an HDF5 dataset keeps its path)."""
        from frames.hdf5 import split_spec

        split = split_spec(self.src)
        if split is None:
            return _absolute(self.src)
        file, dataset = split
        return _absolute(file) + (f"::{dataset}" if dataset else "")

    def add(self, i, code):
        self.assembly.add(code)
        self.missing -= 1

    def finish(self):
        from compress.pipeline import publish_archive

        sequence, key_header, summary = self.assembly.headers()
        summary = publish_archive(self.out, self.assembly.writer, self.source, sequence, key_header, summary, self.plan,
                                  self.flags, self.label, self.t0)
        self.stack.close()
        return SequenceResult(self.name, "ok", summary.frames, summary.ratio, summary.max_abs_error, summary.seconds)


class DecompressJob(_Job):
    """One archive folder → its frames in out_dir, verified."""

    def __init__(self, model_dir, src, out_dir, flags, label="", workers=1):
        super().__init__(src, out_dir, label, workers)
        self.model_dir, self.flags = model_dir, flags
        self.sink = None

    def open(self):
        from archive import read_archive
        from decompress.segments import decode_segments
        from frames.sink import open_sink

        self.t0 = time.time()
        check_output_folder(self.out_dir, self.src, self.flags.overwrite, what="COMP_DIR")
        try:
            self.archive = self.stack.enter_context(read_archive(self.src))
            self.out = self.stack.enter_context(OutputFolder(self.out_dir, overwrite=self.flags.overwrite))
            digest = self._model_digest()
            a = self.archive
            self.sink = open_sink(self.out, a.sink_description(), a.mode, a.names)
            fmt = a.sequence.frames
            frame_bytes = fmt.height * fmt.width * fmt.channels * fmt.dtype.itemsize
            segments = decode_segments(a, segment_target(fmt.n_frames, self.workers, frame_bytes))
        except BaseException:
            self.abort()
            raise
        self.missing = len(segments)
        self.segments = segments
        return [(tasks.decode_task, (self.token, _model_path(self.model_dir), digest, _absolute(self.src), frames,
                                     self.flags.device))
                for frames in segments]

    def _model_digest(self):
        """The digest of the model the archive was made with, checked against MODEL_DIR here, before
        any task runs (None: made without one; format 2 checks it in its task)."""
        from decompress.pipeline import load_archive_model

        if self.archive.version == 2 or self.archive.sequence.model is None:
            return None
        load_archive_model(self.model_dir, self.archive)  # raises for another model
        return self.archive.sequence.model_digest

    def add(self, i, frames):
        """frames: segment i's frames (end - start, H, W, C), or their image files' bytes (a list)."""
        start = self.segments[i][0]
        write = self.sink.write_file if isinstance(frames, list) else self.sink.write
        for k, frame in enumerate(frames):
            write(start + k, frame)
        self.missing -= 1

    def finish(self):
        from decompress.pipeline import report_decoded

        self.sink.close()
        done = report_decoded(self.archive, self.src, self.out, self.sink, self.t0, self.label)
        self.stack.close()
        # Every frame matched the checksum of what the encoder decoded, so the error is the archive's.
        return SequenceResult(self.name, "ok", done.frames, done.ratio, None, done.seconds)

    def _discard(self):
        if self.sink is not None:
            self.sink.abort()
