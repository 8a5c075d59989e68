"""Next-frame prediction for many independent sequences ("lanes") at once.

Compression and decompression advance all lanes one frame per call. For each lane and step the
caller says whether the lane starts afresh (`reset`: its recurrent state is zeroed, as at a
keyframe) and whether it sees a real frame or is fed its own prediction (`extrapolate`). Because
the encoder and the decoder make exactly the same sequence of calls with the same batch, they get
bit-identical predictions on the same machine and software.
"""

import numpy as np

from prednet.model import pad_frames, padded_size


class NextFramePredictor:
    """Drives a PredNet layer one time step at a time for `batch` lanes of `height` x `width` frames."""

    def __init__(self, prednet, height, width, batch):
        import keras
        from keras import ops

        self.prednet = prednet
        self.height, self.width, self.batch = int(height), int(width), int(batch)
        self.channels = prednet.channels
        self.padded_height, self.padded_width = padded_size(self.height, self.width, prednet.nb_layers)
        self.state_shapes = prednet.state_shapes(self.padded_height, self.padded_width)

        frame_in = keras.Input(batch_shape=(self.batch, self.height, self.width, self.channels), name="frame")
        extrap_in = keras.Input(batch_shape=(self.batch,), name="extrapolate")
        reset_in = keras.Input(batch_shape=(self.batch,), name="reset")
        state_ins = [keras.Input(batch_shape=(self.batch,) + s, name=f"state_{i}") for i, s in enumerate(self.state_shapes)]

        keep = ops.reshape(1.0 - reset_in, (-1, 1, 1, 1))
        states = [s * keep for s in state_ins]
        frame = pad_frames(frame_in, self.padded_height, self.padded_width)
        prediction, new_states, _ = prednet.step(frame, states, extrapolate=extrap_in)
        prediction = prediction[:, : self.height, : self.width, :]
        self._model = keras.Model([frame_in, extrap_in, reset_in] + state_ins, [prediction] + new_states)
        self.states = [np.zeros((self.batch,) + s, np.float32) for s in self.state_shapes]

    def step(self, frames, extrapolate, reset):
        """One step for every lane.

        frames: (batch, H, W, C) float32 in [0, 1] (ignored where extrapolate is 1);
        extrapolate, reset: (batch,) 0/1. Returns the predictions (batch, H, W, C) float32 of the
        frame at this step, made before seeing it.
        """
        outs = self._model.predict_on_batch(
            [
                np.asarray(frames, np.float32),
                np.asarray(extrapolate, np.float32),
                np.asarray(reset, np.float32),
            ]
            + self.states
        )
        self.states = [np.asarray(s) for s in outs[1:]]
        return np.asarray(outs[0])


def to_pixels(predictions, max_value=255):
    """Float predictions in [0, 1] → integer pixels, the same way on every call (round half even)."""
    p = np.clip(predictions, 0.0, 1.0) * np.float32(max_value)
    return np.rint(p).astype(np.int32)
