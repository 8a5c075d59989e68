"""HDF5 / NeXus files as sequences: one 3-D (N, H, W) or 4-D (N, H, W, C) uint8/uint16 dataset is
one sequence of N frames (frames.source reads it frame by frame, frames.sink writes it back).

A dataset is named as the field's tools do, `run.h5::/entry/data/data`; without `::` the file's
NeXus default signal is taken if it declares one (the `default` attributes from the root down to
an NXdata group, and its `signal`), else the one 3-D/4-D uint8/uint16 dataset of the file (several,
or none: an error listing them). hdf5plugin is imported before any file is opened, so datasets
compressed with the filters detectors write (bitshuffle-LZ4, Blosc, Blosc2, zstd, LZ4, bzip2) read.

What a sink needs to write the same dataset back is a small JSON-able description
(describe_dataset): file name, dataset path, shape, dtype, layout and chunk shape, the filter
pipeline, and the attributes of the dataset and of the groups on its path, each with its HDF5 type
(numbers, booleans, strings, arrays of them). An attribute whose value cannot be carried exactly
(compound, complex, enumerated, reference, variable-length sequence, opaque types; text that is not
UTF-8) is refused with one line naming it. The description comes back from an archive, so
create_frames_dataset checks every field of it before writing anything.

Filters: the lossless ones of LOSSLESS_FILTERS are written back exactly as they were (same filter
ids, flags and parameters, in the same order). A dataset with any other filter (lossy ones such as
ZFP or SZ, whose re-encoding would change the pixels; scale-offset, n-bit or szip) is written back
uncompressed, with a note saying so.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from base.errors import TezipError, printable
from base.pixels import GRAY16, HDF5_EXTENSIONS, MODE_DTYPES, SUPPORTED_MODES

SEPARATOR = "::"

# Filter id → name of the lossless filters a sink writes back as they were.
LOSSLESS_FILTERS: dict[int, str] = {
    1: "gzip", 2: "shuffle", 3: "fletcher32", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4",
    32008: "bitshuffle", 32015: "zstd", 32026: "blosc2",
}
# Names of other filters seen in detector files (read if this installation can decode them).
_OTHER_FILTERS: dict[int, str] = {
    4: "szip", 5: "nbit", 6: "scaleoffset", 32013: "zfp", 32017: "sz", 32018: "fcidecomp", 32024: "sz3",
    32028: "sperr", 32033: "htj2k",
}
_BLOSC_CODECS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}
_BITSHUFFLE_CODECS = {2: "lz4", 3: "zstd"}

# The chunk cache of a dataset read or written frame by frame holds at least one frame's chunks
# (so a chunk spanning several frames is decoded once, not once per frame), and at most this much:
# a file whose chunks are larger than that is still read, each frame decoding its chunks anew.
MAX_CHUNK_CACHE = 1 << 30
MIN_CHUNK_CACHE = 1 << 20
# A sink keeps a chunk shape whose one frame's chunks fit in this; a larger one (chunks spanning many
# frames) is cut to one frame deep, so writing frames in any order never holds much of the dataset.
MAX_SINK_FRAME_CHUNKS = 256 << 20
MAX_CHUNK_BYTES = (1 << 32) - 1  # HDF5's limit on one chunk

# Shown in messages: how many datasets are listed at most.
_MAX_LISTED = 8


def h5py_module():
    """h5py, with hdf5plugin's filters registered (importing hdf5plugin registers them; without it,
    datasets compressed with them are refused by check_filters_available, naming the filter)."""
    import h5py

    try:
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency; plain datasets still read without it
        pass
    return h5py


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- naming a dataset ------------------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """A dataset path as written in messages and descriptions: absolute, no empty or `.` components
    (HDF5 reads `/a/./b` as `/a/b`; an archive records plain paths only, plain_path)."""
    return "/" + "/".join(part for part in path.split("/") if part not in ("", "."))


def split_spec(spec) -> tuple[Path, str | None] | None:
    """(file, dataset path or None) when spec names an HDF5 file: `FILE::/path` (unless a file or
    folder of that very name exists), or a file with an HDF5 extension (HDF5_EXTENSIONS); else None."""
    text = str(spec)
    if SEPARATOR in text and not Path(text).exists():
        file, _, dataset = text.partition(SEPARATOR)
        return Path(file), (normalize_path(dataset) if dataset.strip("/") else None)
    path = Path(text)
    if path.suffix.lower() in HDF5_EXTENSIONS and not path.is_dir():
        return path, None
    return None


def spec_text(file, dataset: str) -> str:
    return f"{file}{SEPARATOR}{dataset}"


def frame_names(file_name: str, count: int) -> list[str]:
    """Made-up names of a dataset's frames (run.h5 -> run_0000.tif, ...), like a TIFF stack's pages:
    what filename.txt lists, and the files frames written as images get."""
    stem = Path(file_name).stem or "frame"
    digits = max(4, len(str(count - 1)))
    return [f"{stem}_{index:0{digits}d}.tif" for index in range(count)]


# --- finding and checking the frames' dataset ------------------------------------------------------


def _shape_text(shape) -> str:
    if shape is None:  # a null dataspace (h5py.Empty)
        return "empty"
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _dataset_text(name: str, ds) -> str:
    return f"{printable(name)} ({_shape_text(ds.shape)} {ds.dtype})"


def _is_candidate(ds) -> bool:
    dtype = ds.dtype
    return ds.shape is not None and len(ds.shape) in (3, 4) and dtype.kind == "u" and dtype.itemsize in (1, 2) and dtype.names is None


def _attr_text(obj, name: str) -> str | None:
    try:
        value = obj.attrs.get(name)
    except Exception:  # noqa: BLE001 - an unreadable attribute is no declaration
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def nexus_default(h5file) -> str | None:
    """The path of the NeXus default signal the file declares (root `default` → NXentry `default` →
    NXdata `signal`), or None when it declares none or it leads nowhere."""
    h5py = h5py_module()
    group, path = h5file, ""
    for _ in range(16):
        target = _attr_text(group, "default")
        if target is None or "/" in target:
            break
        child = group.get(target)
        if not isinstance(child, h5py.Group):
            break
        group, path = child, f"{path}/{target}"
    signal = _attr_text(group, "signal")
    if not path or signal is None or "/" in signal:
        return None
    return f"{path}/{signal}" if isinstance(group.get(signal), h5py.Dataset) else None


def find_dataset(h5file, file) -> str:
    """The frames' dataset of a file named without `::`: its NeXus default signal, else its one
    3-D/4-D uint8/uint16 dataset; TezipError listing what there is otherwise."""
    h5py = h5py_module()
    default = nexus_default(h5file)
    if default is not None:
        return default
    found: list[tuple[str, object]] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append(("/" + name, obj))

    h5file.visititems(visit)
    candidates = [(name, ds) for name, ds in found if _is_candidate(ds)]
    if len(candidates) == 1:
        return candidates[0][0]

    def listing(items):
        shown = ", ".join(_dataset_text(name, ds) for name, ds in items[:_MAX_LISTED])
        return shown + (f", and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")

    if candidates:
        raise TezipError(f"{file}: {len(candidates)} datasets could be the frames: {listing(candidates)}; name one as "
                         f"{file}{SEPARATOR}{printable(candidates[0][0])}")
    stacks = [(name, ds) for name, ds in found if ds.shape is not None and len(ds.shape) in (3, 4)]
    if len(stacks) == 1:  # the one image stack there is, of a kind TEZip cannot take: say why (uint32, ...)
        frames_mode(stacks[0][1], f"{file}{SEPARATOR}{printable(stacks[0][0])}")
    what = f" (its datasets: {listing(found)})" if found else " (it holds no datasets)"
    raise TezipError(f"{file}: no 3-D or 4-D uint8/uint16 dataset{what}; name the frames' dataset as "
                     f"{file}{SEPARATOR}/path/to/dataset")


def frames_mode(ds, where: str) -> str:
    """TEZip's mode of a dataset's frames ("L", "I;16" or "RGB"), or TezipError saying why not."""
    if ds.shape is None:
        raise TezipError(f"{where}: an empty dataset (null dataspace); a sequence is a 3-D (N, H, W) or 4-D (N, H, W, C) "
                         "dataset")
    shape, dtype = tuple(ds.shape), ds.dtype
    if len(shape) not in (3, 4):
        raise TezipError(f"{where}: {len(shape)}-D dataset ({_shape_text(shape)}); a sequence is a 3-D (N, H, W) or "
                         f"4-D (N, H, W, C) dataset")
    if dtype.names is not None or dtype.kind != "u" or dtype.itemsize not in (1, 2):
        raise TezipError(f"{where}: {dtype} dataset; only uint8 and uint16 frames are supported")
    channels = shape[3] if len(shape) == 4 else 1
    if channels == 3 and dtype.itemsize == 2:
        raise TezipError(f"{where}: 16-bit (uint16) RGB frames are not supported; only 8-bit (uint8) RGB frames are")
    if channels not in (1, 3):
        raise TezipError(f"{where}: frames of {channels} channels ({_shape_text(shape)}) are not supported; the last "
                         f"axis of a 4-D dataset is 1 (grayscale) or 3 (RGB)")
    if shape[0] == 0:
        raise TezipError(f"{where}: the dataset holds no frames ({_shape_text(shape)})")
    if shape[1] == 0 or shape[2] == 0:
        raise TezipError(f"{where}: empty frames ({_shape_text(shape)})")
    if channels == 3:
        return "RGB"
    return "L" if dtype.itemsize == 1 else GRAY16


def filter_pipeline(ds) -> list[dict]:
    """The dataset's filters in order: {"id", "name", "flags", "options"} each."""
    dcpl = ds.id.get_create_plist()
    filters = []
    for index in range(dcpl.get_nfilters()):
        code, flags, values, name = dcpl.get_filter(index)
        known = LOSSLESS_FILTERS.get(code) or _OTHER_FILTERS.get(code)
        if known is None:
            known = name.decode("utf-8", "replace").split(";")[0].strip() or f"filter {code}"
        filters.append({"id": int(code), "name": known, "flags": int(flags), "options": [int(v) for v in values]})
    return filters


