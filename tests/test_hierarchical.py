"""The hierarchical window coder (sequence/hierarchical.py): round trips within the bound on smooth
16-bit fields and 8-bit RGB, any window length, bytes independent of thread counts, corrupt chunks
refused with TezipError, its config, and CuPy against numba (skipped without CuPy)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from base.errors import TezipError
from conftest import REPO_ROOT, moving_squares
from sequence.hierarchical import HierarchicalCoder, coding_groups


def blob_field(n_frames=24, height=48, width=64, seed=0, noise=3.0):
    """A drifting, breathing Gaussian blob on a sloped background with read noise: (T, 1, H, W) uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    out = []
    for t in range(n_frames):
        cy, cx = 0.3 * height + 0.4 * t, 0.25 * width + 0.9 * t
        blob = 30000 * (1 + 0.2 * np.sin(t / 4)) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 9.0**2))
        out.append(8000 + 40 * yy + 25 * xx + blob + rng.normal(0, noise, (height, width)))
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)[:, None]


@pytest.fixture(scope="module")
def field():
    return blob_field()


def round_trip(coder, frames, **kw):
    chunks, decoded = coder.encode_window(frames, **kw)
    assert len(chunks) == len(frames) and all(isinstance(c, bytes) for c in chunks)
    back = coder.decode_window(chunks, frames.shape[1:], len(frames), **kw)
    np.testing.assert_array_equal(back, decoded)
    assert back.dtype == np.int32 and back.shape == frames.shape
    assert np.abs(back.astype(np.int64) - frames).max() <= coder.tolerance
    return chunks, back


@pytest.mark.parametrize("tolerance", [0, 1, 4, 16])
@pytest.mark.parametrize("method", ["hybrid", "lsi", "raster"])
def test_smooth_field_round_trip(field, tolerance, method):
    coder = HierarchicalCoder(tolerance=tolerance, max_value=65535, method=method)
    chunks, back = round_trip(coder, field)
    if tolerance == 0:
        np.testing.assert_array_equal(back, field)
    ratio = field.nbytes / sum(map(len, chunks))
    assert ratio > {0: 2.5, 1: 3.5, 4: 5.5, 16: 12}[tolerance], ratio  # it predicts, not just codes


def test_coarse_levels_tighter_bound_still_within(field):
    coder = HierarchicalCoder(tolerance=16, coarse_from=8, coarse_levels=3)
    assert coder.level_tolerance(0) == 8 and coder.level_tolerance(3) == 16
    round_trip(coder, field)


@pytest.mark.parametrize("tolerance", [0, 2])
def test_rgb_uint8(tolerance):
    frames = np.ascontiguousarray(moving_squares(9, 24, 40, channels=3, seed=3, noise=4).transpose(0, 3, 1, 2))
    coder = HierarchicalCoder(tolerance=tolerance, max_value=255)
    _, back = round_trip(coder, frames)
    assert back.max() <= 255


@pytest.mark.parametrize("n_frames", [1, 2, 3, 17])
def test_any_window_length(n_frames):
    frames = blob_field(n_frames, 20, 28, seed=n_frames)
    for tolerance in (0, 3):
        round_trip(HierarchicalCoder(tolerance=tolerance, anchor_spacing=8), frames)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 1, 7), (1, 5, 1), (1, 17, 3)])
def test_tiny_and_thin_frames(shape):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 1000, (5,) + shape).astype(np.int32)
    for tolerance in (0, 5):
        round_trip(HierarchicalCoder(tolerance=tolerance, levels=3, anchor_spacing=4), frames)


def test_extreme_values_and_huge_tolerance():
    rng = np.random.default_rng(2)
    frames = rng.choice([0, 65535], (4, 1, 9, 11)).astype(np.int32)
    round_trip(HierarchicalCoder(tolerance=0), frames)
    round_trip(HierarchicalCoder(tolerance=70000), frames)
    wide = rng.integers(0, (1 << 30) - 1, (3, 1, 8, 8)).astype(np.int32)
    round_trip(HierarchicalCoder(tolerance=0, max_value=(1 << 30) - 1), wide)


