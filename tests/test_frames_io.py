"""frames.source / frames.sink: sequences read lazily (folders, TIFF stacks, HDF5/NeXus datasets) and
written back frame by frame, published all together or not at all (issue 16)."""

import errno
import json
import os
import tracemalloc

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile
from PIL import Image

from base import publish
from base.errors import TezipError
from base.publish import OutputFolder
from conftest import detector_frames, moving_squares, write_frames
from frames import hdf5 as frames_hdf5
from frames.read import read_sequence
from frames.sink import open_sink
from frames.source import open_source
from frames.write import write_tiff_stack


def raises_one_line(*parts):
    """pytest.raises(TezipError) whose message is one line holding every part."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(TezipError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            assert "\n" not in message, message
            for part in parts:
                assert part in message, f"{part!r} not in {message!r}"
            return handled

    return Check()


def as_json(description):
    """What an archive would give back: the description through JSON (strict: no NaN)."""
    return json.loads(json.dumps(description, allow_nan=False))


def gray16(n=12, h=20, w=28, seed=0):
    return detector_frames(n, h, w, seed=seed)[..., 0]


def nexus_file(path, frames, **filters):
    """A NeXus-like file: /entry/data/data (the declared default signal) with attributes, plus a
    second 3-D uint16 dataset that would otherwise make the choice ambiguous."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = np.bytes_("NXdata")
        data.attrs["signal"] = "data"
        ds = data.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]),
                                 maxshape=(None, *frames.shape[1:]), **filters)
        ds.attrs["units"] = "counts"
        ds.attrs["interpretation"] = np.bytes_("image")
        ds.attrs["count_time"] = np.float32(0.25)
        ds.attrs["thresholds"] = np.array([1.5, np.nan, np.inf], dtype=np.float64)
        ds.attrs["roi"] = np.array([[0, 1], [2, 3]], dtype=">i4")
        ds.attrs["saturated"] = np.bool_(True)
        ds.attrs["serial"] = np.uint64(2**63 + 5)
        ds.attrs["axes"] = np.array([".", "y", "x"], dtype=h5py.string_dtype())
        ds.attrs["empty"] = h5py.Empty("f4")
        f.create_dataset("entry/instrument/dark", data=frames[:2])
    return path


def write_all(out, description, mode, names, frames, order=None):
    with open_sink(out, as_json(description), mode, names) as sink:
        for i in (order if order is not None else range(len(names))):
            sink.write(i, frames[i])
    return sink


def out_of_order(n, seed=1):
    return list(np.random.default_rng(seed).permutation(n))


# --- HDF5 sources --------------------------------------------------------------------------------------


def test_nexus_default_signal_with_filters_and_attributes(tmp_path):
    frames = gray16()
    path = nexus_file(tmp_path / "run.nxs", frames, **hdf5plugin.Bitshuffle(cname="lz4"))
    with open_source(path) as source:  # no "::": the NeXus default signal, though two datasets would fit
        assert (source.kind, source.n_frames, source.height, source.width, source.channels) == ("hdf5", 12, 20, 28, 1)
        assert source.mode == "I;16" and source.dtype == np.uint16
        assert source.names[0] == "run_0000.tif" and len(set(source.names)) == 12
        assert "/entry/data/data" in source.order
        np.testing.assert_array_equal(source.read(7)[..., 0], frames[7])
        np.testing.assert_array_equal(source.read_range(3, 9)[..., 0], frames[3:9])
        assert [f[..., 0].tolist() for f in source] == frames.tolist()
        description = source.description()
    assert as_json(description) == json.loads(json.dumps(description, allow_nan=False))
    assert description["file"] == "run.nxs" and description["dataset"] == "/entry/data/data"
    assert description["shape"] == [12, 20, 28] and description["dtype"] == "<u2"
    assert description["chunks"] == [1, 20, 28] and description["maxshape"] == [None, 20, 28]
    assert description["compression"] == "bitshuffle+lz4"
    attrs = {a["name"]: a for a in description["attrs"]}
    assert attrs["units"]["value"] == "counts" and attrs["interpretation"]["length"] == 5
    assert attrs["thresholds"]["value"] == [1.5, "nan", "inf"]
    assert attrs["roi"] == {"name": "roi", "dtype": ">i4", "shape": [2, 2], "value": [[0, 1], [2, 3]]}
    assert attrs["serial"]["value"] == 2**63 + 5 and attrs["empty"]["shape"] is None
    groups = {g["path"]: g for g in description["groups"]}
    assert list(groups) == ["/", "/entry", "/entry/data"]


