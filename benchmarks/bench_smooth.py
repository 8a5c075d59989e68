"""Smooth time-evolving fields (issue 15): the hierarchical window coder against SZ3, JPEG-XL, zstd
and the HDF5 filters detectors write, on held-out frames of the six sets of benchmarks/fields.py.

    .venv/bin/python benchmarks/bench_smooth.py [--data DIR] [--sets advdiff,heat] [--eval 60]
        [--bounds 1,4,16,64] [--window 60] [--json benchmarks/out/smooth.json]

Frames: the last --eval frames of each 200-frame 256×256 uint16 run (generated, about half a minute
for all six, or read from DIR/<set>.npy). Ratio = raw bytes / coded bytes. Every decoded pixel is
checked within the bound (after rounding and clipping to 0-65535 for SZ3), and the hierarchical
coder's decoder must rebuild exactly the encoder's reconstruction.

    tezip      sequence/hierarchical.py, windows of --window frames, lossless and each abs bound;
               encode / decode Mpx/s wall clock and per CPU second (the machine may be shared)
    sz3        SZ3 (pysz), 3-D (T, H, W), ABS, as int32 and as float32 (the better is compared)
    jpegxl     JPEG-XL lossless, effort 7, per frame (imagecodecs)
    zstd       zstd -19 on the raw little-endian frames
    bslz4      HDF5 Bitshuffle-LZ4 filter (hdf5plugin), chunks of one frame
    blosc2     HDF5 Blosc2-zstd filter (hdf5plugin: clevel 5, byte shuffle), chunks of one frame

Needs benchmarks/requirements.txt (pysz, imagecodecs) and hdf5plugin; a missing one skips its
anchor. Prints a markdown table and writes JSON. Never part of the test run.
"""

import argparse
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fields  # noqa: E402
from sequence.hierarchical import HierarchicalCoder  # noqa: E402

MAXV = 65535


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def tezip(frames, bound, window, threads):
    T = len(frames)
    coder = HierarchicalCoder(tolerance=bound, max_value=MAXV, threads=threads)
    x = frames.astype(np.int32)[:, None]
    size, enc, dec, err = 0, [0.0, 0.0], [0.0, 0.0], 0
    for s in range(0, T, window):
        part = x[s:s + window]
        start = _clock()
        chunks, decoded = coder.encode_window(part)
        enc = np.add(enc, _since(start))
        start = _clock()
        back = coder.decode_window(chunks, part.shape[1:], len(part))
        dec = np.add(dec, _since(start))
        if not np.array_equal(back, decoded):
            raise AssertionError("the decoder does not rebuild the encoder's reconstruction")
        err = max(err, int(np.abs(back.astype(np.int64) - part).max()))
        size += sum(map(len, chunks))
    mpx = frames.size / 1e6
    return dict(bytes=size, max_error=err, encode_mpx_s=mpx / enc[0], decode_mpx_s=mpx / dec[0],
                encode_mpx_cpu_s=mpx / enc[1], decode_mpx_cpu_s=mpx / dec[1])


def sz3(frames, bound, dtype):
    from pysz import sz, szConfig, szErrorBoundMode

    data = np.ascontiguousarray(frames, dtype=dtype)
    config = szConfig(data.shape)
    config.errorBoundMode = szErrorBoundMode.ABS
    config.absErrorBound = float(bound)
    compressed, _ = sz.compress(data, config)
    decoded = np.clip(np.rint(sz.decompress(compressed, dtype, data.shape)[0]), 0, MAXV).astype(np.int64)
    return dict(bytes=len(compressed), max_error=int(np.abs(decoded - frames).max()))


def jpegxl(frames):
    import imagecodecs

    size = 0
    for f in frames:
        payload = imagecodecs.jpegxl_encode(np.ascontiguousarray(f), lossless=True, effort=7, numthreads=1)
        if not np.array_equal(imagecodecs.jpegxl_decode(payload), f):
            raise AssertionError("JPEG-XL lossless is not exact")
        size += len(payload)
    return dict(bytes=size, max_error=0)


def zstd(frames):
    import zstandard

    raw = frames.astype("<u2").tobytes()
    payload = zstandard.ZstdCompressor(level=19).compress(raw)
    assert zstandard.ZstdDecompressor().decompress(payload) == raw
    return dict(bytes=len(payload), max_error=0)


def hdf5(frames, name):
    import h5py
    import hdf5plugin

    options = {"bslz4": lambda: hdf5plugin.Bitshuffle(cname="lz4"),
               "blosc2": lambda: hdf5plugin.Blosc2(cname="zstd", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE)}[name]()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h:
        size = h.create_dataset("data", data=frames, chunks=(1,) + frames.shape[1:], **options).id.get_storage_size()
    with h5py.File(buf, "r") as h:
        if not np.array_equal(h["data"][...], frames):
            raise AssertionError(f"{name} is not exact")
    return dict(bytes=int(size), max_error=0)