def compression_name(filters: list[dict]) -> str | None:
    """What the pipeline compresses with, in words ("bitshuffle+lz4", "blosc2+zstd", "gzip"), or None."""
    for f in filters:
        code, options = f["id"], f["options"]
        if code in (2, 3):  # shuffle, fletcher32: no compression of their own
            continue
        if code == 32008 and len(options) > 4:
            codec = _BITSHUFFLE_CODECS.get(options[4])
            return f"bitshuffle+{codec}" if codec else "bitshuffle"
        if code in (32001, 32026) and len(options) > 6:
            codec = _BLOSC_CODECS.get(options[6])
            return f"{f['name']}+{codec}" if codec else f["name"]
        return f["name"]
    return None


def check_filters_available(filters: list[dict], where: str) -> None:
    h5py = h5py_module()
    for f in filters:
        if not h5py.h5z.filter_avail(f["id"]):
            raise TezipError(f"{where}: compressed with the HDF5 filter {f['name']} (id {f['id']}), which this "
                             f"installation cannot decode (is hdf5plugin installed?)")


def check_virtual_sources(ds, file: Path, where: str) -> None:
    """A virtual dataset whose source files are missing reads as fill values, silently: refused."""
    if not ds.is_virtual:
        return
    for source in ds.virtual_sources():
        name = source.file_name
        if name == ".":
            continue
        candidates = [Path(name)] if Path(name).is_absolute() else [file.parent / name, Path(name)]
        if not any(c.is_file() for c in candidates):
            raise TezipError(f"{where}: virtual dataset whose source file {printable(name)} is missing")


