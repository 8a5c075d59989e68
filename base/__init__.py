"""The ground floor: what every other package may use and which uses none of them — the user-facing
error type, safe file I/O and atomic publishing, progress display, numba's cache folder."""

from base.numba_cache import ensure_numba_cache

ensure_numba_cache()
