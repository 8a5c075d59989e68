"""decompress: archive → zstd⁻¹ → entropy⁻¹ → spatial⁻¹ → prediction + residual → verify → frames.

The mirror of compress/pipeline.py. Every decoded frame is checked against the checksum the encoder
stored; a mismatch stops before any image is written.
"""

import math
import time
from pathlib import Path

import numpy as np

from compress import archive
from compress.errors import TezipError
from compress.pipeline import CODEC_THREADS, model_threads, Summary, array_module, progress_bar, spatial_decode, check_output_folder, max_value_of, to_host, to_interleaved, to_planar
from compress.predict import check_lane_plan, predict_sequence

MAX_PIXELS = 1 << 36
LEADING_CHUNKS = 1  # entropy.dat: block choices, then one chunk per predicted frame  # a declared size beyond this is a corrupt or hostile header, not a sequence


def _codec_from_config(config, name, allowed=None):
    from compress.entropy import ZigZagCoder
    from compress.lossless import ZstdCodec
    from compress.med import MedCoder
    from compress.linquant import LinearQuantizer
    from compress.medquant import MedQuantizer
    from compress.quantize import Quantizer
    from compress.rangecoder import ContextRangeCoder
    from compress.spatial import DeltaCoder

    known = {c.codec_id: c for c in (Quantizer, DeltaCoder, MedCoder, MedQuantizer, LinearQuantizer, ContextRangeCoder, ZigZagCoder, ZstdCodec)}
    if not isinstance(config, dict):
        raise TezipError(f"{name} is corrupt (a codec stage is {str(config)[:40]!r}, not a configuration)")
    what = config.get("id")
    if not isinstance(what, str) or what not in known:
        raise TezipError(f"{name} uses a codec stage {str(what)[:40]!r} this TEZip does not know")
    if allowed is not None and what not in allowed:
        raise TezipError(f"{name} is corrupt (codec stage {what!r} where {', '.join(allowed)} belongs)")
    try:
        return known[config["id"]].from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise TezipError(f"{name} has an invalid configuration for stage {config['id']!r} ({e})") from None


def _int_field(header, key, name, lo=0, hi=None):
    v = header.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        raise TezipError(f"{name} is corrupt (bad {key!r} in its header)")
    return v