@pytest.mark.parametrize("spec", ["run.h5::/entry/data/data", "run.h5::entry/data/data", "run.dat::/entry/data/data",
                                  # `.` components (HDF5 reads them as the group itself): recorded plain, or -u
                                  # refused the archive (QA)
                                  "run.h5::/entry/./data/data", "run.h5::./entry/data/data", "run.h5::/entry/data/data/."])
def test_dataset_named_explicitly(tmp_path, spec):
    frames = gray16(n=4)
    nexus_file(tmp_path / spec.split("::")[0], frames)
    with open_source(tmp_path / spec) as source:
        assert source.description()["dataset"] == "/entry/data/data"
        np.testing.assert_array_equal(source.read_range(0, 4)[..., 0], frames)


def test_rgb_blosc2_zstd_and_one_channel_4d(tmp_path):
    rgb = moving_squares(6, 16, 24, 3, seed=3)
    gray = moving_squares(6, 16, 24, 1, seed=4)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("rgb", data=rgb, chunks=(2, 16, 24, 3),
                         **hdf5plugin.Blosc2(cname="zstd", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("gray", data=gray, compression="gzip")
    with open_source(tmp_path / "a.h5") as source:
        assert source.mode == "RGB" and source.description()["compression"] == "blosc2+zstd"
        np.testing.assert_array_equal(source.read_range(0, 6), rgb)
        np.testing.assert_array_equal(source.read(5), rgb[5])
    with open_source(tmp_path / "b.h5") as source:
        assert source.mode == "L"
        np.testing.assert_array_equal(source.read_range(0, 6), gray)


def test_big_endian_dataset_reads_values(tmp_path):
    frames = gray16(n=3)
    with h5py.File(tmp_path / "be.h5", "w") as f:
        f.create_dataset("d", data=frames.astype(">u2"))
    with open_source(tmp_path / "be.h5") as source:
        assert source.dtype == np.dtype("=u2") and source.description()["dtype"] == ">u2"
        np.testing.assert_array_equal(source.read(2)[..., 0], frames[2])


def _bytes_read():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io")
@pytest.mark.parametrize("filters", [{}, hdf5plugin.Bitshuffle(cname="lz4")], ids=["raw", "bitshuffle"])
def test_reading_one_frame_touches_only_that_frame(tmp_path, filters):
    """400 frames: reading frame 399 reads (from disk and into memory) about one frame, not the run."""
    n, h, w = 400, 64, 64
    rng = np.random.default_rng(5)
    with h5py.File(tmp_path / "long.h5", "w") as f:
        ds = f.create_dataset("d", shape=(n, h, w), dtype=np.uint16, chunks=(1, h, w), **filters)
        for i in range(n):
            ds[i] = rng.integers(0, 65535, (h, w), dtype=np.uint16)
        last = ds[n - 1]
    dataset_bytes = n * h * w * 2
    with open_source(tmp_path / "long.h5") as source:
        before = _bytes_read()
        tracemalloc.start()
        frame = source.read(n - 1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        read = _bytes_read() - before
    np.testing.assert_array_equal(frame[..., 0], last)
    assert read < dataset_bytes / 40, read  # one frame is 1/400 of it; metadata adds a little
    assert peak < 3 * h * w * 2, peak


def test_chunks_several_frames_deep_read_once_per_chunk(tmp_path):
    frames = gray16(n=10)
    with h5py.File(tmp_path / "deep.h5", "w") as f:
        f.create_dataset("d", data=frames, chunks=(4, 10, 14), **hdf5plugin.Zstd())
    with open_source(tmp_path / "deep.h5") as source:
        np.testing.assert_array_equal(np.stack([source.read(i)[..., 0] for i in range(10)]), frames)
        slots, nbytes = frames_hdf5.chunk_cache((10, 20, 28), (4, 10, 14), 2)
    assert nbytes >= 4 * 4 * 10 * 14 * 2 and all(slots % d for d in range(2, 30))


def test_virtual_dataset_with_a_missing_source_is_refused(tmp_path):
    frames = gray16(n=3)
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_dataset("d", data=frames)
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=np.uint16)
    layout[:] = h5py.VirtualSource(str(tmp_path / "src.h5"), "d", shape=frames.shape)
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout)
    with open_source(tmp_path / "vds.h5") as source:
        np.testing.assert_array_equal(source.read(1)[..., 0], frames[1])
    (tmp_path / "src.h5").unlink()
    with raises_one_line("vds.h5::/v", "src.h5", "missing"):
        open_source(tmp_path / "vds.h5")


def _bad(path, kind):
    with h5py.File(path, "w") as f:
        if kind == "2-D":
            f.create_dataset("d", data=np.zeros((8, 8), np.uint16))
        elif kind == "float":
            f.create_dataset("d", data=np.zeros((3, 8, 8), np.float32))
        elif kind == "rgb16":
            f.create_dataset("d", data=np.zeros((3, 8, 8, 3), np.uint16))
        elif kind == "channels":
            f.create_dataset("d", data=np.zeros((3, 8, 8, 2), np.uint8))
        elif kind == "empty":
            f["d"] = h5py.Empty("u2")
            f["note"] = h5py.Empty("f8")
        elif kind == "no-frames":
            f.create_dataset("d", shape=(0, 8, 8), dtype=np.uint8, maxshape=(None, 8, 8))
        elif kind == "compound-attr":
            f.create_dataset("d", data=np.zeros((3, 8, 8), np.uint8)).attrs["cal"] = np.zeros(
                2, dtype=[("a", "i4"), ("b", "f8")])
        elif kind == "complex-attr":
            f.create_dataset("d", data=np.zeros((3, 8, 8), np.uint8)).attrs["z"] = 1 + 2j
        elif kind == "group-attr":
            f.create_dataset("g/d", data=np.zeros((3, 8, 8), np.uint8))
            f["g"].attrs["ref"] = f["g/d"].ref


@pytest.mark.parametrize("kind, parts", [
    ("2-D", ["bad.h5::/d", "2-D dataset (8x8)", "3-D (N, H, W) or 4-D"]),
    ("float", ["bad.h5::/d", "float32 dataset", "only uint8 and uint16"]),
    ("rgb16", ["bad.h5::/d", "16-bit (uint16) RGB frames are not supported"]),
    ("channels", ["bad.h5::/d", "frames of 2 channels"]),
    ("no-frames", ["bad.h5::/d", "holds no frames"]),
    ("empty", ["bad.h5::/d", "an empty dataset (null dataspace)"]),
    ("compound-attr", ["bad.h5::/d", "attribute 'cal' (compound type) cannot be carried"]),
    ("complex-attr", ["bad.h5::/d", "attribute 'z' (complex type complex128) cannot be carried"]),
    ("group-attr", ["bad.h5::/g", "attribute 'ref' (reference type) cannot be carried"]),
])
def test_bad_datasets_refused_in_one_line(tmp_path, kind, parts):
    _bad(tmp_path / "bad.h5", kind)
    with raises_one_line(*parts):
        open_source(f"{tmp_path / 'bad.h5'}::/{'g/d' if kind == 'group-attr' else 'd'}")


def test_null_dataspace_datasets_are_not_frames(tmp_path):
    """An empty (null dataspace) dataset beside the frames is passed over; alone it is listed as
    such (it was "unreadable HDF5 file: object of type 'NoneType' has no len()", QA)."""
    frames = gray16(n=3)
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f.create_dataset("entry/data/data", data=frames)
        f["entry/note"] = h5py.Empty("f8")
    with open_source(tmp_path / "run.h5") as source:
        np.testing.assert_array_equal(source.read_range(0, 3)[..., 0], frames)
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f["x"] = h5py.Empty("u2")
    with raises_one_line("none.h5", "no 3-D or 4-D uint8/uint16 dataset", "/x (empty uint16)"):
        open_source(tmp_path / "none.h5")


def test_bad_specs_refused_in_one_line(tmp_path):
    frames = gray16(n=3)
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/frames", data=frames)
        f.create_dataset("b/frames", data=frames.astype(np.uint8))
        f.create_dataset("mask", data=np.zeros((20, 28), np.uint8))
    with raises_one_line("two.h5", "2 datasets could be the frames", "/a/frames (3x20x28 uint16)",
                         "/b/frames (3x20x28 uint8)", "two.h5::/a/frames"):
        open_source(path)
    with raises_one_line("two.h5::/a/nope", "no such dataset"):
        open_source(f"{path}::/a/nope")
    with raises_one_line("two.h5::/a", "is a group, not a dataset"):
        open_source(f"{path}::/a")
    with raises_one_line("two.h5::/mask", "2-D dataset"):
        open_source(f"{path}::/mask")
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f.create_dataset("mask", data=np.zeros((20, 28), np.uint8))
    with raises_one_line("none.h5", "no 3-D or 4-D uint8/uint16 dataset", "/mask (20x28 uint8)", "::/path/to/dataset"):
        open_source(tmp_path / "none.h5")
    with h5py.File(tmp_path / "u32.h5", "w") as f:  # a detector's uint32 stack, the only one: why, not "name it"
        f.create_dataset("entry/data/data", data=np.zeros((3, 20, 28), np.uint32))
    with raises_one_line("u32.h5::/entry/data/data", "uint32 dataset; only uint8 and uint16 frames are supported"):
        open_source(tmp_path / "u32.h5")
    with raises_one_line("missing.h5", "file not found"):
        open_source(tmp_path / "missing.h5")
    with raises_one_line("missing.h5", "file not found"):
        open_source(f"{tmp_path / 'missing.h5'}::/d")
    (tmp_path / "text.h5").write_text("not HDF5")
    with raises_one_line("text.h5", "not an HDF5 file"):
        open_source(tmp_path / "text.h5")
    os.mkfifo(tmp_path / "fifo.h5")
    with raises_one_line("fifo.h5", "FIFO"):
        open_source(tmp_path / "fifo.h5")


def test_a_filter_this_installation_cannot_decode_is_refused(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "z.h5", "w") as f:
        f.create_dataset("d", data=gray16(n=2), chunks=(1, 20, 28), **hdf5plugin.Zstd())
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda code: code != hdf5plugin.ZSTD_ID)
    with raises_one_line("z.h5::/d", "HDF5 filter zstd (id 32015)", "cannot decode"):
        open_source(tmp_path / "z.h5")


