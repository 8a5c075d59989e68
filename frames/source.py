"""Sequences read lazily, frame by frame: open_source(spec) checks everything it can from headers
and metadata alone (every frame's size and mode, the metadata frames.read refuses, a damaged or cut
off TIFF stack, an HDF5 dataset's shape, dtype and filters, its attributes), then hands out frames
one at a time, so memory does not grow with the length of the run.

    with open_source("run.h5::/entry/data/data") as source:
        for i in range(source.n_frames):
            frame = source.read(i)          # (H, W, C) uint8 or uint16
        block = source.read_range(0, 10)    # (10, H, W, C)
        source.description()                # what frames.sink needs to write the same thing back

A spec is a folder of images, a multi-page TIFF file, or an HDF5 file (frames.hdf5: `FILE::/path`,
or a file with an HDF5 extension and the dataset found in it). Problems a user can fix raise
TezipError naming the file (or dataset) and what is wrong, before any pixels are read where the
headers tell; a frame that turns out unreadable later raises it when it is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from base.errors import TezipError
from base.pixels import MODE_DTYPES, SUPPORTED_MODES
from frames import hdf5
from frames.read import (
    ImageHeader,
    _check_same_as_first,
    _check_stack_extents,
    _one_line,
    _stack_page_appearance,
    _stack_page_mode,
    _tiff_complaints_are_errors,
    frame_order,
    is_tiff_stack,
    list_image_files,
    read_image,
    sequence_header,
    stack_page_names,
)


class FrameSource:
    """One sequence, read lazily (open_source). Attributes:

    kind: "folder", "tiff" or "hdf5"; spec: the path (or FILE::/dataset) it was opened from.
    n_frames, height, width, channels; mode ("RGB", "L", "I;16") and dtype (MODE_DTYPES[mode]).
    names: each frame's name, in frame order (a folder's file names; made-up names for the pages of
    a stack or the frames of a dataset): what filename.txt records.
    order: how the frames are ordered, in words (-v prints it).

    read(i) and read_range(start, stop) return new arrays, or fill `out` (a C-contiguous array of
    the right shape and dtype) and return it. A source is a context manager; close() releases files.
    """

    kind: str = ""

    def __init__(self, spec, n_frames: int, height: int, width: int, mode: str, names: list[str], order: str):
        self.spec = str(spec)
        self.n_frames, self.height, self.width, self.mode = n_frames, height, width, mode
        self.channels = SUPPORTED_MODES[mode]
        self.dtype = MODE_DTYPES[mode]
        self.names, self.order = names, order

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def __len__(self) -> int:
        return self.n_frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        pass

    def _out(self, out, shape):
        if out is None:
            return np.empty(shape, dtype=self.dtype)
        if out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {shape}, got {out.dtype} "
                             f"{out.shape}")
        return out

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame i as an (H, W, C) array."""
        i = int(i)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} is outside the sequence (frames 0-{self.n_frames - 1})")
        out = self._out(out, self.frame_shape)
        self._read_into(i, out)
        return out

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames start..stop-1 as an (stop - start, H, W, C) array."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"frames {start}-{stop - 1} are outside the sequence (frames 0-{self.n_frames - 1})")
        out = self._out(out, (stop - start, *self.frame_shape))
        self._read_range_into(start, stop, out)
        return out

    def __iter__(self):
        for i in range(self.n_frames):
            yield self.read(i)

    def _read_into(self, i: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def _read_range_into(self, start: int, stop: int, out: np.ndarray) -> None:
        for k, i in enumerate(range(start, stop)):
            self._read_into(i, out[k])

    def description(self) -> dict:
        """A small JSON-able dict of what frames.sink needs to write the same thing back."""
        return {"kind": self.kind, "mode": self.mode, "n_frames": self.n_frames, "height": self.height,
                "width": self.width, "channels": self.channels}


# --- a folder of images -----------------------------------------------------------------------------


class FolderSource(FrameSource):
    """The image files of a folder (frames.read.list_image_files: every header checked up front)."""

    kind = "folder"

    def __init__(self, folder):
        self.paths = list_image_files(folder)
        self.header = sequence_header(self.paths)
        names = [path.name for path in self.paths]
        super().__init__(folder, len(names), self.header.height, self.header.width, self.header.mode, names,
                         frame_order(names)[1])

    def _read_into(self, i, out):
        pixels, mode = read_image(self.paths[i])
        _check_same_as_first(ImageHeader(pixels.shape[0], pixels.shape[1], mode, self.header.format), self.header,
                             self.paths[i], self.paths[0])
        out[...] = pixels


# --- a multi-page TIFF file ----------------------------------------------------------------------------


class TiffStackSource(FrameSource):
    """The pages of one TIFF file, one frame each (frames.read.read_tiff_stack's rules: every page's
    kind, size and metadata, and its data lying inside the file, checked up front; anything tifffile
    complains about is an error). The file stays open; pages are parsed again when read, so memory
    does not grow with the page count."""

    kind = "tiff"

    def __init__(self, path):
        import tifffile

        from base.files import NotARegularFile, open_regular

        self.path = Path(path)
        self._fh = self._tif = None
        try:
            self._fh = open_regular(self.path)
            with _tiff_complaints_are_errors(self.path):
                size = os.fstat(self._fh.fileno()).st_size
                self._tif = tifffile.TiffFile(self._fh, name=self.path.name)
                count = len(self._tif.pages)
                if not count:
                    raise TezipError(f"{self.path}: TIFF file holds no pages")
                first = self._tif.pages[0]
                mode, self._axes, self._shape = _stack_page_mode(first, 0, self.path), first.axes, first.shape
                for index in range(count):
                    page = self._tif.pages[index] if index else first
                    page_mode = _stack_page_mode(page, index, self.path) if index else mode
                    if page_mode != mode or page.shape != self._shape:
                        raise TezipError(
                            f"{self.path}: page {index + 1} ({page_mode} {page.shape}) differs from page 1 "
                            f"({mode} {self._shape}); all pages of a stack must have the same size and kind")
                    _stack_page_appearance(page, index, self.path)
                    _check_stack_extents(page, index, self.path, size)
        except BaseException as error:
            self.close()
            if isinstance(error, TezipError) and not isinstance(error, NotARegularFile):
                raise
            if isinstance(error, NotARegularFile):
                raise TezipError(f"{self.path}: is {error.what}, not a TIFF file") from None
            if isinstance(error, PermissionError):
                raise TezipError(f"{self.path}: permission denied") from None
            if isinstance(error, FileNotFoundError):
                raise TezipError(f"{self.path}: file not found") from None
            if isinstance(error, Exception):  # tifffile raises many kinds of errors on a damaged file
                raise TezipError(f"{self.path}: unreadable TIFF file: {_one_line(error)}") from None
            raise
        height, width = self._shape[:2] if self._axes != "SYX" else self._shape[1:]
        super().__init__(self.path, count, height, width, mode, stack_page_names(self.path.name, count),
                         f"by page (the pages of {self.path.name} in file order)")

    def close(self):
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read_into(self, i, out):
        if self._tif is None:
            raise ValueError(f"{self.path}: the source is closed")
        try:
            with _tiff_complaints_are_errors(self.path):
                page = self._tif.pages[i]
                if page.shape != self._shape or page.axes != self._axes:
                    raise TezipError(f"{self.path}: page {i + 1} changed since the stack was opened")
                pixels = page.asarray()
        except TezipError:
            raise
        except Exception as error:  # noqa: BLE001 - tifffile raises many kinds of errors on a damaged file
            raise TezipError(f"{self.path}: page {i + 1}: unreadable: {_one_line(error)}") from None
        if self._axes == "SYX":
            pixels = np.moveaxis(pixels, 0, -1)
        out[...] = pixels.reshape(self.frame_shape)

    def description(self):
        return {**super().description(), "stack": self.path.name}


# --- one dataset of an HDF5 / NeXus file -------------------------------------------------------------


class Hdf5Source(FrameSource):
    """One 3-D (N, H, W) or 4-D (N, H, W, C) uint8/uint16 dataset (frames.hdf5), read through a chunk
    cache that holds one frame's chunks: reading frame i decodes only the chunks holding it."""

    kind = "hdf5"

    def __init__(self, file: Path, dataset: str | None):
        from base.files import open_input

        h5py = hdf5.h5py_module()
        self.file, self._h5 = Path(file), None
        open_input(self.file, "an HDF5 file").close()
        if not h5py.is_hdf5(self.file):
            raise TezipError(f"{self.file}: not an HDF5 file")
        try:
            self._h5 = h5py.File(self.file, "r")
            self._open(h5py, dataset)
        except BaseException as error:
            self.close()
            if isinstance(error, Exception) and not isinstance(error, TezipError):
                raise TezipError(f"{self.file}: unreadable HDF5 file: {_one_line(error)}") from None
            raise

    def _open(self, h5py, dataset):
        path = dataset if dataset is not None else hdf5.find_dataset(self._h5, self.file)
        where = hdf5.spec_text(self.file, path)
        try:
            ds = self._h5.get(path)
        except (KeyError, OSError, ValueError) as error:  # a broken external link, a bad path
            raise TezipError(f"{where}: cannot be opened: {_one_line(error)}") from None
        if ds is None:
            raise TezipError(f"{where}: no such dataset in the file")
        if not isinstance(ds, h5py.Dataset):
            raise TezipError(f"{where}: is a group, not a dataset")
        mode = hdf5.frames_mode(ds, where)
        filters = hdf5.filter_pipeline(ds)
        hdf5.check_filters_available(filters, where)
        hdf5.check_virtual_sources(ds, self.file, where)
        self._description = hdf5.describe_dataset(self._h5, ds, self.file, path, mode)
        self.dataset_path, self.where = path, where
        self._ds = hdf5.open_cached(self._h5, path, ds)
        shape = ds.shape
        super().__init__(where, shape[0], shape[1], shape[2], mode, hdf5.frame_names(self.file.name, shape[0]),
                         f"by index along the first axis of {path}")

    def close(self):
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None

    def _read_range_into(self, start, stop, out):
        if self._h5 is None:
            raise ValueError(f"{self.where}: the source is closed")
        dest = out.reshape((stop - start, *self._ds.shape[1:]))
        try:
            self._ds.read_direct(dest, source_sel=np.s_[start:stop])
        except Exception as error:  # noqa: BLE001 - a damaged chunk, a filter that fails
            which = f"frame {start}" if stop - start == 1 else f"frames {start}-{stop - 1}"
            raise TezipError(f"{self.where}: {which} cannot be read: {_one_line(error)}") from None

    def _read_into(self, i, out):
        self._read_range_into(i, i + 1, out.reshape((1, *out.shape)))

    def description(self):
        return {**super().description(), **self._description}


def open_source(spec) -> FrameSource:
    """The sequence spec names, read lazily (module docstring): a folder of images, a multi-page TIFF
    file, or an HDF5 dataset (`FILE::/path`, or a file with an HDF5 extension). Raises TezipError
    naming the file and the problem."""
    split = hdf5.split_spec(spec)
    if split is not None:
        return Hdf5Source(*split)
    if is_tiff_stack(spec):
        return TiffStackSource(spec)
    return FolderSource(spec)