# --- the chunk cache --------------------------------------------------------------------------------


def frame_chunks(shape, chunks) -> int:
    """How many chunks hold one frame (index i of the first axis)."""
    return math.prod(math.ceil(s / c) for s, c in zip(shape[1:], chunks[1:]))


def chunk_cache(shape, chunks, itemsize: int, limit: int = MAX_CHUNK_CACHE) -> tuple[int, int]:
    """(slots, bytes) of a chunk cache holding one frame's chunks (at least MIN_CHUNK_CACHE, at most
    `limit`); slots: a prime about ten times the chunks it holds, as HDF5 advises."""
    count = frame_chunks(shape, chunks)
    nbytes = min(limit, max(MIN_CHUNK_CACHE, count * math.prod(chunks) * itemsize))
    slots = max(521, 10 * count)
    while any(slots % d == 0 for d in range(2, math.isqrt(slots) + 1)):
        slots += 1
    return slots, nbytes


def open_cached(h5file, path: str, ds):
    """The dataset at path opened again with a chunk cache sized for reading it frame by frame."""
    h5py = h5py_module()
    if ds.chunks is None:
        return ds
    slots, nbytes = chunk_cache(ds.shape, ds.chunks, ds.dtype.itemsize)
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(slots, nbytes, 1.0)
    return h5py.Dataset(h5py.h5d.open(h5file.id, path.encode("utf-8"), dapl))


