"""The coders that the window schedule (sequence.windows.run_windows) drives, one per direction,
side by side: each gives the schedule every keyframe and every predicted frame as the decoder has
it. The encoder codes the real frames; the decoder rebuilds them from the codes.
"""

import numpy as np

from sequence.framecoder import FrameCoder, KeyframeCoder, to_interleaved, to_planar


class SequenceEncoder:
    """Codes frames (N, H, W, C) uint8 or uint16 under `plan`; keeps per frame what the archive
    stores (codes, block choices) and what the run reports (predictions, decoded frames)."""

    def __init__(self, frames, plan, xp=np):
        n, h, w, c = frames.shape
        self.frames = frames
        self.max_value = int(np.iinfo(frames.dtype).max)  # tolerances, clipping: in the data's own units
        self.residual_head = plan.residual_head(self.max_value)
        self.keyframe_head = plan.keyframe_head(self.max_value)
        self.coder = FrameCoder(self.residual_head, plan.block_selector(), plan.mode, plan.bounds, self.max_value, xp)
        self.key_coder = KeyframeCoder(self.keyframe_head, self.max_value)
        selector = self.coder.selector
        self.choices = np.zeros((n,) + selector.grid(h, w), np.uint8) if selector is not None else None
        self.codes = np.zeros((n, c, h, w), np.int32)  # the heads' codes, residual or keyframe
        self.predictions = np.zeros((n, c, h, w), np.int32)  # kept for -v and --report
        self.decoded = frames.copy()

    def original(self, f):
        return self.frames[f]

    def keyframe(self, f):
        self.codes[f], decoded = self.key_coder.encode_frame(to_planar(self.frames[f]))
        self.decoded[f] = to_interleaved(decoded, self.frames.dtype)
        return self.decoded[f]

    def frame(self, f, model_prediction):
        previous = to_planar(self.decoded[f - 1])
        codes, choices, prediction, decoded = self.coder.encode_frame(
            to_planar(self.frames[f]), to_planar(model_prediction), previous)
        self.codes[f], self.predictions[f] = codes, prediction
        if choices is not None:
            self.choices[f] = choices
        self.decoded[f] = to_interleaved(decoded, self.frames.dtype)
        return self.decoded[f]


class SequenceDecoder:
    """Rebuilds frames into `frames` (N, H, W, C) from the heads' codes: `codes` (N, C, H, W) int32
    (rows of keyframes and predicted frames alike), block `choices` (N, ny, nx) or None."""

    def __init__(self, frames, codes, choices, residual_coder: FrameCoder, key_coder: KeyframeCoder):
        self.frames, self.codes, self.choices = frames, codes, choices
        self.coder, self.key_coder = residual_coder, key_coder

    def keyframe(self, f):
        self.frames[f] = to_interleaved(self.key_coder.decode_frame(self.codes[f]), self.frames.dtype)
        return self.frames[f]

    def frame(self, f, model_prediction):
        choices = self.choices[f] if self.choices is not None else None
        decoded = self.coder.decode_frame(self.codes[f], choices, to_planar(model_prediction),
                                          to_planar(self.frames[f - 1]))
        self.frames[f] = to_interleaved(decoded, self.frames.dtype)
        return self.frames[f]
