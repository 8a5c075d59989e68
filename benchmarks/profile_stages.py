#!/usr/bin/env python3
"""Where the time goes (issue 17): one compress and one decompress run in this process under
cProfile, the wall time split into TEZip's stages (model step, block choice and motion search,
residual coding = quantizer + spatial stage + range coder, keyframes, image I/O, checksums) by the
cumulative time of the functions that do each, plus the start-up (the imports of the pipeline, and
numba loading its cached kernels on first use, which lands in the stage that first calls them).

    python benchmarks/profile_stages.py [FRAMES] [--first 200 --count 60] [--model default]
        [--threads 1] [--options -p 1 -w 30] [--top 25]

FRAMES: a folder of images (default ../shared/data/megamind). By default every frame is coded in
the profiled thread (--threads 1), so each stage's share is its share of the work; with more
threads the workers' time, which cProfile does not follow, shows as the main thread waiting. Prints a table per
direction and the top functions by cumulative time. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# stage → (file suffix, function name) pairs whose cumulative time is the stage's. Block choice runs
# inside the frame coder's encode_frame / decode_frame, so it is taken out of "frame coding".
STAGES = {
    "model step (reference kernel)": [("prednet/reference.py", "predict"), ("prednet/reference.py", "update")],
    "block choice, motion search, global motion": [("sequence/blockselect.py", "choose"),
                                                   ("sequence/blockselect.py", "combine"),
                                                   ("sequence/blockselect.py", "global_vector")],
    "frame coding (quantize, MED / colour, range coder; keyframes, intra)": [
        ("sequence/framecoder.py", "encode_frame"), ("sequence/framecoder.py", "decode_frame"),
        ("sequence/framecoder.py", "code_predicted"), ("sequence/framecoder.py", "parse_frame"),
        ("sequence/framecoder.py", "rebuild")],
    "image read": [("frames/source.py", "read")],
    "image write": [("frames/sink.py", "write"), ("frames/sink.py", "close")],
    "checksums": [("base/pixels.py", "frame_checksum")],
}
NESTED = {"frame coding (quantize, MED / colour, range coder; keyframes, intra)":
          "block choice, motion search, global motion"}


def cumulative(stats, keys):
    """Seconds in the functions `keys`, not counting their calls to one another (no double count)."""
    total = 0.0
    for (file, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        if any(file.endswith(f) and name == n for f, n in keys):
            inner = sum(v[3] for c, v in callers.items() if any(c[0].endswith(f) and c[2] == n for f, n in keys))
            total += ct - inner
    return total


def split(stats, wall):
    """{stage: seconds} from a pstats.Stats; 'other' the rest of the wall time."""
    out = {stage: cumulative(stats, keys) for stage, keys in STAGES.items()}
    for outer, inner in NESTED.items():
        out[outer] = max(0.0, out[outer] - out[inner])
    out["other (window loop, archive, bookkeeping)"] = max(0.0, wall - sum(out.values()))
    return out


def profiled(fn):
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    return pstats.Stats(prof), time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", nargs="?", default=str(REPO.parent / "shared" / "data" / "megamind"))
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--model", default="default")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--threads", type=int, default=1,
                   help="frame threads (base.threads; default 1: every stage in the profiled thread)")
    p.add_argument("--options", nargs=argparse.REMAINDER, default=["-p", "1", "-w", "30"])
    args = p.parse_args()
    t_import = time.perf_counter()
    import tezip  # noqa: F401  (the command line's imports)
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from sequence.plan import RunFlags

    startup = time.perf_counter() - t_import
    from base.threads import set_frame_threads

    set_frame_threads(args.threads)
    plan = tezip.codec_plan(tezip.build_parser().parse_args(["-c", args.model, "in", "out", *args.options]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = work / "frames"
        frames.mkdir()
        names = sorted(n for n in os.listdir(args.frames) if not n.startswith("."))[args.first: args.first + args.count]
        for n in names:
            shutil.copy(Path(args.frames) / n, frames / n)
        c_stats, c_wall = profiled(lambda: compress_folder(args.model, frames, work / "comp", plan, RunFlags()))
        u_stats, u_wall = profiled(lambda: decompress_folder(args.model, work / "comp", work / "out", RunFlags()))
    print(f"\nstart-up (imports of the command line's modules): {startup:.2f} s")
    print(f"\n| stage | compress s | share | decompress s | share |\n|---|---|---|---|---|")
    c_split, u_split = split(c_stats, c_wall), split(u_stats, u_wall)
    for stage in c_split:
        print(f"| {stage} | {c_split[stage]:.2f} | {100 * c_split[stage] / c_wall:.0f} % | "
              f"{u_split[stage]:.2f} | {100 * u_split[stage] / u_wall:.0f} % |")
    print(f"| **total ({len(names)} frames)** | **{c_wall:.2f}** | | **{u_wall:.2f}** | |")
    for label, stats in (("compress", c_stats), ("decompress", u_stats)):
        print(f"\n--- {label}: top {args.top} by cumulative time")
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
