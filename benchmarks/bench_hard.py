#!/usr/bin/env python3
"""Hard content for a frame predictor (issue 14): TEZip lossless against zstd -19 on the raw bytes
and against JPEG-XL, on three sequences this script builds from a clip of RGB frames:

    cuts   30 frames, each from another part of the clip (frame (37 k) mod N): a scene cut at
           every frame, nothing to predict from the frame before
    pan    30 windows of 160 x 240 pixels sliding over one still frame of the clip (frame 210, or
           the middle one), 3 px down and 23 px right per frame, wrapping (a jump back every fifth
           frame or so): exact repeats, far beyond a block's motion search
    vq     30 frames of the clip (from frame 200) through a vector-quantizing codec and back:
           ffmpeg's cinepak when ffmpeg is on PATH (vq), else 4 x 4 RGB blocks mapped to a
           256-entry k-means codebook per frame (vq-numpy, numpy only)

TEZip rows: the default configuration without a model (MODEL_DIR none), the same with the
levers of issue 14 off (--global-motion 0 --no-intra --no-colour), and with --model MODEL_DIR the
given model. Every TEZip round trip is decoded and checked pixel by pixel. JPEG-XL: imagecodecs
(lossless, effort 7, one file per frame), else the `cjxl` binary, else left out with a note.

    python benchmarks/bench_hard.py FRAMES [--model MODEL_DIR] [--sets cuts pan vq] [--json PATH]

FRAMES: a folder of RGB images (e.g. ../shared/data/megamind, 360 x 264, 270 frames). Never part
of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

N_FRAMES = 30
PAN_SIZE = (160, 240)  # (height, width) of the pan's window
PAN_STEP = (3, 23)  # (down, right) pixels per frame
CUT_STRIDE = 37


def read_clip(folder):
    """The clip's frames: (N, H, W, 3) uint8, in name order."""
    from PIL import Image

    paths = sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def make_cuts(clip):
    """(30, H, W, 3): frame (37 k) mod N of the clip for k = 0..29."""
    return clip[[(k * CUT_STRIDE) % len(clip) for k in range(N_FRAMES)]]


