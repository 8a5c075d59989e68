"""`tezip.py -l MODEL_DIR DATA_DIR`: train PredNet on the .hkl files of train_data_create.py.

Training sequences are `nt` consecutive frames of one source sequence, randomly cropped (the model
is fully convolutional, so a model trained on crops serves any frame size, and crops make large
frames train fast on a CPU). The weights of the epoch with the best validation loss are kept; for
a model whose skip starts from least squares the start is a candidate too.
"""

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from base.errors import TezipError
from prednet.skipfit import MAX_SKIP_FRAMES

HKL_FILES = ("X_train.hkl", "X_val.hkl", "sources_train.hkl", "sources_val.hkl")


@dataclass
class TrainOptions:
    # TEZip / coxlab PredNet defaults: 150 epochs of 500 sequences (125 steps of 4), nt = 10.
    epochs: int = 150
    steps_per_epoch: int = 125
    batch_size: int = 4
    nt: int = 10
    val_sequences: int = 100
    learning_rate: float = 1e-3
    final_learning_rate: float | None = None  # for the last quarter of the epochs; None: learning_rate / 10
    crop: tuple | None = None  # (height, width); None trains on whole frames
    hidden_stack: tuple = (48, 96, 192)
    # > 0: the model predicts a correction to a learned K x K linear filter of the previous frames,
    # initialised to linear extrapolation (prednet.model.LinearSkip); 0: PredNet as published
    # "auto": K and skip_frames chosen by prednet.skipfit.choose_skip (the least-squares taps that
    # predict the validation frames best)
    skip: int | str = 0
    skip_frames: int = 2  # the previous frames the skip sees (2: the last one and its change)
    skip_fit: bool = True  # start the skip's taps from least squares (prednet/skipfit.py), not extrapolation
    frame_input: bool = False  # with a skip: layer 0's conv-LSTM also sees the skip's planes (PredNet frame_input_*)
    # False: the least-squares taps stay as fitted and the epochs train PredNet's correction only
    # (Adam's steps moved every tap by the learning rate and spoilt the fit the correction was
    # learning around); True: the epochs move the taps too. Taps started from extrapolation
    # (skip_fit False) always train.
    train_skip: bool = False
    seed: int = 0
    verbose: bool = False
    # False: a MODEL_DIR that is not empty (an earlier model, which archives made with it need to
    # decompress) is refused; True: its model files are replaced (other files stay)
    overwrite: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training after a model was written: `message` says which one MODEL_DIR holds."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass
class TrainResult:
    epochs: int
    seconds: float
    seconds_per_epoch: float
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = 0
    blank_val_loss: float = math.nan  # the loss of predicting a black frame, for scale
    previous_val_loss: float = math.nan  # of predicting each frame by the one before it
    extrapolation_val_loss: float = math.nan  # of linear extrapolation 2·x[t-1] - x[t-2]
    start_val_loss: float = math.nan  # of the least-squares start (models with a fitted skip)
    # with skip "auto": {"KxK/N": the skip's validation mean absolute error} of the sizes tried, and
    # the chosen (K, N)
    skip_errors: dict = field(default_factory=dict)
    skip_size: tuple = ()
    skip_search_seconds: float = 0.0
    digest: str = ""


