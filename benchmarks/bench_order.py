#!/usr/bin/env python3
"""--order auto against the two fixed orders: what it chooses, the ratio, and what the trial costs.

    python benchmarks/bench_order.py [--frames-dir ../shared/data/megamind --first 200 --count 60]
        [--sets advdiff,heat,...] [--bounds 0 4] [--window 30] [--json PATH]

The smooth sets of benchmarks/fields.py (the last 60 of 200 frames, 256x256 uint16, as a TIFF
stack, `-c none`) and, with --frames-dir, camera frames (`-c none` and `-c default`), each coded
with `--order sequential`, `hierarchical` and `auto` through the command line (whole processes),
every archive decoded and checked within the bound. Prints a markdown table and writes JSON.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import fields  # noqa: E402

ORDERS = ("sequential", "hierarchical", "auto")


def tezip(*args):
    t0 = time.time()
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tezip.py"), *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"tezip.py {' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stdout, time.time() - t0


def read_back(folder):
    from frames.source import open_source

    files = sorted(folder.iterdir())
    spec = files[0] if len(files) == 1 else folder
    with open_source(spec) as src:
        return np.stack([src.read(i) for i in range(src.n_frames)])


def measure(source, model, bound, window, work):
    """{order: {ratio, seconds}} and the order auto chose, each archive decoded and checked."""
    original = read_back(source) if source.is_dir() else read_back_stack(source)
    row = {}
    for order in ORDERS:
        comp, back = work / f"c_{order}", work / f"d_{order}"
        out, seconds = tezip("-c", model, source, comp, "-w", window, "-m", "abs", "-b", bound, "--order", order, "-v", "-f")
        ratio = float(re.findall(r"ratio ([0-9.]+)", out)[-1])
        chosen = re.search(r"order auto: (\w+)", out)
        tezip("-u", model, comp, back, "-f")
        assert np.abs(read_back(back).astype(np.int64) - original).max() <= bound, (source, order)
        row[order] = {"ratio": ratio, "seconds": round(seconds, 2)}
        if chosen:
            row["chosen"] = chosen.group(1)
    return row


def read_back_stack(path):
    import tifffile

    frames = tifffile.imread(path)
    return frames[..., None] if frames.ndim == 3 else frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(fields.FIELDS))
    ap.add_argument("--frames-dir", default="")
    ap.add_argument("--first", type=int, default=200)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--bounds", type=int, nargs="+", default=[0, 4])
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    import tifffile

    results = {}
    print("| run | model | abs bound | sequential | hierarchical | auto (chosen) | auto's time / the chosen order's |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []
        for name in a.sets.split(",") if a.sets else []:
            path = tmp / f"{name}.tif"
            tifffile.imwrite(path, fields.make(name, 256, 200)[140:], photometric="minisblack")
            runs += [(name, path, "none")]
        if a.frames_dir:
            frames = tmp / "frames"
            frames.mkdir()
            for f in sorted(Path(a.frames_dir).iterdir())[a.first:a.first + a.count]:
                (frames / f.name).symlink_to(f.resolve())
            runs += [("camera", frames, "none"), ("camera", frames, "default")]
        for name, path, model in runs:
            for bound in a.bounds:
                work = tmp / f"w_{name}_{model}_{bound}"
                work.mkdir()
                row = measure(path, model, bound, a.window, work)
                results[f"{name}/{model}/abs{bound}"] = row
                chosen = row.get("chosen", "sequential")
                best = max(("sequential", "hierarchical"), key=lambda o: row[o]["ratio"])
                mark = "" if chosen == best else " ✗"
                print(f"| {name} | {model} | {bound} | {row['sequential']['ratio']:.2f} | {row['hierarchical']['ratio']:.2f} | "
                      f"{row['auto']['ratio']:.2f} ({chosen}{mark}) | "
                      f"{row['auto']['seconds'] / row[chosen]['seconds']:.2f} |", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
