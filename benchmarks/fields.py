"""Smooth time-evolving test fields (issue 15): 2-D simulations rendered as uint16 frames with noise.

Six deterministic sets (fixed seeds), each (T, H, W) uint16, the run mapped linearly to about
2000-60000 (0.01 / 99.99 percentiles) with read noise (Gaussian σ) and, where named, Poisson shot noise:

    advdiff   blobs carried by a drift plus a Gaussian vortex (semi-Lagrangian, cubic), weak diffusion   σ 2
    gs_spots  Gray-Scott reaction-diffusion, F, k = 0.0367, 0.0649 (spots)                             σ 4
    gs_waves  Gray-Scott, F, k = 0.018, 0.051 (waves)                                                 σ 3
    heat      heat equation with cooling, drifting sources switching on and off (exact spectral steps) σ 2 + shot
    vortex    2-D Navier-Stokes vorticity, pseudo-spectral, energy near k = 6                          σ 6
    detector  smooth background, drifting Gaussian spots with fluctuating intensity                   σ 3 + shot

    python benchmarks/fields.py OUTDIR [--size 256] [--frames 200] [--only advdiff,heat]

writes OUTDIR/<name>.npy; or `make(name, size, frames)` from Python. All six at 256×256×200 take
about half a minute on one core. The first frames are the "early" part of a run (for training);
benchmarks evaluate held-out later frames.
"""

import argparse
import os
import time

import numpy as np
from numba import njit
from scipy import ndimage

LO, HI = 2000.0, 60000.0


def _k2(n, length=2 * np.pi):
    k = np.fft.fftfreq(n, d=length / (2 * np.pi * n))
    kx, ky = np.meshgrid(k, k, indexing="xy")
    return kx, ky, kx**2 + ky**2


def _wrap(d, n):
    return (d + n / 2) % n - n / 2  # periodic distance


def _gauss2(n, cy, cx, s):
    """exp(-(dy² + dx²) / 2s²) on the periodic n×n grid, as an outer product."""
    a = np.arange(n, dtype=float)
    return np.outer(np.exp(-_wrap(a - cy, n) ** 2 / (2 * s * s)), np.exp(-_wrap(a - cx, n) ** 2 / (2 * s * s)))