def test_read_sequence_reads_hdf5(tmp_path):
    frames = gray16(n=5)
    nexus_file(tmp_path / "run.h5", frames)
    sequence = read_sequence(f"{tmp_path / 'run.h5'}::/entry/data/data")
    np.testing.assert_array_equal(sequence.frames[..., 0], frames)
    assert sequence.mode == "I;16" and sequence.stack is None and sequence.description["kind"] == "hdf5"


# --- folders and TIFF stacks ------------------------------------------------------------------------------


def test_folder_source_reads_one_file_per_frame(tmp_path, monkeypatch):
    frames = moving_squares(5, 12, 16, 3, seed=8)
    write_frames(tmp_path / "f", frames, ext=".png")
    import frames.source as source_module

    read = []
    real = source_module.read_image
    monkeypatch.setattr(source_module, "read_image", lambda path: read.append(path.name) or real(path))
    with open_source(tmp_path / "f") as source:
        assert read == [] and source.kind == "folder" and source.names[0] == "frame_0000.png"
        np.testing.assert_array_equal(source.read(3), frames[3])
        assert read == ["frame_0003.png"]
        assert source.description() == {"kind": "folder", "mode": "RGB", "n_frames": 5, "height": 12, "width": 16,
                                         "channels": 3}


def test_folder_source_checks_every_header_up_front(tmp_path):
    write_frames(tmp_path / "f", moving_squares(3, 12, 16, 3), ext=".png")
    Image.fromarray(moving_squares(1, 12, 18, 3)[0]).save(tmp_path / "f" / "frame_0003.png")
    with raises_one_line("frame_0003.png", "size 18x12 differs"):
        open_source(tmp_path / "f")


