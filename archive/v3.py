"""Format 3's headers: the streaming format. Frames are coded one at a time and each frame's chunk
says everything about it that the header does not (the frame coder's per-frame choices), so an
archive is written and read frame by frame in bounded memory.

entropy.dat (SequenceHeader): the frames' format, the model (digest and arithmetic) or none, the
keyframe and lane plan, the bound, the frame coder's config, one checksum per decoded frame and
the digest of filename.txt. One chunk per predicted frame, in frame order.
key_frame.dat (KeyframeHeader): the keyframes and the keyframe coder's config. One chunk per
keyframe, in frame order.

What a chunk holds is the frame coder's business (sequence/framecoder.py); the configs here are
validated by the coders that read them (`from_config`), the rest here.
"""

from dataclasses import dataclass, field, replace

from archive.common import (ENTROPY_FILE, KEYFRAME_FILE, MAX_LANES, FrameFormat, archive_id, check_bound, check_lane_plan,
                            names_digest)
from base.errors import TezipError

# The model arithmetic format 3 knows: prednet/reference.py's fixed-order float32 kernel, the same
# bits on every machine (the archive records it; a future arithmetic gets a new name).
REFERENCE_ARITHMETIC = "reference-f32/1"
ARITHMETICS = (REFERENCE_ARITHMETIC,)
# A colour model predicting grayscale frames: shown the gray frame in all three channels, predicting
# the mean of its three (prednet.reference.GrayOnColour).
GRAY_ON_COLOUR = "gray-on-colour"


def _check_model(model, where):
    if model is None:
        return None
    if not (isinstance(model, dict) and set(model) - {"input", "off"} == {"digest", "arithmetic"}
            and isinstance(model["digest"], str) and len(model["digest"]) <= 128 and model.get("input", GRAY_ON_COLOUR) == GRAY_ON_COLOUR):
        raise TezipError(f"{where} is corrupt (bad model record)")
    if model["arithmetic"] not in ARITHMETICS:
        raise TezipError(f"{where} needs model arithmetic {str(model['arithmetic'])[:40]!r}, which this TEZip does not "
                         f"have (it has {', '.join(ARITHMETICS)})")
    return dict(model)


@dataclass(frozen=True)
class SequenceHeader:
    """entropy.dat's header, format 3. `from_json` validates; `to_json` is the stored form."""

    frames: FrameFormat
    # {"digest", "arithmetic"[, "input"][, "off"]}, or None: no model (prediction from decoded frames only);
    # "off": the frames from which the model stopped predicting for the rest of their window
    model: dict | None
    loop: str
    warmup: int
    window: int | None
    threshold: float | None
    keyframes: list
    lanes: list
    mode: str
    bounds: list
    lossless: bool
    coder: dict  # sequence.framecoder.FrameCoder's config
    frame_checksums: list
    names_digest: str
    archive_id: str = field(default="", compare=False)

    @property
    def n_predicted(self):
        return self.frames.n_frames - len(self.keyframes)

    @property
    def model_digest(self):
        return None if self.model is None else self.model["digest"]

    def settings(self):
        """The decode settings the archive id hashes (everything but the id itself)."""
        return dict(
            self.frames.to_json(),
            model=self.model,
            prediction={"loop": self.loop, "warmup": self.warmup, "window": self.window, "threshold": self.threshold,
                        "keyframes": list(self.keyframes), "lanes": list(self.lanes)},
            bound={"mode": self.mode, "bounds": list(self.bounds), "lossless": bool(self.lossless)},
            coder=self.coder,
            frame_checksums=list(self.frame_checksums),
            names_digest=self.names_digest,
        )

    def with_id(self):
        return replace(self, archive_id=archive_id(self.settings()))

    def to_json(self):
        return dict(self.settings(), archive_id=self.archive_id)

    @classmethod
    def from_json(cls, h, names, mode, stack=None, source=None, where=ENTROPY_FILE):
        """Validate entropy.dat's header against filename.txt's names, mode, stack name and source."""
        frames = FrameFormat.from_json(h, where, mode)
        n = frames.n_frames
        if len(names) != n:
            raise TezipError(f"filename.txt lists {len(names)} names for {n} frames")
        digest = h.get("names_digest")
        if not isinstance(digest, str):
            raise TezipError(f"{where} is corrupt (its header lacks 'names_digest', which binds filename.txt to it)")
        if digest != names_digest(mode, names, stack, source):
            raise TezipError(f"filename.txt was edited: its names or colour mode do not match {where}")
        pred = h.get("prediction")
        if not isinstance(pred, dict):
            raise TezipError(f"{where} is corrupt (no prediction settings)")
        keys, lanes = pred.get("keyframes"), pred.get("lanes")
        if not (isinstance(keys, list) and isinstance(lanes, list) and all(type(k) is int for k in keys + lanes)):
            raise TezipError(f"{where} is corrupt (bad keyframe or lane list)")
        if keys != sorted(set(keys)) or not keys or keys[0] != 0 or keys[-1] >= n:
            raise TezipError(f"{where} is corrupt (keyframe positions out of order or range)")
        if len(lanes) > MAX_LANES:
            raise TezipError(f"{where} is corrupt (too many lanes)")
        problem = check_lane_plan(lanes, keys, n)
        if problem:
            raise TezipError(f"{where} is corrupt ({problem})")
        model = _check_model(h.get("model"), where)
        off = model.get("off", []) if model is not None else []
        if not (isinstance(off, list) and all(type(f) is int for f in off) and off == sorted(set(off))
                and all(0 < f < n for f in off) and not set(off) & set(keys)) or "off" in (model or {}) and not off:
            raise TezipError(f"{where} is corrupt (bad list of frames where the model stops)")
        loop = pred.get("loop")
        if loop not in ("closed", "open"):
            raise TezipError(f"{where} is corrupt (unknown prediction loop {str(loop)[:20]!r})")
        sums = h.get("frame_checksums")
        if not (isinstance(sums, list) and len(sums) == n and all(isinstance(s, str) for s in sums)):
            raise TezipError(f"{where} is corrupt (frame checksums missing)")
        coder = h.get("coder")
        if not isinstance(coder, dict):
            raise TezipError(f"{where} is corrupt (no frame coder)")
        bound = check_bound(h.get("bound"), where)
        return cls(
            frames=frames, model=model, loop=loop, warmup=pred.get("warmup"),
            window=pred.get("window"), threshold=pred.get("threshold"), keyframes=keys, lanes=lanes,
            mode=bound["mode"], bounds=bound["bounds"], lossless=bound["lossless"], coder=coder,
            frame_checksums=sums, names_digest=digest, archive_id=h.get("archive_id"),
        )


@dataclass(frozen=True)
class KeyframeHeader:
    """key_frame.dat's header, format 3: the frames (as entropy.dat has them), the keyframes and the
    keyframe coder's config."""

    frames: FrameFormat
    keyframes: list
    coder: dict  # sequence.framecoder.KeyframeCoder's config
    archive_id: str

    def to_json(self):
        return dict(self.frames.to_json(), archive_id=self.archive_id, keyframes=list(self.keyframes), coder=self.coder)

    @classmethod
    def from_json(cls, h, sequence: SequenceHeader, where=KEYFRAME_FILE):
        if h.get("keyframes") != sequence.keyframes:
            raise TezipError(f"{where} holds other keyframes than {ENTROPY_FILE} expects")
        if not isinstance(h.get("coder"), dict):
            raise TezipError(f"{where} is corrupt (no keyframe coder)")
        return cls(sequence.frames, h["keyframes"], h["coder"], h.get("archive_id"))
