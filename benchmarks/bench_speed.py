#!/usr/bin/env python3
"""Speed (issue 17): TEZip compress and decompress frames/s and peak memory beside x264rgb and
x265 lossless on the same frames, whole processes (start-up included), run in turn round after
round so that every figure is paired with x265's of the same round; medians and the ratio to x265
per round.

    python benchmarks/bench_speed.py [FRAMES] [--first 200 --count 60] [--rounds 3] [--window 30]
        [--models none default] [--bound 0] [--json PATH]

FRAMES: a folder of images (default ../shared/data/megamind). Needs ffmpeg with libx264/libx265
(Debian: apt-get install ffmpeg). Every TEZip round trip is verified by TEZip itself (checksums).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent


def timed(cmd, env=None):
    """(wall seconds, peak RSS in MB) of one process run to completion; raises on failure."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}... failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", nargs="?", default=str(REPO.parent / "shared" / "data" / "megamind"))
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=30)
    p.add_argument("--bound", type=int, default=0)
    p.add_argument("--models", nargs="+", default=["none", "default"])
    p.add_argument("--json")
    args = p.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = work / "frames"
        frames.mkdir()
        names = sorted(n for n in os.listdir(args.frames) if not n.startswith("."))[args.first: args.first + args.count]
        for i, name in enumerate(names):
            shutil.copy(Path(args.frames) / name, frames / f"frame_{i:04d}{Path(name).suffix}")
        n = len(names)
        pattern = str(frames / f"frame_%04d{Path(names[0]).suffix}")
        jobs = {}
        for model in args.models:
            comp, out = work / f"c_{model}", work / f"d_{model}"
            jobs[f"tezip {model} compress"] = ([py, str(REPO / "tezip.py"), "-c", model, str(frames), str(comp), "-p", "1",
                                                "-w", str(args.window), "-b", str(args.bound), "--overwrite"], comp)
            jobs[f"tezip {model} decompress"] = ([py, str(REPO / "tezip.py"), "-u", model, str(comp), str(out),
                                                  "--overwrite"], None)
        ff = ["ffmpeg", "-loglevel", "error", "-y", "-framerate", "25", "-i", pattern]
        jobs["x264rgb lossless encode"] = (ff + ["-c:v", "libx264rgb", "-qp", "0", "-preset", "medium", str(work / "a.mkv")], work / "a.mkv")
        jobs["x265 lossless encode"] = (ff + ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error", "-preset",
                                              "medium", str(work / "b.mkv")], work / "b.mkv")
        jobs["x264rgb decode"] = (["ffmpeg", "-loglevel", "error", "-y", "-i", str(work / "a.mkv"), "-f", "null", "-"], None)
        jobs["x265 decode"] = (["ffmpeg", "-loglevel", "error", "-y", "-i", str(work / "b.mkv"), "-f", "null", "-"], None)
        results = {name: [] for name in jobs}
        for r in range(args.rounds + 1):  # round 0 warms caches (numba's, the OS's) and is not counted
            for name, (cmd, _) in jobs.items():
                wall, rss = timed(cmd)
                if r:
                    results[name].append((wall, rss))
            if r:
                print(f"round {r}: " + ", ".join(f"{k} {v[-1][0]:.2f} s" for k, v in results.items()), flush=True)
        sizes = {name: (sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() else out.stat().st_size)
                 for name, (_, out) in jobs.items() if out is not None}
    x265 = [w for w, _ in results["x265 lossless encode"]]
    rows = []
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        rows.append(dict(name=name, fps=n / median(walls), seconds=median(walls), peak_mb=max(m for _, m in runs),
                         vs_x265=median(x265[i] / walls[i] for i in range(len(walls))),
                         bytes=sizes.get(name), frames=n))
    print(f"\n{n} frames, {args.rounds} rounds, medians (whole processes, start-up included)\n")
    print("| command | frames/s | seconds | × x265 encode frames/s | peak MB | bytes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['fps']:.1f} | {r['seconds']:.2f} | {r['vs_x265']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['bytes'] if r['bytes'] else ''} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
