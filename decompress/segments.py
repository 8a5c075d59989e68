"""One archive decoded in segments: runs of whole windows (windows start at keyframes, whose
positions the archive records, so -t archives too) decoded apart — by Dask workers, see cluster/ —
each frame verified against its checksum where it is decoded; the client writes the frames to the
sink (frames.sink accepts them in any order) and publishes them all together.

    bounds = decode_segments(archive, target)                    the client: where to cut
    frames = decode_segment(weights, archive, bounds[i])         a worker: (end - start, H, W, C)
"""

import numpy as np

from base.errors import TezipError
from sequence.windows import segment_bounds, segment_lanes


def decode_segments(archive, target):
    """[(start, end)] of whole windows, about `target` frames each, covering the archive's frames.
    Format 2 archives are decoded whole: one segment."""
    seq = archive.sequence
    n = seq.frames.n_frames
    if archive.version == 2:
        return [(0, n)]
    return segment_bounds(list(seq.keyframes), n, target)


class _Frames:
    """A sink for frames start..end-1, kept in one (end - start, H, W, C) array."""

    def __init__(self, start, end, fmt):
        self.start = start
        self.frames = np.empty((end - start, fmt.height, fmt.width, fmt.channels), fmt.dtype)

    def write(self, f, frame):
        self.frames[f - self.start] = frame


def decode_segment(model_dir, weights, archive, frames, device="CPU"):
    """Decode and verify frames (start, end) of `archive` (archive.Archive). weights: from
    decompress.pipeline.load_archive_model (format 3); model_dir: for format 2, decoded whole.
    Returns the frames, (end - start, H, W, C) of the archive's dtype. Raises TezipError on a
    corrupt archive or a frame that does not match its checksum."""
    from decompress.pipeline import Verifier, check_memory, decode_range

    seq = archive.sequence
    fmt = seq.frames
    start, end = frames
    if archive.version == 2:
        from decompress.v2 import decode_sequence_v2

        check_memory(fmt, len(seq.lanes), whole=True)
        decoded = decode_sequence_v2(model_dir, archive, None, device)
        verify = Verifier(archive)
        for i, frame in enumerate(decoded):
            verify(i, frame)
        return np.stack(decoded)
    if start not in seq.keyframes:
        raise TezipError(f"internal error: frames {start}-{end - 1} do not begin with a keyframe")
    sink = _Frames(start, end, fmt)
    lanes = None if seq.coder.get("id") == "hierarchical" else segment_lanes(seq.lanes, start, end)
    if lanes is not None:
        check_memory(fmt, len(lanes), weights)
    decode_range(weights, archive, sink, (start, end), None, device, lanes, threads=1)  # one thread per Dask worker
    return sink.frames