def make_pan(clip):
    """(30, 160, 240, 3): the window at ((3 k) mod (H - 160), (23 k) mod (W - 240)) of one frame."""
    still = clip[210 if len(clip) > 210 else len(clip) // 2]
    (h, w), (sy, sx) = PAN_SIZE, PAN_STEP
    if still.shape[0] <= h or still.shape[1] <= w:
        raise SystemExit(f"the pan needs frames larger than {h} x {w}, got {still.shape[:2]}")
    return np.stack([still[(k * sy) % (still.shape[0] - h):][:h, (k * sx) % (still.shape[1] - w):][:, :w]
                     for k in range(N_FRAMES)])


def vq_numpy(frame, codewords=256, iterations=6, block=4, seed=0):
    """One frame through a block vector quantizer: (H, W, 3) uint8 → the same shape, each 4 x 4 RGB
    block replaced by the nearest of `codewords` k-means centroids (edges cropped to whole blocks
    are kept as they are)."""
    h, w = frame.shape[0] // block * block, frame.shape[1] // block * block
    x = frame[:h, :w].astype(np.float64).reshape(h // block, block, w // block, block, 3)
    vectors = x.transpose(0, 2, 1, 3, 4).reshape(-1, block * block * 3)
    rng = np.random.default_rng(seed)
    centroids = vectors[rng.choice(len(vectors), codewords, replace=False)]
    for _ in range(iterations):
        d = (vectors ** 2).sum(1)[:, None] - 2 * vectors @ centroids.T + (centroids ** 2).sum(1)[None]
        nearest = d.argmin(1)
        for k in range(codewords):
            members = vectors[nearest == k]
            if len(members):
                centroids[k] = members.mean(0)
    d = (vectors ** 2).sum(1)[:, None] - 2 * vectors @ centroids.T + (centroids ** 2).sum(1)[None]
    coded = np.rint(centroids[d.argmin(1)]).clip(0, 255).astype(np.uint8)
    out = frame.copy()
    out[:h, :w] = coded.reshape(h // block, w // block, block, block, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, 3)
    return out


def make_vq(clip, work):
    """(name, (30, H, W, 3)): frames 200.. (or the first 30) through cinepak (ffmpeg) or vq_numpy."""
    from PIL import Image

    first = 200 if len(clip) >= 200 + N_FRAMES else 0
    frames = clip[first:first + N_FRAMES]
    if shutil.which("ffmpeg") is None:
        return "vq-numpy", np.stack([vq_numpy(f, seed=i) for i, f in enumerate(frames)])
    src, back = work / "vq_src", work / "vq_back"
    src.mkdir()
    back.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(src / f"f_{i:04d}.png")
    quiet = ["ffmpeg", "-loglevel", "error", "-y"]
    subprocess.run(quiet + ["-framerate", "25", "-i", str(src / "f_%04d.png"), "-c:v", "cinepak", str(work / "vq.avi")],
                   check=True)
    subprocess.run(quiet + ["-i", str(work / "vq.avi"), "-pix_fmt", "rgb24", str(back / "f_%04d.png")], check=True)
    return "vq", read_clip(back)


def zstd19(frames):
    import zstandard

    return len(zstandard.ZstdCompressor(level=19).compress(np.ascontiguousarray(frames).tobytes()))


def jpegxl(frames, work):
    """(bytes, how) of lossless JPEG-XL, effort 7, one file per frame; (None, why) when unavailable."""
    try:
        import imagecodecs

        if imagecodecs.JPEGXL.available:
            total = 0
            for f in frames:
                data = imagecodecs.jpegxl_encode(f, lossless=True, effort=7, numthreads=1)
                assert np.array_equal(imagecodecs.jpegxl_decode(data, numthreads=1), f)
                total += len(data)
            return total, "imagecodecs"
    except ImportError:
        pass
    if shutil.which("cjxl"):
        from PIL import Image

        total = 0
        for i, f in enumerate(frames):
            png, jxl = work / f"j_{i}.png", work / f"j_{i}.jxl"
            Image.fromarray(f).save(png)
            subprocess.run(["cjxl", "-q", "100", "-e", "7", "--quiet", str(png), str(jxl)], check=True)
            total += jxl.stat().st_size
        return total, "cjxl"
    return None, "no JPEG-XL encoder (imagecodecs without libjxl, no cjxl): left out"


def tezip_roundtrip(frames, model, plan_options, work, tag):
    """(compressed bytes, seconds to compress) of a lossless TEZip round trip, checked pixel by pixel."""
    from PIL import Image

    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from frames.read import read_sequence
    from sequence.plan import CodecPlan, RunFlags

    src = work / f"in_{tag}"
    if not src.exists():
        src.mkdir()
        for i, f in enumerate(frames):
            Image.fromarray(f).save(src / f"f_{i:04d}.png")
    comp, out = work / f"c_{tag}", work / f"d_{tag}"
    plan = CodecPlan.make(warmup=1, window=34, bounds=(0,), **plan_options)
    t = time.perf_counter()
    summary = compress_folder(model, src, comp, plan, RunFlags())
    seconds = time.perf_counter() - t
    decompress_folder(model, comp, out, RunFlags())
    back = read_sequence(out).frames
    if not np.array_equal(back, frames):
        raise AssertionError(f"{tag}: the round trip is not exact")
    shutil.rmtree(comp)
    shutil.rmtree(out)
    return summary.compressed_bytes, seconds


LEVERS_OFF = dict(global_range=0, intra=False, colour=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames")
    p.add_argument("--model", help="also a TEZip row with this model (a model folder or `default`)")
    p.add_argument("--sets", nargs="+", default=["cuts", "pan", "vq"], choices=["cuts", "pan", "vq"])
    p.add_argument("--json")
    args = p.parse_args()
    clip = read_clip(args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.sets:
            if name == "cuts":
                frames = make_cuts(clip)
            elif name == "pan":
                frames = make_pan(clip)
            else:
                name, frames = make_vq(clip, work)
            raw = frames.nbytes
            row = {"set": name, "frames": list(frames.shape), "raw_bytes": raw}
            configs = [("tezip", "none", {}), ("tezip_levers_off", "none", LEVERS_OFF)]
            if args.model:
                configs.append(("tezip_model", args.model, {}))
            for key, model, options in configs:
                size, seconds = tezip_roundtrip(frames, model, options, work, f"{name}_{key}")
                row[key], row[key + "_seconds"] = size, seconds
            row["zstd19"] = zstd19(frames)
            row["jpegxl"], row["jpegxl_how"] = jpegxl(frames, work)
            rows.append(row)
            print(f"{name}: " + ", ".join(f"{k} {raw / row[k]:.2f}" for k in row
                                          if k.startswith(("tezip", "zstd", "jpegxl")) and isinstance(row[k], int)
                                          and not k.endswith("seconds")), flush=True)
    print()
    model_col = " | TEZip, given model" if args.model else ""
    print(f"| set | TEZip (no model) | TEZip, levers off{model_col} | zstd -19 | JPEG-XL |")
    print("|---|---|---|---|---|" + ("---|" if args.model else ""))
    for r in rows:
        ratio = {k: r["raw_bytes"] / r[k] for k in ("tezip", "tezip_levers_off", "tezip_model", "zstd19", "jpegxl")
                 if isinstance(r.get(k), int)}
        model_cell = f" | {ratio['tezip_model']:.2f}" if args.model else ""
        jxl = f"{ratio['jpegxl']:.2f}" if "jpegxl" in ratio else "n/a"
        print(f"| {r['set']} | {ratio['tezip']:.2f} | {ratio['tezip_levers_off']:.2f}{model_cell} | "
              f"{ratio['zstd19']:.2f} | {jxl} |")
    notes = {r["jpegxl_how"] for r in rows if r["jpegxl"] is None}
    for note in notes:
        print(note)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
