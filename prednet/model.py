"""PredNet (Lotter, Kreiman & Cox 2016) as a Keras 3 layer written with backend-neutral `keras.ops`.

Each layer l keeps a representation R_l (a conv-LSTM), makes a prediction Ahat_l of its target A_l,
and passes the error E_l = [relu(Ahat_l - A_l), relu(A_l - Ahat_l)] upward, where it becomes the
target of the next layer: A_{l+1} = maxpool(relu(conv(E_l))). Layer 0's target is the frame itself,
so Ahat_0 at time t is the model's prediction of frame t made from frames 0..t-1.

One time step (`step`) is exposed on its own, because compression drives the model frame by frame
over many independent windows at once (see prednet/predictor.py); `call` loops it over time for
training. Frames are float in [0, pixel_max], channels-last: (batch, time, height, width, channels).
"""

import keras
import numpy as np
from keras import ops

# TEZip's default architecture: stack sizes (channels, 48, 96, 192), every filter 3x3.
DEFAULT_STACK = (48, 96, 192)

PER_LAYER_OUTPUTS = ("R", "E", "A", "Ahat")

# The linear skip's kernel variable holds its taps / SKIP_GAIN, so Adam (whose early steps are
# about the learning rate in each variable's own units) moves the taps SKIP_GAIN times faster than
# the conv-LSTM's weights; layer 0's correction is its convolution times CORRECTION_SCALE, so the
# same steps move the prediction by errors' sizes, not by whole grey levels. Both powers of two:
# the reference kernel applies them exactly.
SKIP_GAIN = 4.0
CORRECTION_SCALE = 1.0 / 64.0


def edge_pad(x, pad):
    """Pad the two spatial axes of (batch, H, W, C) by `pad` on every side, repeating the edge."""
    if pad == 0:
        return x
    h, w = x.shape[1], x.shape[2]
    x = ops.concatenate([ops.repeat(x[:, :1], pad, axis=1), x, ops.repeat(x[:, h - 1:], pad, axis=1)], axis=1)
    return ops.concatenate([ops.repeat(x[:, :, :1], pad, axis=2), x, ops.repeat(x[:, :, w - 1:], pad, axis=2)], axis=2)


