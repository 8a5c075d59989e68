"""Throughput and size of the residual codec stages on real frames.

    python benchmarks/bench_codec.py [--frames DIR] [--first 200] [--count 70] [--threads N]

Residuals are frame-to-frame differences (prediction = previous frame), a realistic stand-in for
the network's residuals. For each abs bound (0 = lossless) the front stage makes the codes TEZip
stores: medquant (in-loop MED prediction + quantization) for a bound, MED for lossless. Then both
entropy back ends code them: the context range coder (the default) and `-n`'s zigzag + zstd.
Every round trip is checked. The back ends run as TEZip runs them (stages.chain.Chain: one chunk per
frame, --threads frames at a time; zstd's times include the zigzag mapping). Numba compile time is
excluded (every kernel is warmed up first); each timing is the best of --repeat runs. Not part of
the test suite.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stages.chain import Chain  # noqa: E402
from stages.ctxrange import ContextRangeCoder  # noqa: E402
from stages.med import MedCoder  # noqa: E402
from stages.medquant import MedQuantizer  # noqa: E402
from stages.zigzag import ZigZagCoder  # noqa: E402
from stages.zstd import DEFAULT_LEVEL, ZstdCodec  # noqa: E402

DEFAULT_FRAMES = REPO_ROOT.parent / "shared" / "data" / "megamind"


def load_frames(directory, first, count):
    """(N, C, H, W) uint8 frames from sorted PNG files first..first+count-1."""
    paths = sorted(Path(directory).glob("*.png"))[first : first + count]
    if len(paths) < 2:
        sys.exit(f"need at least 2 PNG frames in {directory} from index {first}")
    return np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths])


def best_time(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def front_stage(bound):
    return MedCoder() if bound == 0 else MedQuantizer(int(bound))


def encode_front(front, residuals):
    """The front stage's codes of (F, C, H, W) residuals (every plane on its own); a quantizer's
    encode keeps the codes only."""
    return front.encode(residuals)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=str(DEFAULT_FRAMES), help="directory of PNG frames")
    parser.add_argument("--first", type=int, default=200, help="index of the first frame (sorted by name)")
    parser.add_argument("--count", type=int, default=70, help="number of frames")
    parser.add_argument("--bounds", type=int, nargs="+", default=[0, 1, 2, 4, 8], help="abs error bounds")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="coder threads")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    args = parser.parse_args()

    frames = load_frames(args.frames, args.first, args.count)
    residuals = frames[1:].astype(np.int32) - frames[:-1].astype(np.int32)
    shape = residuals.shape[1:]
    raw_bytes = frames[1:].nbytes
    samples = residuals.size / 1e6
    print(f"{len(residuals)} residual frames {shape} from {args.frames}: {samples:.2f} M samples, "
          f"{raw_bytes / 1e6:.2f} MB as uint8; {args.threads} coder threads")
    # The byte coders run as TEZip runs them: a chain codes one chunk per frame, --threads frames at a time.
    ctx = Chain([ContextRangeCoder()])
    zstd = Chain([ZigZagCoder(), ZstdCodec(level=DEFAULT_LEVEL)])
    small = residuals[:1, :, :8, :8]
    for chain in (ctx, zstd):  # compile
        chunks, payload = chain.encode(small)
        chain.decode(chunks, small.shape[1:], payload)
    encode_front(MedQuantizer(1), small)
    MedCoder().decode(MedCoder().encode(small))

    header = (f"{'abs':>4} {'front':>8} {'ctxrange B':>11} {'ratio':>6} {f'zstd{DEFAULT_LEVEL} B':>11} {'ratio':>6} "
              f"{'front Ms/s':>10} {'ctx enc':>8} {'ctx dec':>8} {'zstd enc':>8} {'zstd dec':>8}")
    print(header + "\n" + "-" * len(header))
    for bound in args.bounds:
        front = front_stage(bound)
        t_front, codes = best_time(lambda: encode_front(front, residuals), args.repeat)
        t_ce, (chunks, _) = best_time(lambda: ctx.encode(codes, args.threads), args.repeat)
        t_cd, back = best_time(lambda: ctx.decode(chunks, shape, threads=args.threads), args.repeat)
        assert np.array_equal(back, codes)
        t_ze, (zchunks, payload) = best_time(lambda: zstd.encode(codes, args.threads), args.repeat)
        t_zd, zback = best_time(lambda: zstd.decode(zchunks, shape, payload, args.threads), args.repeat)
        assert np.array_equal(zback, codes)
        c_bytes, z_bytes = sum(map(len, chunks)), sum(map(len, zchunks))
        print(f"{bound:>4} {front.codec_id:>8} {c_bytes:>11} {raw_bytes / c_bytes:>6.2f} {z_bytes:>11} "
              f"{raw_bytes / z_bytes:>6.2f} {samples / t_front:>10.0f} {samples / t_ce:>8.0f} {samples / t_cd:>8.0f} "
              f"{samples / t_ze:>8.0f} {samples / t_zd:>8.0f}")
    print("\nthroughputs in M samples/s (one sample = one 8-bit channel value)")


if __name__ == "__main__":
    main()