def test_reference_frame_before_the_window(field):
    coder = HierarchicalCoder(tolerance=2)
    _, first = coder.encode_window(field[:8])
    chunks, decoded = coder.encode_window(field[8:], first_is_keyframe=False, reference=first[-1])
    back = coder.decode_window(chunks, field.shape[1:], 16, first_is_keyframe=False, reference=first[-1])
    np.testing.assert_array_equal(back, decoded)
    assert np.abs(back - field[8:].astype(np.int64)).max() <= 2
    with pytest.raises(ValueError):
        coder.encode_window(field[8:], first_is_keyframe=False)


def test_coding_order_covers_every_frame_once_after_its_references():
    for n, spacing in [(1, 16), (2, 16), (17, 16), (60, 16), (33, 8), (10, 1)]:
        coded = set()
        for frames, refs in coding_groups(n, spacing):
            assert len({len(r) for r in refs}) == 1
            for t, r in zip(frames, refs):
                assert t not in coded and set(r) <= coded
            coded |= set(frames)
        assert coded == set(range(n))


def test_bytes_do_not_depend_on_thread_counts(field, tmp_path):
    """threads (the coder's pool) and NUMBA_NUM_THREADS (a fresh process) leave the bytes alone."""
    frames = field[:12]
    reference = HierarchicalCoder(tolerance=4, threads=2).encode_window(frames)[0]
    for threads in (1, 3):
        assert HierarchicalCoder(tolerance=4, threads=threads).encode_window(frames)[0] == reference
    np.save(tmp_path / "frames.npy", frames)
    script = ("import sys, numpy as np; from sequence.hierarchical import HierarchicalCoder as H; "
              "c = H(tolerance=4, threads=1); f = np.load(sys.argv[1]); "
              "sys.stdout.buffer.write(b''.join(c.encode_window(f)[0]))")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "frames.npy")], capture_output=True,
                         env=env, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"".join(reference)


def test_config_round_trip():
    coder = HierarchicalCoder(tolerance=7, max_value=4095, anchor_spacing=8, levels=3, coef_bits=9,
                              raster_coef_bits=12, method="lsi", fit_rows=4096)
    config = coder.get_config()
    assert config["id"] == "hierarchical" and HierarchicalCoder.from_config(config) == coder
    for bad in [dict(config, id="ctxrange"), dict(config, surprise=1), dict(config, tolerance=-1),
                dict(config, anchor_spacing=12), dict(config, levels=9), dict(config, method="magic"),
                dict(config, max_value=0), dict(config, tolerance=True), "not a dict"]:
        with pytest.raises(TezipError):
            HierarchicalCoder.from_config(bad)


@pytest.fixture(scope="module")
def coded():
    frames = blob_field(10, 24, 32, seed=5)
    coder = HierarchicalCoder(tolerance=1)
    chunks, decoded = coder.encode_window(frames)
    return coder, frames, chunks, decoded