# --- attributes as JSON -------------------------------------------------------------------------------

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _float_json(value):
    if isinstance(value, list):
        return [_float_json(v) for v in value]
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _float_value(value):
    if isinstance(value, list):
        return [_float_value(v) for v in value]
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return value


def _text(value, what: str) -> str:
    try:
        if isinstance(value, str):
            value.encode("utf-8")  # h5py hands out undecodable bytes as surrogates
            return value
        return bytes(value).decode("utf-8")
    except UnicodeError:
        raise ValueError(f"{what} holds bytes that are not UTF-8 text") from None


def _attribute_json(obj, name: str) -> dict:
    """One attribute as {"name", "dtype", "shape", "value"} (+ "encoding", "length" for strings);
    ValueError saying why it cannot be carried exactly."""
    h5py = h5py_module()
    aid = obj.attrs.get_id(name)
    dtype = aid.dtype
    shape = aid.shape  # None: an empty (null) attribute
    entry: dict = {"name": name}
    string = h5py.check_string_dtype(dtype)
    if string is not None:
        entry.update(dtype="string", encoding=string.encoding, length=string.length)
    elif dtype.names is not None:
        raise ValueError("compound type")
    elif h5py.check_enum_dtype(dtype) is not None:
        raise ValueError("enumerated type")
    elif h5py.check_ref_dtype(dtype) is not None:
        raise ValueError("reference type")
    elif h5py.check_vlen_dtype(dtype) is not None:
        raise ValueError("variable-length sequence type")
    elif dtype.kind == "c":
        raise ValueError(f"complex type {dtype}")
    elif dtype.kind in "iub" or (dtype.kind == "f" and dtype.itemsize <= 8):
        entry["dtype"] = dtype.str
    else:
        raise ValueError(f"type {dtype}")
    entry["shape"] = None if shape is None else [int(s) for s in shape]
    if shape is None:
        entry["value"] = None
        return entry
    value = obj.attrs[name]
    if string is not None:
        array = np.asarray(value, dtype=object)
        texts = [_text(v, "the text") for v in array.reshape(-1)]
        entry["value"] = texts[0] if shape == () else np.array(texts, dtype=object).reshape(shape).tolist()
        return entry
    array = np.asarray(value)
    items = array.astype(np.float64).tolist() if dtype.kind == "f" else array.tolist()
    entry["value"] = _float_json(items) if dtype.kind == "f" else items
    return entry


