"""PredNet's inference step as a fixed-order reference kernel: the same float32 predictions, bit for
bit, on every IEEE-754 machine, at any thread count and in any batch (issue 19).

Keras/TensorFlow compute a prediction with whatever summation order, vector width, fused
multiply-add and transcendental functions the build and the device choose, so an archive decodes
only where it was made. Here every number is defined by its own sequence of correctly rounded
float32 operations (+ - * / and comparisons), which IEEE 754 makes the same everywhere:

- a 3x3 'same' convolution (zero padding, as Keras) starts each output at its bias and adds the
  products `w * x` one at a time, input channel by input channel, then row dy, then column dx of
  the filter: `acc = acc + w * x`, a separate multiply and add (no FMA: numba's default
  fastmath=False never contracts, the CUDA kernels use __fmul_rn/__fadd_rn and --fmad=false);
  nothing is reassociated. The kernels vectorise across output pixels (each SIMD lane its own
  accumulator) and split work by lane, output channels and pixels, never inside one sum;
- relu, min with pixel_max, Keras 3's hard_sigmoid (relu6(x + 3) / 6) and max-pooling are written
  out as comparisons and float32 arithmetic;
- tanh is this module's own (`tanh32`): x + x^3 P(x^2), P of degree 5, below |x| = 0.75, above it
  1 - 2 / (e^2|x| + 1) with e^y from a Cody-Waite reduction y = k ln2 + r, a degree-7 Taylor
  polynomial of e^r and an exact scaling by 2^k, and 1 beyond |x| = 9.1. No libm call: libm's tanh
  and exp differ between machines. Max error against np.tanh, every float32 in [0, 9.2] checked:
  1.07 ulp (6.4e-8 absolute); see TANH_MAX_ULP.

The structure is prednet/model.py's (the same concatenations, gate order i, f, c, o, nearest 2x
upsampling, 2x2 max pooling, edge-replicated padding, lane resets), so the predictions are close
to Keras' — not equal: summation order and tanh differ in the last bits. A model with a linear
skip (prednet.model.LinearSkip) adds its K x K convolution of [A_{t-1}, A_{t-1} - A_{t-2}, ...,
A_{t-N+1} - A_{t-N}] (taps from ReferenceWeights.skip, float64 then rounded once) to layer 0's
unrectified convolution (scaled by a power of two: exact) with one float32 add, then clips to
[0, pixel_max]; each lane keeps its N previous padded frames beside the states (zeros after a reset,
all the first frame after it).

Layout: planar (lane, channel, row, column) float32. Each convolution reads its input from a
zero-padded buffer flattened per channel, with rows of Wp = W + K - 1 values: output (y, x) is at
p = y*Wp + x and its tap (dy, dx) at p + dy*Wp + dx, so one long contiguous loop over p serves a
whole block of rows (the positions x >= W in between are computed and dropped).

Two implementations side by side with the same operation order: numba on the CPU (@njit,
cache=True, parallel prange), and CUDA kernels (CUDA_SOURCE, compiled by CuPy) on a GPU. A
denormal flush (FTZ/DAZ, which a library built with -ffast-math can switch on for the whole
process) would change results; the CPU kernels probe for it in every task and refuse to go on.
"""

import numba
import numpy as np
from numba import njit, prange

import base  # noqa: F401  (numba's cache folder, before the first kernel is compiled)

f32 = np.float32

# ----------------------------------------------------------------------------------- scalar ops
# Every constant is a float32 (a Python float would make numba compute in float64).

ZERO, HALF, ONE, TWO, THREE, SIX = f32(0.0), f32(0.5), f32(1.0), f32(2.0), f32(3.0), f32(6.0)

# tanh(a) = a + a * z * P(z), z = a^2, for a < TANH_SMALL: P fitted here (weighted least squares,
# Lawson iterations) to (tanh(a) - a) / a^3 on (0, 0.75).
TANH_SMALL = f32(0.75)
TANH_BIG = f32(9.1)  # tanh rounds to 1.0f from 9.01 on
TANH_P = tuple(np.array([0xBEAAAAA5, 0x3E0886ED, 0xBD5CC0CD, 0x3CAFCBB7, 0xBBFB4E3D, 0x3AE49BEE],
                        np.uint32).view(np.float32))
P0, P1, P2, P3, P4, P5 = TANH_P
# e^y, y = k ln2 + r: ln2 split so that k * LN2_HI is exact for k < 2^8 (Cody & Waite).
INV_LN2 = f32(1.4426950408889634)
LN2_HI = f32(0.693145751953125)  # 0x3f317200
LN2_LO = f32(1.4286068203094172e-06)
E2, E3, E4, E5, E6, E7 = (f32(1.0 / 2), f32(1.0 / 6), f32(1.0 / 24), f32(1.0 / 120), f32(1.0 / 720),
                          f32(1.0 / 5040))
POW2 = np.array([2.0**k for k in range(32)], np.float32)

# Measured: every float32 in [0, 9.2] against np.tanh in float64 (benchmarks/bench_reference.py
# --tanh); the function is odd, so this covers every input.
TANH_MAX_ULP = 1.066  # at x = 0.86708176
TANH_MAX_ABS = 6.36e-8


@njit(cache=True, inline="always")
def _relu(v):
    return v if v > ZERO else ZERO


@njit(cache=True, inline="always")
def _hard_sigmoid(v):
    """Keras 3 (TensorFlow backend): relu6(x + 3) / 6, relu6(t) = min(max(t, 0), 6)."""
    t = v + THREE
    t = t if t > ZERO else ZERO
    t = t if t < SIX else SIX
    return t / SIX


@njit(cache=True)
def _tanh(x):
    if x != x:
        return x
    a = -x if x < ZERO else x
    if a < TANH_SMALL:
        z = a * a
        p = P5
        p = p * z + P4
        p = p * z + P3
        p = p * z + P2
        p = p * z + P1
        p = p * z + P0
        r = a + a * (z * p)
    elif a < TANH_BIG:
        y = a + a
        k = int(y * INV_LN2 + HALF)
        kf = f32(k)
        s = (y - kf * LN2_HI) - kf * LN2_LO
        q = E7
        q = q * s + E6
        q = q * s + E5
        q = q * s + E4
        q = q * s + E3
        q = q * s + E2
        er = ONE + (s + (s * s) * q)
        e = er * POW2[k]
        r = ONE - TWO / (e + ONE)
    else:
        r = ONE
    return -r if x < ZERO else r


@njit(cache=True)
def _tanh_array(x, out):
    for i in range(x.size):
        out[i] = _tanh(x[i])


