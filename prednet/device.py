"""GPU or CPU, decided once before the framework starts (as TEZip: "GPU MODE" / "CPU MODE")."""

import contextlib
import os


def hide_gpus():
    """Make every framework see no GPU. Must run before TensorFlow/JAX/PyTorch is imported."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


# TensorFlow's CPU kernels split their sums by thread count, so the model's float results — and
# so the predictions an archive depends on — differ between thread counts. A fixed count (not one
# per core) makes an archive decode on any machine of the same software; TEZIP_MODEL_THREADS
# overrides it (the value is recorded in the archive, and decoding must use the same).
DEFAULT_MODEL_THREADS = 4


def model_threads():
    value = os.environ.get("TEZIP_MODEL_THREADS", str(DEFAULT_MODEL_THREADS))
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MODEL_THREADS


def pin_model_threads():
    """Fix TensorFlow's op thread pools before it starts (it reads these variables at start-up)."""
    n = str(model_threads())
    os.environ["TF_NUM_INTRAOP_THREADS"] = n
    os.environ["TF_NUM_INTEROP_THREADS"] = n


def quiet_framework_logs():
    # TensorFlow prints C++ start-up notices (CUDA not found, oneDNN) that bury our one-line output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def silenced_stderr_fd():
    """Silence the C++ layer's start-up notices (absl, CUDA stubs), which ignore Python's
    sys.stderr and TF_CPP_MIN_LOG_LEVEL, so that our errors stay one line."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_framework():
    """Import Keras (and its backend) quietly."""
    with silenced_stderr_fd():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # Grow GPU memory on demand rather than taking all of it, so the CuPy codec kernels
            # can allocate beside the model. (CUDA probing prints here too.)
            for gpu in tf.config.list_physical_devices("GPU"):
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except RuntimeError:
                    pass  # already initialised
    return keras


def gpu_available():
    """Whether the Keras backend in use sees a GPU."""
    keras = import_framework()

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def cupy_gpu_available():
    """Whether CuPy is installed and sees a CUDA device (compression and decompression run their
    kernels, the model's included, through CuPy on a GPU)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, no device: the CPU it is
        return False


def select_device(force_cpu, framework=False):
    """Hide GPUs if asked, then return "GPU" or "CPU". framework: the run needs Keras (training,
    format 2 archives), whose view of the GPU decides; otherwise CuPy's does, and Keras is never
    imported (seconds saved at every start)."""
    quiet_framework_logs()
    pin_model_threads()
    if force_cpu:
        hide_gpus()
        if framework:
            import_framework()
        return "CPU"
    if framework:
        return "GPU" if gpu_available() else "CPU"
    return "GPU" if cupy_gpu_available() else "CPU"


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom():
    """Bytes the process's memory cgroup still allows (v2 memory.max, or v1 limit_in_bytes), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
            limit, used = _read_int(os.path.join(base, "memory.max")), _read_int(os.path.join(base, "memory.current"))
        elif "memory" in controllers.split(","):  # cgroup v1 (the namespace root when the path is not visible)
            for base in (os.path.join("/sys/fs/cgroup/memory", path.lstrip("/")), "/sys/fs/cgroup/memory"):
                limit = _read_int(os.path.join(base, "memory.limit_in_bytes"))
                used = _read_int(os.path.join(base, "memory.usage_in_bytes"))
                if limit is not None:
                    break
        else:
            continue
        if limit is not None and used is not None and limit < 1 << 60:
            return max(0, limit - used)
    return None


def memory_headroom():
    """About how many more bytes this process can allocate, from what the machine tells: the
    address-space limit (`ulimit -v`) less what is mapped, the memory cgroup's limit less its use,
    and the kernel's MemAvailable. The smallest; None when none is known. (Native code such as
    TensorFlow's CPU kernels can crash, not fail cleanly, when an allocation is refused: callers
    check what they are about to ask for against this first.)"""
    import resource

    known = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/status") as f:
                mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            known.append(max(0, soft - mapped))
        except (OSError, StopIteration, ValueError):
            known.append(soft)
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        known.append(cgroup)
    try:
        with open("/proc/meminfo") as f:
            known.extend(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError):
        pass
    return min(known) if known else None