def attributes_json(obj, where: str) -> list[dict]:
    """Every attribute of obj (a dataset or group) as JSON-able entries; TezipError naming the first
    one that cannot be carried exactly."""
    entries = []
    for name in obj.attrs:
        try:
            entries.append(_attribute_json(obj, name))
        except (ValueError, TypeError, OSError, UnicodeError) as error:
            raise TezipError(f"{where}: attribute {printable(name)!r} ({_one_line(error)}) cannot be carried through "
                             f"the archive; remove it (or copy the dataset without it) first") from None
    return entries


def _attribute_value(entry: dict):
    """(data, dtype) for h5py's attrs.create from a checked entry; ValueError if it is malformed."""
    h5py = h5py_module()
    dtype_name, shape, value = entry.get("dtype"), entry.get("shape"), entry.get("value")
    if dtype_name == "string":
        encoding, length = entry.get("encoding"), entry.get("length")
        if encoding not in ("utf-8", "ascii"):
            raise ValueError(f"string encoding {encoding!r}")
        if length is not None and (not isinstance(length, int) or isinstance(length, bool) or not 0 < length < 1 << 20):
            raise ValueError(f"string length {length!r}")
        dtype = h5py.string_dtype(encoding, length)
    else:
        dtype = np.dtype(dtype_name) if isinstance(dtype_name, str) else None
        if dtype is None or dtype.kind not in "iubf" or dtype.itemsize > 8 or dtype.str != dtype_name:
            raise ValueError(f"type {dtype_name!r}")
    if shape is None:
        return h5py.Empty(dtype), None
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"shape {shape!r}")
    if dtype_name == "string":
        texts = np.array(value, dtype=object)
        if texts.shape != tuple(shape) or not all(isinstance(t, str) for t in texts.reshape(-1)):
            raise ValueError("value does not match its shape")
        if entry["length"] is not None:
            encoded = [t.encode("utf-8") for t in texts.reshape(-1)]
            if any(len(b) > entry["length"] for b in encoded):
                raise ValueError("text longer than its fixed length")
            return np.array(encoded, dtype=f"S{entry['length']}").reshape(shape), dtype
        return texts, dtype
    if dtype.kind == "f":
        value = _float_value(value)
    elif dtype.kind == "b":
        if not all(isinstance(v, bool) for v in np.array(value, dtype=object).reshape(-1)):
            raise ValueError("value is not boolean")
    else:
        flat = np.array(value, dtype=object).reshape(-1)
        info = np.iinfo(dtype)
        if not all(isinstance(v, int) and not isinstance(v, bool) and info.min <= v <= info.max for v in flat):
            raise ValueError(f"value does not fit {dtype}")
    data = np.array(value, dtype=dtype)
    if data.shape != tuple(shape):
        raise ValueError("value does not match its shape")
    return data, dtype


