#!/usr/bin/env python3
"""The main job on the bundled sample: train a small PredNet, compress losslessly and within
|error| <= 2, decompress, and verify every pixel independently of TEZip's own checks.

    python examples/demo.py [WORK_DIR]      (default build/demo; `make demo` runs it)
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample"


def tezip(*args, script="tezip.py"):
    cmd = [sys.executable, str(REPO / script), *map(str, args)]
    print("$", " ".join(["python", script, *map(str, args)]), flush=True)
    t = time.time()
    r = subprocess.run(cmd, text=True, capture_output=True)
    out = (r.stdout + r.stderr).strip()
    if out:
        print("  " + out.replace("\n", "\n  "))
    if r.returncode != 0:
        sys.exit(f"demo failed: the command above exited with {r.returncode}")
    return time.time() - t


def load(folder):
    files = sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))
    return [p.name for p in files], np.stack([np.asarray(Image.open(p)) for p in files]).astype(np.int32)


def main():
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tezip(SAMPLE / "train", work / "data", "-v", "pan_diagonal", script="train_data_create.py")
    tezip("-l", work / "model", work / "data", "--epochs", 8, "--steps", 20, "--nt", 8, "--stack", 8, 16, 32)
    names, original = load(SAMPLE / "test")
    raw = original.size
    for label, bound in (("lossless", "0"), ("abs 2", "2")):
        comp, out = work / f"comp_{bound}", work / f"out_{bound}"
        t_c = tezip("-c", work / "model", SAMPLE / "test", comp, "-p", 1, "-w", 7, "-m", "abs", "-b", bound)
        t_u = tezip("-u", work / "model", comp, out)
        out_names, decoded = load(out)
        assert out_names == names, "decoded file names differ"
        err = int(np.abs(decoded - original).max())
        size = sum(f.stat().st_size for f in comp.iterdir())
        ok = err == 0 if bound == "0" else err <= int(bound)
        print(f"demo {label}: ratio {raw / size:.2f}, max abs error {err}, compress {t_c:.1f} s, "
              f"decompress {t_u:.1f} s -> {'OK' if ok else 'FAILED'}\n")
        if not ok:
            sys.exit(f"demo failed: max error {err} for bound {bound}")
    print("demo passed: lossless round trip bit-exact, abs-2 round trip within the bound")


if __name__ == "__main__":
    main()