def read_archive(comp_dir):
    """Read and cross-check the three archive files. Returns (names header, names, key (header, chunks), entropy (header, chunks))."""
    comp = Path(comp_dir)
    if not comp.is_dir():
        raise TezipError(f"archive folder {comp_dir} does not exist")
    names_raw = archive.read_names_file(comp)
    try:
        names_head, names = archive.parse_names(names_raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TezipError(f"{archive.NAMES_FILE} is corrupt (not UTF-8 text)") from None
    key = archive.read_dat_file(comp, archive.KEYFRAME_FILE, archive.KEYFRAME_MAGIC)
    ent = archive.read_dat_file(comp, archive.ENTROPY_FILE, archive.ENTROPY_MAGIC)
    aid = ent[0].get("archive_id")
    for fname, other in ((archive.KEYFRAME_FILE, key[0].get("archive_id")), (archive.NAMES_FILE, names_head.get("archive_id"))):
        if other != aid:
            raise TezipError(f"{fname} belongs to a different archive than {archive.ENTROPY_FILE}")
    return names_head, names, key, ent


def pixel_format(h, mode):
    """The frames' dtype (uint8 or uint16) and the ValueScale the model worked with, from the
    entropy.dat header h and filename.txt's mode, checked against each other."""
    from compress.images import MODE_DTYPES, SUPPORTED_MODES
    from prednet.predictor import ValueScale

    name = archive.ENTROPY_FILE
    c = _int_field(h, "channels", name, 1, 3)
    dtypes = {d.name: d for d in MODE_DTYPES.values()}
    dtype = dtypes.get(h.get("dtype")) if isinstance(h.get("dtype"), str) else None
    if c not in (1, 3) or dtype is None or h.get("max_value") != max_value_of(dtype):
        raise TezipError(f"{name} declares pixels this TEZip cannot write ({c} channels, {str(h.get('dtype'))[:20]})")
    if not isinstance(mode, str) or mode not in SUPPORTED_MODES or SUPPORTED_MODES[mode] != c or MODE_DTYPES[mode] != dtype:
        raise TezipError(f"{archive.NAMES_FILE} has colour mode {str(mode)[:20]!r} for {c}-channel {dtype} frames")
    value_range = h.get("value_range", [0, max_value_of(dtype)])
    if not (isinstance(value_range, list) and len(value_range) == 2 and all(type(v) is int for v in value_range)
            and 0 <= value_range[0] <= value_range[1] <= max_value_of(dtype)):
        raise TezipError(f"{name} is corrupt (bad value range {str(value_range)[:40]})")
    return dtype, ValueScale(*value_range)


def validate_header(h, names, mode):
    name = archive.ENTROPY_FILE
    n = _int_field(h, "n_frames", name, 1)
    height, width = _int_field(h, "height", name, 1), _int_field(h, "width", name, 1)
    c = _int_field(h, "channels", name, 1, 3)
    pixel_format(h, mode)
    if n * height * width * c > MAX_PIXELS:
        raise TezipError(f"{name} is corrupt (declares an implausible size {n}x{height}x{width}x{c})")
    if len(names) != n:
        raise TezipError(f"{archive.NAMES_FILE} lists {len(names)} names for {n} frames")
    pred = h.get("prediction")
    if not isinstance(pred, dict):
        raise TezipError(f"{name} is corrupt (no prediction settings)")
    keys, lanes = pred.get("keyframes"), pred.get("lanes")
    if not (isinstance(keys, list) and isinstance(lanes, list) and all(type(k) is int for k in keys + lanes)):
        raise TezipError(f"{name} is corrupt (bad keyframe or lane list)")
    if keys != sorted(set(keys)) or not keys or keys[0] != 0 or keys[-1] >= n:
        raise TezipError(f"{name} is corrupt (keyframe positions out of order or range)")
    problem = check_lane_plan(lanes, keys, n)
    if problem:
        raise TezipError(f"{name} is corrupt ({problem})")
    if pred.get("loop", "open") not in ("closed", "open"):
        raise TezipError(f"{name} is corrupt (unknown prediction loop {pred.get('loop')!r})")
    if len(lanes) > 4096:
        raise TezipError(f"{name} is corrupt (too many lanes)")
    sums = h.get("frame_checksums")
    if not isinstance(sums, list) or len(sums) != n:
        raise TezipError(f"{name} is corrupt (frame checksums missing)")
    part = h.get("partitions")
    if not isinstance(part, dict) or part.get("count") != n - len(keys) or part.get("values") != c * height * width:
        raise TezipError(f"{name} is corrupt (partition layout does not match the frames)")
    if not isinstance(h.get("stages"), list) or len(h["stages"]) < 2:
        raise TezipError(f"{name} is corrupt (codec stages missing)")
    return n, height, width, c, keys, lanes


def entropy_decode(stages, chunks, shape, payload_dtype, name):
    """One chunk per frame → signed codes (F, C, H, W) int32. Mirror: compress.pipeline.entropy_encode."""
    ids = [s.codec_id for s in stages]
    chunks = [bytes(c) for c in chunks]
    if ids == ["ctxrange"]:
        return stages[0].decode_many(chunks, shape, threads=CODEC_THREADS)
    if ids != ["zigzag", "zstd"]:
        raise TezipError(f"{name} has an entropy stage list this TEZip cannot decode: {ids}")
    if payload_dtype not in ("uint16", "uint32"):
        raise TezipError(f"{name} is corrupt (bad code dtype {str(payload_dtype)[:40]!r})")
    zigzag, zstd = stages
    count = int(np.prod(shape))
    parts = zstd.decode_many(chunks, np.dtype(payload_dtype), [count] * len(chunks), threads=CODEC_THREADS)
    payload = np.stack(parts) if parts else np.zeros((0, count), payload_dtype)
    return zigzag.decode(payload).reshape((len(chunks),) + tuple(shape))


def decode_keyframe_planes(front, codes, max_value):
    """Keyframe codes (K, C, H, W) → planes. Mirror: compress.pipeline.code_keyframe_planes."""
    k, c, h, w = codes.shape
    planes = front.decode(codes.reshape(k * c, h, w)).reshape(k, c, h, w)
    if front.codec_id == "medquant":  # quantized within the bound: the encoder clipped the same way
        return np.clip(planes, 0, max_value)
    if planes.size and (planes.min() < 0 or planes.max() > max_value):
        raise TezipError(f"a keyframe decodes to values outside 0-{max_value}")
    return planes


def decode_keyframes(key_header, key_chunks, frames, keys):
    """key_frame.dat → keyframes written into `frames`. Mirror: compress.pipeline.encode_keyframes."""
    name = archive.KEYFRAME_FILE
    if key_header.get("keyframes") != keys:
        raise TezipError(f"{name} holds other keyframes than {archive.ENTROPY_FILE} expects")
    stages = key_header.get("stages")
    if not isinstance(stages, list) or not stages:
        raise TezipError(f"{name} is corrupt (codec stages missing)")
    stages = [_codec_from_config(s, name) for s in stages]
    if stages[0].codec_id not in ("med", "medquant"):
        raise TezipError(f"{name} has a stage list this TEZip cannot decode")
    if len(key_chunks) != len(keys):
        raise TezipError(f"{name} holds {len(key_chunks)} keyframes, {len(keys)} expected")
    for k, chunk in zip(keys, key_chunks):
        if chunk is None:
            raise TezipError(f"{name}: keyframe {k} is corrupt (checksum mismatch)")
    _, h, w, c = frames.shape
    try:
        codes = entropy_decode(stages[1:], key_chunks, (c, h, w), key_header.get("dtype_codes"), name)
        planes = decode_keyframe_planes(stages[0], codes, max_value_of(frames.dtype))
        frames[keys] = to_interleaved(planes, frames.dtype)
    except TezipError as e:
        raise TezipError(f"{name}: {e}") from None


def decode_residuals(h, chunks, n_predicted, plane_shape, xp=np):
    """entropy.dat chunks → quantized residuals (n_predicted, values) int32."""
    name = archive.ENTROPY_FILE
    stages = [_codec_from_config(s, name) for s in h["stages"]]
    ids = [s.codec_id for s in stages]
    # The front is runmerge + a spatial stage, or an abs quantizer alone (linquant, or medquant:
    # prediction and quantization in one).
    single = ids[:1] in (["linquant"], ["medquant"])
    n_front = 1 if single else 2
    if not single and ids[:2] not in (["runmerge", "delta1d"], ["runmerge", "med"]):
        raise TezipError(f"{name} has a stage order this TEZip cannot decode: {ids}")
    if not chunks:
        raise TezipError(f"{name} is corrupt (its block choices are missing)")
    if len(chunks) != n_predicted + LEADING_CHUNKS:
        raise TezipError(f"{name} holds {len(chunks) - LEADING_CHUNKS} residual frames, {n_predicted} expected")
    for i, chunk in enumerate(chunks):
        if chunk is None:
            what = "block choices" if i < LEADING_CHUNKS else f"residuals of predicted frame {i - LEADING_CHUNKS}"
            raise TezipError(f"{name}: {what} are corrupt (checksum mismatch)")
    try:
        d = entropy_decode(stages[n_front:], chunks[LEADING_CHUNKS:], plane_shape, h["partitions"].get("dtype"), name)
        d = xp.asarray(d.reshape(n_predicted, int(np.prod(plane_shape))))
        return to_host(spatial_decode(stages[n_front - 1], d, plane_shape))
    except TezipError as e:
        raise TezipError(f"{name}: {e}") from None


def decode_block_choices(h, chunk, n_predicted, height, width):
    """entropy.dat's block-choice chunk → (selector, choice codes (P, ny, nx) uint8) or (None, None)."""
    name = archive.ENTROPY_FILE
    config = h.get("block_select")
    if config is None:
        return None, None
    from compress.blockselect import BlockSelector
    from compress.lossless import ZstdCodec

    try:
        selector = BlockSelector.from_config(config)
        ny, nx = selector.grid(height, width)
        size = n_predicted * ny * nx
        raw = ZstdCodec(shuffle=False).decode(bytes(chunk), np.uint8, size)
        return selector, selector.unpack(raw.tobytes(), n_predicted, height, width)
    except TezipError as e:
        raise TezipError(f"{name}: {e}") from None


class FrameReconstructor:
    """The decoder's `code_frame`: prediction (with the stored block choices) + stored residual,
    clipped, written into `frames`."""

    def __init__(self, frames, q, predicted, selector=None, choices=None):
        self.frames, self.q, self.selector, self.choices = frames, q, selector, choices
        self.max_value = max_value_of(frames.dtype)  # the encoder's clip (FrameQuantizer)
        self.row = {int(f): i for i, f in enumerate(predicted)}

    def __call__(self, f, prediction):
        c, h, w = self.frames.shape[3], self.frames.shape[1], self.frames.shape[2]
        p = to_planar(prediction[None])[0]
        if self.selector is not None:
            previous = to_planar(self.frames[f - 1 : f])[0]
            p = self.selector.combine(p, previous, self.choices[self.row[f]])
        planar = np.clip(p + self.q[self.row[f]].reshape(c, h, w), 0, self.max_value)
        self.frames[f] = to_interleaved(planar[None], self.frames.dtype)[0]
        return self.frames[f]


def check_decode_memory(prednet, n, height, width, c, dtype, n_lanes, device="CPU"):
    """Refuse (before anything is allocated) a decode that cannot fit in the memory this process
    may still use: the frames, the codes being decoded (int32, transiently twice), and the model
    stepping `n_lanes` lanes. A header may declare frames far larger than its chunks would make
    one believe (all-zero frames code to a few bytes), and TensorFlow's CPU kernels crash rather
    than fail when an allocation is refused, so this is checked, not left to the allocator. (On a
    GPU the model's memory is the GPU's, which TensorFlow reports as an error.)"""
    from prednet.device import memory_headroom
    from prednet.predictor import model_memory

    values = n * height * width * c
    need = values * np.dtype(dtype).itemsize + 8 * values
    if device != "GPU":
        need += model_memory(prednet, height, width, n_lanes)
    headroom = memory_headroom()
    if headroom is not None and need > headroom:
        raise TezipError(
            f"not enough memory to decode {n} frames of {width}x{height}x{c}: it needs about {need / 2**30:.1f} GiB, "
            f"{headroom / 2**30:.1f} GiB are available; nothing was written"
        )


def decode_archive(prednet, model_digest, names_head, names, key, ent, progress=None, device="CPU"):
    """Decode and verify every frame. Returns (frames (N, H, W, C) uint8 or uint16, entropy header)."""
    from prednet.predictor import NextFramePredictor

    h, chunks = ent
    n, height, width, c, keys, lanes = validate_header(h, names, names_head.get("mode"))
    dtype, scale = pixel_format(h, names_head.get("mode"))
    bound_names = h.get("names_digest")
    if not isinstance(bound_names, str):  # every archive of this format binds its names: a header without is edited
        raise TezipError(f"{archive.ENTROPY_FILE} is corrupt (its header lacks 'names_digest', which binds "
                         f"{archive.NAMES_FILE} to it)")
    if bound_names != archive.names_digest(names_head.get("mode"), names, names_head.get("stack")):
        raise TezipError(f"{archive.NAMES_FILE} was edited: its names or colour mode do not match {archive.ENTROPY_FILE}")
    loop = h["prediction"].get("loop", "open")
    if h.get("model_digest") != model_digest:
        from prednet.modelfile import default_model_digest

        which = "the bundled default model" if h.get("model_digest") == default_model_digest() else "a different model"
        use = "-u default …" if which.startswith("the bundled") else "the same MODEL_DIR"
        raise TezipError(
            f"this archive was made with {which} (model digest "
            f"{str(h.get('model_digest'))[:12]}…, given model {model_digest[:12]}…): decompress with {use}"
        )
    check_decode_memory(prednet, n, height, width, c, dtype, len(lanes), device)
    frames = np.zeros((n, height, width, c), dtype)
    decode_keyframes(key[0], key[1], frames, keys)
    is_key = np.zeros(n, bool)
    is_key[keys] = True
    predicted = np.flatnonzero(~is_key)
    q = decode_residuals(h, chunks, len(predicted), (c, height, width), array_module(device))

    predictor = NextFramePredictor(prednet, height, width, len(lanes))
    selector, choices = decode_block_choices(h, chunks[0], len(predicted), height, width)
    rebuild = FrameReconstructor(frames, q, predicted, selector, choices)
    predict_sequence(predictor, frames, lanes, is_key, rebuild, closed_loop=loop == "closed", scale=scale, progress=progress)
    sums = h["frame_checksums"]
    for i in range(n):
        if archive.frame_checksum(frames[i]) != sums[i]:
            kind = "keyframe" if is_key[i] else "predicted frame"
            threads = h.get("model_threads")
            hint = ""
            if isinstance(threads, int) and threads != model_threads():
                hint = f" (it was compressed with TEZIP_MODEL_THREADS={threads}; set the same value to decode it)"
            raise TezipError(
                f"frame {i} ({archive.printable(names[i])}, {kind}) does not match its checksum: the archive is corrupt or was made "
                f"on a machine whose model arithmetic differs{hint}; nothing was written"
            )
    return frames, h


def write_frames_atomically(out, frames, names, mode, stack=None):
    """Write every frame under its output name into the OutputFolder `out`, all published together
    (archive.OutputFolder.publish); or, for frames that came from one multi-page TIFF (`stack`, its
    file name), that one file. Returns the notes about renamed lossy formats."""
    from decompress.images import output_names, write_frame, write_tiff_stack

    if stack is not None:
        out_names, notes = [stack], []
        write = lambda i, f: write_tiff_stack(f, frames, mode)  # noqa: E731
    else:
        out_names, notes = output_names(names)
        write = lambda i, f: write_frame(f, frames[i], mode, format_of=out_names[i])  # noqa: E731

    def write_one(i, f):
        try:
            write(i, f)
        except TezipError as e:  # name the frame, not its temporary file
            cause = e.__context__
            if isinstance(cause, OSError):
                raise TezipError(f"cannot write {archive.printable(out_names[i])} into {out.path} "
                                 f"({cause.strerror or cause})") from None
            raise

    out.publish(out_names, write_one)
    return notes


def decompress_folder(model_dir, comp_dir, out_dir, verbose=False, device="CPU", overwrite=False, label=""):
    """Decode, verify and write one archive folder; prints one summary line (after `label`). Returns the frames."""
    check_output_folder(out_dir, comp_dir, overwrite, what="COMP_DIR")
    with archive.OutputFolder(out_dir, overwrite=overwrite) as out:  # locked for the whole run
        return _decompress_into(model_dir, comp_dir, out, verbose, device, label)


def _decompress_into(model_dir, comp_dir, out, verbose, device, label):
    from prednet.modelfile import load_model

    t0 = time.time()
    out_dir = out.path
    names_head, names, key, ent = read_archive(comp_dir)
    prednet, model_doc = load_model(model_dir)
    progress = progress_bar(ent[0].get("n_frames", 0), "predicting")
    try:
        frames, h = decode_archive(prednet, model_doc["digest"], names_head, names, key, ent, progress, device)
    except MemoryError:
        e = ent[0]
        raise TezipError(
            f"not enough memory to decode {e.get('n_frames')} frames of {e.get('width')}x{e.get('height')}x"
            f"{e.get('channels')}; nothing was written"
        ) from None
    finally:
        progress.close()
    notes = write_frames_atomically(out, frames, names, names_head["mode"], names_head.get("stack"))
    for note in notes:
        print(note)
    comp_bytes = sum((Path(comp_dir) / f).stat().st_size for f in archive.ARCHIVE_FILES)
    summary = Summary(
        frames=len(frames),
        keyframes=len(h["prediction"]["keyframes"]),
        raw_bytes=int(frames.nbytes),
        compressed_bytes=comp_bytes,
        max_abs_error=-1,
        psnr=math.nan,
        seconds=time.time() - t0,
    )
    bound = h.get("bound") if isinstance(h.get("bound"), dict) else {}
    exact = "bit-exact" if bound.get("lossless") else f"within {bound.get('mode')} bound {bound.get('bounds')}"
    print(
        f"{label}decompressed {summary.frames} frames ({summary.keyframes} keyframes) into {out_dir}, every frame verified "
        f"against its checksum ({exact}): {summary.compressed_bytes} -> {summary.raw_bytes} bytes, "
        f"ratio {summary.ratio:.2f}, {summary.seconds:.2f} s",
        flush=True,
    )
    return frames
