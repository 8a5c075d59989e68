"""Keyframes, windows, and the batched PredNet schedule (TEZip's window-based prediction).

A keyframe is coded on its own (exactly, or within an abs bound). The frames after it, up to the
next keyframe, form its window, and the model's state starts afresh at each keyframe, so windows
are independent. Within a window each
frame is predicted either in closed loop (the model has seen every decoded frame of the window so
far: the default, far more accurate) or in open loop, TEZip's original scheme (the model
extrapolates from the keyframe alone, fed its own predictions).

To use the model efficiently the sequence is split into `lanes`: contiguous runs of whole windows,
advanced together, one frame per model call (the lanes are the batch). The encoder and the decoder
run the very same schedule of calls (same lanes, same keyframes, same batch), so they compute
bit-identical predictions. Lane starts are stored in the archive.

- SWP (static windows, -w N): keyframes are known in advance; lanes only group windows.
- DWP (dynamic windows, -t MSE): a frame becomes a keyframe when its window's running mean squared
  error (pixels in [0, 1]) exceeds the threshold. Each lane starts with a keyframe, so with K lanes
  the encoder can still batch K windows at a time.
"""

import numpy as np

from prednet.scale import ValueScale


def first_keyframes(warmup):
    """Warm-up: the first `warmup` frames are keyframes; the first frame always is."""
    return max(int(warmup), 1)


def swp_keyframes(n_frames, warmup, window):
    """Static windows: after the warm-up keyframes, a keyframe after every `window` predicted frames."""
    first = first_keyframes(warmup)
    keys = list(range(min(first, n_frames)))
    k = first + window
    while k < n_frames:
        keys.append(k)
        k += window + 1
    return keys


def swp_lane_starts(keyframes, n_frames, lanes):
    """Group whole windows into at most `lanes` contiguous lanes of about equal frame counts."""
    starts = []
    for i in range(lanes):
        target = i * n_frames / lanes
        # the first keyframe at or after the target (a lane must begin with a keyframe)
        k = next((k for k in keyframes if k >= target), None)
        if k is not None and (not starts or k > starts[-1]):
            starts.append(k)
    return starts


