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


def test_bench_hard_builds_its_hard_content():
    """benchmarks/bench_hard.py's generators (the TEZip runs are left to the benchmark)."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_hard

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (40, 170, 260, 3)).astype(np.uint8)
    cuts = bench_hard.make_cuts(clip)
    assert cuts.shape == (30, 170, 260, 3) and (cuts[1] == clip[37]).all() and (cuts[2] == clip[74 % 40]).all()
    pan = bench_hard.make_pan(clip)
    assert pan.shape == (30, 160, 240, 3)
    still = clip[20]
    for k in (0, 1, 5):  # 3 down, 23 right per frame, modulo the room left (10 rows, 20 columns)
        y, x = (3 * k) % 10, (23 * k) % 20
        assert (pan[k] == still[y:y + 160, x:x + 240]).all()
    frame = clip[0, :17, :21]
    coded = bench_hard.vq_numpy(frame, codewords=8, iterations=2)
    assert coded.shape == frame.shape and coded.dtype == np.uint8
    assert (coded[16:] == frame[16:]).all() and (coded[:, 20:] == frame[:, 20:]).all()  # edges kept
    blocks = coded[:16, :20].reshape(4, 4, 5, 4, 3).transpose(0, 2, 1, 3, 4).reshape(20, -1)
    assert len(np.unique(blocks, axis=0)) <= 8


def test_bench_headroom_orders_its_bounds():
    """benchmarks/bench_headroom.py on a small advection-diffusion run (64x64, 40 frames, the last 10
    held out): the clean field is the run without its noise, and its rows come in the order the
    physics dictates: the noise floor below the fitted filter below the previous frame; the filter
    applied to the product's own fit (prednet.skipfit) predicts better than extrapolation, and the
    recursive row without denoising (k = 1) reproduces it."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_headroom
    import fields

    run, clean = fields.make("advdiff", 64, 40, with_clean=True)
    assert (run == fields.make("advdiff", 64, 40)).all()
    noise = run.astype(np.float64) - clean
    assert abs(noise.std() - fields.FIELDS["advdiff"][2]) < 0.2 and abs(noise.mean()) < 0.05
    row = bench_headroom.measure("advdiff", 64, 40, 10, 5, 3, mlp_epochs=1)
    assert row["noise floor"] < row["clean history"] <= row["fitted filter"] + 0.05
    assert row["fitted filter"] < row["previous frame"] - 1.0
    frames = run.astype(np.float64)
    filt = bench_headroom.FittedFilter(frames, 30, 5, 3)
    extrapolated = np.mean([bench_headroom.bits_per_pixel(frames[t] - 2 * frames[t - 1] + frames[t - 2])
                            for t in range(30, 40)])
    assert row["fitted filter"] < extrapolated
    assert np.isfinite(row["local MLP"]) and row["local MLP"] > row["noise floor"]
    # the recursive row's own fit: with k = 1 (no denoising) it is the product's fitted filter
    plain = bench_headroom.recursive_denoised(frames, 30, 5, 3, 1.0, refits=1)
    for t in range(30, 40):
        expected = filt.predict([frames[t - 1 - j] for j in range(3)])
        assert np.abs(plain[t] - expected).max() < 0.05, t
    assert row["noise floor"] < row["recursive 0.7"] < row["previous frame"]
