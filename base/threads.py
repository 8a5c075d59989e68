"""How many frames a run works on at once in threads of this process (tezip.py --threads).

Lossless predicted frames are coded side by side (sequence.coding.SequenceEncoder), chunks are
parsed ahead while a frame is rebuilt (SequenceDecoder), and image files are encoded while the
next frame is decoded (frames.sink.FolderSink). None of it changes an archive's or a file's
bytes. The default is one thread per core, up to 4: a frame's coding is mostly one thread's range
coder, and the kernels it also runs use every core already.
"""

import os

MAX_DEFAULT = 4
# What the frames in flight may hold at once: each holds about BYTES_PER_VALUE bytes per value
# (int32 planes: the frame, its prediction, residual codes, the stages' outputs, the chunk), so
# --threads never makes a run need more memory than this beyond one frame's.
FRAME_MEMORY_BUDGET = 256 << 20
BYTES_PER_VALUE = 48
_threads = None


def frame_threads() -> int:
    """The number of frames worked on at once (>= 1)."""
    return _threads if _threads is not None else max(1, min(MAX_DEFAULT, os.cpu_count() or 1))


def threads_for(frame_values: int, threads: int | None = None) -> int:
    """The frames worked on at once for frames of `frame_values` values (H * W * C): `threads`
    (default frame_threads()), at most what FRAME_MEMORY_BUDGET holds, at least 1."""
    threads = frame_threads() if threads is None else int(threads)
    return max(1, min(threads, FRAME_MEMORY_BUDGET // max(1, int(frame_values) * BYTES_PER_VALUE)))


def set_frame_threads(threads: int | None) -> None:
    """Set it for this process (None: back to the default). ValueError below 1."""
    global _threads
    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
        raise ValueError(f"frame threads must be an integer >= 1, got {threads!r}")
    _threads = None if threads is None else int(threads)