def tanh32(x):
    """This module's float32 tanh, elementwise (numpy in, numpy out)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _tanh_array(x.reshape(-1), out.reshape(-1))
    return out


# Subnormal probe: 2^-66 * 2^-66 = 2^-132 is subnormal (flushed to 0 under FTZ); 2^-140 (subnormal)
# * 2^20 is normal, but 0 under DAZ. Passed as an array so that the compiler cannot fold it.
FP_PROBE = np.array([2.0**-66, 2.0**-66, 2.0**-140, 2.0**20], np.float32)


@njit(cache=True, inline="always")
def _fp_ok(probe):
    return 1 if probe[0] * probe[1] != ZERO and probe[2] * probe[3] != ZERO else 0


# ----------------------------------------------------------------------------------- numba kernels


@njit(cache=True, parallel=True)
def _pack_numba(xf, Wp, pb, H, W, a, b, up, keep):
    """Write channels [a, b, up2x(up)] of each lane into the padded flat buffer xf (interior only:
    its border stays zero). Lanes with keep[n] == 0 get zeros for a and b (a reset)."""
    N, C, _ = xf.shape
    Ca, Cb = a.shape[1], b.shape[1]
    for t in prange(N * C * H):
        n = t // (C * H)
        r = t - n * (C * H)
        c = r // H
        y = r - c * H
        row = xf[n, c, (y + pb) * Wp + pb: (y + pb) * Wp + pb + W]
        if c < Ca + Cb:
            if keep[n] == 0:
                for x in range(W):
                    row[x] = ZERO
            else:
                src = a[n, c, y] if c < Ca else b[n, c - Ca, y]
                for x in range(W):
                    row[x] = src[x]
        else:
            src = up[n, c - Ca - Cb, y // 2]
            for x in range(W // 2):
                v = src[x]
                row[2 * x] = v
                row[2 * x + 1] = v


@njit(cache=True, inline="always")
def _accumulate(xf, n, Wp, K, w, b, o0, o1, p0, acc):
    """acc[o - o0, p] = bias[o] + sum over (c, dy, dx), in that order, of w[o, c, dy, dx] * x at
    flat position p0 + p + dy*Wp + dx: one separate multiply and add per term."""
    lc = acc.shape[1]
    Cin = xf.shape[1]
    for o in range(o0, o1):
        bo = b[o]
        row = acc[o - o0]
        for p in range(lc):
            row[p] = bo
    if K == 3:
        # The nine taps of one input channel in one pass over the positions: the running sum
        # stays in a register for nine terms instead of going through memory after each.
        for c in range(Cin):
            plane = xf[n, c]
            r0 = plane[p0: p0 + lc + 2]
            r1 = plane[p0 + Wp: p0 + Wp + lc + 2]
            r2 = plane[p0 + 2 * Wp: p0 + 2 * Wp + lc + 2]
            for o in range(o0, o1):
                w00, w01, w02 = w[o, c, 0, 0], w[o, c, 0, 1], w[o, c, 0, 2]
                w10, w11, w12 = w[o, c, 1, 0], w[o, c, 1, 1], w[o, c, 1, 2]
                w20, w21, w22 = w[o, c, 2, 0], w[o, c, 2, 1], w[o, c, 2, 2]
                a = acc[o - o0]
                for p in range(lc):
                    s = a[p]
                    s = s + w00 * r0[p]
                    s = s + w01 * r0[p + 1]
                    s = s + w02 * r0[p + 2]
                    s = s + w10 * r1[p]
                    s = s + w11 * r1[p + 1]
                    s = s + w12 * r1[p + 2]
                    s = s + w20 * r2[p]
                    s = s + w21 * r2[p + 1]
                    s = s + w22 * r2[p + 2]
                    a[p] = s
        return
    for c in range(Cin):
        plane = xf[n, c]
        for dy in range(K):
            for dx in range(K):
                s0 = p0 + dy * Wp + dx
                seg = plane[s0: s0 + lc]
                for o in range(o0, o1):
                    wv = w[o, c, dy, dx]
                    a = acc[o - o0]
                    for p in range(lc):
                        a[p] = a[p] + wv * seg[p]


@njit(cache=True, parallel=True)
def _conv_numba(xf, Wp, K, w, b, out, mode, pixel_max, ob, lc, probe, flags):
    """out = conv(x) (mode 0), relu(conv(x)) (1), or min(relu(conv(x)), pixel_max) (2).
    w (Cout, Cin, K, K); out (N, Cout, H, W). Tasks: lane x block of `ob` outputs x `lc` positions."""
    N = xf.shape[0]
    Cout = w.shape[0]
    H, W = out.shape[2], out.shape[3]
    nblk = (Cout + ob - 1) // ob
    nch = (H * Wp + lc - 1) // lc
    per_lane = nblk * nch
    for t in prange(N * per_lane):
        flags[t] = _fp_ok(probe)
        n = t // per_lane
        r = t - n * per_lane
        blk = r // nch
        p0 = (r - blk * nch) * lc
        o0 = blk * ob
        o1 = min(o0 + ob, Cout)
        acc = np.empty((o1 - o0, lc), np.float32)
        _accumulate(xf, n, Wp, K, w, b, o0, o1, p0, acc)
        y_last = min((p0 + lc - 1) // Wp, H - 1)
        for o in range(o0, o1):
            for y in range(p0 // Wp, y_last + 1):
                x0 = max(0, p0 - y * Wp)
                x1 = min(W, p0 + lc - y * Wp)
                src = acc[o - o0, y * Wp + x0 - p0: y * Wp + x1 - p0]
                dst = out[n, o, y, x0:x1]
                if mode == 0:
                    for x in range(x1 - x0):
                        dst[x] = src[x]
                elif mode == 1:
                    for x in range(x1 - x0):
                        dst[x] = _relu(src[x])
                else:
                    for x in range(x1 - x0):
                        v = _relu(src[x])
                        dst[x] = pixel_max if v > pixel_max else v


@njit(cache=True, parallel=True)
def _conv_lstm_numba(xf, Wp, K, w, b, c_prev, keep, R_out, c_out, ob, lc, probe, flags):
    """The conv-LSTM update. w's rows are the gates interleaved per channel (row 4j + g for gate g
    of channel j, gates i, f, c, o), so a block of `ob` (a multiple of 4) rows holds every gate of
    ob / 4 channels: c = hs(f) * c_prev + hs(i) * tanh(c_hat); R = hs(o) * tanh(c), hs = hard
    sigmoid, c_prev read as 0 for reset lanes (keep[n] == 0)."""
    N = xf.shape[0]
    Cout = w.shape[0]
    H, W = R_out.shape[2], R_out.shape[3]
    nblk = (Cout + ob - 1) // ob
    nch = (H * Wp + lc - 1) // lc
    per_lane = nblk * nch
    for t in prange(N * per_lane):
        flags[t] = _fp_ok(probe)
        n = t // per_lane
        r = t - n * per_lane
        blk = r // nch
        p0 = (r - blk * nch) * lc
        o0 = blk * ob
        o1 = min(o0 + ob, Cout)
        acc = np.empty((o1 - o0, lc), np.float32)
        _accumulate(xf, n, Wp, K, w, b, o0, o1, p0, acc)
        y_last = min((p0 + lc - 1) // Wp, H - 1)
        for g in range((o1 - o0) // 4):
            j = o0 // 4 + g
            for y in range(p0 // Wp, y_last + 1):
                x0 = max(0, p0 - y * Wp)
                x1 = min(W, p0 + lc - y * Wp)
                for x in range(x0, x1):
                    q = y * Wp + x - p0
                    gi = _hard_sigmoid(acc[4 * g, q])
                    gf = _hard_sigmoid(acc[4 * g + 1, q])
                    gc = acc[4 * g + 2, q]
                    go = _hard_sigmoid(acc[4 * g + 3, q])
                    cp = c_prev[n, j, y, x] if keep[n] != 0 else ZERO
                    cn = gf * cp + gi * _tanh(gc)
                    c_out[n, j, y, x] = cn
                    R_out[n, j, y, x] = go * _tanh(cn)


@njit(cache=True, parallel=True)
def _errors_numba(ahat, a, e):
    """e = [relu(ahat - a), relu(a - ahat)] along channels."""
    N, C, H, W = a.shape
    for t in prange(N * C * H):
        n = t // (C * H)
        r = t - n * (C * H)
        c = r // H
        y = r - c * H
        hr, ar = ahat[n, c, y], a[n, c, y]
        d, u = e[n, c, y], e[n, C + c, y]
        for x in range(W):
            d[x] = _relu(hr[x] - ar[x])
            u[x] = _relu(ar[x] - hr[x])


@njit(cache=True, parallel=True)
def _pool_numba(src, dst):
    """2x2 max pooling, stride 2; the four values compared in row order."""
    N, C, H, W = dst.shape
    for t in prange(N * C * H):
        n = t // (C * H)
        r = t - n * (C * H)
        c = r // H
        y = r - c * H
        s0, s1, d = src[n, c, 2 * y], src[n, c, 2 * y + 1], dst[n, c, y]
        for x in range(W):
            m = s0[2 * x]
            v = s0[2 * x + 1]
            m = v if v > m else m
            v = s1[2 * x]
            m = v if v > m else m
            v = s1[2 * x + 1]
            m = v if v > m else m
            d[x] = m


# ----------------------------------------------------------------------------------- CUDA kernels


def _bits(v):
    return f"__int_as_float(0x{int(np.float32(v).view(np.uint32)):08x})"


CUDA_OB = 8  # outputs per thread of ref_conv (two channels' four gates in ref_conv_lstm)

# The numba kernels' operations, in the same order, one thread per output pixel and block of
# outputs. The constants are written as their float32 bit patterns (no decimal parsing).
CUDA_SOURCE = r"""
#define OB 8
#define TANH_SMALL %(TANH_SMALL)s
#define TANH_BIG %(TANH_BIG)s
#define P0 %(P0)s
#define P1 %(P1)s
#define P2 %(P2)s
#define P3 %(P3)s
#define P4 %(P4)s
#define P5 %(P5)s
#define INV_LN2 %(INV_LN2)s
#define LN2_HI %(LN2_HI)s
#define LN2_LO %(LN2_LO)s
#define E2 %(E2)s
#define E3 %(E3)s
#define E4 %(E4)s
#define E5 %(E5)s
#define E6 %(E6)s
#define E7 %(E7)s