@pytest.mark.parametrize("compression", [None, "lzw", "zlib", "zstd"])
def test_tiff_stack_source_lazy_and_exact(tmp_path, compression):
    frames = gray16(n=6)
    tifffile.imwrite(tmp_path / "s.tif", frames, photometric="minisblack", compression=compression)
    with open_source(tmp_path / "s.tif") as source:
        assert source.kind == "tiff" and source.names[0] == "s_0000.tif" and source.order.startswith("by page")
        assert source.description()["stack"] == "s.tif"
        np.testing.assert_array_equal(source.read(4)[..., 0], frames[4])
        np.testing.assert_array_equal(source.read_range(0, 6)[..., 0], frames)


def test_truncated_tiff_stack_is_refused_up_front(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", gray16(n=5), photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        cut = tif.pages[-1].dataoffsets[0] + 10
    (tmp_path / "cut.tif").write_bytes((tmp_path / "s.tif").read_bytes()[:cut])
    with raises_one_line("cut.tif: "):
        open_source(tmp_path / "cut.tif")


# --- sinks: round trips -------------------------------------------------------------------------------------


HDF5_CASES = {
    "bitshuffle-lz4": lambda: (gray16(), hdf5plugin.Bitshuffle(cname="lz4"), (1, 20, 28)),
    "blosc2-zstd-rgb": lambda: (moving_squares(12, 16, 24, 3, seed=2), hdf5plugin.Blosc2(cname="zstd"), (3, 16, 24, 3)),
    "gzip-shuffle-fill": lambda: (gray16(), dict(compression="gzip", shuffle=True, fletcher32=True, fillvalue=7),
                                  (2, 10, 14)),
    "lz4-1ch": lambda: (moving_squares(12, 16, 24, 1, seed=2), hdf5plugin.LZ4(), (1, 16, 24, 1)),
    "contiguous": lambda: (gray16(), {}, None),
}


def _pipeline(ds):
    dcpl = ds.id.get_create_plist()
    return [dcpl.get_filter(i)[:3] for i in range(dcpl.get_nfilters())]


@pytest.mark.parametrize("case", list(HDF5_CASES))
def test_hdf5_sink_round_trip_out_of_order(tmp_path, case):
    frames, filters, chunks = HDF5_CASES[case]()
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=chunks, **filters)
        f["entry/data/data"].attrs["note"] = "kept"
        f["entry"].attrs["NX_class"] = "NXentry"
    with open_source(tmp_path / "in.h5") as source:
        all_frames = source.read_range(0, source.n_frames)
        description = source.description()
        with OutputFolder(tmp_path / "out") as out:
            sink = write_all(out, description, source.mode, source.names, all_frames, out_of_order(source.n_frames))
    assert sink.notes == [] and sorted(os.listdir(tmp_path / "out")) == ["in.h5"]
    with open_source(tmp_path / "out" / "in.h5") as again:
        assert again.description() == description
        np.testing.assert_array_equal(again.read_range(0, again.n_frames), all_frames)
    with h5py.File(tmp_path / "in.h5") as a, h5py.File(tmp_path / "out" / "in.h5") as b:
        da, db = a["entry/data/data"], b["entry/data/data"]
        assert (da.dtype, da.shape, da.chunks, da.fillvalue, _pipeline(da)) == (
            db.dtype, db.shape, db.chunks, db.fillvalue, _pipeline(db))
        np.testing.assert_array_equal(da[()], db[()])
        assert dict(b["entry"].attrs) == {"NX_class": "NXentry"}


