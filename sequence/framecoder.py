"""Coding one frame, both ways in one object (SZ3's blockwise decomposition is the model): the
encoder and the decoder walk the same steps in the same order, so the encoder reconstructs exactly
what the decoder will.

A predicted frame (FrameCoder):
    prediction   the model's prediction, or per block the previous decoded frame moved (BlockSelector);
                 without a model, the previous decoded frame moved
    residual     frame − prediction, quantized within each pixel's tolerance by the quantizer
                 (linquant, medquant or runmerge; runmerge at tolerance 0 is lossless)
    decoded      clip(prediction + reconstructed residual, 0, max value)
    chunk        [mode byte] + [varint length + block choices] + the residual's codes through the
                 spatial stages and the smallest of the candidate tails (stages.chain.Alternatives)

    With an intra coder (a KeyframeCoder) a predicted frame may instead be coded on its own pixels,
    as a keyframe is, when that is smaller (a scene cut, content no block of the previous frame
    matches); the model's state and the window go on as for any predicted frame. The mode byte,
    present only then, says which: 0 = predicted (what follows is as above), 1 = intra (what
    follows is the intra coder's chunk). The encoder tries intra only when the predicted chunk is
    larger than INTRA_TRY_FRACTION of the window's keyframe chunk. A frame whose blocks took
    the model's prediction is also coded with the previous frame's candidates only, and the smaller
    chunk kept (encoder only: the decoder reads either as any block choices).

A keyframe (KeyframeCoder): coded on its own. Lossless (with the context coder): the smaller of
the weighted predictor with its context coder (stages/wpred.py) and MED → ctxrange, each on the
pixels; lossless RGB frames first through a reversible colour transform (the `colour` stage,
stages/rct.py). Within an abs bound: medquant, clipped the same way. Archives of earlier versions
(and `-n`): MED (exact) or medquant as the head, chunk = its codes through the smallest candidate
tail.

Frames are planar int32 here: (C, H, W). Format 2 archives stored the codes of all frames in one
stack (decompress/v2.py); `reconstruct` serves them.
"""

import numpy as np

from base.errors import TezipError
from sequence.bounds import pixel_tolerances
from stages import codec_from_config
from stages._codec import check_config
from stages.chain import Alternatives

# A predicted frame's mode byte (with an intra coder): predicted; coded on its own; predicted with
# code 0 of the block choice taken by the rival (linear extrapolation) though the model predicted
# the frame (a frame of the model's trial coded better so; with the block selector's extrapolate).
PREDICTED, INTRA, RIVAL = 0, 1, 2
# Intra is tried when the predicted chunk is larger than this fraction of the last intra/keyframe chunk.
INTRA_TRY_FRACTION = 1.0


def to_host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def to_planar(frames):
    """(..., H, W, C) → (..., C, H, W) int32: runs and tolerances work on one channel plane at a time."""
    return np.ascontiguousarray(np.moveaxis(frames, -1, -3), dtype=np.int32)


def to_interleaved(planar, dtype):
    """(..., C, H, W) → (..., H, W, C) of the frames' dtype (uint8 or uint16)."""
    return np.ascontiguousarray(np.moveaxis(planar, -3, -1)).astype(dtype)


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data, pos=0):
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise TezipError("corrupt frame chunk: bad length field")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _stages(configs, where):
    if not isinstance(configs, list) or not configs:
        raise TezipError(f"{where} is corrupt (codec stages missing)")
    return [codec_from_config(c, where) for c in configs]