__device__ __forceinline__ float ref_relu(float v) { return v > 0.0f ? v : 0.0f; }

__device__ __forceinline__ float ref_hard_sigmoid(float v) {
    float t = __fadd_rn(v, 3.0f);
    t = t > 0.0f ? t : 0.0f;
    t = t < 6.0f ? t : 6.0f;
    return __fdiv_rn(t, 6.0f);
}

__device__ float ref_tanh(float x) {
    if (x != x) return x;
    float a = x < 0.0f ? -x : x;
    float r;
    if (a < TANH_SMALL) {
        float z = __fmul_rn(a, a);
        float p = P5;
        p = __fadd_rn(__fmul_rn(p, z), P4);
        p = __fadd_rn(__fmul_rn(p, z), P3);
        p = __fadd_rn(__fmul_rn(p, z), P2);
        p = __fadd_rn(__fmul_rn(p, z), P1);
        p = __fadd_rn(__fmul_rn(p, z), P0);
        r = __fadd_rn(a, __fmul_rn(a, __fmul_rn(z, p)));
    } else if (a < TANH_BIG) {
        float y = __fadd_rn(a, a);
        int k = __float2int_rz(__fadd_rn(__fmul_rn(y, INV_LN2), 0.5f));
        float kf = (float)k;
        float s = __fsub_rn(__fsub_rn(y, __fmul_rn(kf, LN2_HI)), __fmul_rn(kf, LN2_LO));
        float q = E7;
        q = __fadd_rn(__fmul_rn(q, s), E6);
        q = __fadd_rn(__fmul_rn(q, s), E5);
        q = __fadd_rn(__fmul_rn(q, s), E4);
        q = __fadd_rn(__fmul_rn(q, s), E3);
        q = __fadd_rn(__fmul_rn(q, s), E2);
        float er = __fadd_rn(1.0f, __fadd_rn(s, __fmul_rn(__fmul_rn(s, s), q)));
        float e = __fmul_rn(er, __int_as_float((k + 127) << 23));
        r = __fsub_rn(1.0f, __fdiv_rn(2.0f, __fadd_rn(e, 1.0f)));
    } else {
        r = 1.0f;
    }
    return x < 0.0f ? -r : r;
}

extern "C" __global__ void ref_tanh_array(const float* x, float* out, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = ref_tanh(x[i]);
}

