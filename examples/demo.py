#!/usr/bin/env python3
"""The main job on the bundled sample with the bundled default model: compress losslessly and
within |error| <= 2, decompress, and verify every pixel independently of TEZip's own checks; then
the three training sequences in one batch command with a report PNG each.

    python examples/demo.py [WORK_DIR]      (default build/demo; `make demo` runs it)

No training is needed (`python tezip.py -l` trains a model of your own; see README).
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
T0 = time.time()


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
    names, original = load(SAMPLE / "test")
    raw = original.size
    for label, bound in (("lossless", "0"), ("abs 2", "2")):
        comp, out = work / f"comp_{bound}", work / f"out_{bound}"
        t_c = tezip("-c", "default", SAMPLE / "test", comp, "-p", 1, "-w", 7, "-m", "abs", "-b", bound)
        t_u = tezip("-u", "default", comp, out)
        out_names, decoded = load(out)
        assert out_names == names, "decoded file names differ"
        err = int(np.abs(decoded - original).max())
        size = sum(f.stat().st_size for f in comp.iterdir())
        ok = err == 0 if bound == "0" else err <= int(bound)
        print(f"demo {label}: ratio {raw / size:.2f}, max abs error {err}, compress {t_c:.1f} s, "
              f"decompress {t_u:.1f} s -> {'OK' if ok else 'FAILED'}\n")
        if not ok:
            sys.exit(f"demo failed: max error {err} for bound {bound}")
    # Batch: a folder of sequence folders in one command, a report PNG per sequence.
    tezip("-c", "default", SAMPLE / "train", work / "batch", "-w", 7, "-m", "abs", "-b", 1, "--report")
    tezip("-u", "default", work / "batch", work / "batch_out")
    for seq in sorted(p for p in (SAMPLE / "train").iterdir() if p.is_dir()):
        err = int(np.abs(load(work / "batch_out" / seq.name)[1] - load(seq)[1]).max())
        if err > 1:
            sys.exit(f"demo failed: {seq.name} decoded with max error {err} for bound 1")
    reports = sorted(str(p.relative_to(work)) for p in (work / "batch").glob("*/report.png"))
    print(f"reports: {', '.join(reports)} (in {work})\n")
    print(f"demo passed in {time.time() - T0:.0f} s: lossless round trip bit-exact, abs-2 round trip within the bound, "
          "batch of 3 sequences restored within abs 1")


if __name__ == "__main__":
    main()
