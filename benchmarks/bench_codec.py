"""Throughput and size benchmark of the residual codec stages on real frames.

    python benchmarks/bench_codec.py [--frames DIR] [--first 200] [--count 70]

Residuals are frame-to-frame differences (prediction = previous frame), a
realistic stand-in for the network's residuals.  Numba compile time is
excluded (every kernel is warmed up first); each timing is the best of
--repeat runs.  Not part of the test suite.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from compress.entropy import RankCoder, pack_tables, unpack_tables  # noqa: E402
from compress.lossless import DEFAULT_LEVEL, ZstdCodec  # noqa: E402
from compress.quantize import REPRESENTATIVES, pixel_tolerances, quantize_residuals  # noqa: E402
from compress.spatial import DeltaCoder  # noqa: E402

DEFAULT_FRAMES = REPO_ROOT.parent / "shared" / "data" / "megamind"


def load_frames(directory, first, count):
    """(N, C, H, W) uint8 frames from sorted PNG files first..first+count-1."""
    paths = sorted(Path(directory).glob("*.png"))[first : first + count]
    if len(paths) < 2:
        sys.exit(f"need at least 2 PNG frames in {directory} from index {first}")
    planes = [np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths]
    return np.stack(planes)


def best_time(fn, repeat):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def warm_up():
    """Compile every numba kernel on tiny inputs so timings exclude compilation."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    residuals = rng.integers(-9, 10, frames.shape).astype(np.int32)
    tolerances = pixel_tolerances(frames, "abs", [2], 255)
    for policy in REPRESENTATIVES:
        quantize_residuals(residuals, tolerances, policy)
    parts = residuals.reshape(6, -1)
    delta = DeltaCoder()
    ranks, table_values, table_lengths = RankCoder().encode(delta.encode(parts))
    delta.decode(RankCoder().decode(ranks, table_values, table_lengths))
    unpack_tables(pack_tables(table_values, table_lengths), len(table_lengths))
    codec = ZstdCodec()
    codec.decode(codec.encode(ranks), ranks.dtype, ranks.size)


