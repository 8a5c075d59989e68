"""Scale-out on Dask: frames/s of -c and -u with no Dask, 1 and 2 local workers, for a batch of
sequences and for one long sequence (cut into segments of whole windows).

    .venv/bin/python benchmarks/bench_scale_dask.py                    # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_scale_dask.py --frames 400 --batch 8x50 --size 96 128 --workers 1 2

Data: smooth synthetic RGB frames (a drifting gradient and moving soft blobs, a little noise),
written as PNG into a temporary folder. Model `none` (the codec alone: per-block previous frame
moved), lossless, -w 9 (-p 1). Each cluster is started and warmed (one small run) before it is
timed, so the figures are the steady rate; its start-up seconds are printed apart. Every archive is
checked byte-identical to the one made without Dask, every decode checked pixel-exact. The CPU
seconds each worker and this process (the client: assembly, writing the decoded frames) spent
show how the work divided, which wall-clock rates on a shared machine may not. Prints a Markdown
table.
"""

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OPTIONS = ["-f", "-p", "1", "-w", "9", "-m", "abs", "-b", "0"]


def smooth_frames(n, height, width, seed):
    """(n, height, width, 3) uint8: a drifting gradient, soft blobs moving a pixel or two a frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    blobs = rng.uniform([0, 0, -1.5, -1.5, 6], [height, width, 1.5, 1.5, 14], size=(4, 5))
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        img = 60 + 40 * np.sin((x + 0.7 * t) / 23.0)[..., None] * np.array([1.0, 0.8, 0.6]) + 30 * (y / height)[..., None]
        for cy, cx, vy, vx, r in blobs:
            d2 = (y - (cy + vy * t) % height) ** 2 + (x - (cx + vx * t) % width) ** 2
            img = img + 90 * np.exp(-d2 / (2 * r * r))[..., None] * np.array([0.9, 0.5, 0.3])
        img = img + rng.integers(-2, 3, size=img.shape)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_sequence(folder, frames):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i:04d}.png")


def run(argv):
    """Seconds of one tezip.py command run in this process (its output silenced)."""
    import contextlib
    import io

    import tezip

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = tezip.main(argv)
    if code:
        raise SystemExit(f"tezip.py {' '.join(argv)} failed ({code})")
    return time.perf_counter() - t


def same_tree(one, other):
    compared = filecmp.dircmp(one, other)
    if compared.left_only or compared.right_only or filecmp.cmpfiles(one, other, compared.common_files, shallow=False)[1:] != ([], []):
        return False
    return all(same_tree(one / d, other / d) for d in compared.common_dirs)


def same_pixels(one, other):
    """The frames of folder `one` (or of each of its sequence folders) equal those of `other`."""
    from frames.read import read_sequence

    subfolders = sorted(p.name for p in one.iterdir() if p.is_dir())
    if subfolders:
        return all(same_pixels(one / d, other / d) for d in subfolders)
    return np.array_equal(read_sequence(one).frames, read_sequence(other).frames)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="frames of the long sequence (default 400)")
    ap.add_argument("--batch", default="8x50", help="the batch: SEQUENCESxFRAMES (default 8x50)")
    ap.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="frame size (default 96 128)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    args = ap.parse_args()

    import distributed
    from cluster.client import local_cluster

    h, w = args.size
    n_seq, n_per = (int(v) for v in args.batch.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    try:
        write_sequence(tmp / "long", smooth_frames(args.frames, h, w, seed=0))
        for s in range(n_seq):
            write_sequence(tmp / "batch" / f"s{s:02d}", smooth_frames(n_per, h, w, seed=1 + s))
        write_sequence(tmp / "warm", smooth_frames(12, 16, 16, seed=99))
        workloads = {"batch": (tmp / "batch", n_seq * n_per), "long": (tmp / "long", args.frames)}
        print(f"data: one {args.frames}-frame sequence and a batch of {n_seq} x {n_per} frames, {w}x{h} RGB; "
              f"{os.cpu_count()} CPUs; model none, {' '.join(OPTIONS)}", flush=True)

        rows = []
        # No Dask: this process, as tezip.py runs without --workers, numba with every core and with
        # one thread (as each worker has); warmed first (imports, numba's caches) as the clusters are.
        import numba

        run(["-c", "none", str(tmp / "warm"), str(tmp / "warm0"), *OPTIONS])
        run(["-u", "none", str(tmp / "warm0"), str(tmp / "warm0_back"), "-f"])
        for threads in (numba.config.NUMBA_NUM_THREADS, 1):
            numba.set_num_threads(threads)
            for name, (src, n) in workloads.items():
                comp, back = tmp / f"plain{threads}" / name, tmp / f"plain{threads}_back" / name
                cpu = time.process_time()
                c = run(["-c", "none", str(src), str(comp), *OPTIONS])
                u = run(["-u", "none", str(comp), str(back), "-f"])
                rows.append((name, f"no Dask, numba {threads} thread{'s' if threads > 1 else ''}", n / c, n / u,
                             "-", "-", f"{time.process_time() - cpu:.1f}"))
        plain = tmp / f"plain{numba.config.NUMBA_NUM_THREADS}"
        for workers in args.workers:
            t = time.perf_counter()
            with local_cluster(workers) as cluster:
                on = ["--scheduler", cluster.scheduler_address]
                run(["-c", "none", str(tmp / "warm"), str(tmp / f"warm{workers}"), *OPTIONS, *on])  # imports, JIT caches
                run(["-u", "none", str(tmp / f"warm{workers}"), str(tmp / f"warm{workers}_back"), "-f", *on])
                start = time.perf_counter() - t
                with distributed.Client(cluster, set_as_default=False) as client:
                    for name, (src, n) in workloads.items():
                        comp, back = tmp / f"w{workers}" / name, tmp / f"w{workers}_back" / name
                        before, cpu = client.run(time.process_time), time.process_time()
                        c = run(["-c", "none", str(src), str(comp), *OPTIONS, *on])
                        u = run(["-u", "none", str(comp), str(back), "-f", *on])
                        after, cpu = client.run(time.process_time), time.process_time() - cpu
                        busy = sorted(after[w] - before[w] for w in after)
                        identical = same_tree(plain / name, comp) and same_pixels(src, back)
                        rows.append((name, f"{workers} worker{'s' if workers > 1 else ''}", n / c, n / u,
                                     "yes" if identical else "NO", " + ".join(f"{b:.1f}" for b in busy), f"{cpu:.1f}"))
            print(f"cluster of {workers} worker(s): started and warmed in {start:.1f} s", flush=True)

        print("\n| workload | run | compress frames/s | decompress frames/s | archive identical, frames exact "
              "| workers' CPU s (-c and -u) | this process's CPU s |")
        print("|---|---|---|---|---|---|---|")
        for name, how, c, u, ok, busy, cpu in rows:
            print(f"| {name} | {how} | {c:.1f} | {u:.1f} | {ok} | {busy} | {cpu} |")
        if any(r[4] == "NO" for r in rows):
            raise SystemExit("an archive or a decoded sequence differs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
