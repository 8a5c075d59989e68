"""How many frames a run works on at once in threads of this process (tezip.py --threads).

Lossless predicted frames are coded side by side (sequence.coding.SequenceEncoder), chunks are
parsed ahead while a frame is rebuilt (SequenceDecoder), and image files are encoded while the
next frame is decoded (frames.sink.FolderSink). None of it changes an archive's or a file's
bytes. The default is one thread per core, up to 4: a frame's coding is mostly one thread's range
coder, and the kernels it also runs use every core already.
"""

import os

MAX_DEFAULT = 4
_threads = None


def frame_threads() -> int:
    """The number of frames worked on at once (>= 1)."""
    return _threads if _threads is not None else max(1, min(MAX_DEFAULT, os.cpu_count() or 1))


def set_frame_threads(threads: int | None) -> None:
    """Set it for this process (None: back to the default). ValueError below 1."""
    global _threads
    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
        raise ValueError(f"frame threads must be an integer >= 1, got {threads!r}")
    _threads = None if threads is None else int(threads)
