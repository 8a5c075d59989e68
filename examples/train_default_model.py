#!/usr/bin/env python3
"""Reproduce the bundled default model (prednet/default_model/) from ../shared/data/megamind.

    python examples/train_default_model.py [FRAMES_DIR] [OUT_MODEL_DIR] [--epochs N]

Frames 0-199 of the dev clip are split into four sequences of 50 (the last one is validation);
frames 200-269 are never seen, so they measure how the model does on footage it did not train on.
Then train_data_create.py and `tezip.py -l` run exactly as a user would run them. Takes about
40 minutes on 2 CPU cores (about 1 minute per epoch).
"""

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STACK = (16, 32, 64)  # chosen by measurement: see prednet/default_model/README.md
TRAIN_FRAMES, PARTS = 200, 4


def run(*args):
    cmd = [sys.executable, *map(str, args)]
    print("$", " ".join(["python", *map(str, args)]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frames", nargs="?", default=REPO.parent / "shared" / "data" / "megamind", type=Path)
    p.add_argument("model", nargs="?", default=REPO / "build" / "default_model", type=Path)
    p.add_argument("--work", default=REPO / "build" / "default_model_data", type=Path)
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args()

    frames = sorted(args.frames.glob("*.png"))[:TRAIN_FRAMES]
    if len(frames) < TRAIN_FRAMES:
        sys.exit(f"{args.frames} holds {len(frames)} frames, {TRAIN_FRAMES} needed")
    seqs = args.work / "seqs"
    per_part = TRAIN_FRAMES // PARTS
    for k in range(PARTS):
        part = seqs / f"part{k}"
        part.mkdir(parents=True, exist_ok=True)
        for f in frames[k * per_part : (k + 1) * per_part]:
            link = part / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    run("train_data_create.py", seqs, args.work / "data", "-v", f"part{PARTS - 1}")
    run("tezip.py", "-l", args.model, args.work / "data", "--stack", *STACK, "--crop", 64, 96,
        "--epochs", args.epochs, "--steps", 25, "--seed", 0, "-f", "--overwrite")


if __name__ == "__main__":
    main()
