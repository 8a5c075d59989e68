"""Next-frame prediction for many independent sequences ("lanes") at once.

Each time step is two calls: `predict(reset)` returns every lane's prediction of its next frame
(lanes flagged in `reset` start afresh, as at a keyframe); `update(frames)` then shows each lane
the frame it should learn from — a keyframe, the decoded frame (closed loop), or its own prediction
(extrapolation). The split lets the decoder compute a frame from its prediction before feeding it
back. Encoder and decoder make exactly the same calls with the same batch, so they get
bit-identical predictions on the same machine and software.
"""

import numpy as np

from prednet.model import pad_frames, padded_size

# Peak memory of one model step, in multiples of the recurrent state it carries. Measured on CPU
# (TensorFlow, oneDNN) with the bundled and the tests' models, 512x512 to 1024x1024 frames, 1-2
# lanes: 5-6x resident, up to 9x of address space. On the safe side.
STEP_MEMORY_PER_STATE = 10


def model_memory(prednet, height, width, batch):
    """About how many bytes a NextFramePredictor for `batch` lanes of height x width frames needs
    at its peak (its states and one step's activations)."""
    ph, pw = padded_size(int(height), int(width), prednet.nb_layers)
    state = 4 * sum(int(np.prod(s, dtype=object)) for s in prednet.state_shapes(ph, pw))
    return STEP_MEMORY_PER_STATE * state * int(batch)


def _run(model, inputs):
    """model.predict_on_batch, with the backend's out-of-memory error as a MemoryError (the callers
    turn that into one line)."""
    try:
        return model.predict_on_batch(inputs)
    except Exception as e:
        if type(e).__name__ == "ResourceExhaustedError":  # TensorFlow's; other backends raise MemoryError
            raise MemoryError("the model ran out of memory") from None
        raise


class NextFramePredictor:
    """Drives a PredNet layer step by step for `batch` lanes of `height` x `width` frames."""

    def __init__(self, prednet, height, width, batch):
        import keras
        from keras import ops

        if getattr(prednet, "skip", None) is not None:
            raise ValueError("a model with a linear skip runs on the reference kernel only (archive format 3)")
        self.prednet = prednet
        self.height, self.width, self.batch = int(height), int(width), int(batch)
        self.channels = prednet.channels
        ph, pw = padded_size(self.height, self.width, prednet.nb_layers)
        self.state_shapes = prednet.state_shapes(ph, pw)
        n = prednet.nb_layers
        B = self.batch

        def inputs(shapes, prefix):
            return [keras.Input(batch_shape=(B,) + tuple(s), name=f"{prefix}_{i}") for i, s in enumerate(shapes)]

        # predict: zero the state of reset lanes, run the top-down half, read off Ahat_0.
        reset_in = keras.Input(batch_shape=(B,), name="reset")
        state_ins = inputs(self.state_shapes, "state")
        keep = ops.reshape(1.0 - reset_in, (-1, 1, 1, 1))
        R_new, c_new = prednet.top_down([s * keep for s in state_ins])
        prediction = prednet.frame_prediction(R_new[0])[:, : self.height, : self.width, :]
        self._predict = keras.Model([reset_in] + state_ins, [prediction] + R_new + c_new)

        # update: the bottom-up half against the frame each lane is shown.
        frame_in = keras.Input(batch_shape=(B, self.height, self.width, self.channels), name="frame")
        R_ins = inputs([self.state_shapes[3 * l] for l in range(n)], "R")
        _, E_new, _ = prednet.bottom_up(pad_frames(frame_in, ph, pw), R_ins)
        self._update = keras.Model([frame_in] + R_ins, E_new)

        self.states = [np.zeros((B,) + s, np.float32) for s in self.state_shapes]
        self._pending = None

    def predict(self, reset):
        """Predictions (batch, H, W, C) float32 in [0, 1] of every lane's next frame; `reset` (batch,)
        0/1 zeroes a lane's state first. May be repeated (with `states` restored) before `update`."""
        outs = _run(self._predict, [np.asarray(reset, np.float32)] + self.states)
        n = self.prednet.nb_layers
        self._pending = ([np.asarray(r) for r in outs[1 : 1 + n]], [np.asarray(c) for c in outs[1 + n :]])
        return np.asarray(outs[0])

    def update(self, frames):
        """Show every lane its actual frame for this step (batch, H, W, C) float32 in [0, 1]."""
        R_new, c_new = self._pending
        E_new = _run(self._update, [np.asarray(frames, np.float32)] + R_new)
        if not isinstance(E_new, (list, tuple)):
            E_new = [E_new]
        self.states = self.prednet.join_states(R_new, c_new, [np.asarray(e) for e in E_new])
        self._pending = None
