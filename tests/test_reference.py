"""The fixed-order reference kernel (prednet/reference.py): the same bits at any thread count, in
any batch, across predict/update schedules with resets and restored states, on numba and on the
CUDA source (CuPy where there is a GPU; compiled for the CPU with g++ and run thread by thread
otherwise); close to Keras; its tanh within its documented error."""

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from conftest import moving_squares  # noqa: E402
from prednet import reference as ref  # noqa: E402
from prednet.scale import ValueScale  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H, W = 20, 28  # padded to 24 x 32 by the 4-layer tiny model: exercises the edge replication


def frames_for(lanes, steps=6, seed=0, height=H, width=W):
    """(steps, lanes, H, W, 3) float32 in [0, 1]: a different moving-squares sequence per lane."""
    seqs = [moving_squares(steps, height, width, 3, seed=seed + k) for k in range(lanes)]
    return np.stack([ValueScale(0, 255).to_model(s) for s in seqs], axis=1)


def run_schedule(predictor, frames, resets):
    """predict(reset)/update(frame) per step; returns the predictions (steps, lanes, H, W, C)."""
    out = []
    for s in range(len(frames)):
        out.append(predictor.predict(resets[s]))
        predictor.update(frames[s])
    return np.stack(out)


RESETS3 = np.array([[1, 1, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]], np.float32)


@pytest.fixture(scope="module")
def weights(tiny_model):
    return ref.ReferenceWeights.from_model_dir(tiny_model(3))


@pytest.fixture
def all_threads(monkeypatch):
    """Small kernels run on the calling thread alone; make them use every thread too."""
    monkeypatch.setattr(ref, "SERIAL_ELEMENTS", 0)
    monkeypatch.setattr(ref, "SERIAL_FLOPS", 0)


# ------------------------------------------------------------------------------------------ (a)

CHILD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from prednet import reference as ref
ref.SERIAL_ELEMENTS = ref.SERIAL_FLOPS = 0  # every kernel on every thread, however small
frames, resets = np.load(sys.argv[3]), np.load(sys.argv[4])
p = ref.ReferencePredictor(ref.ReferenceWeights.from_model_dir(sys.argv[2]), frames.shape[2], frames.shape[3],
                           frames.shape[1])
out = []
for s in range(len(frames)):
    out.append(p.predict(resets[s]))
    p.update(frames[s])