def advection_diffusion(n, frames, seed=1, substeps=4):
    """Blob field carried by a uniform drift plus a Gaussian vortex (differential rotation), with
    weak diffusion: semi-Lagrangian (midpoint departure points, cubic interpolation) + spectral
    diffusion. The velocity field is steady, so the departure points are computed once."""
    rng = np.random.default_rng(seed)
    c = np.zeros((n, n))
    for _ in range(60):
        cy, cx, s, a = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(4, 18), rng.uniform(-1, 1)
        c += a * _gauss2(n, cy, cx, s)
    y, x = np.mgrid[0:n, 0:n].astype(float)
    dy, dx = y - n / 2, x - n / 2
    omega = 0.012 * np.exp(-(dx**2 + dy**2) / (2 * (0.22 * n) ** 2))  # rad per step
    uy, ux = omega * dx + 0.15, -omega * dy + 0.35  # px per step
    my = ndimage.map_coordinates(uy, [y - 0.5 * uy, x - 0.5 * ux], order=1, mode="grid-wrap")
    mx = ndimage.map_coordinates(ux, [y - 0.5 * uy, x - 0.5 * ux], order=1, mode="grid-wrap")
    departure = [y - my, x - mx]
    _, _, k2 = _k2(n, n)
    decay = np.exp(-0.05 * k2)[:, : n // 2 + 1]
    out = np.empty((frames, n, n))
    for f in range(frames):
        out[f] = c
        for _ in range(substeps):
            c = ndimage.map_coordinates(c, departure, order=3, mode="grid-wrap")
            c = np.fft.irfft2(np.fft.rfft2(c) * decay, s=(n, n))
    return out


@njit(cache=True)
def _gray_scott_steps(u, v, steps, F, k):
    """Gray-Scott u + 2v -> 3v (Du 0.16, Dv 0.08, dt 1, 5-point Laplacian, periodic), in place; the
    same arithmetic, in the same order, as the numpy expression with np.roll."""
    n0, n1 = u.shape
    un = np.empty_like(u)
    vn = np.empty_like(v)
    for _ in range(steps):
        for i in range(n0):
            im, ip = (i - 1) % n0, (i + 1) % n0
            for j in range(n1):
                jm, jp = (j - 1) % n1, (j + 1) % n1
                a, b = u[i, j], v[i, j]
                lu = u[im, j] + u[ip, j] + u[i, jm] + u[i, jp] - 4 * a
                lv = v[im, j] + v[ip, j] + v[i, jm] + v[i, jp] - 4 * b
                uvv = a * b * b
                un[i, j] = a + 0.16 * lu - uvv + F * (1 - a)
                vn[i, j] = b + 0.08 * lv + uvv - (F + k) * b
        u[:], v[:] = un, vn


def gray_scott(n, frames, seed=2, F=0.0367, k=0.0649, substeps=40, warmup=4000):
    """Gray-Scott reaction-diffusion from random squares; renders v."""
    rng = np.random.default_rng(seed)
    u = np.ones((n, n))
    v = np.zeros((n, n))
    for _ in range(24):
        cy, cx, r = rng.integers(0, n), rng.integers(0, n), rng.integers(4, 10)
        u[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = 0.5
        v[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = 0.25
    u += 0.02 * rng.standard_normal((n, n))
    v += 0.02 * rng.standard_normal((n, n))
    _gray_scott_steps(u, v, warmup, F, k)
    out = np.empty((frames, n, n))
    for f in range(frames):
        out[f] = v
        _gray_scott_steps(u, v, substeps, F, k)
    return out


def heat_sources(n, frames, seed=3, substeps=5, sources=14, spinup=1000):
    """Heat equation with Newtonian cooling, driven by Gaussian sources that drift and switch on and
    off smoothly; exact spectral steps (periodic). The spin-up (sources at rest) takes steps of 10."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, n, (sources, 2))
    vel = rng.normal(0, 0.15, (sources, 2))
    width = rng.uniform(3, 10, sources)
    period = rng.uniform(150, 600, sources)
    phase = rng.uniform(0, 2 * np.pi, sources)
    _, _, k2 = _k2(n, n)
    rate = (0.6 * k2 + 0.004)[:, : n // 2 + 1]

    def source(tt):
        src = np.zeros((n, n))
        for i in range(sources):
            cy, cx = (pos[i] + vel[i] * tt) % n
            amp = max(np.sin(2 * np.pi * tt / period[i] + phase[i]), 0.0) ** 2
            if amp > 0:
                src += amp * _gauss2(n, cy, cx, width[i])
        return np.fft.rfft2(src)

    def step(u_hat, tt, dt):
        decay = np.exp(-rate * dt)
        return u_hat * decay + source(tt) * ((1 - decay) / rate)

    u_hat = np.zeros((n, n // 2 + 1), complex)
    for _ in range(spinup // 10):
        u_hat = step(u_hat, 0, 10.0)
    out = np.empty((frames, n, n))
    for s in range(frames * substeps):
        if s % substeps == 0:
            out[s // substeps] = np.fft.irfft2(u_hat, s=(n, n))
        u_hat = step(u_hat, s, 1.0)
    return out


def vortex_flow(n, frames, seed=4, substeps=10, nu=2e-4, dt=0.02):
    """2-D incompressible Navier-Stokes, vorticity-streamfunction, pseudo-spectral (2/3 dealiasing,
    RK2 with an integrating factor for viscosity) on [0, 2π)²; renders vorticity."""
    rng = np.random.default_rng(seed)
    kx, ky, k2 = _k2(n)
    kmag = np.sqrt(k2)
    spec = kmag**4 * np.exp(-((kmag / 6.0) ** 2))  # energy near k ~ 6
    w_hat = np.fft.fft2(rng.standard_normal((n, n))) * np.sqrt(spec)
    w_hat[0, 0] = 0
    w = np.real(np.fft.ifft2(w_hat))
    half = slice(0, n // 2 + 1)
    kx, ky, k2 = kx[:, half], ky[:, half], k2[:, half]
    w_hat = np.fft.rfft2(w / np.abs(w).max() * 4.0)
    k2inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1), 0.0)
    dealias = (np.abs(kx) < n / 3) & (np.abs(ky) < n / 3)
    visc = np.exp(-nu * k2 * dt)

    def rhs(wh):
        psi = wh * k2inv
        u = np.fft.irfft2(1j * ky * psi, s=(n, n))
        v = np.fft.irfft2(-1j * kx * psi, s=(n, n))
        wx = np.fft.irfft2(1j * kx * wh, s=(n, n))
        wy = np.fft.irfft2(1j * ky * wh, s=(n, n))
        return -np.fft.rfft2(u * wx + v * wy) * dealias

    def step(wh):
        k1 = rhs(wh)
        mid = (wh + dt * k1) * visc
        return wh * visc + 0.5 * dt * (k1 * visc + rhs(mid))

    for _ in range(300):
        w_hat = step(w_hat)
    out = np.empty((frames, n, n))
    for f in range(frames):
        out[f] = np.fft.irfft2(w_hat, s=(n, n))
        for _ in range(substeps):
            w_hat = step(w_hat)
    return out


def detector(n, frames, seed=5, spots=50):
    """Detector-like: smooth background, Gaussian spots drifting slowly with fluctuating intensity,
    a slow global intensity drift (Poisson noise is added by render)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(float) / n
    bg = 0.15 + 0.1 * x + 0.05 * y + 0.08 * np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.08)
    pos = rng.uniform(0.05, 0.95, (spots, 2)) * n
    vel = rng.normal(0, 0.12, (spots, 2))
    sig = rng.uniform(1.2, 4.0, spots)
    amp = rng.uniform(0.1, 1.0, spots)
    per = rng.uniform(40, 200, spots)
    ph = rng.uniform(0, 2 * np.pi, spots)
    a = np.arange(n, dtype=float)
    out = np.empty((frames, n, n))
    for f in range(frames):
        img = bg * (1 + 0.08 * np.sin(2 * np.pi * f / 170))
        for i in range(spots):
            cy, cx = pos[i] + vel[i] * f
            s2 = 2 * sig[i] ** 2
            img += amp[i] * (1 + 0.4 * np.sin(2 * np.pi * f / per[i] + ph[i])) * np.outer(
                np.exp(-((a - cy) ** 2) / s2), np.exp(-((a - cx) ** 2) / s2))
        out[f] = img
    return out


# name: (generator, kwargs, read-noise sigma (counts), photons per count for Poisson noise or None)
FIELDS = {
    "advdiff": (advection_diffusion, {}, 2.0, None),
    "gs_spots": (gray_scott, dict(F=0.0367, k=0.0649, substeps=20, warmup=500), 4.0, None),
    "gs_waves": (gray_scott, dict(F=0.018, k=0.051, substeps=10, seed=6), 3.0, None),
    "heat": (heat_sources, {}, 2.0, 400.0),
    "vortex": (vortex_flow, {}, 6.0, None),
    "detector": (detector, {}, 3.0, 100.0),
}


def clean_counts(field):
    """The noiseless counts (T, H, W) float64 of a run: the whole run's 0.01 .. 99.99 percentiles
    mapped linearly to [LO, HI], clipped to [0, 65535]; what a predictor that knew the field exactly
    would predict (benchmarks/bench_headroom.py's noise floor)."""
    lo, hi = np.percentile(field, [0.01, 99.99])
    return np.clip(LO + (field - lo) * ((HI - LO) / (hi - lo)), 0, 65535)


def render(field, sigma, photons_per_count, seed):
    """clean_counts(field) with shot noise (Poisson on photons = counts · photons_per_count) and
    Gaussian read noise σ, rounded, clipped to uint16."""
    rng = np.random.default_rng(seed)
    counts = clean_counts(field)
    if photons_per_count:
        counts = rng.poisson(counts * photons_per_count) / photons_per_count
    counts = counts + rng.normal(0, sigma, counts.shape)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def make(name, n=256, frames=200, with_clean=False):
    """The set `name`: (frames, n, n) uint16; with_clean: (that, its clean_counts)."""
    gen, kw, sigma, ppc = FIELDS[name]
    field = gen(n, frames, **kw)
    run = render(field, sigma, ppc, seed=1000 + list(FIELDS).index(name))
    return (run, clean_counts(field)) if with_clean else run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    for name in a.only.split(",") if a.only else FIELDS:
        t0 = time.time()
        v = make(name, a.size, a.frames)
        np.save(os.path.join(a.outdir, name + ".npy"), v)
        print(f"{name:9s} {v.shape} min {v.min()} max {v.max()}  {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
