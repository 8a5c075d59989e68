#!/usr/bin/env python3
"""Memory of streaming frames through frames.source and frames.sink (issue 16): the peak RSS of
reading every frame of a large HDF5 dataset one by one, and of reading them and writing them to an
HDF5 sink, against the size of the dataset.

    python benchmarks/bench_frames_io.py [--frames 1000] [--size 1024 1024] [--tmp DIR] [--keep]
        [--json PATH]

The dataset (N, H, W) uint16, detector-like (a background gradient, Poisson shot noise, a level
drifting over time), is written once, compressed with bitshuffle-LZ4 in one-frame chunks as
detectors write it (hdf5plugin), into a temporary folder (--tmp; deleted afterwards unless --keep:
the raw size of the default run is 2 GiB, the file about half of that, and the sink's copy as much
again). Each step runs in a fresh process so its peak RSS is its own:

  baseline   the imports only (numpy, h5py, hdf5plugin, frames)
  generate   writing the input with h5py, frame by frame
  read       open_source(FILE::/entry/data/data), then read(i) for every frame
  read+write the same, each frame written at once into open_sink(...) of an OutputFolder (the same
             dataset path, dtype, shape, chunks, bitshuffle-LZ4 and attributes), published at the end
  verify     both files read back frame by frame: bit-exact, same description

Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DATASET = "/entry/data/data"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def frames_of(n, height, width):
    """Detector-like uint16 frames, generated one at a time (never all in memory)."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    background = 200 + 800 * (x / width) + 300 * (y / height)
    pool = [rng.poisson(background).astype(np.uint16) for _ in range(8)]
    for t in range(n):
        yield pool[t % 8] + np.uint16(t % 97)


def phase_baseline(args):
    import h5py  # noqa: F401
    import hdf5plugin  # noqa: F401
    import numpy  # noqa: F401

    import frames.sink  # noqa: F401
    import frames.source  # noqa: F401

    return {}


def phase_generate(args):
    import h5py
    import hdf5plugin

    n, (h, w) = args.frames, args.size
    with h5py.File(args.input, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        ds = data.create_dataset("data", shape=(n, h, w), dtype="uint16", chunks=(1, h, w),
                                 **hdf5plugin.Bitshuffle(cname="lz4"))
        ds.attrs["units"] = "counts"
        ds.attrs["count_time"] = 0.01
        for t, frame in enumerate(frames_of(n, h, w)):
            ds[t] = frame
    return {"file_bytes": Path(args.input).stat().st_size}


def phase_read(args):
    import numpy as np

    from frames.source import open_source

    total = 0
    with open_source(f"{args.input}::{DATASET}") as source:
        for i in range(source.n_frames):
            total += int(source.read(i)[0, 0, 0])
    return {"frames": source.n_frames, "checksum": total, "nbytes": source.n_frames * source.height * source.width
            * np.dtype(source.dtype).itemsize}


def phase_read_write(args):
    from base.publish import OutputFolder
    from frames.sink import open_sink
    from frames.source import open_source

    with open_source(f"{args.input}::{DATASET}") as source, OutputFolder(args.output) as out:
        with open_sink(out, json.loads(json.dumps(source.description())), source.mode, source.names) as sink:
            for i in range(source.n_frames):
                sink.write(i, source.read(i))
    written = Path(args.output) / Path(args.input).name
    return {"file_bytes": written.stat().st_size, "notes": sink.notes}


def phase_verify(args):
    import numpy as np

    from frames.source import open_source

    written = Path(args.output) / Path(args.input).name
    with open_source(f"{args.input}::{DATASET}") as a, open_source(f"{written}::{DATASET}") as b:
        same_description = a.description() == b.description()
        mismatches = sum(not np.array_equal(a.read(i), b.read(i)) for i in range(a.n_frames))
    return {"bit_exact": mismatches == 0 and same_description, "mismatched_frames": mismatches,
            "same_description": same_description}


PHASES = {"baseline": phase_baseline, "generate": phase_generate, "read": phase_read,
          "read+write": phase_read_write, "verify": phase_verify}


def run_phase(name, args):
    command = [sys.executable, __file__, "--phase", name, "--frames", str(args.frames), "--size", *map(str, args.size),
               "--input", str(args.input), "--output", str(args.output)]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"step {name} failed:\n{result.stderr[-3000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.time() - started
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 1024], metavar=("H", "W"))
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the files (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # one step, in its own process
        t0 = time.time()
        row = PHASES[args.phase](args)
        row.update(step=args.phase, seconds=time.time() - t0, peak_rss=peak_rss_bytes())
        print(json.dumps(row))
        return 0

    folder = Path(tempfile.mkdtemp(prefix="bench_frames_io_", dir=args.tmp))
    args.input, args.output = folder / "run.h5", folder / "out"
    raw = args.frames * args.size[0] * args.size[1] * 2
    rows = []
    try:
        for name in PHASES:
            rows.append(run_phase(name, args))
            print(f"  {name}: done in {rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    frame = args.size[0] * args.size[1] * 2
    print(f"\n{args.frames} frames {args.size[0]}x{args.size[1]} uint16, bitshuffle-LZ4 in one-frame chunks: "
          f"raw {raw / 2**30:.2f} GiB, file {rows[1]['file_bytes'] / 2**30:.2f} GiB, one frame {frame / 2**20:.1f} MiB\n")
    print("| step | peak RSS (MiB) | over the imports (MiB) | peak RSS / raw size | time (s) | frames/s |")
    print("|---|---:|---:|---:|---:|---:|")
    base = rows[0]["peak_rss"]
    for row in rows:
        per_second = f"{args.frames / row['seconds']:.0f}" if row["step"] != "baseline" else ""
        print(f"| {row['step']} | {row['peak_rss'] / 2**20:.0f} | {(row['peak_rss'] - base) / 2**20:.0f} | "
              f"{row['peak_rss'] / raw:.3f} | {row['seconds']:.1f} | {per_second} |")
    verify = rows[-1]
    print(f"\nround trip bit-exact: {verify['bit_exact']} (description identical: {verify['same_description']}); "
          f"sink file {rows[3]['file_bytes'] / 2**30:.2f} GiB; sink notes: {rows[3]['notes'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "size": args.size, "raw_bytes": raw, "rows": rows},
                                        indent=1))
    return 0 if verify["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