def write_attributes(obj, entries, where: str) -> None:
    """Create the attributes described by attributes_json on obj, each with its HDF5 type."""
    if not isinstance(entries, list):
        raise TezipError(f"{where}: the archive's attribute list is malformed")
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "\x00" in name:
            raise TezipError(f"{where}: an attribute of the archive has no valid name")
        try:
            data, dtype = _attribute_value(entry)
            obj.attrs.create(name, data, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as error:
            raise TezipError(f"{where}: attribute {printable(name)!r} of the archive is malformed "
                             f"({_one_line(error)})") from None


# --- describing a dataset, and writing one back ------------------------------------------------------

_LAYOUTS = {0: "compact", 1: "contiguous", 2: "chunked", 3: "virtual"}


def describe_dataset(h5file, ds, file: Path, path: str, mode: str) -> dict:
    """What a sink needs to write the dataset back (module docstring). TezipError when an attribute
    of the dataset or of a group on its path cannot be carried."""
    where = spec_text(file, path)
    filters = filter_pipeline(ds)
    groups = []
    parts = path.strip("/").split("/")[:-1]
    for depth in range(len(parts) + 1):
        group_path = "/" + "/".join(parts[:depth])
        groups.append({"path": group_path, "attrs": attributes_json(h5file[group_path], spec_text(file, group_path))})
    layout = _LAYOUTS.get(ds.id.get_create_plist().get_layout(), "contiguous")
    fill = ds.fillvalue
    return {
        "kind": "hdf5",
        "file": file.name,
        "dataset": path,
        "shape": [int(s) for s in ds.shape],
        "dtype": ds.dtype.str,
        "mode": mode,
        "layout": layout,
        "chunks": [int(c) for c in ds.chunks] if ds.chunks else None,
        "maxshape": [None if m is None else int(m) for m in ds.maxshape] if ds.chunks else None,
        "fillvalue": int(fill) if fill is not None else 0,
        "compression": compression_name(filters),
        "filters": filters,
        "attrs": attributes_json(ds, where),
        "groups": groups,
    }


def _int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def plain_path(path, what: str) -> str:
    """A dataset or group path from an archive: absolute, of plain components."""
    parts = path.split("/") if isinstance(path, str) else None
    if (parts is None or not path.startswith("/") or "\x00" in path
            or any(p in (".", "..") or not p for p in parts[1:] if path != "/")):
        raise TezipError(f"the archive's HDF5 {what} path {printable(repr(path))} is not a plain path")
    return path


def checked_layout(description: dict, mode: str, n_frames: int) -> dict:
    """The fields of an HDF5 description (from an archive) that shape the dataset, checked: shape,
    dtype, chunks, maxshape, fill value, filters. TezipError naming what is wrong."""
    where = f"the archive's HDF5 dataset {printable(str(description.get('dataset')))}"
    shape = description.get("shape")
    if not isinstance(shape, list) or len(shape) not in (3, 4) or not all(_int(s, 1, 1 << 40) for s in shape):
        raise TezipError(f"{where}: shape {printable(repr(shape))} is not a 3-D or 4-D shape")
    try:
        dtype = np.dtype(description.get("dtype"))
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "u" or dtype.itemsize != MODE_DTYPES.get(mode, np.dtype("V1")).itemsize:
        raise TezipError(f"{where}: dtype {printable(repr(description.get('dtype')))} does not hold {mode} frames")
    channels = shape[3] if len(shape) == 4 else 1
    if channels != SUPPORTED_MODES[mode] or shape[0] != n_frames:
        raise TezipError(f"{where}: shape {_shape_text(shape)} does not hold {n_frames} {mode} frames")
    chunks, maxshape = description.get("chunks"), description.get("maxshape")
    if chunks is not None:
        if not isinstance(chunks, list) or len(chunks) != len(shape) or not all(_int(c, 1, 1 << 40) for c in chunks):
            raise TezipError(f"{where}: chunk shape {printable(repr(chunks))} is malformed")
        if math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise TezipError(f"{where}: chunk shape {_shape_text(chunks)} exceeds HDF5's 4 GiB per chunk")
        if maxshape is not None and (not isinstance(maxshape, list) or len(maxshape) != len(shape) or not all(
                m is None or _int(m, s, 1 << 62) for m, s in zip(maxshape, shape))):
            raise TezipError(f"{where}: maximum shape {printable(repr(maxshape))} is malformed")
    else:
        maxshape = None
    fill = description.get("fillvalue", 0)
    if not _int(fill, 0, int(np.iinfo(dtype).max)):
        raise TezipError(f"{where}: fill value {printable(repr(fill))} is not a {dtype} value")
    filters = description.get("filters") or []
    if not isinstance(filters, list) or not all(
            isinstance(f, dict) and _int(f.get("id"), 0, 65535) and _int(f.get("flags"), 0, 0xFFFFFFFF)
            and isinstance(f.get("options"), list) and len(f["options"]) <= 256
            and all(_int(v, 0, 0xFFFFFFFF) for v in f["options"]) for f in filters):
        raise TezipError(f"{where}: filter list is malformed")
    if filters and chunks is None:
        raise TezipError(f"{where}: filters on a dataset without chunks")
    return {"shape": shape, "dtype": dtype, "chunks": chunks, "maxshape": maxshape, "fillvalue": fill,
            "filters": filters, "sink_chunks": sink_chunks(shape, chunks, dtype.itemsize)}


def creation_options(code: int, options: list[int]) -> tuple[int, ...]:
    """The parameters to create a filter with, from those a dataset stores: some filters complete the
    caller's parameters when a dataset is created (element size, chunk size, versions), and those
    parts are left for them to fill in again (the stored pipeline then comes out the same)."""
    if code == 32008:  # bitshuffle stores major, minor, element size before the caller's block size, codec, level
        return tuple(options[3:])
    if code in (2, 32000):  # shuffle (element size), lzf (versions, chunk size): all filled in
        return ()
    if code in (32001, 32026):  # blosc, blosc2: versions, type size, block size; then the caller's level, ...
        return (0, 0, 0, 0, *options[4:7])
    return tuple(options)


def sink_chunks(shape, chunks, itemsize: int) -> list[int] | None:
    """The chunk shape a sink writes: the original's, unless one frame's chunks would take more than
    MAX_SINK_FRAME_CHUNKS (chunks many frames deep): then one frame deep."""
    if chunks is None:
        return None
    if chunks[0] > 1 and frame_chunks(shape, chunks) * math.prod(chunks) * itemsize > MAX_SINK_FRAME_CHUNKS:
        return [1, *chunks[1:]]
    return list(chunks)


def create_frames_dataset(h5file, description: dict, layout: dict, where: str):
    """Create the groups on the dataset's path (with their attributes) and the dataset itself, with
    the description's dtype, shape, chunks and lossless filters (else uncompressed) and attributes.
    Returns (dataset, notes)."""
    h5py = h5py_module()
    path = plain_path(description.get("dataset"), "dataset")
    if path == "/":
        raise TezipError(f"the archive's HDF5 dataset path {path!r} is not a dataset's")
    notes = []
    groups = description.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TezipError(f"{where}: the archive's group list is malformed")
    parent = path.rsplit("/", 1)[0] or "/"
    for group in groups:
        group_path = plain_path(group.get("path"), "group")
        if not (group_path == "/" or parent == group_path or parent.startswith(group_path + "/")):
            raise TezipError(f"{where}: the archive's group {printable(group_path)} is not on the dataset's path")
    if parent != "/":
        h5file.require_group(parent)
    for group in groups:
        write_attributes(h5file[group["path"]], group.get("attrs") or [], spec_text(description.get("file"), group["path"]))

    shape, dtype, chunks = layout["shape"], layout["dtype"], layout["sink_chunks"]
    if chunks is not None and chunks != layout["chunks"]:
        notes.append(f"{where} is written with chunks {_shape_text(chunks)} (one frame deep) instead of "
                     f"{_shape_text(layout['chunks'])}: so frames can be written one by one in bounded memory")
    filters = layout["filters"] if chunks is not None else []
    dropped = [f for f in filters if f["id"] not in LOSSLESS_FILTERS or not h5py.h5z.filter_avail(f["id"])]
    if dropped:
        names = ", ".join(f"{f.get('name', 'filter')} (id {f['id']})" for f in dropped)
        notes.append(f"{where} is written uncompressed: its filter {printable(names)} is not one TEZip writes "
                     f"back (lossless filters it does: {', '.join(sorted(set(LOSSLESS_FILTERS.values())))})")
        filters = []
    maxshape = layout["maxshape"] if chunks is not None else None
    unlimited = h5py.h5s.UNLIMITED
    space = h5py.h5s.create_simple(tuple(shape), tuple(
        unlimited if m is None else m for m in maxshape) if maxshape is not None else tuple(shape))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)  # no creation time: the same frames give the same file
    if chunks is not None:
        dcpl.set_chunk(tuple(chunks))
        for f in filters:
            dcpl.set_filter(f["id"], f["flags"], creation_options(f["id"], f["options"]))
    if layout["fillvalue"]:
        dcpl.set_fill_value(np.array(layout["fillvalue"], dtype=dtype))
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    try:
        dsid = h5py.h5d.create(h5file.id, path.encode("utf-8"), h5py.h5t.py_create(dtype), space, dcpl=dcpl, lcpl=lcpl)
    except (ValueError, RuntimeError, KeyError) as error:
        raise TezipError(f"{where}: cannot create the dataset: {_one_line(error)}") from None
    ds = h5py.Dataset(dsid)
    write_attributes(ds, description.get("attrs") or [], where)
    return ds, notes



