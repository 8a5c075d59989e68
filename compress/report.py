"""--report: one PNG per compressed sequence, to see where the bytes go and why.

Top: compressed bytes of every frame (keyframes stand out) and the prediction MSE of every predicted
frame, keyframe positions marked and the DWP threshold drawn. Bottom: one frame, the prediction
TEZip used for it, and their difference as a heat map. Drawn with matplotlib's Agg backend, so it
needs no display.
"""

import numpy as np

from base.errors import printable

REPORT_FILE = "report.png"


def worst_predicted_frame(summary):
    """The predicted frame with the largest prediction MSE (the most instructive one), or 0."""
    predicted = [(mse, i) for i, is_key, mse, _ in summary.per_frame if not is_key and mse == mse]  # NaN: unknown
    return max(predicted)[1] if predicted else 0


def _display(image, max_value):
    """(H, W, C) integers → what imshow shows as is: RGB floats in [0, 1], or one gray plane."""
    image = np.clip(image.astype(np.float64) / max_value, 0.0, 1.0)
    return image[:, :, 0] if image.shape[2] == 1 else image


def render_report(names, summary, threshold=None, max_value=255, title=""):
    """The report PNG (bytes) of one compressed sequence; it is published with the archive files."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = summary.frames
    frame, actual, prediction = summary.shown
    is_key = np.zeros(n, bool)
    mse = np.full(n, np.nan)
    for i, key, pred_mse, _ in summary.per_frame:
        is_key[i] = key
        if not key:
            mse[i] = pred_mse
    keys = np.flatnonzero(is_key)
    index = np.arange(n)

    fig = plt.figure(figsize=(13, 8.5), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=(1, 1, 1.5))
    ax_bytes = fig.add_subplot(grid[0, :])
    bytes_ = np.asarray(summary.frame_bytes if summary.frame_bytes else np.zeros(n), dtype=np.float64)
    ax_bytes.bar(index[~is_key], bytes_[~is_key], color="tab:blue", label="predicted frame (residuals)")
    ax_bytes.bar(index[is_key], bytes_[is_key], color="tab:orange", label="keyframe (coded on its own)")
    ax_bytes.set_ylabel("compressed bytes")
    ax_bytes.legend(loc="upper right", fontsize=8)
    # Folder and frame names are shown as they are: parse_math=False keeps matplotlib from
    # reading a `$...$` in a name as TeX (which fails on most such names); printable() escapes
    # control characters.
    ax_bytes.set_title(
        f"{printable(title)}  {summary.frames} frames, {len(keys)} keyframe{'s' if len(keys) != 1 else ''}, ratio {summary.ratio:.2f}, "
        f"max abs error {summary.max_abs_error}".strip(), parse_math=False
    )

    ax_mse = fig.add_subplot(grid[1, :], sharex=ax_bytes)
    ax_mse.plot(index, mse, ".-", color="tab:blue", label="prediction MSE (pixels in [0, 1])")
    for k in keys:
        ax_mse.axvline(k, color="tab:orange", alpha=0.5, linewidth=1)
    ax_mse.plot([], [], color="tab:orange", label="keyframe")
    if threshold is not None:
        ax_mse.axhline(threshold, color="tab:red", linestyle="--", label=f"DWP threshold -t {threshold:g}")
    ax_mse.axvline(frame, color="black", linestyle=":", label=f"frame shown below ({frame})")
    ax_mse.set_xlabel("frame")
    ax_mse.set_ylabel("MSE")
    ax_mse.legend(loc="upper right", fontsize=8)

    actual = actual.astype(np.int64)
    if prediction is None:
        prediction, note = actual, " (keyframe: stored, not predicted)"
    else:
        prediction, note = np.moveaxis(prediction, 0, -1).astype(np.int64), ""
    residual = (actual - prediction).mean(axis=2)
    gray = dict(cmap="gray", vmin=0, vmax=1) if actual.shape[2] == 1 else {}
    for col, (image, label) in enumerate(((actual, f"frame {frame}: {printable(names[frame])}"), (prediction, "prediction" + note))):
        ax = fig.add_subplot(grid[2, col])
        ax.imshow(_display(image, max_value), **gray)
        ax.set_title(label, fontsize=9, parse_math=False)
        ax.axis("off")
    ax = fig.add_subplot(grid[2, 2])
    limit = max(1.0, float(np.abs(residual).max()))
    heat = ax.imshow(residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title("residual = frame - prediction" + (" (mean of channels)" if actual.shape[2] > 1 else ""), fontsize=9)
    ax.axis("off")
    fig.colorbar(heat, ax=ax, shrink=0.8, label="pixel units")

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    return png.getvalue()
