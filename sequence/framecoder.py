"""Coding one frame, both ways in one object (SZ3's blockwise decomposition is the model): the
encoder and the decoder walk the same steps in the same order, so the encoder reconstructs exactly
what the decoder will.

A predicted frame (FrameCoder):
    prediction   the model's prediction, or per block the previous decoded frame moved (BlockSelector)
    residual     frame − prediction, quantized within each pixel's tolerance by the chain's head
                 (linquant, medquant or runmerge; runmerge at tolerance 0 is lossless)
    decoded      clip(prediction + reconstructed residual, 0, max value)

A keyframe (KeyframeCoder): coded on its own by the keyframe chain's head, MED (exact) or medquant
(within an abs bound), clipped the same way.

Frames are planar int32 here: (C, H, W).
"""

import numpy as np

from base.errors import TezipError
from sequence.bounds import pixel_tolerances


def to_host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def to_planar(frames):
    """(..., H, W, C) → (..., C, H, W) int32: runs and tolerances work on one channel plane at a time."""
    return np.ascontiguousarray(np.moveaxis(frames, -1, -3), dtype=np.int32)


def to_interleaved(planar, dtype):
    """(..., C, H, W) → (..., H, W, C) of the frames' dtype (uint8 or uint16)."""
    return np.ascontiguousarray(np.moveaxis(planar, -3, -1)).astype(dtype)


class FrameCoder:
    """Codes a predicted frame against its prediction, and decodes it.

    quantizer: the residual chain's head (a stages Quantizer); selector: a BlockSelector or None;
    mode, bounds: the error bound (for per-pixel tolerances); max_value: 255 or 65535; xp: numpy,
    or cupy to quantize on a GPU (identical integers either way)."""

    def __init__(self, quantizer, selector, mode, bounds, max_value, xp=np):
        self.quantizer, self.selector = quantizer, selector
        self.mode, self.bounds, self.max_value, self.xp = mode, bounds, max_value, xp

    def prediction(self, model_prediction, previous, choices):
        """The prediction the frame is coded against: (C, H, W) int32."""
        if self.selector is None:
            return model_prediction
        return self.selector.combine(model_prediction, previous, choices)

    def encode_frame(self, frame, model_prediction, previous):
        """frame, model_prediction, previous decoded frame: (C, H, W) int32 →
        (codes, block choices or None, prediction, decoded frame), host arrays."""
        choices = self.selector.choose(frame, model_prediction, previous) if self.selector is not None else None
        p = self.prediction(model_prediction, previous, choices)
        xp = self.xp
        x, p_dev = xp.asarray(frame), xp.asarray(p)
        tolerances = pixel_tolerances(x, self.mode, self.bounds, self.max_value)
        codes, residual = self.quantizer.quantize(x - p_dev, tolerances)
        decoded = xp.clip(p_dev + residual, 0, self.max_value)
        if bool(xp.any(xp.abs(decoded - x) > tolerances)):  # the quantizer's guarantee, checked rather than trusted
            raise RuntimeError("internal error: quantized residuals exceed the error bound")
        return to_host(codes), choices, p, to_host(decoded)

    def decode_frame(self, codes, choices, model_prediction, previous):
        """The mirror of encode_frame: (C, H, W) int32 codes → the decoded frame."""
        p = self.prediction(model_prediction, previous, choices)
        residual = to_host(self.quantizer.decode(self.xp.asarray(codes)))
        return np.clip(p + residual, 0, self.max_value)


class KeyframeCoder:
    """Codes a keyframe on its own, and decodes it. head: the keyframe chain's head (MedCoder, exact,
    or MedQuantizer, within its tolerance)."""

    def __init__(self, head, max_value):
        self.head, self.max_value = head, max_value

    @property
    def tolerance(self):
        return getattr(self.head, "tolerance", 0) if self.head.lossy else 0

    def encode_frame(self, frame):
        """(C, H, W) int32 → (codes, decoded frame)."""
        if self.head.lossy:
            codes, reconstructed = self.head.quantize(frame)
            decoded = np.clip(reconstructed, 0, self.max_value)
        else:
            codes, decoded = self.head.encode(frame), frame
        if np.abs(decoded - frame).max() > self.tolerance:  # checked rather than trusted
            raise RuntimeError("internal error: a coded keyframe exceeds the error bound")
        return codes, decoded

    def decode_frame(self, codes):
        """The mirror of encode_frame."""
        planes = self.head.decode(codes)
        if self.head.lossy:  # quantized within the bound: the encoder clipped the same way
            return np.clip(planes, 0, self.max_value)
        if planes.size and (planes.min() < 0 or planes.max() > self.max_value):
            raise TezipError(f"a keyframe decodes to values outside 0-{self.max_value}")
        return planes