def test_nexus_attributes_round_trip_with_their_types(tmp_path):
    frames = gray16()
    nexus_file(tmp_path / "run.nxs", frames, **hdf5plugin.Bitshuffle(cname="lz4"))
    with open_source(tmp_path / "run.nxs") as source:
        description = source.description()
        with OutputFolder(tmp_path / "out") as out:
            write_all(out, description, source.mode, source.names, source.read_range(0, 12), out_of_order(12))
    with h5py.File(tmp_path / "run.nxs") as a, h5py.File(tmp_path / "out" / "run.nxs") as b:
        for path in ("/", "/entry", "/entry/data", "/entry/data/data"):
            assert sorted(a[path].attrs) == sorted(b[path].attrs), path
            for name in a[path].attrs:
                ia, ib = a[path].attrs.get_id(name), b[path].attrs.get_id(name)
                assert ia.dtype == ib.dtype and ia.shape == ib.shape, (path, name)
                assert ia.get_type().get_cset() == ib.get_type().get_cset() if ia.get_type().get_class() == 3 else True
                va, vb = a[path].attrs[name], b[path].attrs[name]
                if isinstance(va, h5py.Empty):
                    assert isinstance(vb, h5py.Empty)
                else:
                    np.testing.assert_array_equal(va, vb)
        assert b["/entry/data/data"].maxshape == (None, 20, 28)
    with open_source(tmp_path / "out" / "run.nxs") as again:  # the default signal is declared again
        assert again.description() == description


