"""Format 2's headers (archives written before the streaming format 3; decoded, never written
again). `from_json` validates; `to_json` gives exactly the JSON format 2 stores.

entropy.dat's header (SequenceHeader) holds everything decoding needs: the frames' shape and pixel
format, the model digest, the keyframe and lane plan, the bound, the residual chain, the block
selector, one checksum per decoded frame and the digest of filename.txt's names. Its chunks are the
block choices (chunk 0), then one chunk per predicted frame. key_frame.dat's header
(KeyframeHeader) has the keyframes' chain; one chunk per keyframe.
"""

from dataclasses import dataclass, field

import numpy as np

from archive.common import (ENTROPY_FILE, KEYFRAME_FILE, KEYFRAME_HEADS, MAX_LANES, FrameFormat, archive_id, check_bound, check_lane_plan,
                            names_digest)
from base.errors import TezipError

CHOICES_CHUNK = 0  # entropy.dat: the block choices come first, then one chunk per predicted frame
LEADING_CHUNKS = 1

@dataclass(frozen=True)
class SequenceHeaderV2:
    """entropy.dat's header. `from_json` validates; `to_json` is the stored form."""

    frames: FrameFormat
    model_digest: str
    model_threads: int
    loop: str
    warmup: int
    window: int | None
    threshold: float | None
    lanes: list
    keyframes: list
    mode: str
    bounds: list
    lossless: bool
    stages: list  # the residual chain's configs
    payload_dtype: str | None  # what the byte coder received, when not int32 (zigzag → zstd)
    block_select: dict | None
    frame_checksums: list
    names_digest: str
    archive_id: str = field(default="", compare=False)

    @property
    def n_predicted(self):
        return self.frames.n_frames - len(self.keyframes)

    def settings(self):
        """The decode settings the archive id hashes (everything but the id itself)."""
        p = {"method": "windows", "loop": self.loop, "warmup": self.warmup, "window": self.window,
             "threshold": self.threshold, "lanes": list(self.lanes), "keyframes": list(self.keyframes)}
        return dict(
            self.frames.to_json(),
            model_digest=self.model_digest,
            model_threads=self.model_threads,
            prediction=p,
            bound={"mode": self.mode, "bounds": list(self.bounds), "lossless": bool(self.lossless)},
            stages=self.stages,
            partitions={"kind": "frame", "count": self.n_predicted, "values": int(np.prod(self.frames.frame_shape)),
                        "dtype": self.payload_dtype},
            block_select=self.block_select,
            frame_checksums=list(self.frame_checksums),
            names_digest=self.names_digest,
        )

    def with_id(self):
        from dataclasses import replace

        return replace(self, archive_id=archive_id(self.settings()))

    def to_json(self):
        return dict(self.settings(), archive_id=self.archive_id)

    @staticmethod
    def split_chunks(chunks, n_predicted, where=ENTROPY_FILE):
        """entropy.dat's chunks → (block-choice chunk, residual chunks), each checked present."""
        if not chunks:
            raise TezipError(f"{where} is corrupt (its block choices are missing)")
        if len(chunks) != n_predicted + LEADING_CHUNKS:
            raise TezipError(f"{where} holds {len(chunks) - LEADING_CHUNKS} residual frames, {n_predicted} expected")
        for i, chunk in enumerate(chunks):
            if chunk is None:
                what = "block choices" if i < LEADING_CHUNKS else f"residuals of predicted frame {i - LEADING_CHUNKS}"
                raise TezipError(f"{where}: {what} are corrupt (checksum mismatch)")
        return chunks[CHOICES_CHUNK], chunks[LEADING_CHUNKS:]

    @staticmethod
    def join_chunks(choices_chunk, residual_chunks):
        return [choices_chunk] + list(residual_chunks)

    @classmethod
    def from_json(cls, h, names, mode, stack=None, where=ENTROPY_FILE):
        """Validate entropy.dat's header against filename.txt's names, mode and stack name."""
        frames = FrameFormat.from_json(h, where, mode)
        n, c = frames.n_frames, frames.channels
        if len(names) != n:
            raise TezipError(f"filename.txt lists {len(names)} names for {n} frames")
        pred = h.get("prediction")
        if not isinstance(pred, dict):
            raise TezipError(f"{where} is corrupt (no prediction settings)")
        keys, lanes = pred.get("keyframes"), pred.get("lanes")
        if not (isinstance(keys, list) and isinstance(lanes, list) and all(type(k) is int for k in keys + lanes)):
            raise TezipError(f"{where} is corrupt (bad keyframe or lane list)")
        if keys != sorted(set(keys)) or not keys or keys[0] != 0 or keys[-1] >= n:
            raise TezipError(f"{where} is corrupt (keyframe positions out of order or range)")
        problem = check_lane_plan(lanes, keys, n)
        if problem:
            raise TezipError(f"{where} is corrupt ({problem})")
        loop = pred.get("loop", "open")
        if loop not in ("closed", "open"):
            raise TezipError(f"{where} is corrupt (unknown prediction loop {pred.get('loop')!r})")
        if len(lanes) > MAX_LANES:
            raise TezipError(f"{where} is corrupt (too many lanes)")
        sums = h.get("frame_checksums")
        if not isinstance(sums, list) or len(sums) != n:
            raise TezipError(f"{where} is corrupt (frame checksums missing)")
        part = h.get("partitions")
        if not isinstance(part, dict) or part.get("count") != n - len(keys) or part.get("values") != c * frames.height * frames.width:
            raise TezipError(f"{where} is corrupt (partition layout does not match the frames)")
        if not isinstance(h.get("stages"), list) or len(h["stages"]) < 2:
            raise TezipError(f"{where} is corrupt (codec stages missing)")
        digest = h.get("names_digest")
        if not isinstance(digest, str):  # every archive of this format binds its names: a header without is edited
            raise TezipError(f"{where} is corrupt (its header lacks 'names_digest', which binds filename.txt to it)")
        if digest != names_digest(mode, names, stack):
            raise TezipError(f"filename.txt was edited: its names or colour mode do not match {where}")
        bound = check_bound(h.get("bound"), where)
        return cls(
            frames=frames, model_digest=h.get("model_digest"), model_threads=h.get("model_threads"),
            loop=loop, warmup=pred.get("warmup"), window=pred.get("window"), threshold=pred.get("threshold"),
            lanes=lanes, keyframes=keys, mode=bound["mode"], bounds=bound["bounds"],
            lossless=bound["lossless"], stages=h["stages"], payload_dtype=part.get("dtype"),
            block_select=h.get("block_select"), frame_checksums=sums, names_digest=digest,
            archive_id=h.get("archive_id"),
        )


