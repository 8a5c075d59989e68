"""Uniform (linear) quantization of residuals within an abs tolerance (the "linquant" codec).

Each residual e = value - prediction is replaced by the index of its bin of width 2t + 1:

    q = sign(e) * floor((|e| + t) / (2t + 1))        reconstructed = q * (2t + 1)

so |reconstructed - e| <= t, and the decoder, which sees only q and t, rebuilds the same values.

No spatial prediction: PredNet's residuals are noise-like, and at a bound the reconstructed
neighbours a spatial predictor would use carry up to ±t of quantization noise each, so predicting
from them (medquant) adds noise rather than removing it. What structure the residuals have is
where they are large (edges, moving objects), and the context range coder's neighbour contexts
already model exactly that. On the dev frames' residuals the quantized values cost 3 % (abs 1)
to 14 % (abs 8) fewer bytes than medquant's codes. Keyframes are pixels, not residuals: they keep
medquant, whose prediction does the work there.

Elementwise integer arithmetic on numpy or cupy arrays (the same expressions either way, so the
same codes on either device).
"""

import numpy as np

from base.errors import TezipError
from stages._codec import MAX_TOLERANCE, Quantizer, check_tolerance, into
from stages._kernels import cupy, is_cupy_array

_INT32 = np.iinfo(np.int32)


class LinearQuantizer(Quantizer):
    """quantize(residuals) -> (codes, reconstructed residuals); decode(codes) -> reconstructed
    residuals. int32 arrays of any shape; numpy or cupy in, the same kind out."""

    codec_id = "linquant"
    config_keys = ("tolerance",)

    def __init__(self, tolerance=0):
        self.tolerance = check_tolerance("linquant", tolerance, MAX_TOLERANCE)

    @property
    def step(self):
        return 2 * self.tolerance + 1

    def quantize(self, residuals, tolerances=None):
        """tolerances: unused (the tolerance is the config's, the same for every value)."""
        xp = cupy if is_cupy_array(residuals) else np
        e = xp.asarray(residuals).astype(np.int64)
        q = xp.sign(e) * ((xp.abs(e) + self.tolerance) // self.step)
        # |q| <= |e| and |q * step| <= |e| + t: int32 residuals with t < 2^30 stay inside int64, and the
        # codes inside int32; the reconstruction can leave int32 only for absurd residuals.
        reconstructed = q * self.step
        if reconstructed.size and (int(reconstructed.min()) < _INT32.min or int(reconstructed.max()) > _INT32.max):
            raise TezipError("residuals too large for linquant coding")
        return q.astype(np.int32), reconstructed.astype(np.int32)

    def decode(self, codes, out=None):
        if codes.dtype != np.int32:
            raise TezipError(f"corrupt linquant data: expected int32, got {codes.dtype}")
        xp = cupy if is_cupy_array(codes) else np
        reconstructed = codes.astype(np.int64) * self.step
        if reconstructed.size and (int(reconstructed.min()) < _INT32.min or int(reconstructed.max()) > _INT32.max):
            raise TezipError("corrupt linquant data: decoded values overflow int32")
        return into(out, xp.asarray(reconstructed, dtype=np.int32))