def test_hdf5_sink_writes_an_unknown_filter_uncompressed_with_a_note(tmp_path):
    frames = gray16(n=4) // 64  # (HDF5's scale-offset filter fails on values spanning all 16 bits)
    with h5py.File(tmp_path / "so.h5", "w") as f:
        f.create_dataset("d", data=frames, chunks=(1, 20, 28), scaleoffset=0)
    with open_source(tmp_path / "so.h5") as source:
        description = source.description()
        assert description["compression"] == "scaleoffset"
        with OutputFolder(tmp_path / "out") as out:
            sink = write_all(out, description, source.mode, source.names, source.read_range(0, 4))
    assert len(sink.notes) == 1 and "written uncompressed" in sink.notes[0] and "scaleoffset" in sink.notes[0]
    with h5py.File(tmp_path / "out" / "so.h5") as f:
        assert _pipeline(f["d"]) == [] and f["d"].chunks == (1, 20, 28)
        np.testing.assert_array_equal(f["d"][()], frames)


def test_hdf5_sink_cuts_chunks_too_deep_to_one_frame(tmp_path, monkeypatch):
    frames = gray16()
    with h5py.File(tmp_path / "deep.h5", "w") as f:
        f.create_dataset("d", data=frames, chunks=(6, 20, 28), **hdf5plugin.Zstd())
    monkeypatch.setattr(frames_hdf5, "MAX_SINK_FRAME_CHUNKS", 2 * 20 * 28 * 2)
    with open_source(tmp_path / "deep.h5") as source:
        with OutputFolder(tmp_path / "out") as out:
            sink = write_all(out, source.description(), source.mode, source.names, source.read_range(0, 12),
                             out_of_order(12))
    assert "chunks 1x20x28 (one frame deep) instead of 6x20x28" in sink.notes[0]
    with h5py.File(tmp_path / "out" / "deep.h5") as f:
        assert f["d"].chunks == (1, 20, 28) and _pipeline(f["d"])[0][0] == hdf5plugin.ZSTD_ID
        np.testing.assert_array_equal(f["d"][()], frames)


@pytest.mark.parametrize("mode", ["I;16", "RGB", "L"])
def test_tiff_sink_is_write_tiff_stack_byte_for_byte(tmp_path, mode):
    frames = {"I;16": gray16()[..., None], "RGB": moving_squares(12, 20, 28, 3, seed=6),
              "L": moving_squares(12, 20, 28, 1, seed=6)}[mode]
    write_tiff_stack(tmp_path / "ref.tif", frames, mode)
    with OutputFolder(tmp_path / "out") as out:
        description = {"kind": "tiff", "stack": "ref.tif", "height": 20, "width": 28}
        write_all(out, description, mode, [f"ref_{i:04d}.tif" for i in range(12)], frames, out_of_order(12))
    assert (tmp_path / "out" / "ref.tif").read_bytes() == (tmp_path / "ref.tif").read_bytes()
    with open_source(tmp_path / "out" / "ref.tif") as again:
        assert again.n_frames == 12
        np.testing.assert_array_equal(again.read_range(0, 12), frames)


@pytest.mark.parametrize("threads", [1, 3])
def test_folder_sink_round_trip_out_of_order(tmp_path, monkeypatch, threads):
    """Files are written as frames arrive (with encoding threads at most `threads` frames behind),
    published only by close()."""
    monkeypatch.setattr("base.threads._threads", threads)
    frames = moving_squares(6, 12, 16, 3, seed=9)
    names = [f"f{i}.{'jpg' if i == 2 else 'png'}" for i in range(6)]
    with OutputFolder(tmp_path / "out") as out:
        with open_sink(out, {"kind": "folder"}, "RGB", names) as sink:
            for i in out_of_order(6):
                sink.write(i, frames[i])
                visible = [n for n in os.listdir(tmp_path / "out") if not publish.is_partial(n)]
                assert visible == []  # nothing under a final name before close()
            written = len([n for n in os.listdir(tmp_path / "out") if n != publish.LOCK_NAME])
            assert (written == 6) if threads == 1 else (6 - threads <= written <= 6)
    assert sink.files[2] == "f2.png" and "f2.jpg is written as f2.png" in sink.notes[0]
    with open_source(tmp_path / "out") as again:
        assert again.names == sink.files
        np.testing.assert_array_equal(again.read_range(0, 6), frames)


