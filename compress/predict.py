"""Prediction stage: keyframes, windows, and the batched PredNet schedule (TEZip's window-based prediction).

A keyframe is stored exactly. The frames after it, up to the next keyframe, form its window; they
are predicted by PredNet extrapolating from the keyframe alone (the model is fed its own
predictions), so a window's predictions depend only on its keyframe.

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

from prednet.predictor import to_pixels


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


def check_lane_plan(lane_starts, keyframes, n_frames):
    """Lanes must start at 0, increase, lie inside the sequence, and begin with keyframes."""
    if not lane_starts or lane_starts[0] != 0:
        return "lanes must start at frame 0"
    if any(b <= a for a, b in zip(lane_starts, lane_starts[1:])) or lane_starts[-1] >= n_frames:
        return "lane starts are not increasing inside the sequence"
    keyset = set(keyframes)
    if any(s not in keyset for s in lane_starts):
        return "a lane does not begin with a keyframe"
    return None


def predict_sequence(predictor, frames, lane_starts, is_keyframe, threshold=None, max_value=255, progress=None):
    """Run the window predictions for the whole sequence.

    frames: (N, H, W, C) integer pixels. Only keyframes are read unless `threshold` is given
    (DWP at the encoder, which compares predictions with the real frames).
    is_keyframe: (N,) bool; updated in place under DWP with the keyframes it places.
    Returns integer predictions (N, H, W, C) int32 (zeros at keyframes).
    """
    n = len(frames)
    lanes = lane_bounds(lane_starts, n)
    if len(lanes) > predictor.batch:
        raise ValueError("more lanes than the predictor's batch")
    batch, (h, w, c) = predictor.batch, frames.shape[1:]
    predictions = np.zeros((n,) + frames.shape[1:], np.int32)
    scale = np.float32(1.0 / max_value)
    # DWP running error of each lane's current window: sum of squared errors and pixel count.
    sse = np.zeros(batch)
    count = np.zeros(batch)
    steps = max(end - start for start, end in lanes)
    for s in range(steps):
        inputs = np.zeros((batch, h, w, c), np.float32)
        extrapolate = np.zeros(batch, np.float32)
        reset = np.ones(batch, np.float32)  # idle lanes just stay reset
        active = []
        for i, (start, end) in enumerate(lanes):
            f = start + s
            if f >= end:
                continue
            active.append((i, f))
            if is_keyframe[f]:
                inputs[i] = frames[f] * scale
            else:
                reset[i], extrapolate[i] = 0.0, 1.0
        saved_states = predictor.states
        out = predictor.step(inputs, extrapolate, reset)
        if threshold is not None:
            new_keys = []
            for i, f in active:
                if is_keyframe[f]:
                    sse[i] = count[i] = 0.0
                    continue
                err = (frames[f].astype(np.float64) - to_pixels(out[i], max_value)) / max_value
                sse[i] += float(np.sum(err * err))
                count[i] += err.size
                if sse[i] / count[i] > threshold:
                    new_keys.append(i)
                    is_keyframe[f] = True
                    sse[i] = count[i] = 0.0
            if new_keys:
                # Those lanes restart from their new keyframe: redo this step for the whole batch
                # exactly as the decoder will run it (same inputs for every lane).
                for i in new_keys:
                    f = lanes[i][0] + s
                    inputs[i], reset[i], extrapolate[i] = frames[f] * scale, 1.0, 0.0
                predictor.states = saved_states
                out = predictor.step(inputs, extrapolate, reset)
        for i, f in active:
            if not is_keyframe[f]:
                predictions[f] = to_pixels(out[i], max_value)
        if progress is not None:
            progress(len(active))
    return predictions
