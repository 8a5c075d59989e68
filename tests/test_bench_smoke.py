"""Smoke test of benchmarks/bench_codecs.py: three tiny frames, only the anchors that need nothing
beyond requirements.txt (zstd on frame differences), no plot. Needs neither ffmpeg nor the
benchmark-only packages."""

import json
import subprocess
import sys

from conftest import REPO_ROOT, make_sequence


def test_bench_codecs_writes_json(tmp_path):
    frames = make_sequence(tmp_path / "frames", n_frames=3, height=16, width=24, noise=2)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_codecs.py"), str(tmp_path / "frames"),
         "--codecs", "zstd-diff16", "zstd-diff8", "--no-plot", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((out / "codecs.json").read_text())
    assert result["data"]["frames"] == 3 and result["data"]["raw_bytes"] == frames.nbytes
    rows = {r["codec"]: r for r in result["rows"]}
    assert set(rows) == {"zstd-diff16", "zstd-diff8"}
    for row in rows.values():
        assert row["check"] == "ok" and row["max_abs_error"] == 0 and row["psnr"] is None
        assert row["bytes"] > 0 and row["ratio"] == frames.nbytes / row["bytes"]
    assert (out / "codecs.md").read_text().count("| zstd-diff") == 2
