"""What every codec stage shares (numcodecs style): an id, a config written into the archive
header, and reconstruction from that config with validation (headers may be corrupt)."""

import numpy as np

from concurrent.futures import ThreadPoolExecutor

from compress.errors import TezipError


def map_in_threads(fn, items, threads=1):
    """[fn(item) for item in items], `threads` at a time (the stages' chunks are independent, so
    the results never depend on the thread count)."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, items))


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
    """Base of the stage classes: subclasses set `codec_id` and list their constructor options
    in `config_keys` (stored as attributes of the same names)."""

    codec_id = ""
    config_keys = ()

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
