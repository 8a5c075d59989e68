"""A chain of stages as an archive records it: encode runs the stages in order, decode runs the
recorded configs backwards.

    residuals   [quantizer, spatial stage?, ..., byte coder]   e.g. linquant → ctxrange,
                                                                runmerge → med → ctxrange,
                                                                runmerge → delta1d → zigzag → zstd
    keyframes   [med | medquant, ..., byte coder]

The head (the first stage) is what a frame coder applies inside its prediction loop, since the
next prediction needs its reconstruction; the tail (everything after it) turns the head's codes
into one chunk per frame and back. Array stages run over the whole (F, C, H, W) stack at once (each
keeps its frames or planes apart); the byte coder runs once per frame, `threads` frames at a time,
and the bytes never depend on the thread count.
"""

import os

import numpy as np

from base.errors import TezipError
from stages import codec_from_config
from stages._codec import map_in_threads

# Frames are byte-coded independently, so the chunks are the same whatever the thread count.
CODEC_THREADS = os.cpu_count() or 1


class Chain:
    """An ordered list of stages ending in a byte coder; only the head may be a quantizer."""

    def __init__(self, stages):
        self.stages = list(stages)
        if not self.stages or not self.stages[-1].emits_bytes:
            raise TezipError("a codec chain must end with a byte coder (ctxrange or zstd)")
        if any(s.emits_bytes for s in self.stages[:-1]):
            raise TezipError("a byte coder can only be the last stage of a codec chain")
        if any(s.lossy for s in self.stages[1:]):
            raise TezipError("a quantizer can only be the first stage of a codec chain")

    @classmethod
    def from_config(cls, configs, where):
        """The chain an archive file (`where`, for messages) recorded; TezipError when corrupt."""
        if not isinstance(configs, list) or not configs:
            raise TezipError(f"{where} is corrupt (codec stages missing)")
        try:
            return cls([codec_from_config(c, where) for c in configs])
        except TezipError as e:
            if str(e).startswith(where):
                raise
            raise TezipError(f"{where} is corrupt ({e})") from None

    def get_config(self):
        return [s.get_config() for s in self.stages]

    @property
    def head(self):
        return self.stages[0]

    @property
    def tail(self):
        """The stages after the head, as a chain (the head alone when it is the byte coder)."""
        return Chain(self.stages[1:]) if len(self.stages) > 1 else self

    def payload_dtypes(self):
        """The dtypes the byte coder may receive: what the stage before it emits."""
        return getattr(self.stages[-2], "output_dtypes", ("int32",)) if len(self.stages) > 1 else ("int32",)

    def encode(self, frames, threads=None):
        """Stack (F, C, H, W) int32 → (one chunk per frame, the byte coder's input dtype name)."""
        x = frames
        for stage in self.stages[:-1]:
            x = stage.encode(x)
        threads = CODEC_THREADS if threads is None else threads
        return map_in_threads(self.stages[-1].encode, list(x), threads), np.dtype(x.dtype).name

    def decode(self, chunks, frame_shape, payload_dtype="int32", threads=None):
        """One chunk per frame → stack (F, C, H, W) int32; payload_dtype: what encode reported (the
        archive records it). TezipError for anything a corrupt archive can cause."""
        payload_dtype = payload_dtype or "int32"
        if payload_dtype not in self.payload_dtypes():
            raise TezipError(f"bad code dtype {str(payload_dtype)[:40]!r}")
        chunks = [bytes(c) for c in chunks]
        coder = self.stages[-1]
        for chunk in chunks:  # a header may declare frames far larger than its chunks can hold
            coder.check_chunk(chunk, frame_shape, payload_dtype)
        x = np.empty((len(chunks),) + tuple(frame_shape), np.dtype(payload_dtype))
        threads = CODEC_THREADS if threads is None else threads
        map_in_threads(lambda f: coder.decode(chunks[f], x[f]), range(len(chunks)), threads)
        for stage in reversed(self.stages[:-1]):
            x = stage.decode(x)
        return x


class Alternatives:
    """Candidate chains for one frame's codes: each frame is coded with the one that makes it
    smallest, and the chunk's first byte says which (and the dtype its byte coder received), so
    every frame decodes on its own. With one candidate this costs that byte and nothing else."""

    def __init__(self, chains):
        self.chains = list(chains)
        if not 1 <= len(self.chains) <= 64:
            raise TezipError("a frame coder needs 1 to 64 candidate codings")

    @classmethod
    def from_config(cls, configs, where):
        if not isinstance(configs, list) or not configs or len(configs) > 64:
            raise TezipError(f"{where} is corrupt (bad list of candidate codings)")
        return cls([Chain.from_config(c, where) for c in configs])

    def get_config(self):
        return [c.get_config() for c in self.chains]

    def encode(self, codes):
        """One frame's (C, H, W) int32 codes → bytes: a tag, then the smallest candidate's chunk."""
        best = None
        for k, chain in enumerate(self.chains):
            (chunk,), dtype = chain.encode(codes[None], threads=1)
            data = bytes([4 * k + chain.payload_dtypes().index(dtype)]) + chunk
            if best is None or len(data) < len(best):
                best = data
        return best

    def decode(self, data, frame_shape):
        """The mirror of encode: bytes → (C, H, W) int32 codes; TezipError when corrupt."""
        if len(data) < 1:
            raise TezipError("corrupt frame chunk: empty")
        k, d = divmod(data[0], 4)
        if k >= len(self.chains) or d >= len(self.chains[k].payload_dtypes()):
            raise TezipError(f"corrupt frame chunk: coding {data[0]} unknown")
        chain = self.chains[k]
        return chain.decode([bytes(data[1:])], frame_shape, chain.payload_dtypes()[d], threads=1)[0]