def _try(fn, *args):
    try:
        return fn(*args)
    except ImportError as e:
        return dict(missing=str(e))


def run_set(name, frames, bounds, window, threads):
    raw = frames.nbytes
    res = {"raw": raw, "frames": list(frames.shape)}
    for b in [0] + bounds:
        r = tezip(frames, b, window, threads)
        assert r["max_error"] <= b, (name, b, r)
        res[f"tezip_{b}"] = r
        print(f"  {name} tezip abs {b}: ratio {raw / r['bytes']:.2f}, encode {r['encode_mpx_s']:.2f} Mpx/s "
              f"({r['encode_mpx_cpu_s']:.2f} per CPU s), decode {r['decode_mpx_s']:.2f} ({r['decode_mpx_cpu_s']:.2f})",
              flush=True)
    for b in bounds:
        for dtype in ("int32", "float32"):
            r = _try(sz3, frames.astype(np.int64), b, np.dtype(dtype))
            assert "missing" in r or r["max_error"] <= b, (name, b, dtype, r)
            res[f"sz3_{dtype}_{b}"] = r
    res["jpegxl"] = _try(jpegxl, frames)
    res["zstd"] = _try(zstd, frames)
    for h in ("bslz4", "blosc2"):
        res[h] = _try(hdf5, frames, h)
    return res


def ratio(res, key):
    r = res.get(key)
    return res["raw"] / r["bytes"] if r and "bytes" in r else None


def table(results, bounds):
    head = "| set | lossless: TEZip / JPEG-XL (×) | zstd -19 / bslz4 / blosc2-zstd |"
    head += "".join(f" abs {b}: TEZip / best SZ3 (×) |" for b in bounds)
    head += " TEZip encode / decode Mpx/s (per CPU s) |"
    lines = [head, "|" + "---|" * (3 + len(bounds) + 1)]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for name, res in results.items():
        ours, jxl = ratio(res, "tezip_0"), ratio(res, "jpegxl")
        row = f"| {name} | {fmt(ours)} / {fmt(jxl)} (**{ours / jxl:.2f}×**) |" if jxl else f"| {name} | {fmt(ours)} |"
        row += f" {fmt(ratio(res, 'zstd'))} / {fmt(ratio(res, 'bslz4'))} / {fmt(ratio(res, 'blosc2'))} |"
        enc, dec, encc, decc = [], [], [], []
        for b in [0] + bounds:
            r = res[f"tezip_{b}"]
            enc.append(r["encode_mpx_s"]), dec.append(r["decode_mpx_s"])
            encc.append(r["encode_mpx_cpu_s"]), decc.append(r["decode_mpx_cpu_s"])
        for b in bounds:
            ours = ratio(res, f"tezip_{b}")
            sz = [v for v in (ratio(res, f"sz3_int32_{b}"), ratio(res, f"sz3_float32_{b}")) if v]
            row += f" {fmt(ours)} / {fmt(max(sz))} (**{ours / max(sz):.2f}×**) |" if sz else f" {fmt(ours)} / – |"
        row += (f" {min(enc):.1f}–{max(enc):.1f} / {min(dec):.1f}–{max(dec):.1f} "
                f"({min(encc):.1f}–{max(encc):.1f} / {min(decc):.1f}–{max(decc):.1f}) |")
        lines.append(row)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="folder of <set>.npy (T, H, W) uint16 runs; default: generate them")
    ap.add_argument("--sets", default=",".join(fields.FIELDS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--eval", type=int, default=60, help="held-out frames: the last N of each run")
    ap.add_argument("--bounds", default="1,4,16,64")
    ap.add_argument("--window", type=int, default=60, help="frames per window of the hierarchical coder")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    bounds = [int(b) for b in a.bounds.split(",") if b]
    HierarchicalCoder(tolerance=1).encode_window(np.zeros((3, 1, 16, 16), np.int32))  # compile outside the timings
    results = {}
    for name in a.sets.split(","):
        if a.data:
            frames = np.load(os.path.join(a.data, name + ".npy"))
        else:
            start = time.perf_counter()
            frames = fields.make(name, a.size, a.frames)
            print(f"{name}: generated {frames.shape} in {time.perf_counter() - start:.1f} s", flush=True)
        results[name] = run_set(name, frames[-a.eval:].astype(np.uint16), bounds, a.window, a.threads)
    text = table(results, bounds)
    print()
    print(text)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"bounds": bounds, "window": a.window, "results": results, "table": text}, f, indent=1)


if __name__ == "__main__":
    main()
