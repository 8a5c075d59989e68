"""What every codec stage shares (numcodecs style): an id, a config written into the archive
header, and reconstruction from that config with validation (headers may be corrupt)."""

from compress.errors import TezipError


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
