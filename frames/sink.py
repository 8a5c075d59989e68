"""Writing a sequence back frame by frame, in bounded memory, published all together or not at all.

    with OutputFolder(out_dir) as out:
        with open_sink(out, source_description, mode, names) as sink:
            for i in order:                  # any order
                sink.write(i, frame_i)       # (H, W, C), written to disk at once
        # leaving the block publishes (close()); an exception, Ctrl-C included, discards everything

What is written follows the description (frames.source.FrameSource.description(), as an archive
stores it; it is checked field by field, as anything read from an archive is):

- "folder": each frame its own image file, named by frames.write.output_names(names) (a lossy
  format's name becomes PNG), each written into its own temporary file of the output folder as
  soon as it is encoded (in worker threads: base.threads; memory: a frame per thread), all
  published together by close().
- "tiff": one uncompressed multi-page TIFF named description["stack"], the same bytes
  frames.write.write_tiff_stack writes: its pages' tags are written first, then each frame's pixels
  at its page's place, so frames may come in any order.
- "hdf5": one HDF5 file named description["file"] holding the dataset at the same path, with the
  same dtype, shape, chunk shape (one frame deep instead when one frame's chunks would exceed
  frames.hdf5.MAX_SINK_FRAME_CHUNKS), filters when they are lossless ones TEZip knows (else
  uncompressed), fill value, and the attributes of the dataset and of the groups on its path
  (frames.hdf5). Frames may come in any order.

Files are only ever created through the OutputFolder (exclusive temporaries) and published with
OutputFolder.publish_written: nothing half-written is ever under a final name. sink.notes says what
was written differently from the original (renamed lossy frames, an HDF5 filter not written back).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from base.errors import TezipError, printable
from base.pixels import MODE_DTYPES, SUPPORTED_MODES, TIFF_EXTENSIONS
from base.publish import TMP_SUFFIX, deferred_interrupts, signals_received
from base.threads import threads_for
from frames import hdf5

_NAME_MAX = 255  # bytes: the longest file name Linux, macOS and Windows write


def plain_name(name, what: str) -> str:
    """A file name from an archive that can only ever name a file directly in the output folder."""
    ok = (isinstance(name, str) and name not in ("", ".", "..") and not name.startswith(".")
          and "/" not in name and "\x00" not in name and "\n" not in name and not name.endswith(TMP_SUFFIX))
    try:
        ok = ok and len(name.encode("utf-8")) <= _NAME_MAX
    except UnicodeEncodeError:
        ok = False
    if not ok:
        raise TezipError(f"the archive's {what} {printable(repr(name))} is not a plain file name")
    return name


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _dimension(description: dict, key: str) -> int | None:
    value = description.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 31:
        raise TezipError(f"the archive's frame {key} {printable(repr(value))} is not a size")
    return value


class FrameSink:
    """Where a sequence is written to (open_sink). kind, n_frames, mode; files: the final names it
    publishes; notes: lines about what differs from the original. write(i, frame) any number of
    times, in any order, each frame once; close() publishes (every frame must have been written);
    abort() discards. As a context manager: close() on leaving normally, abort() on an exception."""

    kind = ""

    def __init__(self, out, mode: str, n_frames: int, height: int | None = None, width: int | None = None):
        if mode not in SUPPORTED_MODES:
            raise TezipError(f"the archive's mode {printable(repr(mode))} is not one of {', '.join(SUPPORTED_MODES)}")
        self.out, self.mode, self.n_frames = out, mode, n_frames
        self.dtype, self.channels = MODE_DTYPES[mode], SUPPORTED_MODES[mode]
        self.height, self.width = height, width
        self.files: list[str] = []
        self.notes: list[str] = []
        self._temps: list[str] = []  # every temporary file of this sink (OutputFolder.new_file's track)
        self._written = bytearray(n_frames)
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def _check(self, i: int, frame: np.ndarray) -> int:
        if self._closed:
            raise ValueError("the sink is closed")
        i = int(i)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} is outside the sequence (frames 0-{self.n_frames - 1})")
        if self._written[i]:
            raise ValueError(f"frame {i} was written already")
        if (frame.dtype != self.dtype or frame.ndim != 3 or frame.shape[2] != self.channels
                or (self.height is not None and frame.shape[:2] != (self.height, self.width))):
            size = f"{self.height}, {self.width}" if self.height is not None else "H, W"
            raise ValueError(f"frame {i}: expected a {self.dtype} ({size}, {self.channels}) array for mode {self.mode}, "
                             f"got {frame.dtype} {frame.shape}")
        if self.height is None:
            self.height, self.width = frame.shape[:2]
        return i

    def write(self, i: int, frame: np.ndarray) -> None:
        """Write frame i ((H, W, C) of the mode's dtype) to disk now. Any failure discards the sink."""
        i = self._check(i, frame)
        try:
            self._write(i, frame)
        except BaseException as error:
            self._fail(error, self.files[i] if len(self.files) > 1 else None)
        self._written[i] = 1

    def close(self) -> None:
        """Publish: every frame must have been written. Any failure discards the sink."""
        if self._closed:
            return
        try:
            missing = self._written.find(0)
            if missing >= 0:
                raise ValueError(f"frame {missing} was never written ({self._written.count(0)} of {self.n_frames} "
                                 f"missing); nothing was published")
            self._finish()
            self._closed = True
            self.out.publish_written(self._temps, self.files)
        except BaseException as error:
            self._fail(error)

    def abort(self) -> None:
        """Discard every file of this sink (nothing is published)."""
        self._closed = True
        try:
            self._discard()
        finally:
            self.out.discard(self._temps)

    def _fail(self, error: BaseException, name: str | None = None):
        """Discard the sink and raise: an OSError (also one a writer wrapped in TezipError) as one
        line naming the file and the folder; a Ctrl-C that surfaced inside a library as some other
        error as KeyboardInterrupt."""
        self.abort()
        if signals_received and not isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        if isinstance(error, TezipError) and isinstance(error.__context__, OSError):
            error = error.__context__
        if isinstance(error, OSError):
            what = printable(name or (self.files[0] if len(self.files) == 1 else "frames"))
            raise TezipError(f"cannot write {what} into {self.out.path} ({error.strerror or _one_line(error)})") from None
        raise error

    def _sync(self, f) -> None:
        f.flush()
        os.fsync(f.fileno())

    # Subclasses: _write(i, frame), _finish() (files complete and synced), _discard() (close handles).
    def _write(self, i, frame):
        raise NotImplementedError

    def _finish(self):
        pass

    def _discard(self):
        pass


class FolderSink(FrameSink):
    """Each frame its own file, in its own temporary as soon as it is encoded; published together.
    With threads > 1 the image files are encoded (PNG: deflate, the slow part of writing a frame)
    in worker threads, at most `threads` frames in flight beyond the one being written, while the
    caller decodes the next frame; close() waits for them, an encoding error surfaces at the next
    write or at close, naming its file."""

    kind = "folder"

    def __init__(self, out, description, mode, names, threads=None):
        names = [plain_name(n, "frame name") for n in names]
        super().__init__(out, mode, len(names), _dimension(description, "height"), _dimension(description, "width"))
        self.files, self.notes = self.file_names(names)
        self._frame_temps: list[str | None] = [None] * len(names)
        self.threads = max(1, int(threads)) if threads is not None else None  # PNG's deflate releases the GIL
        self._pool = None
        self._encoding: list = []  # (frame index, future of its file's bytes), oldest first
        self._failing: str | None = None  # the file whose encoding or writing failed

    @staticmethod
    def file_names(names):
        """(the files' names, notes) the frames `names` are written under (frames.write.output_names:
        a lossy format becomes PNG). TezipError when they are not unique."""
        from frames.write import output_names

        files, notes = output_names([plain_name(n, "frame name") for n in names])
        if len({n.casefold() for n in files}) != len(files):
            raise TezipError("the archive's frame names are not unique")
        return files, notes

    @staticmethod
    def encode(frame, mode, file_name) -> bytes:
        """The bytes of the file frame (H, W, C) of `mode` is written as under file_name (one of
        file_names'): made anywhere (a Dask worker), handed to write_file."""
        import io

        from frames.write import write_frame

        buffer = io.BytesIO()
        write_frame(buffer, frame, mode, format_of=file_name)
        return buffer.getvalue()

    def write_file(self, i: int, data: bytes) -> None:
        """Write frame i as the file bytes `encode` made of it (checked and verified where made)."""
        if self._closed:
            raise ValueError("the sink is closed")
        i = int(i)
        if not 0 <= i < self.n_frames or self._written[i]:
            raise ValueError(f"frame {i} is outside the sequence or was written already")
        track: list[str] = []
        try:
            try:
                with self.out.new_file(track) as f:
                    f.write(data)
                    self._sync(f)
            finally:
                self._temps += track
        except BaseException as error:
            self._fail(error, self.files[i] if len(self.files) > 1 else None)
        self._frame_temps[i] = track[0]
        self._written[i] = 1

    def _write(self, i, frame):
        if self.threads is None:  # the frames in flight within the memory budget (base.threads)
            self.threads = threads_for(frame.size)
        if self.threads > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="encode")
            # a copy: the caller may reuse its array once write returns
            self._encoding.append((i, self._pool.submit(self.encode, np.array(frame), self.mode, self.files[i])))
            self._store_encoded(self.threads)
            return
        self._store(i, self.encode(frame, self.mode, self.files[i]))

    def _store_encoded(self, keep):
        """Write the files of the oldest frames encoded in the workers until at most `keep` remain."""
        while len(self._encoding) > keep:
            i, future = self._encoding[0]
            self._failing = self.files[i]
            data = future.result()
            self._encoding.pop(0)
            self._store(i, data)
        self._failing = None

    def _store(self, i, data):
        track: list[str] = []
        self._failing = self.files[i]
        try:
            with self.out.new_file(track) as f:
                f.write(data)
                self._sync(f)
        finally:
            self._temps += track
        self._frame_temps[i] = track[0]
        self._failing = None

    def _fail(self, error, name=None):
        super()._fail(error, self._failing or name)

    def _finish(self):
        self._store_encoded(0)
        self._stop()
        self._temps = list(self._frame_temps)

    def _stop(self):
        for _, future in self._encoding:
            future.cancel()
        self._encoding = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _discard(self):
        self._stop()