def load_train_data(data_dir):
    import hickle

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TezipError(f"training data folder {data_dir} does not exist (make it with train_data_create.py)")
    out = {}
    for name in HKL_FILES:
        path = data_dir / name
        if not path.is_file():
            raise TezipError(f"training data file {path} is missing (make it with train_data_create.py)")
        try:
            out[name] = hickle.load(str(path))
        except Exception as e:  # hickle raises many types on a bad file
            raise TezipError(f"training data file {path} is not readable ({type(e).__name__}: {e})") from None
    X_train, X_val = np.asarray(out["X_train.hkl"]), np.asarray(out["X_val.hkl"])
    s_train, s_val = np.asarray(out["sources_train.hkl"]), np.asarray(out["sources_val.hkl"])
    for X, s, what in ((X_train, s_train, "train"), (X_val, s_val, "val")):
        if X.ndim != 4 or X.shape[-1] not in (1, 3):
            raise TezipError(f"X_{what}.hkl has shape {X.shape}; expected (frames, height, width, 1 or 3)")
        if len(s) != len(X):
            raise TezipError(f"sources_{what}.hkl has {len(s)} entries for {len(X)} frames in X_{what}.hkl")
    if X_train.shape[1:] != X_val.shape[1:]:
        raise TezipError(f"X_train.hkl frames {X_train.shape[1:]} and X_val.hkl frames {X_val.shape[1:]} differ")
    if X_train.dtype != X_val.dtype:
        raise TezipError(f"X_train.hkl holds {X_train.dtype} frames but X_val.hkl {X_val.dtype}; make both with one train_data_create.py run")
    if X_train.dtype not in (np.uint8, np.uint16):  # frames are scaled by their integer range: [0, 1] floats, int8
        raise TezipError(f"X_train.hkl and X_val.hkl hold {X_train.dtype} frames; TEZip trains on uint8 or uint16 frames "
                         "(what train_data_create.py writes)")
    return X_train, s_train, X_val, s_val


def sequence_starts(sources, nt):
    """Indices i where frames i..i+nt-1 all come from one source sequence."""
    sources = np.asarray(sources)
    if len(sources) < nt:
        return np.zeros(0, np.int64)
    same = sources[: len(sources) - nt + 1] == sources[nt - 1 :]
    return np.flatnonzero(same)


