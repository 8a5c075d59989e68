"""The CuPy side of the codec kernels, shared by every stage: optional import (CPU-only installs run
everything through numba), dispatch on the array type, lazy kernel compilation (importing a stage
never needs a GPU), and the one launch shape the elementwise kernels use."""

try:
    import cupy
except ImportError:
    cupy = None

_kernels = {}


def is_cupy_array(x):
    return cupy is not None and isinstance(x, cupy.ndarray)


def cuda_kernel(name, source):
    if name not in _kernels:
        _kernels[name] = cupy.RawKernel(source, name)
    return _kernels[name]


def launch_elementwise(kernel, size, args, threads=256):
    kernel(((size + threads - 1) // threads,), (threads,), args)


def run_int32_kernel(values, cpu_kernel, gpu_kernel):
    """Apply a kernel pair `kernel(values, out) → overflow flags` to an int32 array on whichever
    device holds it. Returns (out, whether any overflow flag is set)."""
    import numpy as np

    on_gpu = is_cupy_array(values)
    xp = cupy if on_gpu else np
    values = xp.ascontiguousarray(values, dtype=np.int32)
    out = xp.empty(values.shape, dtype=np.int32)
    if values.size == 0:
        return out, False
    overflow = (gpu_kernel if on_gpu else cpu_kernel)(values, out)
    return out, bool(overflow.any())