# --- the file a sink writes through ---------------------------------------------------------------------


class GuardedFile:
    """The file object h5py writes an HDF5 file through (its "fileobj" driver), on a descriptor of
    ours, that never reports a failure to HDF5.

    HDF5 cannot close a file whose closing failed to write, and h5py then crashes the process when
    the file is closed again or garbage-collected (h5py issues 914, 1775, 2160). So a failed write
    (a full disk, an I/O error) or a Ctrl-C arriving while HDF5 calls back into Python is recorded,
    not raised: that write and all later ones are kept in memory instead (an overlay that reads see,
    so HDF5 stays consistent and closes cleanly; it holds at most what HDF5 flushes from its caches,
    since the sink stops at the first failure), and check() raises the recorded error once h5py has
    returned. Reads and writes go straight to the descriptor (pread/pwrite), unbuffered, so nothing
    is ever lost in a buffer."""

    def __init__(self, fd: int):
        self._fd, self._pos = fd, 0
        self._size = os.fstat(fd).st_size
        self.error: BaseException | None = None
        self._overlay: list[tuple[int, bytes]] = []

    def check(self) -> None:
        """Raise the first failure recorded since the file was opened."""
        if self.error is not None:
            raise self.error

    def _record(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error

    def seek(self, pos, whence=0):
        self._pos = {0: pos, 1: self._pos + pos, 2: self._size + pos}[whence]
        return self._pos

    def tell(self):
        return self._pos

    def write(self, data):
        view = memoryview(data).cast("B")
        pos, done = self._pos, 0
        try:
            while self.error is None and done < len(view):
                done += os.pwrite(self._fd, view[done:], pos + done)
        except BaseException as error:  # noqa: BLE001 - recorded, raised by check()
            self._record(error)
        if done < len(view):
            self._overlay.append((pos + done, bytes(view[done:])))
        self._pos = pos + len(view)
        self._size = max(self._size, self._pos)
        return len(view)

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        size = min(len(view), max(0, self._size - self._pos))
        got = b""
        try:
            got = os.pread(self._fd, size, self._pos)
        except BaseException as error:  # noqa: BLE001 - recorded, raised by check()
            self._record(error)
        view[:len(got)] = got
        view[len(got):size] = bytes(size - len(got))
        for start, data in self._overlay:
            low, high = max(start, self._pos), min(start + len(data), self._pos + size)
            if low < high:
                view[low - self._pos:high - self._pos] = data[low - start:high - start]
        self._pos += size
        return size

    def read(self, size=-1):
        size = max(0, self._size - self._pos) if size is None or size < 0 else size
        buffer = bytearray(size)
        return bytes(buffer[:self.readinto(buffer)])

    def truncate(self, size=None):
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except BaseException as error:  # noqa: BLE001 - recorded, raised by check()
                self._record(error)
        self._size = size
        self._overlay = [(start, data[:max(0, size - start)]) for start, data in self._overlay if start < size]
        return size

    def flush(self):
        pass