def encode_chain(quantized, level, threads):
    """delta -> rank -> zstd; returns (sizes dict, intermediate arrays)."""
    n, c = quantized.shape[:2]
    parts = quantized.reshape(n * c, -1)
    deltas = DeltaCoder().encode(parts)
    ranks, table_values, table_lengths = RankCoder().encode(deltas)
    codec = ZstdCodec(level=level, shuffle=True)
    # One zstd chunk per frame (all its channel planes).
    chunks = codec.encode_many(list(ranks.reshape(n, -1)), threads)
    packed = np.frombuffer(pack_tables(table_values, table_lengths), np.uint8)
    tables = ZstdCodec(level=level, shuffle=False).encode(packed)
    sizes = {"ranks": sum(len(b) for b in chunks), "tables": len(tables)}
    sizes["total"] = sizes["ranks"] + sizes["tables"]
    return sizes, (parts, deltas, ranks, table_values, table_lengths, chunks)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=str(DEFAULT_FRAMES), help="directory of PNG frames")
    parser.add_argument("--first", type=int, default=200, help="index of the first frame (sorted by name)")
    parser.add_argument("--count", type=int, default=70, help="number of frames")
    parser.add_argument("--bounds", type=float, nargs="+", default=[0, 1, 2, 4, 8], help="abs error bounds")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 3, 9, 19], help="zstd levels to compare")
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (best is kept)")
    args = parser.parse_args()

    frames = load_frames(args.frames, args.first, args.count)
    originals = frames[1:]
    predictions = frames[:-1]
    residuals = originals.astype(np.int32) - predictions.astype(np.int32)
    samples = residuals.size
    raw_bytes = originals.nbytes
    all_threads = numba.config.NUMBA_NUM_THREADS
    zstd_threads = os.cpu_count() or 1
    print(f"{originals.shape[0]} residual frames {originals.shape[1:]} from {args.frames}: "
          f"{samples / 1e6:.2f} M samples, {raw_bytes / 1e6:.2f} MB as uint8; "
          f"numba threads {all_threads}, zstd threads {zstd_threads}")
    warm_up()

    print(f"\nQuantizer (M samples/s) and compressed size after delta + rank + zstd-{DEFAULT_LEVEL} "
          "(bytes, ratio vs uint8 frames)")
    header = (f"{'abs':>4} {'policy':>17} {'1 thread':>9} {f'{all_threads} threads':>10} {'max err':>7} "
              f"{'runs':>13} {'total':>10} {'tables':>8} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    stage_data = {}
    for bound in args.bounds:
        tolerances = pixel_tolerances(originals, "abs", [bound], 255)
        for policy in REPRESENTATIVES:
            numba.set_num_threads(1)
            single, quantized = best_time(lambda: quantize_residuals(residuals, tolerances, policy), args.repeat)
            numba.set_num_threads(all_threads)
            multi, quantized = best_time(lambda: quantize_residuals(residuals, tolerances, policy), args.repeat)
            decoded = np.clip(predictions.astype(np.int32) + quantized, 0, 255)
            max_error = int(np.abs(decoded - originals).max())
            assert max_error <= bound, (bound, policy, max_error)
            runs = int(np.count_nonzero(np.diff(quantized, axis=-1))) + quantized.size // quantized.shape[-1]
            sizes, data = encode_chain(quantized, DEFAULT_LEVEL, zstd_threads)
            stage_data[(bound, policy)] = data
            print(f"{bound:>4g} {policy:>17} {samples / single / 1e6:>9.0f} {samples / multi / 1e6:>10.0f} "
                  f"{max_error:>7d} {runs:>13d} {sizes['total']:>10d} {sizes['tables']:>8d} "
                  f"{raw_bytes / sizes['total']:>6.2f}")

    print(f"\nStage throughput, {all_threads} numba threads / {zstd_threads} zstd threads "
          "(MB/s of int32 input for delta and rank, of rank bytes for zstd; policy nearest_previous)")
    zstd_name = f"zstd{DEFAULT_LEVEL}"
    header = (f"{'abs':>4} {'delta enc':>9} {'delta dec':>9} {'rank enc':>9} {'rank dec':>9} "
              f"{zstd_name + ' enc':>9} {zstd_name + ' dec':>9}")
    print(header)
    print("-" * len(header))
    delta = DeltaCoder()
    ranker = RankCoder()
    codec = ZstdCodec(level=DEFAULT_LEVEL)
    for bound in args.bounds:
        parts, deltas, ranks, table_values, table_lengths, chunks = stage_data[(bound, "nearest_previous")]
        mb = parts.nbytes / 1e6
        t_de, _ = best_time(lambda: delta.encode(parts), args.repeat)
        t_dd, decoded = best_time(lambda: delta.decode(deltas), args.repeat)
        assert np.array_equal(decoded, parts)
        t_re, _ = best_time(lambda: ranker.encode(deltas), args.repeat)
        t_rd, decoded = best_time(lambda: ranker.decode(ranks, table_values, table_lengths), args.repeat)
        assert np.array_equal(decoded, deltas)
        frame_ranks = list(ranks.reshape(originals.shape[0], -1))
        t_ze, _ = best_time(lambda: codec.encode_many(frame_ranks, zstd_threads), args.repeat)
        counts = [r.size for r in frame_ranks]
        t_zd, decoded = best_time(lambda: codec.decode_many(chunks, ranks.dtype, counts, zstd_threads), args.repeat)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, frame_ranks))
        zmb = ranks.nbytes / 1e6
        print(f"{bound:>4g} {mb / t_de:>9.0f} {mb / t_dd:>9.0f} {mb / t_re:>9.0f} {mb / t_rd:>9.0f} "
              f"{zmb / t_ze:>9.0f} {zmb / t_zd:>9.0f}")

    print(f"\nzstd level vs size and speed (shuffled ranks, policy nearest_previous, {zstd_threads} threads)")
    header = f"{'abs':>4} " + " ".join(f"{f'L{lv} bytes':>10} {f'L{lv} MB/s':>9}" for lv in args.levels)
    print(header)
    print("-" * len(header))
    for bound in args.bounds:
        ranks = stage_data[(bound, "nearest_previous")][2]
        frame_ranks = list(ranks.reshape(originals.shape[0], -1))
        cells = []
        for level in args.levels:
            codec = ZstdCodec(level=level)
            elapsed, chunks = best_time(lambda: codec.encode_many(frame_ranks, zstd_threads), max(1, args.repeat // 2))
            cells.append(f"{sum(len(b) for b in chunks):>10d} {ranks.nbytes / 1e6 / elapsed:>9.0f}")
        print(f"{bound:>4g} " + " ".join(cells))


if __name__ == "__main__":
    main()