// Channels [a, b, up2x(up)] into the interior of the padded flat buffer xf (N, C, Lx).
extern "C" __global__ void ref_pack(float* xf, int N, int C, long long Lx, int Wp, int pb, int H, int W,
                                    const float* a, int Ca, const float* b, int Cb, const float* up,
                                    const unsigned char* keep) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)N * C * H * W;
    if (i >= total) return;
    int x = (int)(i %% W);
    int y = (int)((i / W) %% H);
    int c = (int)((i / ((long long)W * H)) %% C);
    int n = (int)(i / ((long long)W * H * C));
    float v;
    if (c < Ca + Cb) {
        if (keep[n] == 0) v = 0.0f;
        else if (c < Ca) v = a[(((long long)n * Ca + c) * H + y) * W + x];
        else v = b[(((long long)n * Cb + (c - Ca)) * H + y) * W + x];
    } else {
        int Cu = C - Ca - Cb;
        v = up[(((long long)n * Cu + (c - Ca - Cb)) * (H / 2) + y / 2) * (W / 2) + x / 2];
    }
    xf[((long long)n * C + c) * Lx + (long long)(y + pb) * Wp + x + pb] = v;
}

// acc[o] = bias + sum over (c, dy, dx) in that order of w * x, one rounding per multiply and add.
__device__ __forceinline__ void ref_accumulate(float* acc, const float* __restrict__ xf, int n, int Cin,
                                               long long Lx, int Wp, int K, const float* __restrict__ w,
                                               const float* __restrict__ bias, int Cout, int o0,
                                               int y, int x) {
    #pragma unroll
    for (int o = 0; o < OB; o++) acc[o] = bias[min(o0 + o, Cout - 1)];
    for (int c = 0; c < Cin; c++) {
        const float* plane = xf + ((long long)n * Cin + c) * Lx + (long long)y * Wp + x;
        for (int dy = 0; dy < K; dy++) {
            for (int dx = 0; dx < K; dx++) {
                float v = plane[dy * Wp + dx];
                #pragma unroll
                for (int o = 0; o < OB; o++) {
                    float wv = w[(((long long)min(o0 + o, Cout - 1) * Cin + c) * K + dy) * K + dx];
                    acc[o] = __fadd_rn(acc[o], __fmul_rn(wv, v));
                }
            }
        }
    }
}

extern "C" __global__ void ref_conv(const float* __restrict__ xf, int N, int Cin, long long Lx, int Wp, int K,
                                    const float* __restrict__ w, const float* __restrict__ bias, int Cout,
                                    float* out, int H, int W, int mode, float pixel_max) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int nblk = (Cout + OB - 1) / OB;
    long long total = (long long)N * nblk * H * W;
    if (i >= total) return;
    int pix = (int)(i %% ((long long)H * W));
    int blk = (int)((i / ((long long)H * W)) %% nblk);
    int n = (int)(i / ((long long)H * W * nblk));
    int y = pix / W, x = pix %% W;
    int o0 = blk * OB;
    float acc[OB];
    ref_accumulate(acc, xf, n, Cin, Lx, Wp, K, w, bias, Cout, o0, y, x);
    #pragma unroll
    for (int o = 0; o < OB; o++) {
        if (o0 + o < Cout) {
            float v = acc[o];
            if (mode >= 1) v = ref_relu(v);
            if (mode == 2) v = v > pixel_max ? pixel_max : v;
            out[(((long long)n * Cout + o0 + o) * H + y) * W + x] = v;
        }
    }
}

extern "C" __global__ void ref_conv_lstm(const float* __restrict__ xf, int N, int Cin, long long Lx, int Wp,
                                         int K, const float* __restrict__ w, const float* __restrict__ bias,
                                         int Cout, const float* c_prev, const unsigned char* keep,
                                         float* R_out, float* c_out, int H, int W) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int nblk = (Cout + OB - 1) / OB;
    long long total = (long long)N * nblk * H * W;
    if (i >= total) return;
    int pix = (int)(i %% ((long long)H * W));
    int blk = (int)((i / ((long long)H * W)) %% nblk);
    int n = (int)(i / ((long long)H * W * nblk));
    int y = pix / W, x = pix %% W;
    int o0 = blk * OB;
    int R = Cout / 4;
    float acc[OB];
    ref_accumulate(acc, xf, n, Cin, Lx, Wp, K, w, bias, Cout, o0, y, x);
    #pragma unroll
    for (int g = 0; g < OB / 4; g++) {
        int j = o0 / 4 + g;
        if (j < R) {
            float gi = ref_hard_sigmoid(acc[4 * g]);
            float gf = ref_hard_sigmoid(acc[4 * g + 1]);
            float gc = acc[4 * g + 2];
            float go = ref_hard_sigmoid(acc[4 * g + 3]);
            long long at = (((long long)n * R + j) * H + y) * W + x;
            float cp = keep[n] != 0 ? c_prev[at] : 0.0f;
            float cn = __fadd_rn(__fmul_rn(gf, cp), __fmul_rn(gi, ref_tanh(gc)));
            c_out[at] = cn;
            R_out[at] = __fmul_rn(go, ref_tanh(cn));
        }
    }
}

extern "C" __global__ void ref_errors(const float* ahat, const float* a, float* e, int N, int C, int H, int W) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)N * C * H * W;
    if (i >= total) return;
    long long hw = (long long)H * W;
    int c = (int)((i / hw) %% C);
    long long n = i / (hw * C);
    long long at = i %% hw;
    float d = __fsub_rn(ahat[i], a[i]);
    float u = __fsub_rn(a[i], ahat[i]);
    e[(n * 2 * C + c) * hw + at] = ref_relu(d);
    e[(n * 2 * C + C + c) * hw + at] = ref_relu(u);
}

// 2x2 max pooling of src (N, C, 2H, 2W) into dst (N, C, H, W).
extern "C" __global__ void ref_pool(const float* src, float* dst, int N, int C, int H, int W) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)N * C * H * W;
    if (i >= total) return;
    int x = (int)(i %% W);
    int y = (int)((i / W) %% H);
    long long nc = i / ((long long)W * H);
    const float* s = src + nc * 4 * H * W + (long long)(2 * y) * (2 * W) + 2 * x;
    float m = s[0];
    float v = s[1];
    m = v > m ? v : m;
    v = s[2 * W];
    m = v > m ? v : m;
    v = s[2 * W + 1];
    m = v > m ? v : m;
    dst[i] = m;
}
""" % {name: _bits(value) for name, value in dict(
    TANH_SMALL=TANH_SMALL, TANH_BIG=TANH_BIG, P0=P0, P1=P1, P2=P2, P3=P3, P4=P4, P5=P5,
    INV_LN2=INV_LN2, LN2_HI=LN2_HI, LN2_LO=LN2_LO, E2=E2, E3=E3, E4=E4, E5=E5, E6=E6, E7=E7).items()}

# No contraction to FMA, IEEE division, no flush of subnormals (the intrinsics already round each
# operation; these keep the rest of the code honest).
CUDA_OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false")
CUDA_THREADS = 256

try:
    import cupy
except ImportError:
    cupy = None


class CupyLauncher:
    """Runs CUDA_SOURCE's kernels with CuPy: launch(name, n_threads, args)."""

    def __init__(self):
        if cupy is None:
            raise RuntimeError("the GPU reference kernels need CuPy")
        self._module = cupy.RawModule(code=CUDA_SOURCE, options=CUDA_OPTIONS)
        self._kernels = {}

    def __call__(self, name, n_threads, args):
        if name not in self._kernels:
            self._kernels[name] = self._module.get_function(name)
        blocks = (int(n_threads) + CUDA_THREADS - 1) // CUDA_THREADS
        if blocks:
            self._kernels[name]((blocks,), (CUDA_THREADS,), tuple(args))


