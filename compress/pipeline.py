"""compress: frames → predictions → residuals → quantize → spatial → entropy → zstd → archive.

The glue only calls the stages in order; each stage lives in its own module with its config
recorded in the archive header, so entropy.dat says how to decode itself.
"""

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compress import archive
from compress.errors import TezipError
from compress.predict import dwp_lane_starts, first_keyframes, predict_sequence, swp_keyframes, swp_lane_starts

# Level 19 is ~11 % smaller than 9 on residuals; it costs compression time only (decoding is as fast).
DEFAULT_ZSTD_LEVEL = 19
# Chunks are compressed independently, so the output is the same whatever the thread count.
CODEC_THREADS = os.cpu_count() or 1
QUANTIZERS = ("auto", "linquant", "medquant", "runmerge")
MAX_LANES = 16
# Budget for the model's recurrent state and activations when choosing how many lanes to batch.
LANE_MEMORY_BUDGET = 2 << 30


@dataclass
class CompressOptions:
    warmup: int = 0
    window: int | None = None
    threshold: float | None = None
    mode: str = "abs"
    loop: str = "closed"  # "closed": predict from decoded frames; "open": TEZip's extrapolation
    block: int = 16  # per-block choice PredNet / previous frame; 0 = PredNet everywhere
    motion: int = 4  # motion search radius for the previous-frame candidate (0: unmoved only)
    bounds: tuple = (0.0,)
    entropy: bool = True
    lanes: int | None = None
    zstd_level: int | None = None
    overwrite: bool = False
    verbose: bool = False
    device: str = "CPU"
    quantizer: str = "auto"  # "auto": linquant for a lossy abs bound, else runmerge; or one by name
    report: bool = False  # also write report.png (compress.report) into the archive folder
    report_frame: int | None = None  # the frame its heat map shows; default the worst-predicted one


@dataclass
class Summary:
    frames: int
    keyframes: int
    raw_bytes: int
    compressed_bytes: int
    max_abs_error: int
    psnr: float
    seconds: float
    stage_seconds: dict = field(default_factory=dict)
    stage_bytes: dict = field(default_factory=dict)
    per_frame: list = field(default_factory=list)  # (index, is keyframe, prediction MSE, decoded MSE)
    frame_bytes: list = field(default_factory=list)  # compressed bytes of each frame's own chunk
    predictions: object = field(default=None, repr=False)  # (N, C, H, W) predictions used, for --report

    @property
    def ratio(self):
        return self.raw_bytes / max(1, self.compressed_bytes)

    def line(self, verb="compressed"):
        psnr = "inf" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB"
        return (
            f"{verb} {self.frames} frames ({self.keyframes} keyframes): {self.raw_bytes} -> {self.compressed_bytes} bytes, "
            f"ratio {self.ratio:.2f}, max abs error {self.max_abs_error}, PSNR {psnr}, {self.seconds:.2f} s"
        )


def psnr(max_value, sq_err_sum, count):
    if sq_err_sum == 0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / (sq_err_sum / count))


def array_module(device):
    """CuPy in GPU mode when it is installed (the codec stages dispatch on the array type), else numpy.
    Both produce identical integers, so archives decode on either."""
    if device == "GPU":
        try:
            import cupy

            return cupy
        except ImportError:
            pass
    return np


def to_host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def max_value_of(dtype):
    """The largest pixel value of frames of this dtype: 255 for uint8, 65535 for uint16."""
    return int(np.iinfo(dtype).max)


def to_planar(frames):
    """(N, H, W, C) → (N, C, H, W) int32: runs and tolerances work on one channel plane at a time."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.int32)


def to_interleaved(planar, dtype):
    """(N, C, H, W) → (N, H, W, C) of the frames' dtype (uint8 or uint16)."""
    return np.ascontiguousarray(planar.transpose(0, 2, 3, 1)).astype(dtype)