import numba
np.save(sys.argv[5], np.stack(out))
print(numba.get_num_threads())
"""


def test_thread_count_does_not_change_a_bit(weights, tiny_model, tmp_path, all_threads):
    frames = frames_for(3)
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "resets.npy", RESETS3)
    here = run_schedule(ref.ReferencePredictor(weights, H, W, 3), frames, RESETS3)
    serial = ref.SERIAL_ELEMENTS, ref.SERIAL_FLOPS
    ref.SERIAL_ELEMENTS = ref.SERIAL_FLOPS = 1 << 40  # and all on one thread here
    assert run_schedule(ref.ReferencePredictor(weights, H, W, 3), frames, RESETS3).tobytes() == here.tobytes()
    ref.SERIAL_ELEMENTS, ref.SERIAL_FLOPS = serial
    for threads in (1, 3):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        out = tmp_path / f"pred{threads}.npy"
        r = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(tiny_model(3)), tmp_path / "frames.npy",
                            tmp_path / "resets.npy", out], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[-1] == str(threads)
        assert np.load(out).tobytes() == here.tobytes(), f"NUMBA_NUM_THREADS={threads}"


def test_lane_alone_equals_lane_in_a_batch(weights, all_threads):
    batch_frames = frames_for(3, seed=10)
    in_batch = run_schedule(ref.ReferencePredictor(weights, H, W, 3), batch_frames, RESETS3)
    for k in range(3):
        alone = run_schedule(ref.ReferencePredictor(weights, H, W, 1), batch_frames[:, k: k + 1], RESETS3[:, k: k + 1])
        assert alone.tobytes() == in_batch[:, k: k + 1].tobytes(), f"lane {k}"
    # ... and other lanes' contents do not matter either
    other = batch_frames.copy()
    other[:, 0] = frames_for(1, seed=99)[:, 0]
    other[:, 2] = 1.0 - other[:, 2]
    again = run_schedule(ref.ReferencePredictor(weights, H, W, 3), other, RESETS3)
    assert again[:, 1].tobytes() == in_batch[:, 1].tobytes()


# ------------------------------------------------------------------------------------------ (b)


def test_resets_and_restored_states_replay_a_fresh_run(weights):
    frames = frames_for(2, steps=7, seed=20)
    p = ref.ReferencePredictor(weights, H, W, 2)
    got = []
    for s in range(7):
        saved = p.states
        first = p.predict(np.array([s in (0, 4), s == 0], np.float32))
        # as run_windows under DWP: restore the states, redo the step with lane 1 reset too
        p.states = saved
        again = p.predict(np.array([s in (0, 4), s == 0], np.float32))
        assert again.tobytes() == first.tobytes()
        if s == 3:
            p.states = saved
            first = p.predict(np.array([0, 1], np.float32))
        got.append(first)
        p.update(frames[s])
    got = np.stack(got)
    # lane 0 restarted at step 4: a fresh predictor fed frames 4.. from scratch gives the same
    fresh = run_schedule(ref.ReferencePredictor(weights, H, W, 1), frames[4:, :1], np.array([[1], [0], [0]], np.float32))
    assert fresh.tobytes() == got[4:, :1].tobytes()
    # lane 1 restarted at step 3
    fresh = run_schedule(ref.ReferencePredictor(weights, H, W, 1), frames[3:, 1:], np.array([[1], [0], [0], [0]], np.float32))
    assert fresh.tobytes() == got[3:, 1:].tobytes()
    # lane 0 over steps 0..3 is a plain run
    plain = run_schedule(ref.ReferencePredictor(weights, H, W, 1), frames[:4, :1], np.array([[1], [0], [0], [0]], np.float32))
    assert plain.tobytes() == got[:4, :1].tobytes()


def test_run_windows_drives_it(weights):
    """run_windows (DWP, closed loop) with the reference predictor, placing keyframes and so
    restoring `states` to predict again: the same schedule twice gives the same bits."""
    from sequence.windows import dwp_lane_starts, run_windows

    seq = moving_squares(10, H, W, 3, seed=5)

    class Coder:
        def model_pays(self, f, keyframe):
            return True

        def keyframe(self, f):
            return seq[f]

        def frame(self, f, prediction):
            return seq[f]

        def prediction_error(self, f, prediction):  # DWP asks the coder (pixel units)
            d = seq[f].astype(np.float64) - prediction
            return float(np.sum(d * d)), d.size

    class Recording(ref.ReferencePredictor):
        def predict(self, reset):
            out = super().predict(reset)
            self.outputs.append(out)
            return out

    results = []
    for _ in range(2):
        keys = np.zeros(10, bool)
        p = Recording(weights, H, W, 2)
        p.outputs = []
        run_windows(p, 10, dwp_lane_starts(10, 2), keys, Coder(), threshold=0.06)
        results.append((keys.copy(), np.stack(p.outputs)))
    assert np.array_equal(results[0][0], results[1][0])
    assert len(results[0][1]) > 5  # keyframes were placed: some steps were predicted twice
    assert results[0][1].tobytes() == results[1][1].tobytes()


# ------------------------------------------------------------------------------------------ (c)


def test_close_to_keras(tiny_model, weights):
    from prednet.modelfile import load_model
    from prednet.predictor import NextFramePredictor

    prednet, _ = load_model(tiny_model(3))
    frames = frames_for(3, seed=30)
    keras_out = run_schedule(NextFramePredictor(prednet, H, W, 3), frames, RESETS3)
    ours = ref.ReferencePredictor(prednet, H, W, 3)  # built from the layer this time
    out = run_schedule(ours, frames, RESETS3)
    assert out.shape == keras_out.shape == (6, 3, H, W, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - keras_out).max() < 1e-4


def test_weights_from_layer_and_folder_agree(tiny_model, weights):
    from prednet.modelfile import load_model

    prednet, _ = load_model(tiny_model(3))
    from_layer = ref.ReferenceWeights.from_prednet(prednet)
    assert from_layer.arch == weights.arch and set(from_layer.weights) == set(weights.weights)
    for k, v in weights.weights.items():
        assert np.array_equal(v, from_layer.weights[k])


def test_unsupported_activation_is_refused(weights):
    arch = dict(weights.arch, LSTM_activation="sigmoid")
    with pytest.raises(ValueError, match="LSTM_activation"):
        ref.ReferenceWeights(arch, weights.weights)


# ------------------------------------------------------------------------------------------ (d)


def ulp_error(x):
    t = ref.tanh32(x).astype(np.float64)
    true = np.tanh(x.astype(np.float64))
    return np.abs(t - true) / np.spacing(np.abs(true.astype(np.float32))).astype(np.float64), np.abs(t - true)


def test_tanh_error_bound():
    x = np.linspace(-12, 12, 3_000_001, dtype=np.float32)
    x = np.concatenate([x, np.geomspace(1e-38, 1, 100_001).astype(np.float32), np.float32([0, -0.0, 0.75, 9.1])])
    ulps, absolute = ulp_error(x)
    assert ulps.max() <= ref.TANH_MAX_ULP and absolute.max() <= ref.TANH_MAX_ABS
    assert np.array_equal(ref.tanh32(-x), -ref.tanh32(x))  # odd
    assert ref.tanh32(np.float32([1e30, -1e30, np.inf, -np.inf])).tolist() == [1, -1, 1, -1]
    assert np.isnan(ref.tanh32(np.float32([np.nan]))[0])


def numpy_tanh32(x):
    """The same sequence of float32 operations in numpy: numba must not have computed anything in
    float64 (one double rounding would show)."""
    f = np.float32
    a = np.abs(x)
    z = a * a
    p = np.full_like(x, ref.P5)
    for c in (ref.P4, ref.P3, ref.P2, ref.P1, ref.P0):
        p = p * z + c
    small = a + a * (z * p)
    y = a + a
    k = np.minimum((y * ref.INV_LN2 + f(0.5)).astype(np.int32), 31)
    kf = k.astype(f)
    s = (y - kf * ref.LN2_HI) - kf * ref.LN2_LO
    q = np.full_like(x, ref.E7)
    for c in (ref.E6, ref.E5, ref.E4, ref.E3, ref.E2):
        q = q * s + c
    e = (f(1) + (s + (s * s) * q)) * ref.POW2[k]
    big = f(1) - f(2) / (e + f(1))
    r = np.where(a < ref.TANH_SMALL, small, np.where(a < ref.TANH_BIG, big, f(1)))
    return np.where(x < 0, -r, r)


def test_tanh_is_exactly_its_float32_operations():
    x = np.random.default_rng(0).uniform(-10, 10, 1_000_000).astype(np.float32)
    with np.errstate(over="ignore"):
        assert ref.tanh32(x).tobytes() == numpy_tanh32(x).tobytes()


def fresh_asm(kernel, *args, parallel=True):
    """The machine code of `kernel` compiled here, uncached (numba cannot show cached code)."""
    import numba

    fresh = numba.njit(parallel=parallel)(kernel.py_func)
    fresh(*args)
    return "\n".join(fresh.inspect_asm().values())


def test_kernels_have_no_fma():
    """Vectorised multiplies and adds, never a fused multiply-add (nor on a CPU without FMA)."""
    xf, w, b = np.ones((1, 4, 300), np.float32), np.ones((8, 4, 3, 3), np.float32), np.ones(8, np.float32)
    out, flags = np.zeros((1, 8, 6, 10), np.float32), np.zeros(8, np.uint8)
    conv = fresh_asm(ref._conv_numba, xf, 12, 3, w, b, out, 2, np.float32(1), 8, 64, ref.FP_PROBE, flags)
    c_prev, keep = np.zeros((1, 2, 6, 10), np.float32), np.ones(1, np.uint8)
    lstm = fresh_asm(ref._conv_lstm_numba, xf, 12, 3, w, b, c_prev, keep, c_prev.copy(), c_prev.copy(), 8, 64,
                     ref.FP_PROBE, flags, parallel=False)  # the same loops; compiles faster
    tanh = fresh_asm(ref._tanh, np.float32(0.5), parallel=False)
    for name, asm in (("conv", conv), ("conv_lstm", lstm), ("tanh", tanh)):
        assert not re.search(r"\bv?fn?m(add|sub)", asm), f"FMA in {name}"
    assert re.search(r"\bvmulps\b", conv) and re.search(r"\bvaddps\b", conv)  # vectorised


# ------------------------------------------------------------------------------------------ (e)

SHIM = r"""
#include <cstring>
struct ref_dim3 { unsigned x, y, z; };
static ref_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__ static
#define __forceinline__ inline
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline int __float2int_rz(float a) { return (int)a; }
static inline float __int_as_float(int b) { float f; std::memcpy(&f, &b, 4); return f; }
static inline int min(int a, int b) { return a < b ? a : b; }
"""

CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float}


class EmulatedCuda:
    """CUDA_SOURCE compiled for the CPU (plain IEEE float32, no contraction), its kernels run block
    by block, thread by thread: a check of the GPU kernels' logic and arithmetic without a GPU."""

    def __init__(self, folder):
        kernels = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', ref.CUDA_SOURCE)
        launchers, self.signatures = [], {}
        for name, params in kernels:
            params = [" ".join(p.split()) for p in params.split(",")]
            names = [re.findall(r"\w+", p)[-1] for p in params]
            types = [p[: p.rfind(n)].replace("__restrict__", "").replace("const", "").strip() for p, n in zip(params, names)]
            self.signatures[name] = [ctypes.c_void_p if t.endswith("*") else CTYPES[t] for t in types]
            launchers.append(
                f'extern "C" void launch_{name}(unsigned blocks, unsigned threads, {", ".join(params)}) {{\n'
                f"  blockDim.x = threads; gridDim.x = blocks;\n"
                f"  for (unsigned blk_ = 0; blk_ < blocks; blk_++) {{ blockIdx.x = blk_;\n"
                f"    for (unsigned thr_ = 0; thr_ < threads; thr_++) {{ threadIdx.x = thr_; {name}({', '.join(names)}); }} }}\n}}\n")
        src = folder / "emulated.cpp"
        src.write_text(SHIM + ref.CUDA_SOURCE + "\n".join(launchers))
        lib = folder / "emulated.so"
        subprocess.run(["g++", "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-w", "-o", lib, src],
                       check=True)
        self.lib = ctypes.CDLL(str(lib))
        for name, types in self.signatures.items():
            getattr(self.lib, f"launch_{name}").argtypes = [ctypes.c_uint, ctypes.c_uint] + types

    def __call__(self, name, n_threads, args):
        blocks = (int(n_threads) + ref.CUDA_THREADS - 1) // ref.CUDA_THREADS
        values = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous
                values.append(a.ctypes.data)
            elif isinstance(a, np.floating):
                values.append(float(a))
            else:
                values.append(int(a))
        getattr(self.lib, f"launch_{name}")(blocks, ref.CUDA_THREADS, *values)


