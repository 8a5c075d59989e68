"""The ground floor: what every other package may use and which uses none of them — the user-facing
error type, safe file I/O and atomic publishing, progress display, numba's cache folder and start-up."""

from base.numba_cache import ensure_numba_cache, skip_blas_probe

ensure_numba_cache()
skip_blas_probe()
