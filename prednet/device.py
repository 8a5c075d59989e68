"""GPU or CPU, decided once before the framework starts (as TEZip: "GPU MODE" / "CPU MODE")."""

import os


def hide_gpus():
    """Make every framework see no GPU. Must run before TensorFlow/JAX/PyTorch is imported."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def quiet_framework_logs():
    # TensorFlow prints C++ start-up notices (CUDA not found, oneDNN) that bury our one-line output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def gpu_available():
    """Whether the Keras backend in use sees a GPU."""
    import keras

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


def select_device(force_cpu):
    """Hide GPUs if asked, then return "GPU" or "CPU"."""
    quiet_framework_logs()
    if force_cpu:
        hide_gpus()
        return "CPU"
    return "GPU" if gpu_available() else "CPU"