@dataclass(frozen=True)
class KeyframeHeaderV2:
    """key_frame.dat's header: the frames (as entropy.dat has them), the keyframes and their chain."""

    frames: FrameFormat
    keyframes: list
    stages: list
    payload_dtype: str | None
    archive_id: str

    def to_json(self):
        return dict(self.frames.to_json(), archive_id=self.archive_id, keyframes=list(self.keyframes),
                    stages=self.stages, dtype_codes=self.payload_dtype)

    @classmethod
    def from_json(cls, h, sequence: SequenceHeaderV2, where=KEYFRAME_FILE):
        """Validate key_frame.dat's header against entropy.dat's."""
        if h.get("keyframes") != sequence.keyframes:
            raise TezipError(f"{where} holds other keyframes than {ENTROPY_FILE} expects")
        stages = h.get("stages")
        if not isinstance(stages, list) or not stages:
            raise TezipError(f"{where} is corrupt (codec stages missing)")
        return cls(sequence.frames, h["keyframes"], stages, h.get("dtype_codes"), h.get("archive_id"))

    def check_head(self, chain, where=KEYFRAME_FILE):
        """Keyframes are coded from their own pixels: the chain must start with MED or medquant."""
        if chain.head.codec_id not in KEYFRAME_HEADS:
            raise TezipError(f"{where} has a stage list this TEZip cannot decode")
        return chain

    def check_chunks(self, chunks, where=KEYFRAME_FILE):
        if len(chunks) != len(self.keyframes):
            raise TezipError(f"{where} holds {len(chunks)} keyframes, {len(self.keyframes)} expected")
        for k, chunk in zip(self.keyframes, chunks):
            if chunk is None:
                raise TezipError(f"{where}: keyframe {k} is corrupt (checksum mismatch)")
        return chunks