class FrameCoder:
    """Codes a predicted frame against its prediction, and decodes it.

    quantizer: a stages quantizer (the residual's head); spatial: exact stages after it (MED after
    lossless runmerge, the row delta after lossy runmerge, none after linquant/medquant); tails:
    stages.chain.Alternatives, the candidate byte codings; selector: a BlockSelector or None;
    mode, bounds: the error bound (per-pixel tolerances); max_value: 255 or 65535; xp: numpy, or
    cupy to quantize on a GPU (identical integers either way)."""

    def __init__(self, quantizer, spatial, tails, selector, mode, bounds, max_value, xp=np, intra=None):
        self.quantizer, self.spatial, self.tails, self.selector = quantizer, list(spatial), tails, selector
        self.mode, self.bounds, self.max_value, self.xp = mode, list(bounds), int(max_value), xp
        self.intra = intra  # a KeyframeCoder: a predicted frame may be coded on its own (module docstring)
        self.intra_reference = None  # encoder only: bytes of the window's keyframe chunk
        self.last_choices, self.last_intra, self.last_rival = None, False, False  # for the run's statistics
        self.last_saving = 0  # bytes the model's candidates saved in the last frame (encoder)

    def get_config(self):
        config = {"id": "frame", "residual": [s.get_config() for s in [self.quantizer] + self.spatial],
                  "tails": self.tails.get_config(),
                  "block_select": self.selector.get_config() if self.selector is not None else None}
        if self.intra is not None:
            config["intra"] = self.intra.get_config()
        return config

    @classmethod
    def from_config(cls, config, mode, bounds, max_value, where, xp=np):
        from sequence.blockselect import BlockSelector

        try:
            options = check_config(config, "frame", ("residual", "tails", "block_select", "intra"))
        except TezipError as e:
            raise TezipError(f"{where} is corrupt ({e})") from None
        residual = _stages(options.get("residual"), where)
        if not residual[0].lossy or any(s.lossy or s.emits_bytes for s in residual[1:]):
            raise TezipError(f"{where} has a stage order this TEZip cannot decode: {[s.codec_id for s in residual]}")
        selector = options.get("block_select")
        if selector is not None:
            try:
                selector = BlockSelector.from_config(selector)
            except TezipError as e:
                raise TezipError(f"{where}: {e}") from None
        intra = options.get("intra")
        if intra is not None:
            intra = KeyframeCoder.from_config(intra, max_value, where)
            if intra.tolerance > (min(bounds) if mode == "abs" and bounds else 0):
                raise TezipError(f"{where} is corrupt (its intra coder's tolerance exceeds the bound)")
        return cls(residual[0], residual[1:], Alternatives.from_config(options.get("tails"), where), selector,
                   mode, bounds, max_value, xp, intra)

    def prediction(self, model_prediction, previous, choices):
        """The prediction the frame is coded against: (C, H, W) int32."""
        if self.selector is None:
            return model_prediction
        return self.selector.combine(model_prediction, previous, choices)

    def quantize(self, frame, p):
        """(codes, decoded frame) of `frame` against prediction `p`, within the bound."""
        xp = self.xp
        x, p_dev = xp.asarray(frame), xp.asarray(p)
        tolerances = pixel_tolerances(x, self.mode, self.bounds, self.max_value)
        codes, residual = self.quantizer.quantize(x - p_dev, tolerances)
        decoded = xp.clip(p_dev + residual, 0, self.max_value)
        if bool(xp.any(xp.abs(decoded - x) > tolerances)):  # the quantizer's guarantee, checked rather than trusted
            raise RuntimeError("internal error: quantized residuals exceed the error bound")
        return to_host(codes), to_host(decoded)

    def choose(self, frame, model_prediction, previous):
        """(block choices or None, prediction) for `frame`."""
        choices = (self.selector.choose(frame, model_prediction, previous, use_model=model_prediction is not None)
                   if self.selector is not None else None)
        return choices, self.prediction(model_prediction, previous, choices)

    def note_intra(self, size):
        """Encoder: the window's keyframe chunk has `size` bytes (what coding a frame on its own
        costs in this window; intra is tried for predicted frames larger than that)."""
        self.intra_reference = int(size)

    def encode_frame(self, frame, model_prediction, previous, choice=None):
        """frame, model_prediction (or None without a model), previous decoded frame: (C, H, W) int32
        → (chunk bytes, decoded frame, prediction). choice: (block choices, prediction) already made."""
        return self.finish_frame(frame, self.code_predicted(frame, model_prediction, previous, choice))

    def code_predicted(self, frame, model_prediction, previous, choice=None, rival=None, intra_reference=None):
        """Code a predicted frame, changing nothing in this coder (it only reads the window's
        intra_reference: the argument, else the one note_intra set), so that frames may be coded so in parallel threads
        (losslessly each frame's decoded frame is the frame itself, known before it is coded):
        → (block choices or None when intra, prediction, chunk, decoded frame, bytes the model's
        candidates saved, (predicted chunk bytes, intra chunk bytes or None)). finish_frame takes
        it in frame order. rival: what takes code 0 where the model is stopped (linear
        extrapolation, (C, H, W)) or None: the frame is also coded with it in place of the model's
        prediction, kept when smallest (mode byte RIVAL; with an intra coder, else measured only),
        and the bytes the model saved are counted against the smaller of that and no code 0 (the
        model's trial judges the model against what replaces it)."""
        choices, p = choice if choice is not None else self.choose(frame, model_prediction, previous)
        body, decoded = self._predicted_chunk(frame, choices, p)
        mode, saving = PREDICTED, 0
        if model_prediction is not None and self.selector is not None:
            kept = [(len(body), PREDICTED, choices, p, body, decoded)]  # the smallest kept; ties: the first
            without = len(body)  # what the frame costs without the model: as it is, when no block took it
            if self.selector.uses_model(choices):
                from sequence.blockselect import split_choices

                # the same frame without the model's candidates, kept when smaller (on exact repeats a lower sum
                # of absolute residuals can cost more bits): losslessly the chunk is never larger than without
                # a model; encoder only, the decoder reads the codes as any others
                alt_choices = self.selector.choose(frame, model_prediction, previous, use_model=False,
                                                   vector=split_choices(choices)[1])
                alt_p = self.prediction(model_prediction, previous, alt_choices)
                alt_body, alt_decoded = self._predicted_chunk(frame, alt_choices, alt_p)
                kept.append((len(alt_body), PREDICTED, alt_choices, alt_p, alt_body, alt_decoded))
                without = len(alt_body)
            if rival is not None:
                rival_choices, rival_p = self.choose(frame, rival, previous)
                rival_body, rival_decoded = self._predicted_chunk(frame, rival_choices, rival_p)
                without = min(without, len(rival_body))
                if self.intra is not None:  # the mode byte tells the decoder
                    kept.append((len(rival_body), RIVAL, rival_choices, rival_p, rival_body, rival_decoded))
            saving = max(0, without - len(body))
            mode, choices, p, body, decoded = min(kept, key=lambda k: k[0])[1:]
        if self.intra is None:
            return choices, p, body, decoded, saving, (len(body), None)
        body = bytes([mode]) + body
        reference = self.intra_reference if intra_reference is None else intra_reference
        if reference is None or len(body) > INTRA_TRY_FRACTION * reference:
            intra, intra_decoded = self.intra.encode_frame(np.asarray(frame))
            sizes = (len(body), len(intra) + 1)
            if len(intra) + 1 < len(body):
                return None, p, bytes([INTRA]) + intra, intra_decoded, saving, sizes
            return choices, p, body, decoded, saving, sizes
        return choices, p, body, decoded, saving, (len(body), None)

    def finish_frame(self, frame, coded):
        """code_predicted's result → (chunk bytes, decoded frame, prediction), noting what the run's
        statistics show (last_choices, last_intra, last_sizes, last_saving)."""
        choices, p, chunk, decoded, self.last_saving, self.last_sizes = coded
        self.last_choices, self.last_intra = choices, self.intra is not None and chunk[0] == INTRA
        self.last_rival = self.intra is not None and chunk[0] == RIVAL
        return chunk, decoded, p

    def _predicted_chunk(self, frame, choices, p):
        """(chunk without the mode byte, decoded frame) of `frame` coded against prediction `p`."""
        codes, decoded = self.quantize(frame, p)
        for stage in self.spatial:
            codes = stage.encode(codes)
        body = self.tails.encode(np.ascontiguousarray(codes, dtype=np.int32))
        if self.selector is not None:
            head = self.selector.encode_frame_choices(choices)
            body = _varint(len(head)) + head + body
        return body, decoded

    def decode_frame(self, chunk, model_prediction, previous):
        """The mirror of encode_frame: chunk → the decoded frame (C, H, W) int32."""
        return self.rebuild(self.parse_frame(chunk, previous.shape), model_prediction, previous)

    def parse_frame(self, chunk, frame_shape):
        """The part of decode_frame that needs no earlier frame, so that frames may be parsed ahead
        in parallel threads: chunk → (intra frame or None, block choices, the quantizer's codes,
        whether code 0 is the rival: linear extrapolation in place of the model's prediction);
        TezipError when corrupt. frame_shape: (C, H, W)."""
        chunk = bytes(chunk)
        choices, pos, rival = None, 0, False
        c, h, w = frame_shape
        if self.intra is not None:
            modes = (PREDICTED, INTRA, RIVAL) if self.selector is not None and self.selector.extrapolate else (
                PREDICTED, INTRA)
            if not chunk or chunk[0] not in modes:
                raise TezipError("corrupt frame chunk: unknown coding mode")
            if chunk[0] == INTRA:
                return self.intra.decode_frame(chunk[1:], (c, h, w)), None, None, False
            rival, pos = chunk[0] == RIVAL, 1
        if self.selector is not None:
            size, pos = _read_varint(chunk, pos)
            if pos + size > len(chunk):
                raise TezipError("corrupt frame chunk: block choices cut off")
            choices = self.selector.decode_frame_choices(chunk[pos : pos + size], h, w)
            pos += size
        codes = self.tails.decode(chunk[pos:], (c, h, w))
        for stage in reversed(self.spatial):
            codes = stage.decode(codes)
        return None, choices, codes, rival

    def rebuild(self, parsed, model_prediction, previous, rival=None):
        """parse_frame's result → the decoded frame (C, H, W) int32, against the model's prediction
        (or `rival`, linear extrapolation, where the chunk says code 0 is that) and the previous
        decoded frame."""
        intra, choices, codes, uses_rival = parsed
        if intra is not None:
            return intra
        if uses_rival:
            if rival is None or model_prediction is None:
                raise TezipError("corrupt frame chunk: code 0 is linear extrapolation where there is none")
            model_prediction = rival
        return self.reconstruct(codes, choices, model_prediction, previous)

    def reconstruct(self, codes, choices, model_prediction, previous):
        """The decoded frame from the quantizer's codes (what format 2 stored whole)."""
        p = self.prediction(model_prediction, previous, choices)
        residual = to_host(self.quantizer.decode(self.xp.asarray(codes)))
        return np.clip(p + residual, 0, self.max_value)