# --- sinks: failures leave nothing behind -----------------------------------------------------------------


def _sink_case(kind, tmp_path):
    """(description, mode, names, frames) of a small sequence for each kind of sink."""
    frames = gray16(n=6)[..., None]
    if kind == "folder":
        return {"kind": "folder"}, "I;16", [f"f{i}.png" for i in range(6)], frames
    if kind == "tiff":
        return {"kind": "tiff", "stack": "s.tif", "height": 20, "width": 28}, "I;16", [f"s_{i}.tif" for i in range(6)], frames
    nexus_file(tmp_path / "run.h5", frames[..., 0], **hdf5plugin.Bitshuffle(cname="lz4"))
    with open_source(tmp_path / "run.h5") as source:
        return source.description(), "I;16", source.names, frames


def _left(folder):
    return sorted(n for n in os.listdir(folder) if n != publish.LOCK_NAME)


@pytest.mark.parametrize("kind", ["folder", "tiff", "hdf5"])
@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failure_midway_leaves_nothing(tmp_path, kind, failure):
    description, mode, names, frames = _sink_case(kind, tmp_path)
    (tmp_path / "out").mkdir()
    with OutputFolder(tmp_path / "out") as out:
        with pytest.raises(failure):
            with open_sink(out, as_json(description), mode, names) as sink:
                for i in range(3):
                    sink.write(i, frames[i])
                raise failure()
        assert _left(tmp_path / "out") == []


@pytest.mark.parametrize("kind", ["folder", "tiff", "hdf5"])
def test_a_frame_never_written_publishes_nothing(tmp_path, kind):
    description, mode, names, frames = _sink_case(kind, tmp_path)
    with OutputFolder(tmp_path / "out", overwrite=True) as out:
        sink = open_sink(out, as_json(description), mode, names)
        for i in (0, 1, 2, 4, 5):
            sink.write(i, frames[i])
        with pytest.raises(ValueError, match="frame 3 was never written"):
            sink.close()
        assert _left(tmp_path / "out") == []


class _DiskFull:
    """A file object that fails with ENOSPC once `limit` bytes have been written to it."""

    def __init__(self, f, limit):
        self._f, self._limit, self._written = f, limit, 0

    def write(self, data):
        self._written += len(memoryview(data).cast("B"))
        if self._written > self._limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("kind", ["folder", "tiff", "hdf5"])
def test_disk_full_midway_is_one_line_and_leaves_nothing(tmp_path, kind, monkeypatch):
    """The disk fills up after three frames: one line naming the problem, nothing left behind (and
    h5py, which crashes when HDF5 cannot close a file, never sees the failure: frames.hdf5.GuardedFile)."""
    description, mode, names, frames = _sink_case(kind, tmp_path)
    budget = 3 * 20 * 28 * 2
    if kind == "hdf5":  # the HDF5 sink writes with os.pwrite on its descriptor
        real_pwrite = os.pwrite

        def pwrite(fd, data, offset):
            nonlocal budget
            budget -= len(memoryview(data).cast("B"))
            if budget < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
    else:
        real_new_file, made = OutputFolder.new_file, []

        def new_file(self, track):  # folder: the 4th frame's file fails; a stack: after 3 frames' bytes
            made.append(track)
            limit = (10**9 if len(made) < 4 else 0) if kind == "folder" else budget
            return _DiskFull(real_new_file(self, track), limit)

        monkeypatch.setattr(OutputFolder, "new_file", new_file)
    with OutputFolder(tmp_path / "out", overwrite=True) as out:
        with raises_one_line("No space left on device", "out"):
            with open_sink(out, as_json(description), mode, names) as sink:
                for i in range(6):
                    sink.write(i, frames[i])
        assert _left(tmp_path / "out") == []