def default_lanes(prednet, n_frames, height, width, n_windows, dynamic):
    from prednet.model import padded_size

    ph, pw = padded_size(height, width, prednet.nb_layers)
    state_bytes = 4 * sum(int(np.prod(s)) for s in prednet.state_shapes(ph, pw))
    by_memory = max(1, LANE_MEMORY_BUDGET // (4 * state_bytes))
    # Dynamic windows force a keyframe at each lane start: keep lanes long (>= 32 frames).
    wanted = max(1, n_frames // 32) if dynamic else n_windows
    return int(max(1, min(MAX_LANES, wanted, by_memory)))


def check_output_folder(out_dir, input_dir, overwrite, what="IMAGE_DIR"):
    out, inp = Path(out_dir).resolve(), Path(input_dir).resolve()
    if out == inp:
        raise TezipError(f"OUT_DIR {out_dir} is the same folder as {what}")
    if inp in out.parents:
        raise TezipError(f"OUT_DIR {out_dir} lies inside {what} {input_dir}")
    if out in inp.parents:
        raise TezipError(f"{what} {input_dir} lies inside OUT_DIR {out_dir}")
    if out.exists() and not out.is_dir():
        raise TezipError(f"OUT_DIR {out_dir} exists and is not a folder")
    if out.is_dir():
        try:  # temporary files an interrupted run left behind do not count (they are cleaned up)
            used = any(not archive.is_partial(e) for e in out.iterdir())
        except OSError as e:
            raise TezipError(f"OUT_DIR {out_dir} cannot be read ({e.strerror or e})") from None
        if used and not overwrite:
            raise TezipError(f"OUT_DIR {out_dir} is not empty (use --overwrite to replace its contents)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise TezipError(f"OUT_DIR {out_dir} is not writable")
    else:  # checked now, not after minutes of work: the folder must be creatable
        parent = next(p for p in out.parents if p.exists())
        if not parent.is_dir():
            raise TezipError(f"OUT_DIR {out_dir} cannot be created: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TezipError(f"OUT_DIR {out_dir} cannot be created: {parent} is not writable")


def validate_options(o):
    from compress.quantize import validate_bounds

    bounds = validate_bounds(o.mode, o.bounds)
    if (o.window is None) == (o.threshold is None):
        raise TezipError("give exactly one of -w WINDOW (static windows) or -t MSE (dynamic windows)")
    if o.window is not None and o.window < 1:
        raise TezipError(f"-w must be at least 1 (got {o.window})")
    if o.threshold is not None and not (0 < o.threshold < math.inf):
        raise TezipError(f"-t must be a positive finite number (got {o.threshold})")
    if o.warmup < 0:
        raise TezipError(f"-p must be 0 or more (got {o.warmup})")
    if o.lanes is not None and o.lanes < 1:
        raise TezipError(f"--lanes must be at least 1 (got {o.lanes})")
    if o.zstd_level is not None:
        from compress.lossless import ZstdCodec

        ZstdCodec(level=o.zstd_level)  # TezipError naming the valid range, before any work
    if o.zstd_level is not None and not 1 <= o.zstd_level <= 22:
        raise TezipError(f"--zstd-level must be 1-22 (got {o.zstd_level})")
    if not isinstance(o.block, int) or o.block < 0 or o.block > 4096:
        raise TezipError(f"--block must be 0 (off) or a block size up to 4096 (got {o.block})")
    if not isinstance(o.motion, int) or not 0 <= o.motion <= 7:
        raise TezipError(f"--motion must be a search radius 0-7 (got {o.motion})")
    if o.quantizer not in QUANTIZERS:
        raise TezipError(f"--quantizer must be one of {', '.join(QUANTIZERS)} (got {o.quantizer!r})")
    if o.quantizer in ("linquant", "medquant") and o.mode != "abs":
        raise TezipError(f"--quantizer {o.quantizer} serves the abs mode only (got -m {o.mode})")
    if o.loop not in ("closed", "open"):
        raise TezipError(f"--loop must be closed or open (got {o.loop!r})")
    return bounds


def plan_keyframes(prednet, n, h, w, o):
    """Initial keyframe mask and lane starts for the chosen window mode."""
    is_key = np.zeros(n, bool)
    if o.window is not None:
        keys = swp_keyframes(n, o.warmup, o.window)
        lanes = o.lanes or default_lanes(prednet, n, h, w, len(keys), dynamic=False)
        lane_starts = swp_lane_starts(keys, n, lanes)
        is_key[keys] = True
    else:
        lanes = o.lanes or default_lanes(prednet, n, h, w, 1, dynamic=True)
        lane_starts = dwp_lane_starts(n, lanes)
        is_key[: first_keyframes(o.warmup)] = True
        is_key[lane_starts] = True
    return is_key, lane_starts


class FrameQuantizer:
    """The encoder's `code_frame`: quantizes each predicted frame's residual within the bound, right
    when its prediction is made (in closed loop the next prediction needs the decoded frame), and
    keeps the residuals for the later stages. decoded = clip(p + q) is exactly what the decoder
    will make."""

    def __init__(self, frames, o, bounds, xp):
        from compress.blockselect import BlockSelector
        from compress.quantize import Quantizer

        n, h, w, c = frames.shape
        self.frames, self.o, self.bounds, self.xp = frames, o, bounds, xp
        self.max_value = max_value_of(frames.dtype)  # tolerances, clipping: in the data's own units
        self.selector = BlockSelector(o.block, o.motion) if o.block else None
        self.choices = np.zeros((n,) + self.selector.grid(h, w), np.uint8) if self.selector else None
        self.quantizer = Quantizer()
        # Under a lossy abs bound: the residual quantizer (linquant or medquant) and medquant for keyframes.
        self.abs_quantizer, self.key_quantizer = abs_quantizers_for(o, bounds, self.max_value)
        self.q = np.zeros((n, c, h, w), np.int32)  # what the residual stages store: quantized residuals or codes
        self.predictions = np.zeros((n, c, h, w), np.int32)  # kept for the -v per-frame MSE
        self.decoded = frames.copy()
        self.key_front, self.key_codes = None, {}  # what code_keyframe_planes made of each keyframe

    def __call__(self, f, prediction):
        from compress.quantize import pixel_tolerances

        xp = self.xp
        x, p = to_planar(self.frames[f : f + 1]), to_planar(prediction[None])
        if self.selector is not None:
            previous = to_planar(self.decoded[f - 1 : f])[0]
            self.choices[f] = self.selector.choose(x[0], p[0], previous)
            p = self.selector.combine(p[0], previous, self.choices[f])[None]
        x, p = xp.asarray(x), xp.asarray(p)
        tol = pixel_tolerances(x, self.o.mode, self.bounds, self.max_value)
        if self.abs_quantizer is not None:
            codes, residual = self.abs_quantizer.encode((x - p)[0])
            q, residual = codes[None], residual[None]
        else:
            q = residual = self.quantizer.quantize(x - p, tol)
        decoded = xp.clip(p + residual, 0, self.max_value)
        if bool(xp.any(xp.abs(decoded - x) > tol)):  # the quantizer's guarantee, checked rather than trusted
            raise RuntimeError("internal error: quantized residuals exceed the error bound")
        self.q[f], self.predictions[f] = to_host(q)[0], to_host(p)[0]
        self.decoded[f] = to_interleaved(to_host(decoded), self.frames.dtype)[0]
        return self.decoded[f]

    def keyframe(self, f):
        """The encoder's `code_keyframe`: codes keyframe f (kept for encode_keyframes) and returns it
        as the decoder will have it (quantized within the bound under medquant, else exact)."""
        x = to_planar(self.frames[f : f + 1])
        self.key_front, codes, decoded = code_keyframe_planes(x, self.key_quantizer, self.max_value)
        tolerance = 0 if self.key_quantizer is None else self.key_quantizer.tolerance
        if np.abs(decoded - x).max() > tolerance:  # checked rather than trusted
            raise RuntimeError("internal error: a coded keyframe exceeds the error bound")
        self.key_codes[f] = codes[0]
        self.decoded[f] = to_interleaved(decoded, self.frames.dtype)[0]
        return self.decoded[f]


def abs_quantizers_for(o, bounds, max_value):
    """(residual quantizer, keyframe quantizer) under a lossy abs bound, whose one integer tolerance
    the decoder knows; (None, None) otherwise. Residuals: linquant by default (compress/linquant.py:
    plain bins, the context coder models the rest), medquant when asked. Keyframes: medquant (MED
    prediction from the reconstructed pixels, then the same bins). rel, absrel and pwrel tolerances
    vary per plane or pixel, and runmerge serves them (and abs when asked) with exact keyframes."""
    from compress.linquant import LinearQuantizer
    from compress.medquant import MedQuantizer
    from compress.quantize import is_lossless

    quantizer = "linquant" if o.quantizer == "auto" and o.mode == "abs" else o.quantizer
    if quantizer not in ("linquant", "medquant") or is_lossless(o.mode, bounds):
        return None, None
    if o.mode != "abs":
        raise TezipError(f"--quantizer {quantizer} serves the abs mode only (got -m {o.mode})")
    tolerance = min(int(math.floor(bounds[0])), max_value)
    residuals = LinearQuantizer(tolerance) if quantizer == "linquant" else MedQuantizer(tolerance)
    return residuals, MedQuantizer(tolerance)


def spatial_coder(lossless):
    """Lossless residuals are noise-like: MED (LOCO-I) leaves the fewest bits. Lossy ones come in
    merged runs along rows, which the row delta turns into zeros (MED would not)."""
    from compress.med import MedCoder
    from compress.spatial import DeltaCoder

    return MedCoder() if lossless else DeltaCoder()


def spatial_encode(coder, q, plane_shape):
    """Apply the spatial stage to (P, C*H*W) residuals (MED works on planes, delta on rows)."""
    if coder.codec_id == "med":
        return coder.encode(q.reshape((-1,) + tuple(plane_shape[1:]))).reshape(q.shape)
    return coder.encode(q)


def spatial_decode(coder, d, plane_shape):
    if coder.codec_id in ("med", "medquant"):
        return coder.decode(d.reshape((-1,) + tuple(plane_shape[1:]))).reshape(d.shape)
    return coder.decode(d)


def entropy_encode(codes, entropy, level, wide=False):
    """Signed codes (F, C, H, W) → (stage configs, one chunk per frame, payload dtype name or None).
    With entropy coding, the context range coder (compress/rangecoder.py); with -n, zigzag and
    byte-shuffled zstd. Mirror: decompress.pipeline.entropy_decode.

    wide: the frames are wider than 8 bits. Their residuals can be mostly structureless shot noise,
    where the contexts find nothing and zstd's static tables come out a few % smaller: both are
    tried and the smaller kept (the stage list records which)."""
    from compress.entropy import ZigZagCoder
    from compress.lossless import ZstdCodec
    from compress.rangecoder import ContextRangeCoder

    codes = to_host(codes)
    candidates = []
    if entropy:
        coder = ContextRangeCoder()
        candidates.append(([coder.get_config()], coder.encode_many(list(codes), threads=CODEC_THREADS), None))
    if not entropy or wide:
        zigzag, zstd = ZigZagCoder(), ZstdCodec(level=level, shuffle=True)
        payload = zigzag.encode(codes.reshape(len(codes), -1))
        chunks = zstd.encode_many(list(payload), threads=CODEC_THREADS)
        candidates.append(([zigzag.get_config(), zstd.get_config()], chunks, payload.dtype.name))
    return min(candidates, key=lambda candidate: sum(len(c) for c in candidate[1]))


def encode_residuals(q, plane_shape, lossless, entropy, level, abs_quantizer=None, wide=False):
    """Quantized residuals (P, values) → (stage configs, one chunk per frame, payload dtype name or
    None). abs_quantizer: the quantizer that made the codes `q` (linquant or medquant: no spatial
    stage follows), or None (runmerge or lossless: a spatial stage does).
    Mirror: decompress.pipeline.decode_residuals."""
    from compress.quantize import Quantizer

    if abs_quantizer is not None:
        front, d = [abs_quantizer.get_config()], q
    else:
        spatial = spatial_coder(lossless)
        front, d = [Quantizer().get_config(), spatial.get_config()], spatial_encode(spatial, q, plane_shape)
    back, chunks, payload_dtype = entropy_encode(to_host(d).reshape((len(q),) + tuple(plane_shape)), entropy, level, wide)
    return front + back, chunks, payload_dtype


def code_keyframe_planes(planes, medquant, max_value):
    """Keyframe planes (K, C, H, W) int32 → (front stage, codes, decoded planes). Keyframes are coded
    on their own: MED (LOCO-I) prediction from their own pixels, exact; or, under a lossy abs bound,
    medquant, the same prediction from the reconstructed pixels with the errors quantized within
    the bound (SZ-style), which at abs 8 takes keyframes to about a quarter of their lossless size.
    Mirror: decompress.pipeline.decode_keyframe_planes."""
    from compress.med import MedCoder

    k, c, h, w = planes.shape
    flat = np.ascontiguousarray(planes, dtype=np.int32).reshape(k * c, h, w)
    if medquant is None:
        front = MedCoder()
        codes, decoded = front.encode(flat), flat
    else:
        front = medquant
        codes, reconstructed = medquant.encode(flat)
        decoded = np.clip(reconstructed, 0, max_value)
    return front, codes.reshape(k, c, h, w), decoded.reshape(k, c, h, w)


def encode_keyframes(front, codes, entropy, level, wide=False):
    """Keyframe codes (K, C, H, W) from code_keyframe_planes, with its front stage → (codec configs,
    one chunk each, payload dtype name or None). Mirror: decompress.pipeline.decode_keyframes."""
    back, chunks, payload_dtype = entropy_encode(codes, entropy, level, wide)
    return [front.get_config()] + back, chunks, payload_dtype


def encode_block_choices(coder, predicted, level):
    """The block choices of the predicted frames → (config or None, one zstd chunk)."""
    from compress.lossless import ZstdCodec

    packed = coder.selector.pack(coder.choices[predicted]) if coder.selector else b""
    config = coder.selector.get_config() if coder.selector else None
    return config, ZstdCodec(level=level, shuffle=False).encode(np.frombuffer(packed, np.uint8))


def model_threads():
    from prednet.device import model_threads as threads

    return threads()


def build_archive(frames, decoded_frames, keyframes, lane_starts, o, bounds, model_digest, residual, key, choices,
                  names_digest, scale=None):
    """The two .dat files (headers carry every decode setting and each frame's checksum).
    scale: the ValueScale the model worked with; recorded when it is not the type's full range."""
    from compress.quantize import is_lossless

    n, h, w, c = frames.shape
    stages, residual_chunks, payload_dtype = residual
    key_configs, key_chunks, key_dtype = key
    keys = [int(k) for k in keyframes]
    max_value = max_value_of(frames.dtype)
    common = {"n_frames": n, "height": h, "width": w, "channels": c, "dtype": frames.dtype.name, "max_value": max_value}
    if scale is not None and (scale.low, scale.high) != (0, max_value):
        common["value_range"] = [scale.low, scale.high]
    settings = dict(
        common,
        model_digest=model_digest,
        model_threads=model_threads(),
        prediction={"method": "windows", "loop": o.loop, "warmup": o.warmup, "window": o.window, "threshold": o.threshold,
                    "lanes": [int(s) for s in lane_starts], "keyframes": keys},
        bound={"mode": o.mode, "bounds": list(bounds), "lossless": bool(is_lossless(o.mode, bounds))},
        stages=stages,
        partitions={"kind": "frame", "count": n - len(keys), "values": c * h * w, "dtype": payload_dtype},
        block_select=choices[0],
        frame_checksums=[archive.frame_checksum(f) for f in decoded_frames],
        names_digest=names_digest,
    )
    aid = archive.archive_id(settings)
    files = {
        archive.KEYFRAME_FILE: archive.pack_dat(archive.KEYFRAME_MAGIC, dict(common, archive_id=aid, keyframes=keys, stages=key_configs, dtype_codes=key_dtype), key_chunks),
        archive.ENTROPY_FILE: archive.pack_dat(archive.ENTROPY_MAGIC, dict(settings, archive_id=aid), [choices[1]] + residual_chunks),
    }
    return files, aid


def check_model_memory(prednet, h, w, lanes):
    """Refuse before the model starts when it cannot fit (TensorFlow's CPU kernels crash rather
    than fail when an allocation is refused)."""
    from prednet.device import memory_headroom
    from prednet.predictor import model_memory

    need, headroom = model_memory(prednet, h, w, lanes), memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(f"not enough memory for the model on {lanes} lane(s) of {w}x{h} frames: it needs about "
                         f"{need / 2**30:.1f} GiB, {headroom / 2**30:.1f} GiB are available (fewer --lanes need less)")


def summarize(frames, coder, keyframes, predicted, times, files, scale):
    err = np.abs(to_planar(coder.decoded) - to_planar(frames))  # keyframes too: lossy ones are quantized
    sq = float(np.sum(err.astype(np.float64) ** 2))
    summary = Summary(
        frames=len(frames), keyframes=len(keyframes), raw_bytes=int(frames.nbytes), compressed_bytes=0,
        max_abs_error=int(err.max()) if err.size else 0, psnr=psnr(coder.max_value, sq, frames.size), seconds=0.0,
        stage_seconds=times,
        stage_bytes={"keyframes": len(files[archive.KEYFRAME_FILE]), "residuals": len(files[archive.ENTROPY_FILE])},
    )
    # Per-frame detail for -v: prediction MSE (pixels in [0, 1] as the model sees them) and error after decoding.
    dec_mse = (err.astype(np.float64) ** 2).reshape(len(frames), -1).mean(axis=1)
    summary.per_frame = [(int(i), True, 0.0, float(dec_mse[i])) for i in keyframes]
    if len(predicted):
        x, p = to_planar(frames[predicted]), coder.predictions[predicted]
        pred_mse = (((x - p) / float(scale.span)) ** 2).reshape(len(predicted), -1).mean(axis=1)
        summary.per_frame += [(int(f), False, float(a), float(dec_mse[f])) for f, a in zip(predicted, pred_mse)]
    summary.per_frame.sort()
    return summary


def encode_sequence(prednet, frames, o, bounds, model_digest, progress=None, *, names_digest):
    """Compress frames (N, H, W, C) uint8 or uint16 → ({.dat name: bytes}, archive id, Summary). The glue.
    names_digest: archive.names_digest of the names filename.txt will list (required: the decoder
    refuses an entropy.dat without it)."""
    if not isinstance(names_digest, str):
        raise ValueError("encode_sequence needs the names digest of filename.txt's names")
    from compress.quantize import is_lossless
    from prednet.predictor import NextFramePredictor, ValueScale

    t_start, times = time.time(), {}
    n, h, w, c = frames.shape
    level = DEFAULT_ZSTD_LEVEL if o.zstd_level is None else o.zstd_level

    t = time.time()
    is_key, lane_starts = plan_keyframes(prednet, n, h, w, o)
    if o.device != "GPU":  # on a GPU the model's memory is the GPU's (TensorFlow reports running out)
        check_model_memory(prednet, h, w, len(lane_starts))
    predictor = NextFramePredictor(prednet, h, w, len(lane_starts))
    coder = FrameQuantizer(frames, o, bounds, array_module(o.device))
    scale = ValueScale.for_frames(frames)
    predict_sequence(predictor, frames, lane_starts, is_key, coder, closed_loop=o.loop == "closed",
                     threshold=o.threshold, scale=scale, progress=progress, code_keyframe=coder.keyframe)
    keyframes, predicted = np.flatnonzero(is_key), np.flatnonzero(~is_key)
    times["predict+quantize"] = time.time() - t

    t = time.time()
    wide = frames.dtype != np.uint8
    residual = encode_residuals(coder.q[predicted].reshape(len(predicted), c * h * w), (c, h, w),
                                is_lossless(o.mode, bounds), o.entropy, level, abs_quantizer=coder.abs_quantizer, wide=wide)
    key = encode_keyframes(coder.key_front, np.stack([coder.key_codes[int(f)] for f in keyframes]), o.entropy, level, wide)
    choices = encode_block_choices(coder, predicted, level)
    times["encode"] = time.time() - t

    files, aid = build_archive(frames, coder.decoded, keyframes, lane_starts, o, bounds, model_digest, residual, key, choices,
                               names_digest, scale)
    summary = summarize(frames, coder, keyframes, predicted, times, files, scale)
    summary.frame_bytes = [0] * n
    for f, chunk in list(zip(keyframes, key[1])) + list(zip(predicted, residual[1])):
        summary.frame_bytes[f] = len(chunk)
    summary.predictions = coder.predictions
    summary.seconds = time.time() - t_start
    return files, aid, summary


def compress_folder(model_dir, image_dir, out_dir, o: CompressOptions, label=""):
    """Compress one sequence folder into out_dir; prints one summary line (after `label`). Returns the Summary.
    OUT_DIR is locked for the whole run (archive.OutputFolder): a second run into it is refused."""
    bounds = validate_options(o)
    check_output_folder(out_dir, image_dir, o.overwrite)
    with archive.OutputFolder(out_dir, overwrite=o.overwrite) as out:
        return _compress_into(model_dir, image_dir, out, o, bounds, label)


def _compress_into(model_dir, image_dir, out, o, bounds, label):
    from compress.images import read_sequence
    from prednet.modelfile import load_model

    t0 = time.time()
    seq = read_sequence(image_dir)
    archive.check_names(seq.names, seq.stack)
    n = len(seq.frames)
    if n < 2:
        raise TezipError(f"{image_dir} holds a single frame: TEZip compresses sequences of at least 2 frames")
    if o.warmup >= n:
        raise TezipError(f"-p {o.warmup} makes every one of the {n} frames a keyframe: nothing left to predict")
    if o.report_frame is not None and not 0 <= o.report_frame < n:
        raise TezipError(f"--report-frame {o.report_frame} is outside the sequence (frames 0-{n - 1})")
    prednet, model_doc = load_model(model_dir)
    if prednet.channels != seq.frames.shape[-1]:
        raise TezipError(
            f"model {model_dir} was trained on {prednet.channels}-channel frames but {image_dir} holds "
            f"{seq.mode} ({seq.frames.shape[-1]}-channel) images"
        )
    if o.verbose:
        print(f"  frame order: {seq.order}", flush=True)
    progress = progress_bar(n, "predicting")
    try:
        files, aid, summary = encode_sequence(prednet, seq.frames, o, bounds, model_doc["digest"], progress,
                                              names_digest=archive.names_digest(seq.mode, seq.names, seq.stack))
    finally:
        progress.close()
    files[archive.NAMES_FILE] = archive.names_text(aid, seq.mode, seq.names, seq.stack).encode("utf-8")
    summary.compressed_bytes = sum(len(files[name]) for name in archive.ARCHIVE_FILES)
    if o.report:
        from compress.report import REPORT_FILE, render_report

        files[REPORT_FILE] = render_report(seq.frames, seq.names, summary, o.threshold, o.report_frame,
                                           max_value_of(seq.frames.dtype), title=Path(image_dir).name)
    archive.write_files_atomically(out, files)
    summary.seconds = time.time() - t0
    if o.verbose:
        _print_details(summary, seq.names)
    print(label + summary.line("compressed"), flush=True)
    return summary


def _print_details(summary, names):
    for i, is_key, pred_mse, dec_mse in summary.per_frame:
        if is_key:
            how = "stored exactly" if dec_mse == 0 else f"coded on its own within the bound, decoded MSE {dec_mse:.4f}"
            print(f"  frame {i} {archive.printable(names[i])}: keyframe ({how})")
        else:
            print(f"  frame {i} {archive.printable(names[i])}: prediction MSE {pred_mse:.6f}, decoded MSE (pixel units) {dec_mse:.4f}")
    for stage, sec in summary.stage_seconds.items():
        print(f"  stage {stage}: {sec:.3f} s")
    for what, size in summary.stage_bytes.items():
        print(f"  {what}: {size} bytes")


class NoProgress:
    def __call__(self, k):
        pass

    def close(self):
        pass


def progress_bar(total, desc, unit="frame"):
    """A tqdm bar on stderr when it is a terminal; silent in scripts and CI. Bars opened while
    another is open (frames within a batch's sequences) stack below it."""
    if not sys.stderr.isatty():
        return NoProgress()
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    class _Bar:
        def __call__(self, k):
            bar.update(k)

        def close(self):
            bar.close()

    return _Bar()
