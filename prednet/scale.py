"""Integer pixels ↔ the [0, 1] the model works in (no framework needed: the codec uses it too)."""

import numpy as np


class ValueScale:
    """How integer data maps to the [0, 1] the model works in, and back: x ↔ (x - low) / span.

    8-bit data uses the type's range (low 0, span 255). 16-bit data uses the range the sequence
    actually spans (a detector rarely fills 0-65535; scaled by the type's range a dim sequence
    would look black to a model trained on 8-bit frames); the encoder records it in the archive
    so the decoder maps predictions back to the very same integers."""

    def __init__(self, low, high):
        self.low, self.high = int(low), int(high)
        if self.high < self.low:
            raise ValueError(f"value range [{low}, {high}] is empty")
        self.span = max(1, self.high - self.low)  # a constant sequence still divides by 1
        self._inverse_span = np.float32(1.0 / self.span)

    @classmethod
    def for_frames(cls, frames):
        """The scale of a whole sequence: 8-bit → [0, 255]; wider integers → [min, max] seen."""
        if frames.dtype == np.uint8:
            return cls(0, 255)
        if frames.size == 0:
            return cls(0, np.iinfo(frames.dtype).max)
        return cls(frames.min(), frames.max())

    @classmethod
    def for_source(cls, source, samples=32):
        """The scale of a sequence read lazily (frames.source): 8-bit → [0, 255]; wider integers →
        the [min, max] of up to `samples` frames spread over the run (the first and last among
        them). Any fixed range would do, as long as encoder and decoder use the same one (the
        archive records it); values beyond it just reach the model a little outside [0, 1]."""
        if np.dtype(source.dtype) == np.uint8:
            return cls(0, 255)
        n = source.n_frames
        count = min(n, samples)  # spread `count` picks over the run: every frame of a short one
        picks = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
        lows, highs = [], []
        for i in picks:
            frame = source.read(i)
            lows.append(int(frame.min()))
            highs.append(int(frame.max()))
        return cls(min(lows), max(highs))

    def to_model(self, pixels):
        """Integer pixels → float32 model input in [0, 1] (float32 arithmetic, bit-identical on
        every call)."""
        return (np.asarray(pixels, np.float32) - np.float32(self.low)) * self._inverse_span

    def to_pixels(self, predictions):
        """Float predictions in [0, 1] → integer pixels in [low, high], the same way on every
        call (round half even)."""
        p = np.clip(predictions, 0.0, 1.0) * np.float32(self.span)
        return np.rint(p).astype(np.int32) + np.int32(self.low)
