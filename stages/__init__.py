"""Codec stages, one module per codec id, and the registry that rebuilds any stage from the
config an archive recorded (stages/_codec.py states the contract every stage keeps).

    linquant   uniform bins within an abs tolerance                  (quantizer)
    medquant   in-loop MED prediction + uniform bins (SZ-style)       (quantizer)
    runmerge   runs along rows sharing one value within tolerances    (quantizer)
    med        MED (LOCO-I) prediction errors                         (exact)
    delta1d    first differences along each frame                     (exact)
    rct        reversible colour transform of RGB planes              (exact)
    zigzag     signed → unsigned codes                                (exact)
    ctxrange   context-modelled adaptive binary range coder           (byte coder)
    zstd       byte-plane shuffle + zstd                              (byte coder)
    wpred      weighted prediction + context range coding of pixels  (byte coder: an intra coder)
"""

from base.errors import TezipError
from stages._kernels import array_module  # noqa: F401  (numpy, or cupy in GPU mode)


def _registry():
    from stages.ctxrange import ContextRangeCoder
    from stages.delta1d import DeltaCoder
    from stages.linquant import LinearQuantizer
    from stages.med import MedCoder
    from stages.medquant import MedQuantizer
    from stages.rct import ColourTransform
    from stages.runmerge import RunMerge
    from stages.zigzag import ZigZagCoder
    from stages.wpred import WeightedPredictionCoder
    from stages.zstd import ZstdCodec

    stages = (LinearQuantizer, MedQuantizer, RunMerge, MedCoder, DeltaCoder, ColourTransform, ZigZagCoder, ContextRangeCoder,
              ZstdCodec, WeightedPredictionCoder)
    return {s.codec_id: s for s in stages}


def codec_ids():
    return tuple(_registry())


def codec_from_config(config, where="archive"):
    """The stage a recorded config describes; TezipError naming `where` when it is not one."""
    known = _registry()
    if not isinstance(config, dict):
        raise TezipError(f"{where} is corrupt (a codec stage is {str(config)[:40]!r}, not a configuration)")
    what = config.get("id")
    if not isinstance(what, str) or what not in known:
        raise TezipError(f"{where} uses a codec stage {str(what)[:40]!r} this TEZip does not know")
    try:
        return known[what].from_config(config)
    except TezipError as e:
        raise TezipError(f"{where} has an invalid configuration for stage {what!r} ({e})") from None
    except (TypeError, ValueError, KeyError) as e:
        raise TezipError(f"{where} has an invalid configuration for stage {what!r} ({e})") from None
