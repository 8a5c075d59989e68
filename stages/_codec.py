"""The stage contract every codec of this package keeps (numcodecs style).

A stage has a `codec_id` and a config (`get_config()` → a JSON-able dict with "id"; `from_config`
validates it, since archive headers may be corrupt). Its data goes one way through `encode` and
back through `decode`:

    exact stages       encode(x) -> y          decode(y, out=None) -> x        (med, delta1d, zigzag)
    byte coders        encode(frame) -> bytes  decode(buf, out) -> frame       (ctxrange, zstd)
    quantizers         encode(x) -> codes      decode(codes) -> x̂ within the bound
                       quantize(x, tolerances=None) -> (codes, x̂)             (linquant, medquant, runmerge)

Arrays are int32 (C, H, W) frames or (F, C, H, W) stacks of them (exact stages and quantizers take
either; their independent units, planes or frames, never mix). A byte coder codes one frame into
one chunk; its `decode` fills `out`, whose shape and dtype are what the archive header declares, as
numcodecs' `decode(buf, out)` does. The registry (stages/__init__.py) rebuilds any stage from its
recorded config, and `stages.chain.Chain` runs a recorded list of stages forward and backward.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from base.errors import TezipError

# A quantizer tolerance beyond this says nothing a 16-bit image needs, and keeps q * step inside int64.
MAX_TOLERANCE = 2**30


def map_in_threads(fn, items, threads=1):
    """[fn(item) for item in items], `threads` at a time (the stages' chunks are independent, so
    the results never depend on the thread count)."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, items))


def into(out, values):
    """An array stage's decode result: `values` itself, or copied into the caller's `out`."""
    if out is None:
        return values
    out[...] = values
    return out


def check_tolerance(codec_id, tolerance, maximum):
    """An integer abs tolerance 0..maximum (the quantizers' one config value), else TezipError."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or not 0 <= tolerance <= maximum:
        raise TezipError(f"{codec_id} tolerance must be an integer 0-{maximum}, got {tolerance!r}")
    return int(tolerance)


def check_config(config, codec_id, allowed_keys=()):
    """Validate a codec config read from an archive header; return its options (without the id)."""
    if not isinstance(config, dict):
        raise TezipError(f"corrupt codec config: expected an object, got {type(config).__name__}")
    if config.get("id") != codec_id:
        raise TezipError(f"codec config is for {config.get('id')!r}, expected {codec_id!r}")
    options = {k: v for k, v in config.items() if k != "id"}
    unknown = set(options) - set(allowed_keys)
    if unknown:
        raise TezipError(f"unknown option(s) in {codec_id!r} codec config: {', '.join(sorted(unknown))}")
    return options


class Codec:
    """Base of the stage classes: subclasses set `codec_id`, list their constructor options in
    `config_keys` (stored as attributes of the same names) and say what kind of stage they are."""

    codec_id = ""
    config_keys = ()
    lossy = False  # a quantizer: decode(encode(x)) is within its bound of x, not x
    emits_bytes = False  # a byte coder: the last stage of a chain, one chunk per frame

    def check_chunk(self, chunk, shape, dtype):
        """A byte coder's check, before anything is allocated, that `chunk` can hold a frame of
        `shape` and `dtype` (TezipError if not); the chain runs it on every chunk first."""

    def get_config(self):
        return {"id": self.codec_id, **{k: getattr(self, k) for k in self.config_keys}}

    @classmethod
    def from_config(cls, config):
        return cls(**check_config(config, cls.codec_id, cls.config_keys))

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        options = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.config_keys)
        return f"{type(self).__name__}({options})"


class Quantizer(Codec):
    """Base of the error-bounded quantizers: `quantize` returns the codes and the reconstruction
    the decoder will make from them; `encode` keeps the codes only."""

    lossy = True

    def quantize(self, values, tolerances=None):  # pragma: no cover - every quantizer overrides it
        raise NotImplementedError

    def encode(self, values):
        return self.quantize(values)[0]
