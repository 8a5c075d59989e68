#!/usr/bin/env python3
"""TEZip on 16-bit detector-like frames against SZ3 at the same absolute bound and against zstd
and JPEG-XL lossless (issue 7). Every round trip is decoded and its maximum absolute error
measured on the decoded pixels.

    python benchmarks/bench_16bit.py MODEL_DIR [--frames 40] [--size 256 256] [--seed 0]
        [--bounds 1 4 16 64] [--window 10] [--json PATH] [-f]

The sequence is tests/conftest.py's detector_frames (a dim background that brightens and dims,
bright Gaussian spots drifting over it, Poisson shot noise, hot pixels; values 0-65535), written
as one multi-page 16-bit TIFF that TEZip compresses as a user would give it (the file in place of
IMAGE_DIR). MODEL_DIR is any 1-channel model; nothing is trained here (README, "16-bit frames
and TIFF stacks", shows how a 16-bit model was made).

Anchors: SZ3 (pysz) with an absolute bound on the (T, H, W) array as float32 and as int32, its
decoded values rounded and clipped to 0..65535 (neither step moves a value further from the
integer original); zstd -19 on the raw little-endian frames and on frame differences modulo
65536 (exactly invertible); JPEG-XL lossless per frame (imagecodecs, effort 7). Ratios are raw
bytes / compressed bytes; TEZip's include its whole archive (three files).

Needs benchmarks/requirements.txt (pysz, imagecodecs); a missing one skips its anchor. Never part
of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from bench_codecs import JpegXL, _module  # noqa: E402  (benchmarks/ is this script's folder)
from conftest import detector_frames  # noqa: E402

MAX_16 = 65535


def row(codec, bound, compressed_bytes, frames, decoded, seconds):
    err = int(np.abs(decoded.astype(np.int64) - frames).max())
    ok = err == 0 if bound is None else err <= bound
    return dict(codec=codec, bound=bound, bytes=int(compressed_bytes), ratio=frames.nbytes / compressed_bytes,
                max_abs_error=err, seconds=seconds, check="ok" if ok else "FAIL")


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def tezip_rows(model, frames, bounds, window, device, workdir):
    import tifffile

    from frames.read import read_sequence
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from sequence.plan import CodecPlan, RunFlags

    stack = workdir / "run.tif"
    tifffile.imwrite(stack, frames[..., 0], photometric="minisblack")
    rows = []
    for bound in [0] + list(bounds):
        comp, out = workdir / f"comp{bound}", workdir / f"out{bound}"
        plan, flags = CodecPlan.make(warmup=1, window=window, mode="abs", bounds=(bound,)), RunFlags(device=device)
        start = time.perf_counter()
        summary = compress_folder(model, stack, comp, plan, flags)
        decompress_folder(model, comp, out, flags)
        decoded = read_sequence(out / stack.name).frames
        rows.append(row("tezip", bound or None, summary.compressed_bytes, frames, decoded, time.perf_counter() - start))
    return rows


def sz3_round_trip(volume, bound, dtype):
    from pysz import sz, szConfig, szErrorBoundMode

    data = np.ascontiguousarray(volume, dtype=dtype)
    config = szConfig(data.shape)
    config.errorBoundMode = szErrorBoundMode.ABS
    config.absErrorBound = float(bound)
    compressed, _ = sz.compress(data, config)
    decoded = sz.decompress(compressed, dtype, data.shape)[0]
    return len(compressed), np.clip(np.rint(decoded), 0, MAX_16).astype(np.uint16)


def zstd_round_trip(frames, differences):
    import zstandard

    words = frames.astype("<u2")
    if differences:  # modulo 65536: exactly invertible by a wrapping running sum
        words[1:] -= frames[:-1]
    compressed = zstandard.ZstdCompressor(level=19).compress(words.tobytes())
    decoded = np.frombuffer(zstandard.ZstdDecompressor().decompress(compressed), "<u2").reshape(frames.shape)
    if differences:
        decoded = np.cumsum(decoded, axis=0, dtype=np.uint16)
    return len(compressed), decoded


def anchor_rows(frames, bounds):
    rows = []
    volume = frames[..., 0]
    if _module("pysz") is not None:
        for dtype, name in ((np.float32, "sz3"), (np.int32, "sz3-int")):
            for bound in bounds:
                (size, decoded), seconds = timed(sz3_round_trip, volume, bound, dtype)
                rows.append(row(name, bound, size, frames, decoded[..., None], seconds))
    for differences, name in ((False, "zstd-19"), (True, "zstd-19-diff")):
        (size, decoded), seconds = timed(zstd_round_trip, frames, differences)
        rows.append(row(name, None, size, frames, decoded, seconds))
    jpegxl = JpegXL()
    if jpegxl.missing() is None:
        payload, seconds = timed(jpegxl.encode, frames, None, None)
        decoded = jpegxl.decode(payload, frames.shape)
        rows.append(row("jpegxl", None, jpegxl.size(payload), frames, decoded, seconds))
    return rows


def table(rows):
    lines = ["| codec | abs bound | bytes | ratio | max abs error | seconds | check |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        bound = "lossless" if r["bound"] is None else f"{r['bound']:g}"
        lines.append(f"| {r['codec']} | {bound} | {r['bytes']} | {r['ratio']:.3f} | {r['max_abs_error']} | "
                     f"{r['seconds']:.1f} | {r['check']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a 1-channel TEZip model folder")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bounds", type=float, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("-f", "--force", action="store_true", help="CPU only")
    args = ap.parse_args(argv)

    from prednet.device import select_device

    device = select_device(args.force)
    frames = detector_frames(args.frames, *args.size, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        rows = tezip_rows(args.model, frames, args.bounds, args.window, device, Path(tmp))
    rows += anchor_rows(frames, args.bounds)
    n, h, w, _ = frames.shape
    print(f"\n{n} frames {w}x{h} uint16, values {frames.min()}-{frames.max()}, {frames.nbytes / 1e6:.2f} MB raw, "
          f"seed {args.seed}, {device}")
    print(table(rows))
    if args.json:
        data = dict(frames=n, height=h, width=w, seed=args.seed, raw_bytes=int(frames.nbytes), rows=rows)
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 1 if any(r["check"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
