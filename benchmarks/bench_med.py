#!/usr/bin/env python3
"""Keyframe storage: what TEZip does now (raw pixels + zstd) against MED prediction errors.

    python benchmarks/bench_med.py [--frames DIR] [--first 200] [--count 10] [--level 19]

Each frame is treated as a keyframe and stored on its own. Variants:

    raw HWC + zstd          TEZip today: interleaved uint8 pixels, zstd (no shuffle), one chunk a frame
    raw planes + zstd       the same bytes channel by channel
    delta1d + zigzag + zstd row differences (stages/delta1d.py), zigzag, byte-shuffled zstd, a chunk per plane
    MED + zigzag + zstd     stages/med.py errors, zigzag (stages/zigzag.py), byte-shuffled zstd
                            (stages/zstd.py), one chunk per channel plane, or one per frame

Every MED round trip is decoded and checked. Not part of the test suite.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stages.zigzag import ZigZagCoder  # noqa: E402
from frames.read import list_image_files, read_image  # noqa: E402
from stages.zstd import DEFAULT_LEVEL, ZstdCodec  # noqa: E402
from stages.med import MedCoder  # noqa: E402
from stages.delta1d import DeltaCoder  # noqa: E402

DEFAULT_FRAMES = REPO_ROOT.parent / "shared" / "data" / "megamind"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default=str(DEFAULT_FRAMES))
    ap.add_argument("--first", type=int, default=200)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--level", type=int, default=DEFAULT_LEVEL)
    args = ap.parse_args()

    paths = list_image_files(args.frames)[args.first : args.first + args.count]
    frames = np.stack([read_image(p)[0] for p in paths])  # (N, H, W, C) uint8
    n, h, w, c = frames.shape
    raw_bytes = frames.nbytes
    plain = ZstdCodec(level=args.level, shuffle=False)
    shuffled = ZstdCodec(level=args.level, shuffle=True)
    med, zigzag, delta = MedCoder(), ZigZagCoder(), DeltaCoder()
    med.decode(med.encode(np.zeros((1, 2, 2), np.int32)))  # compile outside the timings

    sizes = dict.fromkeys(["raw HWC + zstd (TEZip now)", "raw planes + zstd", "delta1d + zigzag + zstd, chunk/plane",
                           "MED + zigzag + zstd, chunk/plane", "MED + zigzag + zstd, chunk/frame"], 0)
    zeros = 0
    t_encode = t_decode = 0.0
    for frame in frames:
        planes = np.ascontiguousarray(frame.transpose(2, 0, 1)).astype(np.int32)  # (C, H, W)
        sizes["raw HWC + zstd (TEZip now)"] += len(plain.encode(frame))
        sizes["raw planes + zstd"] += sum(len(plain.encode(p.astype(np.uint8))) for p in planes)
        rows = delta.encode(planes.reshape(c * h, w)).reshape(c, h, w)
        sizes["delta1d + zigzag + zstd, chunk/plane"] += sum(len(shuffled.encode(zigzag.encode(p))) for p in rows)

        t = time.perf_counter()
        errors = med.encode(planes)
        codes = zigzag.encode(errors)
        chunks = [shuffled.encode(codes[k]) for k in range(c)]
        t_encode += time.perf_counter() - t
        sizes["MED + zigzag + zstd, chunk/plane"] += sum(map(len, chunks))
        sizes["MED + zigzag + zstd, chunk/frame"] += len(shuffled.encode(codes))
        zeros += int(np.count_nonzero(errors == 0))

        t = time.perf_counter()
        decoded_codes = np.stack([shuffled.decode(chunk, np.empty((h, w), codes.dtype)) for chunk in chunks])
        decoded = med.decode(zigzag.decode(decoded_codes))
        t_decode += time.perf_counter() - t
        if not np.array_equal(decoded, planes):
            sys.exit("MED round trip failed")

    baseline = sizes["raw HWC + zstd (TEZip now)"]
    print(f"{n} frames {w}x{h}x{c} ({paths[0].name} … {paths[-1].name}), {raw_bytes} bytes raw, zstd level {args.level}")
    print("| keyframe storage | bytes | ratio | vs TEZip now |")
    print("|---|---|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size} | {raw_bytes / size:.2f} | {100 * (size / baseline - 1):+.1f}% |")
    print(f"MED errors equal to 0: {100 * zeros / frames.size:.1f}%; MED path (encode+zigzag+zstd / inverse, "
          f"round trips checked): {raw_bytes / 1e6 / t_encode:.1f} / {raw_bytes / 1e6 / t_decode:.1f} MB/s")


if __name__ == "__main__":
    main()
