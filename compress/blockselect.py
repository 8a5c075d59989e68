"""Per-block choice of predictor: PredNet's prediction or the previous decoded frame.

Static parts of real footage repeat exactly from one frame to the next, where PredNet's slightly
blurry prediction leaves a residual everywhere. For each block (all channels together) the encoder
keeps whichever predictor leaves the smaller sum of absolute residuals; one bit per block, packed
and zstd-compressed, tells the decoder which. The decoder has the previous decoded frame (the
previous frame of the same window: windows start with keyframes), so it can rebuild the same
prediction.
"""

import numpy as np

from compress.codec import Codec
from compress.errors import TezipError


def _block_sums(values, block):
    """Sum of |values| (C, H, W) over each block x block tile, all channels → (ny, nx)."""
    c, h, w = values.shape
    ny, nx = -(-h // block), -(-w // block)
    padded = np.zeros((c, ny * block, nx * block), np.int64)
    padded[:, :h, :w] = np.abs(values)
    return padded.reshape(c, ny, block, nx, block).sum(axis=(0, 2, 4))


class BlockSelector(Codec):
    codec_id = "blockselect"
    config_keys = ("block",)

    def __init__(self, block=16):
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 4096:
            raise TezipError(f"block size must be an integer 1-4096, got {block!r}")
        self.block = block

    def grid(self, height, width):
        return -(-height // self.block), -(-width // self.block)

    def choose(self, frame, model_prediction, previous):
        """(ny, nx) bool: True where the previous frame predicts the block better. Planar int inputs."""
        return _block_sums(frame - previous, self.block) < _block_sums(frame - model_prediction, self.block)

    def combine(self, model_prediction, previous, use_previous):
        """The prediction made of the chosen predictor in each block."""
        _, h, w = model_prediction.shape
        pixels = np.repeat(np.repeat(use_previous, self.block, axis=0), self.block, axis=1)[:h, :w]
        return np.where(pixels[None], previous, model_prediction)

    def pack(self, choices):
        """(P, ny, nx) bool → bytes (one bit per block)."""
        return np.packbits(np.asarray(choices, bool).reshape(-1)).tobytes()

    def unpack(self, buf, count, height, width):
        ny, nx = self.grid(height, width)
        n_bits = count * ny * nx
        if len(buf) != (n_bits + 7) // 8:
            raise TezipError(f"corrupt block choices: {len(buf)} bytes for {count} frames of {ny}x{nx} blocks")
        bits = np.unpackbits(np.frombuffer(buf, np.uint8))[:n_bits]
        return bits.reshape(count, ny, nx).astype(bool)