def crop_size(frame_h, frame_w, crop, multiple):
    """The crop to train on: the requested one (clamped to the frame), rounded down to `multiple`.
    Raises TezipError for a requested crop below `multiple` or frames smaller than it."""
    if crop is not None and min(crop) < multiple:
        raise TezipError(f"--crop {crop[0]} {crop[1]} is smaller than the model's minimum size {multiple}x{multiple} "
                         f"(each of its layers halves the frame)")
    h, w = (frame_h, frame_w) if crop is None else (min(crop[0], frame_h), min(crop[1], frame_w))
    h, w = max(multiple, h // multiple * multiple), max(multiple, w // multiple * multiple)
    if h > frame_h or w > frame_w:
        raise TezipError(f"frames of {frame_h}x{frame_w} are smaller than the model's minimum size {multiple}x{multiple}")
    return h, w


def frame_value_scales(X, sources):
    """For 16-bit training data, the ValueScale of each frame's sequence: the scaling to [0, 1]
    compression uses on a whole sequence (ValueScale.for_frames: its observed range), so the model
    trains on values like those it will be shown. None for 8-bit data, which is divided by 255."""
    from prednet.scale import ValueScale

    if X.dtype != np.uint16:
        return None
    sources = np.asarray(sources)
    # Frames of one sequence are contiguous (train_data_create.py): one run per sequence.
    run_starts = [0] + [int(i) + 1 for i in np.flatnonzero(sources[1:] != sources[:-1])] + [len(sources)]
    scales = []
    for start, end in zip(run_starts, run_starts[1:]):
        scales += [ValueScale.for_frames(X[start:end])] * (end - start)
    return scales


def sample_batch(X, starts, nt, crop_hw, rng, count, scales=None):
    """`count` random sequences of nt frames, randomly cropped, as float32 in [0, 1]: divided by
    255, or mapped by each sequence's ValueScale (`scales`, per frame: frame_value_scales)."""
    ch, cw = crop_hw
    H, W = X.shape[1:3]
    picks = rng.choice(starts, size=count, replace=len(starts) < count)
    batch = np.empty((count, nt, ch, cw, X.shape[-1]), np.float32)
    for i, s in enumerate(picks):
        y = rng.integers(0, H - ch + 1)
        x = rng.integers(0, W - cw + 1)
        window = X[s : s + nt, y : y + ch, x : x + cw]
        batch[i] = window if scales is None else scales[s].to_model(window)
    if scales is None:
        batch /= 255.0
    return batch


class SequenceBatches(keras.utils.PyDataset):
    """Batches of random cropped sequences, made lazily (an epoch of full frames would not fit in
    memory) and reproducibly: batch i of epoch e always comes from the same seed; `fixed` batches
    (validation) are the same every epoch."""

    def __init__(self, X, starts, nt, crop_hw, batch_size, n_batches, seed, fixed=False, scales=None):
        super().__init__()
        self.X, self.starts, self.nt, self.crop_hw, self.scales = X, starts, nt, crop_hw, scales
        self.batch_size, self.n_batches, self.seed, self.fixed = batch_size, n_batches, seed, fixed
        self.epoch = 0

    def __len__(self):
        return self.n_batches

    def __getitem__(self, i):
        key = (self.seed, i) if self.fixed else (self.seed, self.epoch, i)
        rng = np.random.default_rng(key)
        x = sample_batch(self.X, self.starts, self.nt, self.crop_hw, rng, self.batch_size, self.scales)
        return x, np.zeros((len(x), 1), np.float32)


def train(model_dir, data_dir, options: TrainOptions):
    """Train a PredNet on DATA_DIR's .hkl files (train_data_create.py) and write it into model_dir
    (a folder path), locked against other runs for the whole training: the best model so far
    (lowest validation loss) is published there, both files together, whenever an epoch improves.

    Returns a TrainResult. Raises TezipError (one line) for bad data or options, a MODEL_DIR that is
    the bundled model ('default' or its folder), lies in DATA_DIR, is a file, or holds files without
    options.overwrite, or is in use by another run; TrainingInterrupted (a KeyboardInterrupt) on
    Ctrl-C once a model was written, naming it (before that, a plain KeyboardInterrupt, and a
    MODEL_DIR this run created is removed)."""
    from base.publish import OutputFolder, check_output_folder
    from prednet.modelfile import DEFAULT_MODEL, DEFAULT_MODEL_DIR

    if isinstance(model_dir, str) and model_dir == DEFAULT_MODEL:
        raise TezipError(f"MODEL_DIR '{DEFAULT_MODEL}' names the bundled model; train into another folder "
                         f"(./{DEFAULT_MODEL} for a folder of that name)")
    if Path(model_dir).resolve() == DEFAULT_MODEL_DIR.resolve():  # by its path (even with --overwrite)
        raise TezipError(f"MODEL_DIR {model_dir} is the bundled model's folder (archives made with -c default "
                         f"need it); train into another folder")
    check_output_folder(model_dir, data_dir, options.overwrite, what="DATA_DIR", label="MODEL_DIR")
    result = TrainResult(epochs=options.epochs, seconds=0.0, seconds_per_epoch=0.0)
    with OutputFolder(model_dir, options.overwrite, label="MODEL_DIR") as folder:
        try:
            return _train(folder, data_dir, options, result)
        except KeyboardInterrupt:
            if folder.published:
                raise TrainingInterrupted(
                    f"interrupted; {model_dir} holds the best model so far (epoch {result.best_epoch}"
                    + (", the least-squares start" if result.best_epoch == 0 else "")
                    + f", validation loss {result.best_val_loss:.6f})") from None
            raise


def _frame_reader(X, scales):
    """frame_at(i) → frame i of X (H, W, C) float32 in the model's [0, 1]: by its sequence's
    ValueScale (16-bit data, `scales` from frame_value_scales) or / 255 (8-bit, scales None)."""
    def frame_at(i):
        return scales[i].to_model(X[i]) if scales else X[i].astype(np.float32) / 255.0

    return frame_at


def _choose_skip_size(o, train_at, s_train, val_at, s_val, result):
    """TrainOptions `o` with skip "auto" replaced by the size prednet.skipfit.choose_skip picks
    from the training and validation frames; the errors tried go to result.skip_errors."""
    from dataclasses import replace

    from prednet.skipfit import SKIP_CANDIDATES, choose_skip

    t0 = time.time()

    def report(K, N, error):
        if o.verbose:
            print(f"linear skip {K}x{K} on {N} frames: " + (
                f"validation loss {error:.6f}" if error is not None else
                f"left out (the training or validation sequences are shorter than {N + 1} frames)"), flush=True)

    # a skip over N frames trains its correction from step N of each nt-frame sequence on
    candidates = tuple(c for c in SKIP_CANDIDATES if c[1] < o.nt)
    if o.verbose:
        for K, N in SKIP_CANDIDATES:
            if N >= o.nt:
                print(f"linear skip {K}x{K} on {N} frames: left out (needs --nt over {N})", flush=True)
    if not candidates:
        raise TezipError(f"--skip auto needs --nt of at least {min(n for _, n in SKIP_CANDIDATES) + 1}")
    K, N, result.skip_errors, fit = choose_skip(train_at, lambda n: sequence_starts(s_train, n), val_at,
                                                lambda n: sequence_starts(s_val, n), candidates, o.seed, report)
    result.skip_size, result.skip_search_seconds = (K, N), time.time() - t0
    if o.verbose:  # said now, before the epochs (tezip.py's closing line says it without -v)
        print(f"--skip auto chose {K}x{K} taps on {N} frames ({len(result.skip_errors)} sizes tried in "
              f"{result.skip_search_seconds:.1f} s)", flush=True)
    return replace(o, skip=K, skip_frames=N), fit


def _train(folder, data_dir, o: TrainOptions, result: TrainResult):
    from prednet.model import PredNet, build_training_model, default_config, first_counted_step, spatial_multiple
    from prednet.modelfile import save_model

    X_train, s_train, X_val, s_val = load_train_data(data_dir)
    if o.nt < 2:
        raise TezipError("--nt must be at least 2 (the first time step only primes the model)")
    auto = o.skip == "auto"
    if auto and not o.skip_fit:
        raise TezipError("--skip auto chooses the skip's size by its least-squares fit (skip_fit)")
    if not auto and (not isinstance(o.skip, int) or o.skip < 0 or (o.skip and o.skip % 2 == 0)):
        raise TezipError(f"the linear skip needs an odd filter size or auto (got {o.skip})")
    if o.skip and not auto and not 2 <= o.skip_frames <= MAX_SKIP_FRAMES:
        raise TezipError(f"the linear skip sees 2 to {MAX_SKIP_FRAMES} previous frames (got {o.skip_frames})")
    if o.epochs < 0 or o.steps_per_epoch < 1 or o.batch_size < 1:
        raise TezipError("--steps and --batch must be at least 1, --epochs at least 0")
    if o.epochs == 0 and not (o.skip and o.skip_fit):
        raise TezipError("--epochs 0 trains nothing: only a model with --skip K has a part fitted before the epochs")
    train_starts, val_starts = sequence_starts(s_train, o.nt), sequence_starts(s_val, o.nt)
    if len(train_starts) == 0:
        raise TezipError(f"no training sequence has nt={o.nt} consecutive frames; lower --nt or add frames")
    if len(val_starts) == 0:
        raise TezipError(f"no validation sequence has nt={o.nt} consecutive frames; lower --nt or add frames")

    if o.frame_input and not o.skip:
        raise TezipError("--frame-input needs --skip K: it shows PredNet the skip's planes")
    keras.utils.set_random_seed(o.seed)
    channels = X_train.shape[-1]
    train_scales, val_scales = frame_value_scales(X_train, s_train), frame_value_scales(X_val, s_val)
    frame_at, val_frame_at = _frame_reader(X_train, train_scales), _frame_reader(X_val, val_scales)
    chosen_fit = None  # --skip auto: the least-squares taps of the size it chose
    if auto:
        o, chosen_fit = _choose_skip_size(o, frame_at, s_train, val_frame_at, s_val, result)

    config = default_config(channels, o.hidden_stack)
    if o.frame_input:
        from prednet.skipfit import plane_statistics

        offset, scale = plane_statistics(frame_at, sequence_starts(s_train, o.skip_frames), o.skip_frames, o.seed)
        # layer 0's representation as wide as layer 1's (not 1 channel per frame channel): room to
        # compute a correction from the planes
        config.update(frame_input_offset=offset, frame_input_scale=scale,
                      R_stack_sizes=(int(o.hidden_stack[0]),) + tuple(config["R_stack_sizes"][1:]))
    prednet = PredNet(**config, output_mode="error", skip_filt_size=o.skip, skip_frames=o.skip_frames, name="prednet")
    hw = crop_size(X_train.shape[1], X_train.shape[2], o.crop, spatial_multiple(prednet.nb_layers))
    skip_frozen = bool(o.skip and o.skip_fit and not o.train_skip)
    if skip_frozen:
        prednet.skip.trainable = False
    model = build_training_model(prednet, o.nt, *hw)
    model.compile(optimizer=keras.optimizers.Adam(o.learning_rate), loss="mean_absolute_error")

    switch_epoch = o.epochs - o.epochs // 4  # last quarter at the lower rate
    train_batches = SequenceBatches(X_train, train_starts, o.nt, hw, o.batch_size, o.steps_per_epoch, o.seed,
                                    scales=train_scales)
    # A fixed validation set (same crops every epoch) makes epochs comparable.
    n_val_batches = max(1, min(o.val_sequences, len(val_starts)) // o.batch_size)
    val_batches = SequenceBatches(X_val, val_starts, o.nt, hw, o.batch_size, n_val_batches, o.seed + 1, fixed=True,
                                  scales=val_scales)
    t_fit = time.time()
    if o.skip and o.skip_fit:
        from prednet.skipfit import fit_skip, skip_kernel

        if chosen_fit is not None:  # fitted by the search, with the same runs and seed
            kernel, bias = skip_kernel(*chosen_fit, o.skip, prednet.skip.gain)
        else:
            kernel, bias = fit_skip(frame_at, sequence_starts(s_train, o.skip_frames + 1), o.skip,
                                    prednet.skip.gain, o.seed, o.skip_frames)
        prednet.skip.kernel.assign(kernel)
        prednet.skip.bias.assign(bias)
        if o.verbose:
            print(f"linear skip: {o.skip}x{o.skip} taps on {o.skip_frames} frames fitted by least squares in "
                  f"{time.time() - t_fit:.1f} s" + ("" if o.train_skip else " (kept as fitted: the epochs train the "
                                                     "correction)"), flush=True)
    result.blank_val_loss, result.previous_val_loss, result.extrapolation_val_loss = baseline_losses(
        val_batches, first_counted_step(prednet))
    info = {
        "data_dir": str(data_dir),
        "nt": o.nt,
        "crop": list(hw),
        "batch_size": o.batch_size,
        "steps_per_epoch": o.steps_per_epoch,
        "seed": o.seed,
        "data_dtype": X_train.dtype.name,
    }
    if o.skip:
        info["skip_start"] = "least squares" if o.skip_fit else "extrapolation"
        info["frame_input"] = bool(o.frame_input)
        info["skip_trained"] = not skip_frozen
        if result.skip_errors:  # --skip auto: what each size tried scored, for the record
            info["skip_auto_errors"] = result.skip_errors
    t0 = t_fit
    if o.skip and o.skip_fit:
        # The least-squares start (PredNet's correction zero) is a candidate like any epoch: epochs
        # that do not beat its validation loss are not kept (on Gray-Scott spots 5 epochs ended
        # above it, and their model coded 1.3 % larger); with --epochs 0 it is the model.
        vl = float(model.evaluate(val_batches, verbose=0))
        result.start_val_loss = result.best_val_loss = vl
        result.best_epoch = 0
        if o.epochs == 0:
            result.val_loss.append(vl)
        info.update(best_epoch=0, best_val_loss=vl)
        result.digest = save_model(folder, prednet, info)
        if o.verbose:
            print(f"  least-squares start: val loss {vl:.6f}", flush=True)
    for epoch in range(o.epochs):
        final = o.learning_rate / 10 if o.final_learning_rate is None else o.final_learning_rate
        lr = o.learning_rate if epoch < switch_epoch else final
        model.optimizer.learning_rate.assign(lr)
        train_batches.epoch = epoch
        if o.verbose:
            print(f"Epoch {epoch + 1}/{o.epochs} (lr {lr:g})", flush=True)
        hist = model.fit(train_batches, epochs=1, validation_data=val_batches, verbose=(1 if sys.stdout.isatty() else 2) if o.verbose else 0)  # no bar into a file
        tl, vl = float(hist.history["loss"][-1]), float(hist.history["val_loss"][-1])
        if o.verbose:
            print(f"  val loss {vl:.6f}; on the same frames: previous frame {result.previous_val_loss:.6f}, "
                  f"linear extrapolation {result.extrapolation_val_loss:.6f} ({vl / best_baseline(result):.3f}× the "
                  "better)", flush=True)
        result.train_loss.append(tl)
        result.val_loss.append(vl)
        if vl < result.best_val_loss:
            result.best_val_loss, result.best_epoch = vl, epoch + 1
            info.update(best_epoch=epoch + 1, best_val_loss=vl)
            result.digest = save_model(folder, prednet, info)
    if not result.digest:  # every validation loss NaN (or inf): no model was ever kept
        raise TezipError(f"no epoch reached a finite validation loss (last: {result.val_loss[-1] if result.val_loss else 'none'}"
                         "): NaN or infinite values in the training data, or a training that diverged (a lower --lr); "
                         "no model was written")
    result.seconds = time.time() - t0
    result.seconds_per_epoch = result.seconds / max(1, o.epochs)
    return result


def baseline_losses(batches, first=1):
    """The loss, on the same batches and in the same units as the model's (PredNet's layer-0 error
    E_0 = [relu(A - Â), relu(Â - A)] averages to mean|A - Â| / 2; time steps before `first` weigh
    nothing (step 0 never counts) and the later steps weigh alike, as prednet.model.loss_weights),
    of three predictors that need no training:

    black frame: Â = 0, for scale; previous frame: Â_t = A_{t-1}; linear extrapolation: Â_t =
    clip(2·A_{t-1} - A_{t-2}, 0, 1), the previous frame at t = 1. A model that has learnt the
    dynamics of its data beats the last two.

    Returns (black, previous, extrapolation), floats."""
    black, previous, extrapolation = [], [], []
    for i in range(len(batches)):
        x = batches[i][0]  # (sequences, nt, H, W, C) in [0, 1]
        f = max(1, min(int(first), x.shape[1] - 1))
        black.append(x[:, f:].mean() / 2.0)
        previous.append(np.abs(x[:, f:] - x[:, f - 1:-1]).mean() / 2.0)
        guess = x[:, :-1].copy()  # Â_t for t = 1 .. nt-1
        guess[:, 1:] = np.clip(2.0 * x[:, 1:-1] - x[:, :-2], 0.0, 1.0)
        extrapolation.append(np.abs(x[:, f:] - guess[:, f - 1:]).mean() / 2.0)
    return float(np.mean(black)), float(np.mean(previous)), float(np.mean(extrapolation))


def best_baseline(result):
    """The smaller of the previous frame's and linear extrapolation's validation loss (> 0)."""
    return max(min(result.previous_val_loss, result.extrapolation_val_loss), 1e-12)