@pytest.fixture(scope="module")
def emulated_cuda(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to compile the CUDA source for the CPU")
    return EmulatedCuda(tmp_path_factory.mktemp("cuda"))


def test_cuda_source_emulated_on_cpu_equals_numba(weights, emulated_cuda):
    frames = frames_for(3, steps=4, seed=40, height=12, width=20)
    resets = RESETS3[:4]
    numba_out = run_schedule(ref.ReferencePredictor(weights, 12, 20, 3), frames, resets)
    gpu = ref.ReferencePredictor(weights, 12, 20, 3, ops=ref.CudaOps(np, emulated_cuda))
    cuda_out = run_schedule(gpu, frames, resets)
    assert cuda_out.tobytes() == numba_out.tobytes()
    x = np.linspace(-10, 10, 100_001, dtype=np.float32)
    out = np.empty_like(x)
    emulated_cuda("ref_tanh_array", x.size, (x, out, np.int64(x.size)))
    assert out.tobytes() == ref.tanh32(x).tobytes()


def test_cupy_equals_numba(weights, cp):
    frames = frames_for(3, steps=4, seed=50)
    numba_p = ref.ReferencePredictor(weights, H, W, 3)
    gpu_p = ref.ReferencePredictor(weights, H, W, 3, device="GPU")
    numba_out = run_schedule(numba_p, frames, RESETS3[:4])
    gpu_out = run_schedule(gpu_p, cp.asarray(frames), RESETS3[:4])
    assert isinstance(gpu_p.states[0], cp.ndarray)
    assert gpu_out.tobytes() == numba_out.tobytes()
    for a, b in zip(numba_p.states, gpu_p.states):
        assert cp.asnumpy(b).tobytes() == a.tobytes()
    x = np.linspace(-10, 10, 1_000_001, dtype=np.float32)
    out = cp.empty(x.size, cp.float32)
    ref.CupyLauncher()("ref_tanh_array", x.size, (cp.asarray(x), out, np.int64(x.size)))
    assert cp.asnumpy(out).tobytes() == ref.tanh32(x).tobytes()


# ------------------------------------------------------------------------------------------ FTZ

FTZ_CHILD = r"""
import ctypes, sys
sys.path.insert(0, sys.argv[1])
ctypes.CDLL(sys.argv[2]).set_ftz_daz()   # before numba starts its threads: they inherit it
import numpy as np
from prednet import reference as ref
p = ref.ReferencePredictor(ref.ReferenceWeights.from_model_dir(sys.argv[3]), 8, 8, 1)
try:
    p.predict(np.ones(1))
except FloatingPointError as e:
    print("refused:", e)
"""


def test_flushed_subnormals_are_refused(tiny_model, tmp_path):
    if shutil.which("g++") is None or os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("needs g++ on x86-64")
    src = tmp_path / "ftz.cpp"
    src.write_text('#include <xmmintrin.h>\nextern "C" void set_ftz_daz() { _mm_setcsr(_mm_getcsr() | 0x8040); }\n')
    subprocess.run(["g++", "-shared", "-fPIC", "-o", tmp_path / "ftz.so", src], check=True)
    r = subprocess.run([sys.executable, "-c", FTZ_CHILD, str(REPO), str(tmp_path / "ftz.so"), str(tiny_model(3))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "refused: the CPU flushes subnormal floats" in r.stdout
