#!/usr/bin/env python3
"""16-bit frames (issues 7 and 15): TEZip end to end (whole archives, written and decoded by the
command line's functions, every pixel checked) against SZ3, JPEG-XL, zstd and the HDF5 filters
detectors write, on the six smooth time-evolving sets of benchmarks/fields.py and the detector
frames of the tests (tests/conftest.py detector_frames, shot noise dominated).

    python benchmarks/bench_16bit.py [--sets advdiff,heat,...,tests] [--size 256] [--frames 200]
        [--eval 60] [--bounds 1 4 16 64] [--model MODEL_DIR] [--train EPOCHS [--lr RATE] [--stack C ...] [--skip K|auto [--skip-frames N] [--frame-input] [--train-skip]]]
        [--json PATH]

For each set: the last --eval frames (the earlier ones are what a model may be trained on; nothing
here trains), as one 16-bit TIFF stack given to TEZip as a user would. TEZip rows:

    hierarchical  --order hierarchical -w EVAL-1 (one window), no model: the default for such data
    sequential    -c none (the previous frame moved), -w EVAL-1
    model         -c MODEL (sequential with a 1-channel or the bundled RGB model), when --model is given
    trained       with --train E: per set, a 1-channel PredNet (stack 16/32/64 or --stack, 128x128 crops,
    one-step      nt 10, E epochs of 25 batches of 4) trained on the set's earlier frames (the last
                  15 % of them for validation), and the same architecture trained one step; both
                  -c MODEL sequential, losslessly and at the smallest bound, with the validation
                  loss of the trained model next to the previous frame's and linear extrapolation's;
                  with --skip K both models have a K x K linear skip over N previous frames
                  (--skip-frames, default 2), both started from its least-squares taps (which
                  training keeps when no epoch beats their validation loss), the taps kept as fitted
                  unless --train-skip; with --frame-input PredNet's first layer also sees those
                  frames (-l --frame-input); --lr: Adam's learning rate (-l --lr, default 1e-3)
    fitted        with --skip: those least-squares taps alone (tezip.py -l --epochs 0: no
                  gradient step, PredNet's correction zero); --train 0: only this row (minutes),
                  with --skip auto the size the training chose (tezip.py -l --skip auto)

Anchors (benchmarks/bench_smooth.py): SZ3 (pysz, 3-D, abs, int32 and float32: the better),
JPEG-XL lossless per frame, zstd -19 raw, HDF5 Bitshuffle-LZ4 and Blosc2-zstd. Ratio = raw bytes /
compressed bytes (TEZip: its three files). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

SETS = ("advdiff", "heat", "gs_spots", "gs_waves", "vortex", "detector", "tests")


def frames_of(name, size, n):
    if name == "tests":
        from conftest import detector_frames

        return detector_frames(n, size, size, seed=0)[..., 0]
    import fields

    return fields.make(name, size, n)


def tezip(model, stack, bound, window, order, work, tag):
    from compress.pipeline import compress_folder
    from decompress.pipeline import decompress_folder
    from frames.read import read_tiff_stack
    from sequence.plan import CodecPlan, RunFlags

    comp, out = work / f"c_{tag}_{bound}", work / f"d_{tag}_{bound}"
    t = time.perf_counter()
    s = compress_folder(model, stack, comp, CodecPlan.make(window=window, bounds=(bound,), order=order), RunFlags())
    enc = time.perf_counter() - t
    t = time.perf_counter()
    decompress_folder(model, comp, out, RunFlags())
    dec = time.perf_counter() - t
    original = read_tiff_stack(stack).frames.astype(np.int64)
    err = int(np.abs(read_tiff_stack(out / stack.name).frames.astype(np.int64) - original).max())
    assert err <= bound, (tag, bound, err)
    return dict(bytes=s.compressed_bytes, max_error=err, encode_s=enc, decode_s=dec)


def train_models(name, early, work, epochs, skip=0, skip_frames=2, frame_input=False, lr=1e-3, train_skip=False,
                 stack=(16, 32, 64)):
    """({tag: model dir} ("trained", "one_step", and with a skip "fitted": its least-squares taps
    alone, no gradient step), the TrainResult of the trained one, its training seconds, the fitted
    model's validation loss or None), for a set's early frames
    (T, H, W) uint16: train_data_create's files from two sequence folders, then training."""
    from prednet.train import TrainOptions, train
    from train_data_create import create_train_data
    from conftest import write_frames

    seqs = work / f"seqs_{name}"
    cut = int(len(early) * 0.85)
    write_frames(seqs / "train", early[:cut, ..., None])
    write_frames(seqs / "val", early[cut:, ..., None])
    data = work / f"hkl_{name}"
    create_train_data(seqs, data, val_dirs=["val"])
    common = dict(batch_size=4, nt=10, val_sequences=8, crop=(128, 128), hidden_stack=tuple(stack), seed=0, skip=skip,
                  skip_frames=skip_frames, frame_input=frame_input, train_skip=train_skip, learning_rate=lr)
    t = time.perf_counter()
    if epochs == 0:  # the least-squares taps alone
        result = train(work / f"m0_{name}", data, TrainOptions(epochs=0, steps_per_epoch=1, **common))
        return {"fitted": work / f"m0_{name}"}, result, time.perf_counter() - t, result.best_val_loss
    result = train(work / f"m_{name}", data, TrainOptions(epochs=epochs, steps_per_epoch=25, **common))
    seconds = time.perf_counter() - t
    train(work / f"m1_{name}", data, TrainOptions(epochs=1, steps_per_epoch=1, **common))
    models, fitted_loss = {"trained": work / f"m_{name}", "one_step": work / f"m1_{name}"}, None
    if skip:
        models["fitted"] = work / f"m0_{name}"
        fitted_loss = train(models["fitted"], data, TrainOptions(epochs=0, steps_per_epoch=1, **common)).best_val_loss
    return models, result, seconds, fitted_loss


def main():
    import bench_smooth as anchors
    import tifffile

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--eval", type=int, default=60)
    p.add_argument("--bounds", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--model")
    p.add_argument("--train", type=int, metavar="EPOCHS",
                   help="train a model per set on its earlier frames (0 with --skip: the fitted taps alone)")
    p.add_argument("--skip", type=lambda v: v if v == "auto" else int(v), default=0, metavar="K",
                   help="with --train: models with a K x K linear skip (tezip.py -l --skip K, or auto)")
    p.add_argument("--skip-frames", type=int, default=2, metavar="N",
                   help="with --skip: the previous frames the skip sees (tezip.py -l --skip-frames N)")
    p.add_argument("--frame-input", action="store_true",
                   help="with --skip: PredNet's first layer also sees the frames (tezip.py -l --frame-input)")
    p.add_argument("--lr", type=float, default=1e-3, help="with --train: Adam's learning rate (tezip.py -l --lr)")
    p.add_argument("--train-skip", action="store_true",
                   help="with --skip: the epochs also move the fitted taps (tezip.py -l --train-skip)")
    p.add_argument("--stack", type=int, nargs="+", default=[16, 32, 64], metavar="C",
                   help="with --train: the models' hidden layer channels (tezip.py -l --stack; default 16 32 64)")
    p.add_argument("--json")
    args = p.parse_args()
    if args.train == 0 and not args.skip:
        p.error("--train 0 (the fitted taps alone) needs --skip")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.sets.split(","):
            run = frames_of(name, args.size, args.frames)
            frames = run[-args.eval:]
            stack = work / f"{name}.tif"
            tifffile.imwrite(stack, frames, photometric="minisblack")
            raw = frames.nbytes
            res = results[name] = {"raw": raw}
            orders = [("hierarchical", "none", "hierarchical"), ("sequential", "none", "sequential")]
            if args.model:
                orders.append(("model", args.model, "sequential"))
            for bound in [0] + args.bounds:
                for tag, model, order in orders:
                    res[f"{tag}|{bound}"] = tezip(model, stack, bound, args.eval - 1, order, work, f"{name}_{tag}")
                if args.train is not None and bound in (0, min(args.bounds)):
                    if bound == 0:
                        models, result, seconds, fitted_loss = train_models(name, run[: -args.eval], work, args.train,
                                                                            args.skip, args.skip_frames, args.frame_input,
                                                                            args.lr, args.train_skip, args.stack)
                        res["training"] = dict(epochs=args.train, stack=args.stack, skip=args.skip, skip_frames=args.skip_frames,
                                               frame_input=args.frame_input, lr=args.lr, train_skip=args.train_skip,
                                               seconds=seconds, val_loss=result.best_val_loss,
                                               previous_frame=result.previous_val_loss,
                                               extrapolation=result.extrapolation_val_loss,
                                               fitted=fitted_loss, skip_size=list(result.skip_size),
                                               skip_errors=result.skip_errors)
                    for tag, model in models.items():
                        res[f"{tag}|{bound}"] = tezip(str(model), stack, bound, args.eval - 1, "sequential", work,
                                                      f"{name}_{tag}")
                if bound:
                    for dtype in (np.int32, np.float32):
                        res[f"sz3_{np.dtype(dtype).name}|{bound}"] = anchors._try(anchors.sz3, frames, bound, dtype)
            res["jpegxl"] = anchors._try(anchors.jpegxl, frames)
            res["zstd"] = anchors._try(anchors.zstd, frames)
            for f in ("bslz4", "blosc2"):
                res[f] = anchors._try(anchors.hdf5, frames, f)
            print(f"{name}: " + ", ".join(f"{k} {raw / v['bytes']:.2f}" for k, v in res.items()
                                          if isinstance(v, dict) and "bytes" in v), flush=True)

    def r(res, key):
        v = res.get(key, {})
        return res["raw"] / v["bytes"] if "bytes" in v else float("nan")

    print("\nratio (raw / compressed); TEZip = its whole archive; every pixel checked within the bound\n")
    head = "| set | lossless: TEZip hier. / seq. / JPEG-XL / zstd / bslz4 / blosc2 |"
    head += "".join(f" abs {b}: TEZip hier. / seq. / SZ3 (× SZ3) |" for b in args.bounds)
    print(head)
    print("|---|---|" + "---|" * len(args.bounds))
    for name, res in results.items():
        line = (f"| {name} | **{r(res, 'hierarchical|0'):.2f}** / {r(res, 'sequential|0'):.2f} / {r(res, 'jpegxl'):.2f} / "
                f"{r(res, 'zstd'):.2f} / {r(res, 'bslz4'):.2f} / {r(res, 'blosc2'):.2f} |")
        for b in args.bounds:
            sz3 = max(r(res, f"sz3_int32|{b}"), r(res, f"sz3_float32|{b}"))
            hier = r(res, f"hierarchical|{b}")
            line += f" **{hier:.1f}** / {r(res, f'sequential|{b}'):.1f} / {sz3:.1f} ({hier / sz3:.2f}×) |"
        print(line)
    if args.model:
        print("\nwith the model (sequential): " + "; ".join(
            f"{n}: " + " / ".join(f"{r(res, f'model|{b}'):.2f}" for b in [0] + args.bounds) for n, res in results.items()))
    if args.train == 0:
        b = min(args.bounds)
        print(f"\n| set | lossless: none / fitted | abs {b}: none / fitted | skip (K x K / N frames) | validation loss: "
              "fitted / previous frame / extrapolation |")
        print("|---|---|---|---|---|")
        for name, res in results.items():
            t = res["training"]
            K, N = t["skip_size"] or (t["skip"], t["skip_frames"])
            print(f"| {name} | {r(res, 'sequential|0'):.3f} / {r(res, 'fitted|0'):.3f} | "
                  f"{r(res, f'sequential|{b}'):.2f} / {r(res, f'fitted|{b}'):.2f} | {K}x{K} / {N} | "
                  f"{t['fitted']:.3g} / {t['previous_frame']:.3g} / {t['extrapolation']:.3g} |")
    if args.train:
        b = min(args.bounds)
        print(f"\n| set | lossless: none / fitted / one-step / trained (trained vs one-step, vs fitted) | abs {b}: "
              "none / fitted / one-step / trained | validation loss: trained / fitted / previous frame / "
              "extrapolation |")
        print("|---|---|---|---|")
        for name, res in results.items():
            t = res["training"]
            fit = f"{t['fitted']:.3g}" if t.get("fitted") is not None else "–"
            print(f"| {name} | {r(res, 'sequential|0'):.3f} / {r(res, 'fitted|0'):.3f} / {r(res, 'one_step|0'):.3f} / "
                  f"{r(res, 'trained|0'):.3f} ({r(res, 'trained|0') / r(res, 'one_step|0') - 1:+.1%}, "
                  f"{r(res, 'trained|0') / r(res, 'fitted|0') - 1:+.1%}) | {r(res, f'sequential|{b}'):.2f} / "
                  f"{r(res, f'fitted|{b}'):.2f} / {r(res, f'one_step|{b}'):.2f} / {r(res, f'trained|{b}'):.2f} | "
                  f"{t['val_loss']:.3g} / {fit} / {t['previous_frame']:.3g} / {t['extrapolation']:.3g} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