def test_truncated_or_extended_chunks_are_refused(coded):
    coder, frames, chunks, _ = coded
    for t in (0, 3, 9):
        for cut in (1, 2, 5, len(chunks[t]) // 2, len(chunks[t]) - 1, len(chunks[t])):
            bad = list(chunks)
            bad[t] = chunks[t][:-cut]
            with pytest.raises(TezipError):
                coder.decode_window(bad, frames.shape[1:], len(frames))
        bad = list(chunks)
        bad[t] = chunks[t] + b"\0"
        with pytest.raises(TezipError):
            coder.decode_window(bad, frames.shape[1:], len(frames))


def test_garbled_chunks_never_crash(coded):
    """Flipped bytes: TezipError, or (when the damage still parses) some frames in 0..max_value; the
    archive's checksums catch the rest."""
    coder, frames, chunks, _ = coded
    rng = np.random.default_rng(0)
    errors = 0
    for trial in range(60):
        bad = [bytearray(c) for c in chunks]
        t = int(rng.integers(len(bad)))
        for _ in range(int(rng.integers(1, 4))):
            bad[t][int(rng.integers(len(bad[t])))] ^= int(rng.integers(1, 256))
        try:
            back = coder.decode_window([bytes(b) for b in bad], frames.shape[1:], len(frames))
        except TezipError:
            errors += 1
            continue
        assert back.shape == frames.shape and back.min() >= 0 and back.max() <= coder.max_value
    assert errors > 30


def test_malformed_windows_are_refused(coded):
    coder, frames, chunks, _ = coded
    shape = frames.shape[1:]
    cases = [
        (chunks[:-1], shape, len(frames)),  # a chunk missing
        (chunks, shape, len(frames) + 1),
        (chunks, (1, 10**6, 10**6), len(frames)),  # more pixels than the chunks can hold: before allocating
        (chunks, (0, 24, 32), len(frames)),
        (chunks, "shape", len(frames)),
        (chunks, shape, 0),
        ([b""] + chunks[1:], shape, len(frames)),
        ([bytes([99]) + chunks[0][1:]] + chunks[1:], shape, len(frames)),  # another format version
        ([None] + chunks[1:], shape, len(frames)),
    ]
    for case in cases:
        with pytest.raises(TezipError):
            coder.decode_window(*case)
    other = HierarchicalCoder(tolerance=1, levels=2)  # another config reads the side information differently
    with pytest.raises(TezipError):
        other.decode_window(chunks, shape, len(frames))


def test_encoder_refuses_values_outside_the_range():
    coder = HierarchicalCoder(tolerance=0, max_value=255)
    with pytest.raises(ValueError):
        coder.encode_window(np.full((2, 1, 4, 4), 256, np.int32))
    with pytest.raises(ValueError):
        coder.encode_window(np.zeros((2, 4, 4), np.int32))


def test_cupy_matches_numba(field):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no GPU")
    from stages._lsi import FROM_REFS, INTERP, kernels_for

    rng = np.random.default_rng(0)
    rec = rng.integers(0, 65535, (4, 2, 37, 45)).astype(np.int32)
    x = rng.integers(0, 65535, rec.shape).astype(np.int32)
    frames, refs = np.array([2, 3], np.int64), np.array([[0, 1], [1, 0]], np.int64)
    cases = [(INTERP, 0, 8, 4, 8, 4, 0), (INTERP, 4, 8, 0, 4, 4, 1), (FROM_REFS, 0, 16, 0, 16, 0, -1)]
    for kind, i0, si, j0, sj, h, axis in cases:
        for fitted, tol in ((True, 0), (True, 7), (False, 3)):
            coefs = rng.integers(-3000, 3000, 6).astype(np.int64) << 4
            outs = []
            for xp in (np, cupy):
                run, lorenzo, samples = kernels_for(xp)
                r, codes = xp.asarray(rec.copy()), xp.zeros((2, 37 * 45), np.int32)
                run(r, xp.asarray(x), codes, xp.asarray(frames), xp.asarray(refs), 1, i0, si, j0, sj, h, axis, kind,
                    fitted, xp.asarray(coefs), 12345, tol, 65535, True, 7)
                A, y = xp.zeros((6 if kind == INTERP else 2, 50)), xp.zeros(50)
                samples(r, xp.asarray(x), xp.asarray(frames), xp.asarray(refs), 1, i0, si, j0, sj, h, axis, kind, A, y)
                lorenzo(r, xp.asarray(x), codes, xp.asarray(frames), 0, 8, tol, 65535, True, 3)
                outs.append([a.get() if xp is cupy else a for a in (r, codes, A, y)])
            for a, b in zip(*outs):
                np.testing.assert_array_equal(a, b)
    coder_cpu, coder_gpu = HierarchicalCoder(tolerance=4), HierarchicalCoder(tolerance=4, device="GPU")
    chunks, decoded = coder_cpu.encode_window(field[:10])
    assert coder_gpu.encode_window(field[:10])[0] == chunks
    np.testing.assert_array_equal(coder_gpu.decode_window(chunks, field.shape[1:], 10), decoded)