class KeyframeCoder:
    """Codes a keyframe on its own, and decodes it. head: MedCoder (exact) or MedQuantizer (within
    its tolerance), or None: the pixels go to the tails as they are, candidate chains that each
    start with their own exact predictor (lossless keyframes: stages/wpred.py's weighted predictor
    and context coder, or MED → ctxrange, whichever is smaller); tails: the candidate byte codings
    (stages.chain.Alternatives; None for format 2, whose codes are coded whole); colour: an exact
    colour transform (stages/rct.py) of the pixels before an exact head, or None."""

    HEADS = ("med", "medquant")  # keyframes are predicted from their own pixels
    COLOURS = ("rct",)

    def __init__(self, head, max_value, tails=None, colour=None):
        self.head, self.max_value, self.tails, self.colour = head, int(max_value), tails, colour

    def get_config(self):
        config = {"id": "keyframe"}
        if self.head is not None:
            config["head"] = self.head.get_config()
        config["tails"] = self.tails.get_config()
        if self.colour is not None:
            config["colour"] = self.colour.get_config()
        return config

    @classmethod
    def from_config(cls, config, max_value, where):
        try:
            options = check_config(config, "keyframe", ("head", "tails", "colour"))
        except TezipError as e:
            raise TezipError(f"{where} is corrupt ({e})") from None
        tails = Alternatives.from_config(options.get("tails"), where)
        head = options.get("head")
        if head is not None:
            head = codec_from_config(head, where)
            if head.codec_id not in cls.HEADS:
                raise TezipError(f"{where} has a stage list this TEZip cannot decode")
        elif any(stage.lossy for chain in tails.chains for stage in chain.stages):
            # no head: the candidates code the pixels themselves, exactly
            raise TezipError(f"{where} has a stage list this TEZip cannot decode")
        colour = options.get("colour")
        if colour is not None:
            colour = codec_from_config(colour, where)
            if colour.codec_id not in cls.COLOURS or (head is not None and head.lossy):
                raise TezipError(f"{where} has a stage list this TEZip cannot decode")
        return cls(head, max_value, tails, colour)

    @property
    def tolerance(self):
        return getattr(self.head, "tolerance", 0) if self.head is not None and self.head.lossy else 0

    def code(self, frame):
        """(C, H, W) int32 → (codes, decoded frame)."""
        if self.head is None:
            codes, decoded = self.colour.encode(frame) if self.colour is not None else frame, frame
        elif self.head.lossy:
            codes, reconstructed = self.head.quantize(frame)
            decoded = np.clip(reconstructed, 0, self.max_value)
        else:
            codes, decoded = self.head.encode(self.colour.encode(frame) if self.colour is not None else frame), frame
        if np.abs(decoded - frame).max() > self.tolerance:  # checked rather than trusted
            raise RuntimeError("internal error: a coded keyframe exceeds the error bound")
        return codes, decoded

    def encode_frame(self, frame):
        """(C, H, W) int32 → (chunk bytes, decoded frame)."""
        codes, decoded = self.code(frame)
        return self.tails.encode(np.ascontiguousarray(codes, dtype=np.int32)), decoded

    def decode_frame(self, chunk, frame_shape):
        """The mirror of encode_frame."""
        return self.reconstruct(self.tails.decode(bytes(chunk), frame_shape))

    def reconstruct(self, codes):
        """The keyframe from the head's codes (what format 2 stored whole)."""
        planes = self.head.decode(codes) if self.head is not None else codes
        if self.colour is not None:
            planes = self.colour.decode(planes)
        if self.head is not None and self.head.lossy:  # quantized within the bound: the encoder clipped the same way
            return np.clip(planes, 0, self.max_value)
        if planes.size and (planes.min() < 0 or planes.max() > self.max_value):
            raise TezipError(f"a keyframe decodes to values outside 0-{self.max_value}")
        return planes
