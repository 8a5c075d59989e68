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