def skip_taps(kernel, gain):
    """The linear skip's effective taps (K, K, N·C, C) from its kernel variable (same shape), N the
    number of previous frames it sees (planes [A_{t-1}, A_{t-1} - A_{t-2}, ..., A_{t-N+1} - A_{t-N}]):

        taps = gain · kernel, with the taps on A_{t-1} made to sum to 1 and those on
        A_{t-1} - A_{t-2} raised by 1, both at the centre (so a zero kernel is extrapolation).

    Summing to 1 keeps the mean: the learnt taps on A_{t-1} only weigh local differences, which
    are small where the field is smooth, so noise in them costs little. numpy or tensors."""
    K, C = kernel.shape[0], kernel.shape[-1]
    centre = np.zeros((K, K, 1, 1), np.float32)
    centre[K // 2, K // 2] = 1.0
    eye = np.eye(C, dtype=np.float32)[None, None]
    taps = kernel * gain
    on_frame, on_change, on_older = taps[:, :, :C], taps[:, :, C:2 * C], taps[:, :, 2 * C:]
    on_frame = on_frame + centre * (eye - ops.sum(on_frame, axis=(0, 1), keepdims=True))
    return ops.concatenate([on_frame, on_change + centre * eye, on_older], axis=2)


def skip_planes(history):
    """The skip's input planes from the previous frames, newest first [A_{t-1}, ..., A_{t-N}]:
    [A_{t-1}, A_{t-1} - A_{t-2}, ..., A_{t-N+1} - A_{t-N}] concatenated on the channel axis."""
    return ops.concatenate([history[0]] + [history[j] - history[j + 1] for j in range(len(history) - 1)], axis=-1)


class LinearSkip(keras.layers.Layer):
    """The linear part of a frame prediction: a K x K convolution of the N previous frames,

        base_t = conv_K([A_{t-1}, A_{t-1} - A_{t-2}, ..., A_{t-N+1} - A_{t-N}], skip_taps) + bias

    (edge-replicated borders, odd K, N ≥ 2; each frame (batch, H, W, C) → (batch, H, W, C)). A zero
    kernel (the initial one) is linear extrapolation 2 A_{t-1} - A_{t-2}, so an untrained model with
    a skip predicts by extrapolation and training learns the linear part of the dynamics (a sub-pixel
    drift, diffusion; with N > 2, the older changes let it average more frames' noise) in the taps;
    PredNet's layer 0 adds its correction to it."""

    def __init__(self, channels, size, gain=SKIP_GAIN, frames=2, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.size, self.gain, self.frames = int(channels), int(size), float(gain), int(frames)
        if self.size < 1 or self.size % 2 == 0:
            raise ValueError(f"the linear skip needs an odd filter size, not {size}")
        if self.frames < 2:
            raise ValueError(f"the linear skip needs at least 2 previous frames, not {frames}")

    def build(self, input_shape=None):
        C, K = self.channels, self.size
        self.kernel = self.add_weight(shape=(K, K, self.frames * C, C), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(C,), initializer="zeros", name="bias")
        self.built = True

    def call(self, history):
        """history: the N previous frames, newest first, each (batch, H, W, C)."""
        x = edge_pad(skip_planes(history), self.size // 2)
        return ops.conv(x, skip_taps(self.kernel, self.gain), padding="valid") + self.bias


def default_config(channels, hidden_stack=DEFAULT_STACK):
    """The PredNet configuration TEZip uses for `channels`-channel frames."""
    stack = (int(channels),) + tuple(int(s) for s in hidden_stack)
    n = len(stack)
    return dict(
        stack_sizes=stack,
        R_stack_sizes=stack,
        A_filt_sizes=(3,) * (n - 1),
        Ahat_filt_sizes=(3,) * n,
        R_filt_sizes=(3,) * n,
    )


def spatial_multiple(n_layers):
    """Frames are padded to a multiple of this so that every layer's 2x pooling divides evenly."""
    return 2 ** (n_layers - 1)


def padded_size(height, width, n_layers):
    m = spatial_multiple(n_layers)
    return -(-height // m) * m, -(-width // m) * m


def pad_frames(x, height, width):
    """Pad the two spatial axes (the last-but-one two) at the bottom/right by repeating the edge.

    Edge replication rather than zeros: a black border would be an artificial edge the model
    then has to predict.
    """
    h, w = x.shape[-3], x.shape[-2]
    if height > h:
        last_row = x[..., h - 1 : h, :, :]
        x = ops.concatenate([x, ops.repeat(last_row, height - h, axis=-3)], axis=-3)
    if width > w:
        last_col = x[..., :, w - 1 : w, :]
        x = ops.concatenate([x, ops.repeat(last_col, width - w, axis=-2)], axis=-2)
    return x


class PredNet(keras.layers.Layer):
    """PredNet over inputs of shape (batch, time, height, width, channels).

    output_mode: "prediction" (frames, same size as the input), "error" (per time step, the mean
    of each layer's E: shape (batch, time, n_layers)), or a per-layer unit such as "R0", "E1",
    "A2", "Ahat3" (that layer's tensor at its own, padded resolution).
    extrap_start_time: from this time step on, the model's own prediction Ahat_0 replaces the
    input frame (multi-step extrapolation); None never extrapolates.
    """

    def __init__(
        self,
        stack_sizes=(3,) + DEFAULT_STACK,
        R_stack_sizes=None,
        A_filt_sizes=(3, 3, 3),
        Ahat_filt_sizes=(3, 3, 3, 3),
        R_filt_sizes=(3, 3, 3, 3),
        pixel_max=1.0,
        error_activation="relu",
        A_activation="relu",
        LSTM_activation="tanh",
        LSTM_inner_activation="hard_sigmoid",
        output_mode="error",
        extrap_start_time=None,
        skip_filt_size=0,
        skip_gain=SKIP_GAIN,
        skip_correction_scale=CORRECTION_SCALE,
        skip_frames=2,
        frame_input_offset=None,
        frame_input_scale=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stack_sizes = tuple(int(s) for s in stack_sizes)
        self.nb_layers = len(self.stack_sizes)
        self.R_stack_sizes = tuple(int(s) for s in (R_stack_sizes or self.stack_sizes))
        self.A_filt_sizes = tuple(int(s) for s in A_filt_sizes)
        self.Ahat_filt_sizes = tuple(int(s) for s in Ahat_filt_sizes)
        self.R_filt_sizes = tuple(int(s) for s in R_filt_sizes)
        n = self.nb_layers
        if not (len(self.R_stack_sizes) == len(self.Ahat_filt_sizes) == len(self.R_filt_sizes) == n):
            raise ValueError("R_stack_sizes, Ahat_filt_sizes and R_filt_sizes need one entry per layer")
        if len(self.A_filt_sizes) != n - 1:
            raise ValueError("A_filt_sizes needs one entry per layer above the first")
        self.pixel_max = float(pixel_max)
        self.error_activation = error_activation
        self.A_activation = A_activation
        self.LSTM_activation = LSTM_activation
        self.LSTM_inner_activation = LSTM_inner_activation
        self._error_act = keras.activations.get(error_activation)
        self._A_act = keras.activations.get(A_activation)
        self._lstm_act = keras.activations.get(LSTM_activation)
        self._lstm_inner_act = keras.activations.get(LSTM_inner_activation)
        self._check_output_mode(output_mode)
        self.output_mode = output_mode
        self.extrap_start_time = None if extrap_start_time is None else int(extrap_start_time)
        # skip_filt_size K > 0: the frame prediction is a linear skip (LinearSkip, K x K) of the
        # skip_frames previous frames plus layer 0's output, unrectified: PredNet predicts a correction to it.
        self.skip_filt_size, self.skip_gain = int(skip_filt_size), float(skip_gain)
        self.skip_frames = int(skip_frames)
        self.skip_correction_scale = float(skip_correction_scale)
        if self.skip_filt_size and self.extrap_start_time is not None:
            raise ValueError("a model with a linear skip does not extrapolate from its own predictions")
        self.skip = (LinearSkip(self.stack_sizes[0], self.skip_filt_size, self.skip_gain, self.skip_frames, name="skip")
                     if self.skip_filt_size else None)
        # frame_input_offset / _scale (N floats each, models with a skip only): layer 0's conv-LSTM
        # also sees the skip's planes, normalised ((plane_j - offset_j) · scale_j), beside its errors.
        # Without them PredNet's correction sees only errors, which with a good skip are noise: it
        # cannot learn what depends on the field's values (a reaction term, a nonlinear advection).
        self.frame_input = None
        if frame_input_offset is not None or frame_input_scale is not None:
            if self.skip is None:
                raise ValueError("frame_input_offset / frame_input_scale need a linear skip")
            offset = tuple(float(v) for v in frame_input_offset)
            scale = tuple(float(v) for v in frame_input_scale)
            if not len(offset) == len(scale) == self.skip_frames:
                raise ValueError(f"frame_input_offset and frame_input_scale need {self.skip_frames} values each")
            self.frame_input = (offset, scale)

        # One convolution per layer computes all four LSTM gates (i, f, c, o) at once: the same
        # parameters as four separate convolutions, in one larger (faster) call.
        self.lstm_convs = [
            keras.layers.Conv2D(4 * self.R_stack_sizes[l], self.R_filt_sizes[l], padding="same", name=f"lstm_{l}")
            for l in range(n)
        ]
        self.ahat_convs = [
            keras.layers.Conv2D(self.stack_sizes[l], self.Ahat_filt_sizes[l], padding="same", name=f"ahat_{l}",
                                # with a skip, layer 0 adds a correction: none before training
                                **(dict(kernel_initializer="zeros") if l == 0 and self.skip else {}))
            for l in range(n)
        ]
        self.a_convs = [
            keras.layers.Conv2D(self.stack_sizes[l + 1], self.A_filt_sizes[l], padding="same", name=f"a_{l}")
            for l in range(n - 1)
        ]

    def _check_output_mode(self, mode):
        if mode in ("prediction", "error"):
            return
        for unit in PER_LAYER_OUTPUTS:
            if mode.startswith(unit) and mode[len(unit):].isdigit():
                if int(mode[len(unit):]) < self.nb_layers:
                    return
        raise ValueError(f"unknown output_mode {mode!r}")

    @property
    def channels(self):
        return self.stack_sizes[0]

    def build(self, input_shape=None):
        # Sub-layers get explicit channel counts, so the layer builds without knowing frame size.
        n = self.nb_layers
        for l in range(n):
            in_ch = self.R_stack_sizes[l] + 2 * self.stack_sizes[l]
            if l == 0 and self.frame_input is not None:
                in_ch += self.skip_frames * self.stack_sizes[0]
            if l < n - 1:
                in_ch += self.R_stack_sizes[l + 1]
            self.lstm_convs[l].build((None, None, None, in_ch))
            self.ahat_convs[l].build((None, None, None, self.R_stack_sizes[l]))
            if l < n - 1:
                self.a_convs[l].build((None, None, None, 2 * self.stack_sizes[l]))
        if self.skip is not None:
            self.skip.build()
        self.built = True

    # -- recurrent state -------------------------------------------------------------------------
    def state_shapes(self, height, width):
        """Shapes (without batch) of the state tensors for padded frames of height x width.

        Order: for each layer l, R_l, c_l (LSTM cell), E_l.
        """
        shapes = []
        for l in range(self.nb_layers):
            h, w = height // 2**l, width // 2**l
            shapes += [(h, w, self.R_stack_sizes[l]), (h, w, self.R_stack_sizes[l]), (h, w, 2 * self.stack_sizes[l])]
        return shapes

    def initial_states(self, batch, height, width, dtype="float32"):
        return [ops.zeros((batch,) + s, dtype=dtype) for s in self.state_shapes(height, width)]

    # -- one time step ---------------------------------------------------------------------------
    # A step has two halves. top_down updates every representation from the previous errors and
    # states: it needs no input frame, and its Ahat_0 is the prediction of this step's frame.
    # bottom_up then compares predictions with the actual input and computes the new errors.
    # Compression runs the halves separately (prednet/predictor.py), so that the frame fed to
    # bottom_up can be the decoded frame, which exists only once the prediction is known.

    def top_down(self, states, planes=None):
        """states (R_l, c_l, E_l for each layer) → (R_new, c_new) lists, one entry per layer.
        planes: models with frame input only, layer 0's extra input (frame_input_planes)."""
        n = self.nb_layers
        R_prev, c_prev, E_prev = states[0::3], states[1::3], states[2::3]
        R_new, c_new = [None] * n, [None] * n
        for l in reversed(range(n)):
            parts = [R_prev[l], E_prev[l]]
            if l == 0 and planes is not None:
                parts.append(planes)
            if l < n - 1:
                parts.append(ops.repeat(ops.repeat(R_new[l + 1], 2, axis=1), 2, axis=2))
            gates = self.lstm_convs[l](ops.concatenate(parts, axis=-1))
            i, f, c_hat, o = ops.split(gates, 4, axis=-1)
            i, f, o = self._lstm_inner_act(i), self._lstm_inner_act(f), self._lstm_inner_act(o)
            c_new[l] = f * c_prev[l] + i * self._lstm_act(c_hat)
            R_new[l] = o * self._lstm_act(c_new[l])
        return R_new, c_new

    def frame_prediction(self, R0, base=None):
        """Ahat_0: the predicted frame, from layer 0's representation; with a linear skip,
        clip(base + conv(R0), 0, pixel_max), `base` the skip's output for this step."""
        if self.skip is not None:
            return ops.clip(base + self.ahat_convs[0](R0) * self.skip_correction_scale, 0.0, self.pixel_max)
        return ops.minimum(self._A_act(self.ahat_convs[0](R0)), self.pixel_max)

    def bottom_up(self, frame, R_new, extrapolate=None, record=None, frame_size=None, base=None):
        """Errors of every layer against the input `frame` (batch, H, W, C), padded.

        extrapolate: None, or a (batch,) 0/1 tensor: 1 feeds the model its own prediction instead
        of `frame` — cropped to `frame_size` (the unpadded (h, w)) and padded again like any input,
        so extrapolating sees exactly what feeding the prediction back as a frame would.
        Returns (prediction Ahat_0, errors E_l per layer, recorded per-layer units).
        """
        n = self.nb_layers
        E_new, recorded = [None] * n, {}
        a, prediction = frame, None
        for l in range(n):
            if l == 0:
                ahat = prediction = self.frame_prediction(R_new[0], base)
                if extrapolate is not None:
                    fed_back = ahat
                    if frame_size is not None:
                        h, w = frame_size
                        fed_back = pad_frames(ahat[:, :h, :w, :], ahat.shape[1], ahat.shape[2])
                    mask = ops.reshape(ops.cast(extrapolate, ahat.dtype), (-1, 1, 1, 1))
                    a = mask * fed_back + (1.0 - mask) * a
            else:
                ahat = self._A_act(self.ahat_convs[l](R_new[l]))
            e = ops.concatenate([self._error_act(ahat - a), self._error_act(a - ahat)], axis=-1)
            E_new[l] = e
            if record:
                for unit, value in (("R", R_new[l]), ("E", e), ("A", a), ("Ahat", ahat)):
                    if f"{unit}{l}" in record:
                        recorded[f"{unit}{l}"] = value
            if l < n - 1:
                a = ops.max_pool(self._A_act(self.a_convs[l](e)), pool_size=2, strides=2)
        return prediction, E_new, recorded

    @staticmethod
    def join_states(R, c, E):
        states = []
        for l in range(len(R)):
            states += [R[l], c[l], E[l]]
        return states

    def frame_input_planes(self, history):
        """Layer 0's extra input for a model with frame input: the skip's planes (skip_planes of
        the N previous frames, newest first) normalised, (plane_j - offset_j) · scale_j, each plane
        j being C channels: (batch, H, W, N·C)."""
        offset, scale = self.frame_input
        C = self.stack_sizes[0]
        off = np.repeat(np.asarray(offset, np.float32), C)
        sc = np.repeat(np.asarray(scale, np.float32), C)
        return (skip_planes(history) - off) * sc

    def step(self, frame, states, extrapolate=None, record=None, frame_size=None, base=None, planes=None):
        """One whole time step: returns (prediction of this step's frame, new states, recorded).
        base: the linear skip's output for this step (models with a skip only); planes: layer 0's
        frame input (models with one only)."""
        R_new, c_new = self.top_down(states, planes)
        prediction, E_new, recorded = self.bottom_up(frame, R_new, extrapolate, record, frame_size, base)
        return prediction, self.join_states(R_new, c_new, E_new), recorded

    # -- whole sequences -------------------------------------------------------------------------
    def call(self, inputs):
        t_steps, height, width = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        if t_steps is None or height is None or width is None:
            raise ValueError("PredNet needs static time, height and width (crop or pad the input first)")
        ph, pw = padded_size(height, width, self.nb_layers)
        x = pad_frames(inputs, ph, pw)
        batch = ops.shape(x)[0]
        states = self.initial_states(batch, ph, pw, dtype=x.dtype)
        record = None if self.output_mode in ("prediction", "error") else {self.output_mode}
        outputs = []
        history = [ops.zeros_like(x[:, 0])] * self.skip_frames  # the skip's frames: zeros before the first
        for t in range(t_steps):
            extrapolate = None
            if self.extrap_start_time is not None and t >= self.extrap_start_time:
                extrapolate = ops.ones((batch,), dtype=x.dtype)
            base = self.skip(history) if self.skip is not None else None
            planes = None
            if self.frame_input is not None:  # a fresh lane's input is zeros (the states' too)
                planes = self.frame_input_planes(history)
                if t == 0:
                    planes = ops.zeros_like(planes)
            prediction, states, recorded = self.step(x[:, t], states, extrapolate, record, (height, width), base,
                                                     planes)
            # after the first frame all are that frame: the next base extrapolates no motion
            history = [x[:, t]] * self.skip_frames if t == 0 else [x[:, t]] + history[:-1]
            if self.output_mode == "prediction":
                outputs.append(prediction[:, :height, :width, :])
            elif self.output_mode == "error":
                errs = [ops.mean(e, axis=(1, 2, 3)) for e in states[2::3]]
                outputs.append(ops.stack(errs, axis=-1))
            else:
                outputs.append(recorded[self.output_mode])
        return ops.stack(outputs, axis=1)

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape
        if self.output_mode == "prediction":
            return (b, t, h, w, self.channels)
        if self.output_mode == "error":
            return (b, t, self.nb_layers)
        unit = self.output_mode.rstrip("0123456789")
        l = int(self.output_mode[len(unit):])
        ph, pw = padded_size(h, w, self.nb_layers)
        ch = {"R": self.R_stack_sizes[l], "E": 2 * self.stack_sizes[l], "A": self.stack_sizes[l], "Ahat": self.stack_sizes[l]}[unit]
        return (b, t, ph // 2**l, pw // 2**l, ch)

    def get_config(self):
        config = super().get_config()
        config.update(
            stack_sizes=list(self.stack_sizes),
            R_stack_sizes=list(self.R_stack_sizes),
            A_filt_sizes=list(self.A_filt_sizes),
            Ahat_filt_sizes=list(self.Ahat_filt_sizes),
            R_filt_sizes=list(self.R_filt_sizes),
            pixel_max=self.pixel_max,
            error_activation=self.error_activation,
            A_activation=self.A_activation,
            LSTM_activation=self.LSTM_activation,
            LSTM_inner_activation=self.LSTM_inner_activation,
            output_mode=self.output_mode,
            extrap_start_time=self.extrap_start_time,
            skip_filt_size=self.skip_filt_size,
            skip_gain=self.skip_gain,
            skip_correction_scale=self.skip_correction_scale,
            skip_frames=self.skip_frames,
        )
        if self.frame_input is not None:
            config.update(frame_input_offset=list(self.frame_input[0]), frame_input_scale=list(self.frame_input[1]))
        return config


def first_counted_step(prednet):
    """The first time step whose error the training loss counts: 1 (step 0 predicts from nothing);
    with a linear skip over N frames, N: before it the skip sees the first frame repeated, and
    the epochs would train PredNet's correction for those start-up steps at the cost of the steady
    state that compression uses (advdiff, 3 frames: counting them, 5 epochs left the archives 1.5 %
    larger losslessly and 10 % at abs 1 than the least-squares start; without them, within 1 %)."""
    return max(1, int(getattr(prednet, "skip_frames", 1)) if getattr(prednet, "skip", None) is not None else 1)


def loss_weights(n_layers, nt, layer_weights=None, first=1):
    """TEZip's loss weighting: only layer 0's error counts; time steps before `first` (step 0 is a
    prediction from nothing) weigh 0 and the later steps share weight 1 equally."""
    if layer_weights is None:
        layer_weights = [1.0] + [0.0] * (n_layers - 1)
    first = min(int(first), nt - 1) if nt > 1 else 0
    time_weights = [0.0] * first + [1.0 / (nt - first)] * (nt - first)
    return list(layer_weights), time_weights


class WeightedError(keras.layers.Layer):
    """Collapses PredNet's (batch, time, layers) errors to one weighted loss value per sequence."""

    def __init__(self, layer_weights, time_weights, **kwargs):
        super().__init__(**kwargs)
        self.layer_weights = [float(w) for w in layer_weights]
        self.time_weights = [float(w) for w in time_weights]

    def call(self, errors):
        lw = ops.convert_to_tensor(self.layer_weights, dtype=errors.dtype)
        tw = ops.convert_to_tensor(self.time_weights, dtype=errors.dtype)
        per_step = ops.sum(errors * lw, axis=-1)
        return ops.sum(per_step * tw, axis=-1, keepdims=True)

    def get_config(self):
        config = super().get_config()
        config.update(layer_weights=self.layer_weights, time_weights=self.time_weights)
        return config


def build_training_model(prednet, nt, height, width, layer_weights=None):
    """A model whose output is the weighted prediction error per sequence (train it toward 0)."""
    inputs = keras.Input(shape=(nt, height, width, prednet.channels))
    errors = prednet(inputs)
    lw, tw = loss_weights(prednet.nb_layers, nt, layer_weights, first_counted_step(prednet))
    loss = WeightedError(lw, tw, name="weighted_error")(errors)
    return keras.Model(inputs, loss)