def dwp_lane_starts(n_frames, lanes):
    """Dynamic windows: equal contiguous parts, each starting with a (forced) keyframe."""
    lanes = max(1, min(lanes, n_frames))
    return sorted({int(i * n_frames // lanes) for i in range(lanes)})


def lane_bounds(lane_starts, n_frames):
    ends = list(lane_starts[1:]) + [n_frames]
    return list(zip(lane_starts, ends))


def run_windows(predictor, n_frames, lane_starts, is_keyframe, coder, closed_loop=True, threshold=None, scale=None,
                progress=None):
    """Run the predictions of the whole sequence: one model step per frame, all lanes at once, and
    have `coder` code (or decode) each frame as its prediction is made. Encoder and decoder run
    exactly this, with their own coder:

    coder.keyframe(f) → keyframe f (H, W, C) as the decoder has it (the encoder codes it; lossy
        keyframes are quantized within the bound), which the model is shown;
    coder.frame(f, prediction) → frame f (H, W, C) decoded against `prediction` (integer pixels,
        H, W, C; None without a model): the encoder quantizes the residual, the decoder adds the
        stored one;
    coder.prediction_error(f, prediction) → (sum of squared pixel errors, values) of frame f's
        prediction (encoder only; asked under `threshold`);
    coder.model_pays(f, keyframe) → whether the model goes on predicting from frame f (a predicted
        frame of the window that starts at `keyframe`) to the window's end: asked before every
        predicted frame of a window while the answer is yes. The encoder decides (it stops the
        model where it did not pay: sequence.coding.SequenceEncoder) and records where it
        stopped; the decoder answers from that record. The model is not stepped at all while
        every lane's model is stopped; a stopped lane's frames are predicted without it (None).

    predictor: a model stepping `batch` lanes (prednet.reference.ReferencePredictor, or format 2's
    NextFramePredictor), or None: no model, every frame predicted by the coder from the frames
    decoded before it.
    closed_loop: each predicted frame is followed by showing the model the decoded frame (so the
    next prediction uses everything decoded so far); otherwise the model is shown its own
    prediction (TEZip's extrapolation from the keyframe).
    is_keyframe: (N,) bool; under DWP (`threshold`, encoder only) updated in place with the
    keyframes placed: a frame becomes a keyframe when its error — the window's running MSE in open
    loop, the frame's own MSE in closed loop (pixels in [0, 1]) — exceeds the threshold.
    scale: the ValueScale between pixels and the model's [0, 1] (default: 8-bit, 0-255); the
    encoder and the decoder must pass the same one.
    """
    scale = scale or ValueScale(0, 255)
    lanes = lane_bounds(lane_starts, n_frames)
    batch = predictor.batch if predictor is not None else len(lanes)
    if len(lanes) > batch:
        raise ValueError("more lanes than the predictor's batch")
    sse, count = np.zeros(batch), np.zeros(batch)  # DWP running error of each lane's window
    model_on = np.ones(batch, bool)  # the lane's model runs in its current window (coder.model_pays)
    window_start = np.array([start for start, _ in lanes] + [0] * (batch - len(lanes)), np.int64)  # its keyframe
    for s in range(max(end - start for start, end in lanes)):
        active = [(i, start + s) for i, (start, end) in enumerate(lanes) if start + s < end]
        reset = np.ones(batch, np.float32)  # idle lanes just stay reset
        for i, f in active:
            reset[i] = 1.0 if is_keyframe[f] else 0.0
            if is_keyframe[f]:
                model_on[i], window_start[i] = True, f
            elif model_on[i] and predictor is not None:
                model_on[i] = coder.model_pays(f, int(window_start[i]))
        out = None
        stepped = predictor is not None and any(is_keyframe[f] or model_on[i] for i, f in active)
        if stepped:
            saved_states = predictor.states
            out = predictor.predict(reset)
        if threshold is not None:
            new_keys = []
            for i, f in active:
                if is_keyframe[f]:
                    continue
                frame_sse, values = coder.prediction_error(f, scale.to_pixels(out[i]) if stepped and model_on[i] else None)
                frame_sse /= float(scale.span) ** 2
                sse[i], count[i] = (sse[i] + frame_sse, count[i] + values) if not closed_loop else (frame_sse, values)
                if sse[i] / count[i] > threshold:
                    is_keyframe[f] = True
                    new_keys.append(i)
                    model_on[i], window_start[i] = True, f
            if new_keys and predictor is not None:
                # Those lanes restart from their new keyframe: redo the step as the decoder will run it.
                reset[new_keys] = 1.0
                if stepped:
                    predictor.states = saved_states
                stepped = True
                saved_states = predictor.states
                out = predictor.predict(reset)
        shown = None if not stepped else np.zeros((batch, predictor.height, predictor.width, predictor.channels),
                                                  np.float32)
        for i, f in active:
            if is_keyframe[f]:
                decoded = coder.keyframe(f)
                sse[i] = count[i] = 0.0
                if shown is not None:
                    shown[i] = scale.to_model(decoded)
            else:
                decoded = coder.frame(f, scale.to_pixels(out[i]) if stepped and model_on[i] else None)
                if shown is not None:
                    shown[i] = scale.to_model(decoded) if closed_loop else out[i]
        if stepped:
            predictor.update(shown)
        if progress is not None:
            progress(len(active))


def segment_bounds(keyframes, n_frames, target):
    """Cut frames 0..n_frames-1 at keyframes into segments of whole windows, each about `target`
    frames (at least one window; a window longer than `target` is a segment of its own).
    keyframes: sorted frame indices, the first 0. Returns [(start, end)], contiguous, covering all.
    Windows are independent (a keyframe resets the model), so each segment can be coded apart."""
    target = max(1, int(target))
    bounds, start = [], 0
    for k in list(keyframes[1:]) + [n_frames]:
        if k - start >= target or k == n_frames:
            bounds.append((start, k))
            start = k
    return bounds


def segment_lanes(lane_starts, start, end):
    """The lane starts of segment [start, end): its first frame (a keyframe: a lane continuing into
    the segment restarts there exactly as the whole run does, its states reset) and every lane
    start inside it."""
    return [int(start)] + [int(s) for s in lane_starts if start < s < end]
