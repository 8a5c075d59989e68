#!/usr/bin/env python3
"""TEZip end to end on a folder of frames: ratio, max abs error (measured after decoding), PSNR,
compress/decompress seconds, MB/s and frames/s, for SWP and DWP at several bounds.

    python benchmarks/bench_tezip.py MODEL_DIR IMAGE_DIR [--first N] [--count N] [--window 10]
        [--threshold 0.002] [--bounds 0 1 2 4 8] [--lanes K] [--json out.json]

Example on the dev frames the codec anchors use (bench_codecs.py: frames 200-259), with the bundled
default model (trained on frames 0-199 only):
    python benchmarks/bench_tezip.py default ../shared/data/megamind --first 200 --count 60 --window 34

Never part of the test suite.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=0.002)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--bounds", type=float, nargs="+", default=[0, 1, 2, 4, 8])
    ap.add_argument("--lanes", type=int)
    ap.add_argument("--loop", choices=["closed", "open"], default="closed")
    ap.add_argument("--predictions", nargs="+", default=["swp", "dwp"], choices=["swp", "dwp"])
    ap.add_argument("--quantizer", choices=["auto", "linquant", "medquant", "runmerge"], default="auto")
    ap.add_argument("--first", type=int, default=0, help="first frame (sorted by name) of IMAGE_DIR to use")
    ap.add_argument("--count", type=int, help="number of frames to use (default: all from --first)")
    ap.add_argument("--json")
    ap.add_argument("-f", "--force", action="store_true", help="CPU only")
    args = ap.parse_args()

    from prednet.device import select_device

    device = select_device(args.force)
    from frames.read import read_sequence
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from sequence.plan import CodecPlan, RunFlags

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.first or args.count is not None:  # a slice of the folder: linked into a folder of its own
            names = sorted(p.name for p in Path(args.images).iterdir() if p.is_file())
            chosen = names[args.first : None if args.count is None else args.first + args.count]
            if not chosen:
                sys.exit(f"no frames in {args.images} from index {args.first}")
            sliced = Path(tmp) / "frames"
            sliced.mkdir()
            for name in chosen:
                (sliced / name).symlink_to(Path(args.images).resolve() / name)
            args.images = str(sliced)
        original = read_sequence(args.images).frames.astype(np.int64)
        raw_mb = original.size / 1e6
        for pred in args.predictions:
            for b in args.bounds:
                tag = f"{pred}_abs{b:g}"
                comp, out = Path(tmp) / f"c_{tag}", Path(tmp) / f"o_{tag}"
                plan = CodecPlan.make(warmup=args.warmup, window=args.window if pred == "swp" else None,
                                      threshold=args.threshold if pred == "dwp" else None, mode="abs", bounds=(b,),
                                      loop=args.loop, lanes=args.lanes, quantizer=args.quantizer)
                flags = RunFlags(device=device)
                t = time.time()
                s = compress_folder(args.model, args.images, comp, plan, flags)
                t_c = time.time() - t
                t = time.time()
                decompress_folder(args.model, comp, out, flags)
                t_d = time.time() - t
                decoded = read_sequence(out).frames.astype(np.int64)
                err = np.abs(decoded - original)
                mse = float(np.mean(err.astype(np.float64) ** 2))
                rows.append(dict(prediction=f"{pred} {args.loop} {args.quantizer}", bound=b, bytes=s.compressed_bytes, ratio=s.ratio, keyframes=s.keyframes,
                                 max_abs_error=int(err.max()), psnr=math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
                                 compress_s=t_c, decompress_s=t_d, compress_MBps=raw_mb / t_c, decompress_MBps=raw_mb / t_d,
                                 compress_fps=len(original) / t_c, decompress_fps=len(original) / t_d,
                                 stage_seconds=s.stage_seconds))
                assert err.max() <= b, f"bound violated: {err.max()} > {b}"
    print(f"\n{len(original)} frames {original.shape[2]}x{original.shape[1]}x{original.shape[3]}, {raw_mb:.1f} MB raw, {device}")
    print("| prediction | abs bound | bytes | ratio | keyframes | max err | PSNR | compress s | decompress s | comp MB/s | decomp MB/s | comp fps | decomp fps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prediction']} | {r['bound']:g} | {r['bytes']} | {r['ratio']:.2f} | {r['keyframes']} | {r['max_abs_error']} | "
              f"{r['psnr']:.2f} | {r['compress_s']:.1f} | {r['decompress_s']:.1f} | {r['compress_MBps']:.2f} | "
              f"{r['decompress_MBps']:.2f} | {r['compress_fps']:.2f} | {r['decompress_fps']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