class TiffStackSink(FrameSink):
    """One uncompressed multi-page TIFF: the pages' tags first (tifffile, as write_tiff_stack writes
    them), then each frame's pixels at its page's offset."""

    kind = "tiff"

    def __init__(self, out, description, mode, names):
        import tifffile

        stack = plain_name(description.get("stack"), "TIFF stack name")
        if Path(stack).suffix.lower() not in TIFF_EXTENSIONS:
            raise TezipError(f"the archive's TIFF stack name {printable(repr(stack))} is not a TIFF file name")
        height, width = _dimension(description, "height"), _dimension(description, "width")
        if height is None or width is None:
            raise TezipError("the archive's TIFF stack has no frame size")
        super().__init__(out, mode, len(names), height, width)
        self.files = [stack]
        shape = (self.n_frames, height, width) + ((3,) if mode == "RGB" else ())
        self._dtype = self.dtype.newbyteorder("<")
        self._frame_bytes = height * width * self.channels * self.dtype.itemsize
        size = self.n_frames * self._frame_bytes
        self._file = None
        try:
            self._file = out.new_file(self._temps)
            # imwrite's rule (so the file is write_tiff_stack's, byte for byte): BigTIFF past ~4 GiB.
            with tifffile.TiffWriter(self._file, bigtiff=size > 2**32 - 2**25, byteorder="<") as tif:
                self._offset, _ = tif.write(None, shape=shape, dtype=self._dtype,
                                            photometric="rgb" if mode == "RGB" else "minisblack",
                                            compression=None, returnoffset=True)
            self._check_layout()
        except BaseException as error:
            self._fail(error)

    def _check_layout(self):
        """The pages' pixels lie one after the other from self._offset (tifffile writes an
        uncompressed series so); checked on the first and the last page, so a tifffile that lays
        them out otherwise can never make this write pixels over tags."""
        import tifffile

        self._file.flush()
        self._file.seek(0)
        with tifffile.TiffFile(self._file) as tif:
            pages = tif.pages
            count = len(pages)
            for index in {0, count - 1}:
                page = pages[index]
                start = self._offset + index * self._frame_bytes
                offsets, counts = list(page.dataoffsets), list(page.databytecounts)
                expected = [start + sum(counts[:k]) for k in range(len(counts))]
                if count != self.n_frames or offsets != expected or sum(counts) != self._frame_bytes:
                    raise RuntimeError(f"tifffile laid out page {index + 1} of the stack unexpectedly")

    def _write(self, i, frame):
        self._file.seek(self._offset + i * self._frame_bytes)
        self._file.write(np.ascontiguousarray(frame, dtype=self._dtype).data.cast("B"))

    def _finish(self):
        self._sync(self._file)
        self._file.close()
        self._file = None

    def _discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class Hdf5Sink(FrameSink):
    """One HDF5 file holding the dataset (frames.hdf5.create_frames_dataset), written by h5py into the
    output folder's temporary file through frames.hdf5.GuardedFile, with a chunk cache holding one
    frame's chunks. Ctrl-C is held while h5py runs (one frame's write at most): HDF5 must never be
    left with a file it cannot close (GuardedFile)."""

    kind = "hdf5"

    def __init__(self, out, description, mode, names):
        h5py = hdf5.h5py_module()
        file = plain_name(description.get("file"), "HDF5 file name")
        layout = hdf5.checked_layout(description, mode, len(names))
        shape = layout["shape"]
        super().__init__(out, mode, len(names), shape[1], shape[2])
        self.files = [file]
        self.where = hdf5.spec_text(Path(out.path) / file, str(description.get("dataset")))
        self._file = self._h5 = self._io = None
        self._frame_shape = tuple(shape[1:])
        try:
            self._file = out.new_file(self._temps)
            self._io = hdf5.GuardedFile(self._file.fileno())
            cache = {}
            if layout["sink_chunks"] is not None:
                slots, nbytes = hdf5.chunk_cache(shape, layout["sink_chunks"], layout["dtype"].itemsize,
                                                 limit=hdf5.MAX_SINK_FRAME_CHUNKS)
                cache = dict(rdcc_nslots=slots, rdcc_nbytes=nbytes, rdcc_w0=1.0)
            with deferred_interrupts():
                self._h5 = h5py.File(self._io, "w", **cache)
                self._ds, notes = hdf5.create_frames_dataset(self._h5, description, layout, self.where)
            self._io.check()
            self.notes += notes
        except BaseException as error:
            self._fail(error)

    def _write(self, i, frame):
        with deferred_interrupts():
            self._ds.write_direct(np.ascontiguousarray(frame).reshape(self._frame_shape), dest_sel=np.s_[i])
        self._io.check()

    def _finish(self):
        h5, self._h5 = self._h5, None  # closed once only, whatever happens (GuardedFile)
        with deferred_interrupts():
            h5.close()
        self._io.check()
        self._sync(self._file)
        self._file.close()
        self._file = None

    def _discard(self):
        h5, self._h5 = self._h5, None
        try:
            if h5 is not None:
                with deferred_interrupts():
                    h5.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None


_SINKS = {"folder": FolderSink, "tiff": TiffStackSink, "hdf5": Hdf5Sink}


def open_sink(out, description: dict, mode: str, names: list[str]) -> FrameSink:
    """A sink writing len(names) frames of `mode` into the OutputFolder `out` as `description` says
    (module docstring; {"kind": "folder"} writes image files whatever the source was). names: the
    frames' names (a folder's file names; for a stack or a dataset only their count matters).
    TezipError when the description cannot be written back."""
    if not isinstance(description, dict) or description.get("kind") not in _SINKS:
        kind = description.get("kind") if isinstance(description, dict) else description
        raise TezipError(f"the archive's output kind {printable(repr(kind))} is not one of {', '.join(_SINKS)}")
    names = list(names)
    if not names:
        raise TezipError("the archive holds no frames")
    return _SINKS[description["kind"]](out, description, mode, names)