def test_ctrl_c_inside_h5py_is_a_keyboard_interrupt_and_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C arriving while HDF5 calls back into Python (the sink's file) is not lost inside h5py,
    nor turned into a write error, nor a crash: the sink stops with KeyboardInterrupt, nothing left."""
    description, mode, names, frames = _sink_case("hdf5", tmp_path)
    real_pwrite, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with OutputFolder(tmp_path / "out", overwrite=True) as out:
        with pytest.raises(KeyboardInterrupt):
            with open_sink(out, as_json(description), mode, names) as sink:
                for i in range(6):
                    sink.write(i, frames[i])
        assert _left(tmp_path / "out") == []


def test_publish_written_all_or_nothing(tmp_path, monkeypatch):
    """OutputFolder.publish_written: temporaries written earlier, renamed together; a failing rename
    puts everything back and removes every temporary."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "b.png").write_bytes(b"old b")
    with OutputFolder(folder, overwrite=True) as out:
        temps = []
        for content in (b"new a", b"new b"):
            with out.new_file(temps) as f:
                f.write(content)
        real_rename, calls = os.rename, []

        def rename(src, dst, **kw):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError(errno.EIO, "Input/output error")
            return real_rename(src, dst, **kw)

        monkeypatch.setattr(publish.os, "rename", rename)
        with raises_one_line("Input/output error"):
            out.publish_written(temps, ["a.png", "b.png"])
        monkeypatch.setattr(publish.os, "rename", real_rename)
        assert _left(folder) == ["b.png"] and (folder / "b.png").read_bytes() == b"old b"
        temps = []
        for content in (b"new a", b"new b"):
            with out.new_file(temps) as f:
                f.write(content)
        out.publish_written(temps, ["a.png", "b.png"])
        assert _left(folder) == ["a.png", "b.png"] and (folder / "b.png").read_bytes() == b"new b"


# --- sinks: a description from an archive is checked -------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"file": "../escape.h5"}, "is not a plain file name"),
    ({"file": "x.tezip-partial"}, "is not a plain file name"),
    ({"dataset": "/entry/../data"}, "is not a plain path"),
    ({"shape": [5, 20, 28]}, "does not hold 12 I;16 frames"),
    ({"dtype": "<f4"}, "does not hold I;16 frames"),
    ({"chunks": [1, 0, 28]}, "chunk shape"),
    ({"filters": [{"id": 32008, "flags": 0, "options": [-1]}]}, "filter list is malformed"),
    ({"attrs": [{"name": "x", "dtype": "<i2", "shape": [], "value": 70000}]}, "attribute 'x' of the archive is malformed"),
    ({"attrs": [{"name": "x", "dtype": "|O", "shape": [], "value": 1}]}, "attribute 'x' of the archive is malformed"),
    ({"groups": [{"path": "/elsewhere", "attrs": []}]}, "not on the dataset's path"),
    ({"kind": "zip"}, "output kind 'zip'"),
])
def test_hdf5_sink_refuses_a_bad_description(tmp_path, change, message):
    frames = gray16()
    nexus_file(tmp_path / "run.h5", frames)
    with open_source(tmp_path / "run.h5") as source:
        description = {**as_json(source.description()), **change}
        names = source.names
    with OutputFolder(tmp_path / "out") as out:
        with raises_one_line(message):
            open_sink(out, description, "I;16", names)
        assert _left(tmp_path / "out") == []


def test_tiff_and_folder_sinks_refuse_bad_names(tmp_path):
    with OutputFolder(tmp_path / "out") as out:
        with raises_one_line("is not a plain file name"):
            open_sink(out, {"kind": "tiff", "stack": "../s.tif", "height": 2, "width": 2}, "L", ["a.tif"])
        with raises_one_line("not a TIFF file name"):
            open_sink(out, {"kind": "tiff", "stack": "s.png", "height": 2, "width": 2}, "L", ["a.tif"])
        with raises_one_line("is not a plain file name"):
            open_sink(out, {"kind": "folder"}, "L", ["a.png", "sub/b.png"])
        assert _left(tmp_path / "out") == []


def test_sink_checks_each_frame(tmp_path):
    with OutputFolder(tmp_path / "out") as out:
        with open_sink(out, {"kind": "folder"}, "L", ["a.png", "b.png"]) as sink:
            with pytest.raises(ValueError, match="expected a uint8"):
                sink.write(0, np.zeros((4, 4, 1), np.uint16))
            sink.write(0, np.zeros((4, 4, 1), np.uint8))
            with pytest.raises(ValueError, match="written already"):
                sink.write(0, np.zeros((4, 4, 1), np.uint8))
            with pytest.raises(ValueError, match=r"\(4, 4, 1\)"):
                sink.write(1, np.zeros((4, 5, 1), np.uint8))
            sink.write(1, np.ones((4, 4, 1), np.uint8))
    assert _left(tmp_path / "out") == ["a.png", "b.png"]