# ----------------------------------------------------------------------------------- backends


def _chunk(H, Wp):
    """Positions per numba task: about 512 or fewer, a multiple of 16 (whole vectors), in chunks of
    about equal length."""
    n_chunks = -(-H * Wp // 512)
    return -(-H * Wp // (16 * n_chunks)) * 16


# Below these sizes a kernel runs on the calling thread alone: waking the worker threads would
# cost more than the work (much more when the CPUs are shared). The result is the same either way.
# (On shared CPUs numba's OpenMP layer also loses time to its spinning workers: OMP_WAIT_POLICY=passive
# or NUMBA_THREADING_LAYER=workqueue in the environment avoids that.)
SERIAL_ELEMENTS = 1 << 18
SERIAL_FLOPS = 1 << 23


def _run(work, limit, kernel, *args):
    threads = numba.get_num_threads()
    if work >= limit or threads == 1:
        return kernel(*args)
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


class NumbaOps:
    """The CPU kernels (numba), on numpy arrays."""

    xp = np
    name = "CPU"
    conv_ob = 8
    lstm_ob = 8

    def buffer_length(self, H, W, K):
        Wp = W + K - 1
        lc = _chunk(H, Wp)
        return -(-H * Wp // lc) * lc + (K - 1) * Wp + K - 1

    def weights(self, array):
        return np.ascontiguousarray(array, dtype=np.float32)

    def to_host(self, array):
        return array

    @staticmethod
    def _check(flags):
        if not flags.all():
            raise FloatingPointError(
                "the CPU flushes subnormal floats to zero (FTZ/DAZ set, e.g. by a library built with "
                "-ffast-math): the reference kernel's results would not be portable")

    def pack(self, xf, Wp, pb, H, W, a, b, up, keep):
        _run(xf.shape[0] * xf.shape[1] * H * W, SERIAL_ELEMENTS, _pack_numba, xf, Wp, pb, H, W, a, b, up, keep)

    def conv(self, xf, Wp, K, w, b, out, mode, pixel_max):
        N, Cout, H, Wd = out.shape
        lc = _chunk(H, Wp)
        n_tasks = N * (-(-Cout // self.conv_ob)) * (-(-H * Wp // lc))
        flags = np.zeros(n_tasks, np.uint8)
        _run(2 * w.size * N * H * Wd, SERIAL_FLOPS, _conv_numba, xf, Wp, K, w, b, out, mode, f32(pixel_max),
             self.conv_ob, lc, FP_PROBE, flags)
        self._check(flags)

    def conv_lstm(self, xf, Wp, K, w, b, c_prev, keep, R_out, c_out):
        N, _, H, Wd = R_out.shape
        lc = _chunk(H, Wp)
        n_tasks = N * (-(-w.shape[0] // self.lstm_ob)) * (-(-H * Wp // lc))
        flags = np.zeros(n_tasks, np.uint8)
        _run(2 * w.size * N * H * Wd, SERIAL_FLOPS, _conv_lstm_numba, xf, Wp, K, w, b, c_prev, keep, R_out, c_out,
             self.lstm_ob, lc, FP_PROBE, flags)
        self._check(flags)

    def errors(self, ahat, a, e):
        _run(e.size, SERIAL_ELEMENTS, _errors_numba, ahat, a, e)

    def pool(self, src, dst):
        _run(src.size, SERIAL_ELEMENTS, _pool_numba, src, dst)


class CudaOps:
    """The GPU kernels (CUDA_SOURCE) on `xp` arrays through `launch` — CuPy by default; a test
    may pass numpy and a launcher that runs the same source compiled for the CPU."""

    name = "GPU"

    def __init__(self, xp=None, launch=None):
        self.xp = xp if xp is not None else cupy
        if self.xp is None:
            raise RuntimeError("the GPU reference kernels need CuPy")
        self.launch = launch if launch is not None else CupyLauncher()

    def buffer_length(self, H, W, K):
        return (H + K - 1) * (W + K - 1)

    def weights(self, array):
        return self.xp.asarray(np.ascontiguousarray(array, dtype=np.float32))

    def to_host(self, array):
        return array.get() if hasattr(array, "get") else np.asarray(array)

    def pack(self, xf, Wp, pb, H, W, a, b, up, keep):
        N, C, Lx = xf.shape
        i32 = np.int32
        self.launch("ref_pack", N * C * H * W, (xf, i32(N), i32(C), np.int64(Lx), i32(Wp), i32(pb), i32(H), i32(W),
                                                a, i32(a.shape[1]), b, i32(b.shape[1]), up, keep))

    def conv(self, xf, Wp, K, w, b, out, mode, pixel_max):
        N, Cin, Lx = xf.shape
        Cout, H, W = out.shape[1], out.shape[2], out.shape[3]
        i32 = np.int32
        n_threads = N * (-(-Cout // CUDA_OB)) * H * W
        self.launch("ref_conv", n_threads, (xf, i32(N), i32(Cin), np.int64(Lx), i32(Wp), i32(K), w, b, i32(Cout),
                                            out, i32(H), i32(W), i32(mode), f32(pixel_max)))

    def conv_lstm(self, xf, Wp, K, w, b, c_prev, keep, R_out, c_out):
        N, Cin, Lx = xf.shape
        Cout, H, W = w.shape[0], R_out.shape[2], R_out.shape[3]
        i32 = np.int32
        n_threads = N * (-(-Cout // CUDA_OB)) * H * W
        self.launch("ref_conv_lstm", n_threads, (xf, i32(N), i32(Cin), np.int64(Lx), i32(Wp), i32(K), w, b,
                                                 i32(Cout), c_prev, keep, R_out, c_out, i32(H), i32(W)))

    def errors(self, ahat, a, e):
        N, C, H, W = a.shape
        i32 = np.int32
        self.launch("ref_errors", N * C * H * W, (ahat, a, e, i32(N), i32(C), i32(H), i32(W)))

    def pool(self, src, dst):
        N, C, H, W = dst.shape
        i32 = np.int32
        self.launch("ref_pool", N * C * H * W, (src, dst, i32(N), i32(C), i32(H), i32(W)))


# ----------------------------------------------------------------------------------- the model

SUPPORTED_ACTIVATIONS = dict(error_activation="relu", A_activation="relu", LSTM_activation="tanh",
                             LSTM_inner_activation="hard_sigmoid")


class ReferenceWeights:
    """A PredNet's architecture (modelfile.architecture's dict) and weights by path
    ("lstm_0/kernel": (K, K, Cin, Cout) as Keras keeps them), without Keras."""

    def __init__(self, arch, weights):
        from prednet.modelfile import ARCH_KEYS, FRAME_INPUT_KEYS, SKIP_FRAMES_KEY, SKIP_KEYS

        self.arch = dict(arch)
        unknown = sorted(set(self.arch) - set(ARCH_KEYS) - set(SKIP_KEYS) - {SKIP_FRAMES_KEY} - set(FRAME_INPUT_KEYS))
        if unknown:  # a later version's model: predicting without what it means would be wrong
            raise ValueError(f"the architecture has {', '.join(unknown)}, which this version of TEZip does not know")
        for key, value in SUPPORTED_ACTIVATIONS.items():
            if self.arch.get(key, value) != value:
                raise ValueError(f"the reference kernel implements {key}={value!r} only, not {self.arch[key]!r}")
        self.stack_sizes = tuple(int(s) for s in self.arch["stack_sizes"])
        self.R_stack_sizes = tuple(int(s) for s in self.arch.get("R_stack_sizes") or self.stack_sizes)
        self.nb_layers = len(self.stack_sizes)
        self.pixel_max = float(self.arch.get("pixel_max", 1.0))
        self.weights = {k: np.asarray(v, np.float32) for k, v in weights.items()}
        # A model with a linear skip (prednet.model.LinearSkip): 0 = none.
        self.skip_filt_size = int(self.arch.get("skip_filt_size", 0))
        self.skip_gain = float(self.arch.get("skip_gain", 1.0))
        self.skip_correction_scale = float(self.arch.get("skip_correction_scale", 1.0))
        if self.skip_filt_size < 0 or (self.skip_filt_size and self.skip_filt_size % 2 == 0):
            raise ValueError(f"skip_filt_size must be 0 or odd, not {self.skip_filt_size}")
        self.skip_frames = int(self.arch.get(SKIP_FRAMES_KEY, 2))  # previous frames the skip sees
        if self.skip_frames < 2:
            raise ValueError(f"skip_frames must be at least 2, not {self.skip_frames}")
        # Layer 0's frame input (prednet.model.PredNet frame_input_*): None, or (offset, scale) float32 (N,)
        self.frame_input = None
        if self.arch.get(FRAME_INPUT_KEYS[0]) is not None or self.arch.get(FRAME_INPUT_KEYS[1]) is not None:
            offset, scale = (np.asarray(self.arch.get(k) or [], np.float32) for k in FRAME_INPUT_KEYS)
            if not self.skip_filt_size or not offset.shape == scale.shape == (self.skip_frames,):
                raise ValueError(f"the frame input needs a linear skip and {self.skip_frames} offsets and scales")
            self.frame_input = (offset, scale)

    def lstm_inputs(self, l):
        """Channels layer l's conv-LSTM takes: [R_l, E_l, frame input planes (layer 0 of a model
        with frame input), upsampled R_{l+1}]."""
        n = self.nb_layers
        cin = self.R_stack_sizes[l] + 2 * self.stack_sizes[l] + (self.R_stack_sizes[l + 1] if l + 1 < n else 0)
        if l == 0 and self.frame_input is not None:
            cin += self.skip_frames * self.channels
        return cin

    @property
    def channels(self):
        return self.stack_sizes[0]

    @classmethod
    def from_prednet(cls, prednet):
        from prednet.modelfile import _weights_by_path, architecture

        return cls(architecture(prednet), _weights_by_path(prednet))

    @classmethod
    def from_model_dir(cls, model_dir):
        """Read a model folder (prednet/modelfile.py's files) with h5py alone: no Keras needed."""
        import h5py

        from prednet.modelfile import WEIGHTS_FILE, read_model_json, resolve_model_dir

        doc = read_model_json(model_dir)
        with h5py.File(resolve_model_dir(model_dir) / WEIGHTS_FILE, "r") as f:
            weights = {}
            f.visititems(lambda key, item: weights.__setitem__(key, item[()]) if hasattr(item, "shape") else None)
        return cls(doc["architecture"], weights)

    @classmethod
    def of(cls, source):
        if isinstance(source, cls):
            return source
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            return cls.from_model_dir(source)
        return cls.from_prednet(source)

    def conv(self, name):
        """(kernel as (Cout, Cin, K, K), bias, K) of a convolution."""
        kernel = self.weights[f"{name}/kernel"]
        if kernel.shape[0] != kernel.shape[1]:
            raise ValueError(f"{name}: only square filters are supported")
        return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), self.weights[f"{name}/bias"], kernel.shape[0]

    def skip(self):
        """(taps as (C, N·C, K, K), bias, K) of the linear skip: prednet.model.skip_taps, computed
        in float64 in a fixed order and rounded once to float32 (IEEE arithmetic: the same taps on
        every machine)."""
        w, b, K = self.conv("skip")  # (C, N·C, K, K) float32
        C = w.shape[0]
        if w.shape[1] != self.skip_frames * C:
            raise ValueError(f"skip/kernel takes {w.shape[1]} channels, {self.skip_frames} frames of {C} need "
                             f"{self.skip_frames * C}")
        taps = w.astype(np.float64) * self.skip_gain
        for o in range(C):
            for c in range(C):  # frame taps: channel o's own sum to 1, the other channels' to 0
                total = 0.0
                for dy in range(K):
                    for dx in range(K):
                        total += float(taps[o, c, dy, dx])
                taps[o, c, K // 2, K // 2] += (1.0 if c == o else 0.0) - total
            taps[o, C + o, K // 2, K // 2] += 1.0
        return np.ascontiguousarray(taps.astype(np.float32)), b, K

    def correction(self):
        """(kernel, bias, K) of layer 0's Ahat convolution, times the skip's correction scale: a
        power of two, so exact (Keras scales the convolution's output; the same up to rounding)."""
        w, b, K = self.conv("ahat_0")
        s = np.float32(self.skip_correction_scale)
        return np.ascontiguousarray(w * s), np.ascontiguousarray(b * s), K

    def lstm(self, l):
        """The gate convolution with its rows interleaved: row 4j + g = gate g (i, f, c, o) of channel j."""
        w, b, K = self.conv(f"lstm_{l}")
        R = self.R_stack_sizes[l]
        order = np.arange(4 * R).reshape(4, R).T.reshape(-1)  # new row 4j + g ← old row g*R + j
        return np.ascontiguousarray(w[order]), np.ascontiguousarray(b[order]), K


def _padded_size(height, width, n_layers):
    m = 2 ** (n_layers - 1)
    return -(-height // m) * m, -(-width // m) * m


class _Conv:
    """One convolution's weights on the device and its input buffer's geometry."""

    def __init__(self, ops, w, b, K, H, W, batch):
        self.w, self.b, self.K = ops.weights(w), ops.weights(b), int(K)
        self.H, self.W = H, W
        self.pb = (self.K - 1) // 2  # Keras 'same': the extra row/column of an even K goes below/right
        self.Wp = W + self.K - 1
        self.xf = ops.xp.zeros((batch, w.shape[1], ops.buffer_length(H, W, self.K)), np.float32)


def reference_memory(weights, height, width, batch):
    """About how many bytes a ReferencePredictor needs (states, one step's new states and
    activations, the padded input buffers). `weights`: a ReferenceWeights, PredNet or folder."""
    wts = ReferenceWeights.of(weights)
    ph, pw = _padded_size(int(height), int(width), wts.nb_layers)
    total = 0
    for l in range(wts.nb_layers):
        h, w = ph // 2**l, pw // 2**l
        R, s = wts.R_stack_sizes[l], wts.stack_sizes[l]
        above = wts.R_stack_sizes[l + 1] if l + 1 < wts.nb_layers else 0
        state = (2 * R + 2 * s) * h * w
        inputs = (R + 2 * s + above + R + 2 * s) * (h + 4) * (w + 4) + 512 * (R + 4 * s + above)
        activations = 3 * s * h * w  # Ahat_l, A_l, relu(conv(E_l)) before pooling
        total += 3 * state + inputs + activations
    if wts.skip_filt_size:  # the N previous frames, the skip's padded input (N planes) and its output
        c, k, nf = wts.channels, wts.skip_filt_size, wts.skip_frames
        total += (nf + 1) * c * ph * pw + nf * c * (ph + k) * (pw + k) + 512 * nf * c
        if wts.frame_input is not None:  # its planes, with layer 0's errors, and their padded buffer rows
            total += nf * c * (2 * ph * pw + (ph + 4) * (pw + 4) + 512)
    return 4 * total * int(batch)


class ReferencePredictor:
    """NextFramePredictor's interface (prednet/predictor.py) on the reference kernel.

    `states` is a list (R_l, c_l, E_l for each layer) of planar (batch, channels, H, W) float32
    arrays — numpy, or CuPy on the GPU — that are never modified in place: save the list before
    `predict` and assign it back to predict again (as run_windows does). `predict` returns numpy.
    device: "CPU" (numba) or "GPU" (CuPy); both give the same bits.
    """

    def __init__(self, prednet, height, width, batch, device="CPU", ops=None):
        self.model = ReferenceWeights.of(prednet)
        m = self.model
        self.height, self.width, self.batch = int(height), int(width), int(batch)
        self.channels = m.channels
        self.device = "GPU" if str(device).upper() == "GPU" else "CPU"
        if ops is None:
            ops = CudaOps() if self.device == "GPU" else NumbaOps()
        self.ops = ops
        xp = ops.xp
        n, B = m.nb_layers, self.batch
        self.ph, self.pw = _padded_size(self.height, self.width, n)
        self.sizes = [(self.ph // 2**l, self.pw // 2**l) for l in range(n)]
        self.lstm = [_Conv(ops, *m.lstm(l), *self.sizes[l], B) for l in range(n)]
        self.ahat = [_Conv(ops, *(m.correction() if l == 0 and m.skip_filt_size else m.conv(f"ahat_{l}")),
                           *self.sizes[l], B) for l in range(n)]
        self.a = [_Conv(ops, *m.conv(f"a_{l}"), *self.sizes[l], B) for l in range(n - 1)]
        for l in range(n):
            cin = m.lstm_inputs(l)
            if self.lstm[l].w.shape[1] != cin:
                raise ValueError(f"lstm_{l} takes {self.lstm[l].w.shape[1]} channels, the architecture gives {cin}")
        self._empty = xp.zeros((B, 0, 1, 1), np.float32)
        self._ones = xp.ones(B, np.uint8)
        # The linear skip (models that have one): its input is [A_{t-1}, A_{t-1} - A_{t-2}, ...], from
        # the N previous padded frames each lane was shown (newest first); zeros for a lane just reset.
        self.skip = None
        if m.skip_filt_size:
            self.skip = _Conv(ops, *m.skip(), self.ph, self.pw, B)
            self.history = [xp.zeros((B, m.channels, self.ph, self.pw), np.float32) for _ in range(m.skip_frames)]
            self._fresh = xp.zeros(B, bool)
        self.states = []
        for l in range(n):
            h, w = self.sizes[l]
            R, s = m.R_stack_sizes[l], m.stack_sizes[l]
            self.states += [xp.zeros((B, R, h, w), np.float32), xp.zeros((B, R, h, w), np.float32),
                            xp.zeros((B, 2 * s, h, w), np.float32)]
        self._pending = None

    def predict(self, reset):
        """Predictions (batch, H, W, C) float32 in [0, pixel_max] of every lane's next frame;
        `reset` (batch,) 0/1 starts a lane afresh (its states read as zeros)."""
        ops, xp, m = self.ops, self.ops.xp, self.model
        n, B = m.nb_layers, self.batch
        keep = xp.asarray((np.asarray(reset, np.float32).reshape(B) == 0).astype(np.uint8))
        R_prev, c_prev, E_prev = self.states[0::3], self.states[1::3], self.states[2::3]
        R_new, c_new = [None] * n, [None] * n
        planes = self._skip_planes() if self.skip is not None else None  # shared by the skip and frame input
        for l in reversed(range(n)):
            conv = self.lstm[l]
            h, w = self.sizes[l]
            up = R_new[l + 1] if l + 1 < n else self._empty
            errors = E_prev[l]
            if l == 0 and m.frame_input is not None:  # pack gives reset lanes zeros, as Keras's first step
                errors = xp.concatenate([errors, self._frame_input_planes(planes)], axis=1)
            ops.pack(conv.xf, conv.Wp, conv.pb, h, w, R_prev[l], errors, up, keep)
            R_new[l] = xp.empty((B, m.R_stack_sizes[l], h, w), np.float32)
            c_new[l] = xp.empty((B, m.R_stack_sizes[l], h, w), np.float32)
            ops.conv_lstm(conv.xf, conv.Wp, conv.K, conv.w, conv.b, c_prev[l], keep, R_new[l], c_new[l])
        if self.skip is None:
            ahat0 = self._ahat(0, R_new[0])
        else:
            self._fresh = keep == 0
            # Ahat_0 = clip(base + correction, 0, pixel_max): one float32 add, then comparisons
            base, correction = self._skip_base(planes, keep), self._ahat(0, R_new[0], mode=0)
            ahat0 = xp.minimum(xp.maximum(base + correction, f32(0.0)), f32(m.pixel_max))
        self._pending = (R_new, c_new, ahat0)
        pred = ahat0[:, :, : self.height, : self.width].transpose(0, 2, 3, 1)
        return np.ascontiguousarray(ops.to_host(xp.ascontiguousarray(pred)))

    def _ahat(self, l, R, mode=None):
        ops, xp = self.ops, self.ops.xp
        conv = self.ahat[l]
        h, w = self.sizes[l]
        ops.pack(conv.xf, conv.Wp, conv.pb, h, w, R, self._empty, self._empty, self._ones)
        out = xp.empty((self.batch, self.model.stack_sizes[l], h, w), np.float32)
        ops.conv(conv.xf, conv.Wp, conv.K, conv.w, conv.b, out, (2 if l == 0 else 1) if mode is None else mode,
                 self.model.pixel_max)
        return out

    def _skip_planes(self):
        """The skip's planes [A_{t-1}, A_{t-1} - A_{t-2}, ...] from the history: N arrays (batch, C, H, W)."""
        h = self.history
        return [h[0]] + [h[j] - h[j + 1] for j in range(len(h) - 1)]

    def _frame_input_planes(self, planes):
        """Layer 0's frame input (batch, N·C, H, W): the skip's planes (_skip_planes),
        (plane_j - offset_j) · scale_j in float32, as prednet.model.PredNet.frame_input_planes."""
        offset, scale = self.model.frame_input
        return self.ops.xp.concatenate([(p - offset[j]) * scale[j] for j, p in enumerate(planes)], axis=1)

    def _skip_base(self, planes, keep):
        """The linear skip's output (batch, C, H, W) for this step: the convolution of the
        edge-replicated planes (_skip_planes; zeros for reset lanes), written straight into the
        skip's padded buffer (rows of Wp = W + K - 1, as the convolution reads them)."""
        ops, xp, conv = self.ops, self.ops.xp, self.skip
        B, C, H, W = planes[0].shape
        x = xp.concatenate(planes, axis=1)
        x = x * (keep != 0).astype(np.float32).reshape(B, 1, 1, 1)  # a reset lane has seen nothing
        p = conv.pb
        padded = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="edge")
        conv.xf[:, :, : padded.shape[2] * padded.shape[3]] = padded.reshape(B, len(planes) * C, -1)
        base = xp.empty((B, C, H, W), np.float32)
        ops.conv(conv.xf, conv.Wp, conv.K, conv.w, conv.b, base, 0, self.model.pixel_max)
        return base

    def update(self, frames):
        """Show every lane its actual frame for this step (batch, H, W, C) float32 in [0, 1]."""
        ops, xp, m = self.ops, self.ops.xp, self.model
        n, B = m.nb_layers, self.batch
        R_new, c_new, ahat0 = self._pending
        frames = xp.asarray(frames, dtype=np.float32).reshape(B, self.height, self.width, self.channels)
        a = xp.ascontiguousarray(frames.transpose(0, 3, 1, 2))
        if (self.ph, self.pw) != (self.height, self.width):  # edge replication, as pad_frames
            a = xp.ascontiguousarray(xp.pad(a, ((0, 0), (0, 0), (0, self.ph - self.height), (0, self.pw - self.width)),
                                            mode="edge"))
        a0 = a
        E_new = [None] * n
        for l in range(n):
            h, w = self.sizes[l]
            ahat = ahat0 if l == 0 else self._ahat(l, R_new[l])
            E_new[l] = xp.empty((B, 2 * m.stack_sizes[l], h, w), np.float32)
            ops.errors(ahat, a, E_new[l])
            if l < n - 1:
                conv = self.a[l]
                ops.pack(conv.xf, conv.Wp, conv.pb, h, w, E_new[l], self._empty, self._empty, self._ones)
                full = xp.empty((B, m.stack_sizes[l + 1], h, w), np.float32)
                ops.conv(conv.xf, conv.Wp, conv.K, conv.w, conv.b, full, 1, m.pixel_max)
                a = xp.empty((B, m.stack_sizes[l + 1], h // 2, w // 2), np.float32)
                ops.pool(full, a)
        states = []
        for l in range(n):
            states += [R_new[l], c_new[l], E_new[l]]
        self.states = states
        if self.skip is not None:  # after a lane's first frame all are that frame (no motion yet)
            fresh = self._fresh.reshape(B, 1, 1, 1)
            self.history = [a0] + [xp.where(fresh, a0, older) for older in self.history[:-1]]
        self._pending = None


class GrayOnColour:
    """A colour model predicting grayscale frames (the bundled default model is RGB, most detector
    frames are grayscale): every lane is shown its gray frame in all three channels, and predicts
    the mean of the three channels it predicts, ((r + g) + b) / 3 in float32 — fixed operations,
    the same bits everywhere. The same interface as ReferencePredictor (the archive records
    the adapter, so the decoder runs the same)."""

    def __init__(self, predictor):
        if predictor.channels != 3:
            raise ValueError("GrayOnColour adapts a 3-channel model")
        self.predictor = predictor
        self.height, self.width, self.batch, self.channels = predictor.height, predictor.width, predictor.batch, 1

    @property
    def states(self):
        return self.predictor.states

    @states.setter
    def states(self, value):
        self.predictor.states = value

    def predict(self, reset):
        p = self.predictor.predict(reset)
        gray = (p[..., 0] + p[..., 1]) + p[..., 2]
        return np.ascontiguousarray((gray / f32(3.0))[..., None], dtype=np.float32)

    def update(self, frames):
        frames = np.asarray(frames, np.float32)
        self.predictor.update(np.repeat(frames, 3, axis=-1))


def predictor_for(weights, channels, height, width, lanes, device="CPU"):
    """The reference kernel stepping `lanes` lanes of `channels`-channel frames; a colour model
    predicts grayscale frames through GrayOnColour."""
    predictor = ReferencePredictor(weights, height, width, lanes, device)
    return GrayOnColour(predictor) if weights.channels == 3 and channels == 1 else predictor
