"""Chains of stages as an archive records them (stages/chain.py): rebuilt from the recorded configs,
run backwards exactly; malformed chains and payload dtypes refused; the bytes independent of the
thread count."""

import json

import numpy as np
import pytest

import stages.chain
from base.errors import TezipError
from stages.chain import Chain
from stages.ctxrange import ContextRangeCoder
from stages.delta1d import DeltaCoder
from stages.linquant import LinearQuantizer
from stages.med import MedCoder
from stages.medquant import MedQuantizer
from stages.runmerge import RunMerge
from stages.zigzag import ZigZagCoder
from stages.zstd import ZstdCodec

CTXRANGE = {"id": "ctxrange", "fast_rate": 4, "slow_rate": 8}
ZSTD = {"id": "zstd", "level": 19, "shuffle": True}

# The stage lists TEZip records (entropy.dat: residuals; key_frame.dat: keyframes), as JSON.
RESIDUAL_CHAINS = {
    "linquant-ctxrange": [{"id": "linquant", "tolerance": 2}, CTXRANGE],
    "medquant-ctxrange": [{"id": "medquant", "tolerance": 3}, CTXRANGE],
    "runmerge-med-ctxrange": [{"id": "runmerge", "representative": "nearest_previous"}, {"id": "med"}, CTXRANGE],
    "runmerge-delta1d-zigzag-zstd": [{"id": "runmerge", "representative": "nearest_previous"}, {"id": "delta1d"},
                                     {"id": "zigzag"}, ZSTD],
    "runmerge-med-zigzag-zstd": [{"id": "runmerge", "representative": "nearest_previous"}, {"id": "med"},
                                 {"id": "zigzag"}, dict(ZSTD, level=3)],
    "linquant-zigzag-zstd": [{"id": "linquant", "tolerance": 1}, {"id": "zigzag"}, dict(ZSTD, level=3)],
}
KEYFRAME_CHAINS = {
    "med-ctxrange": [{"id": "med"}, CTXRANGE],
    "medquant-ctxrange": [{"id": "medquant", "tolerance": 2}, CTXRANGE],
    "med-zigzag-zstd": [{"id": "med"}, {"id": "zigzag"}, dict(ZSTD, level=3)],
}
ALL_CHAINS = {**RESIDUAL_CHAINS, **KEYFRAME_CHAINS}


def residuals(shape=(4, 3, 12, 17), seed=0, scale=6.0):
    """Residual-like stacks (F, C, H, W): Laplacian noise, larger in a band (a moving edge)."""
    rng = np.random.default_rng(seed)
    x = rng.laplace(0, scale, shape)
    x[..., 3:6, :] *= 8
    return np.round(x).astype(np.int32)


def pixels(shape=(3, 3, 12, 17), seed=1, max_value=255):
    """Keyframe-like stacks: a smooth gradient with a little noise, in 0..max_value."""
    f, c, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (max_value * (0.3 + 0.4 * (yy / h + xx / w) / 2))[None, None]
    return np.clip(np.round(base + rng.normal(0, 2, shape)), 0, max_value).astype(np.int32)


def chain_input(name):
    return pixels() if name in KEYFRAME_CHAINS else residuals()


def expected_decode(chain, x):
    """What decoding must give back: x itself after an exact head, the quantizer's reconstruction
    after a quantizer head (encode quantizes at the head's own tolerance)."""
    return chain.head.quantize(x)[1] if chain.head.lossy else x


@pytest.mark.parametrize("name", list(ALL_CHAINS))
def test_recorded_chain_runs_backwards_exactly(name):
    configs = ALL_CHAINS[name]
    recorded = json.loads(json.dumps(configs))
    chain = Chain.from_config(recorded, "entropy.dat")
    assert chain.get_config() == configs
    assert [s.codec_id for s in chain.stages] == [c["id"] for c in configs]
    x = chain_input(name)
    chunks, payload = chain.encode(x)
    assert len(chunks) == len(x) and all(isinstance(c, bytes) for c in chunks)
    assert payload in chain.payload_dtypes()
    # the decoder rebuilds the chain from the configs alone
    decoder = Chain.from_config(json.loads(json.dumps(chain.get_config())), "entropy.dat")
    back = decoder.decode(chunks, x.shape[1:], payload)
    assert back.dtype == np.int32 and back.shape == x.shape
    np.testing.assert_array_equal(back, expected_decode(chain, x))
    if chain.head.lossy:
        assert (np.abs(back.astype(np.int64) - x) <= getattr(chain.head, "tolerance", 0)).all()


@pytest.mark.parametrize("name", list(ALL_CHAINS))
def test_tail_codes_the_heads_codes_exactly(name):
    """What the pipeline does: the head runs inside the prediction loop, the tail codes its codes."""
    chain = Chain.from_config(ALL_CHAINS[name], "key_frame.dat")
    x = chain_input(name)
    codes = chain.head.quantize(x)[0] if chain.head.lossy else chain.head.encode(x)
    chunks, payload = chain.tail.encode(codes)
    back = chain.tail.decode(chunks, x.shape[1:], payload)
    np.testing.assert_array_equal(back, codes)
    np.testing.assert_array_equal(chain.head.decode(back), expected_decode(chain, x))
    assert chain.encode(x) == (chunks, payload)  # the same bytes, with or without the head


def test_a_byte_coder_alone_is_a_chain():
    chain = Chain([ContextRangeCoder()])
    assert chain.tail is chain and chain.head is chain.stages[0]
    x = residuals()
    chunks, payload = chain.encode(x)
    assert payload == "int32"
    np.testing.assert_array_equal(chain.decode(chunks, x.shape[1:]), x)


def test_payload_dtype_follows_the_values():
    chain = Chain([RunMerge(), DeltaCoder(), ZigZagCoder(), ZstdCodec(level=3)])
    small, wide = residuals(scale=2.0), residuals(scale=2.0)
    wide[1, 0, 0, 0] = 10**6
    assert chain.encode(small)[1] == "uint16"
    chunks, payload = chain.encode(wide)
    assert payload == "uint32"
    np.testing.assert_array_equal(chain.decode(chunks, wide.shape[1:], payload), wide)
    with pytest.raises(TezipError):  # 32-bit chunks declared 16-bit: the sizes disagree
        chain.decode(chunks, wide.shape[1:], "uint16")


def test_no_frames():
    """A sequence whose frames are all keyframes has no residual frames to code."""
    chain = Chain([LinearQuantizer(2), ContextRangeCoder()])
    chunks, payload = chain.encode(np.zeros((0, 3, 4, 5), np.int32))
    assert chunks == []
    assert chain.decode([], (3, 4, 5), payload).shape == (0, 3, 4, 5)


def test_no_frames_through_delta1d():
    chain = Chain([RunMerge(), DeltaCoder(), ZigZagCoder(), ZstdCodec(level=3)])
    chunks, payload = chain.tail.encode(np.zeros((0, 3, 4, 5), np.int32))
    assert chunks == []
    assert chain.tail.decode([], (3, 4, 5), payload).shape == (0, 3, 4, 5)


# ------------------------------------------------------------------------------- malformed chains


@pytest.mark.parametrize("stages_, match", [
    ([], "must end with a byte coder"),
    ([MedCoder()], "must end with a byte coder"),
    ([RunMerge(), DeltaCoder(), ZigZagCoder()], "must end with a byte coder"),
    ([ZstdCodec(), ContextRangeCoder()], "a byte coder can only be the last stage"),
    ([MedCoder(), ContextRangeCoder(), ContextRangeCoder()], "a byte coder can only be the last stage"),
    ([MedCoder(), LinearQuantizer(2), ContextRangeCoder()], "a quantizer can only be the first stage"),
    ([RunMerge(), MedQuantizer(1), ContextRangeCoder()], "a quantizer can only be the first stage"),
], ids=["empty", "no-byte-coder", "ends-in-zigzag", "two-byte-coders", "byte-coder-inside", "quantizer-second",
        "two-quantizers"])
def test_malformed_chain_is_refused(stages_, match):
    with pytest.raises(TezipError, match=match):
        Chain(stages_)
    if stages_:
        with pytest.raises(TezipError, match=f"entropy.dat is corrupt \\(.*{match}"):
            Chain.from_config([s.get_config() for s in stages_], "entropy.dat")


@pytest.mark.parametrize("configs, match", [
    (None, "key_frame.dat is corrupt \\(codec stages missing\\)"),
    ([], "key_frame.dat is corrupt \\(codec stages missing\\)"),
    ({"id": "med"}, "key_frame.dat is corrupt \\(codec stages missing\\)"),
    ([{"id": "med"}, {"id": "rank"}], "key_frame.dat uses a codec stage 'rank' this TEZip does not know"),
    ([{"id": "med"}, "ctxrange"], "key_frame.dat is corrupt"),
    ([{"id": "medquant", "tolerance": -1}, CTXRANGE], "key_frame.dat has an invalid configuration for stage 'medquant'"),
    ([{"id": "med"}, dict(CTXRANGE, order=2)], "key_frame.dat has an invalid configuration for stage 'ctxrange'"),
])
def test_corrupt_recorded_chain_is_refused(configs, match):
    with pytest.raises(TezipError, match=match) as info:
        Chain.from_config(configs, "key_frame.dat")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, payload", [
    ("linquant-ctxrange", "uint16"),
    ("linquant-ctxrange", "float64"),
    ("runmerge-delta1d-zigzag-zstd", "int32"),
    ("runmerge-delta1d-zigzag-zstd", "int64"),
    ("runmerge-delta1d-zigzag-zstd", "uint8"),
    ("med-ctxrange", "no such dtype"),
    ("med-ctxrange", "x" * 1000),
])
def test_bad_payload_dtype_is_refused(name, payload):
    chain = Chain.from_config(ALL_CHAINS[name], "entropy.dat")
    x = chain_input(name)
    chunks, _ = chain.encode(x)
    with pytest.raises(TezipError, match="bad code dtype") as info:
        chain.decode(chunks, x.shape[1:], payload)
    assert len(str(info.value)) < 100


def test_missing_payload_dtype_means_int32():
    chain = Chain.from_config(ALL_CHAINS["runmerge-med-ctxrange"], "entropy.dat")
    x = residuals()
    chunks, payload = chain.encode(x)
    assert payload == "int32"
    np.testing.assert_array_equal(chain.decode(chunks, x.shape[1:], None), x)


@pytest.mark.parametrize("name", ["linquant-ctxrange", "runmerge-delta1d-zigzag-zstd"])
def test_corrupt_chunk_is_refused_or_caught_later_but_never_crashes(name):
    chain = Chain.from_config(ALL_CHAINS[name], "entropy.dat")
    x = chain_input(name)
    chunks, payload = chain.encode(x)
    with pytest.raises(TezipError):
        chain.decode(chunks[:1] + [chunks[1][: len(chunks[1]) // 2]] + chunks[2:], x.shape[1:], payload)
    for bad in (b"", bytes(range(60)), chunks[0] + b"\x00"):
        try:
            back = chain.decode([bad] + chunks[1:], x.shape[1:], payload)
        except TezipError:
            continue
        assert back.shape == x.shape  # a wrong frame: the archive's frame checksum catches it


# ------------------------------------------------------------------------------- threads


@pytest.mark.parametrize("name", list(ALL_CHAINS))
def test_bytes_do_not_depend_on_the_thread_count(name):
    chain = Chain.from_config(ALL_CHAINS[name], "entropy.dat")
    x = np.concatenate([chain_input(name), chain_input(name)[::-1]])  # a few more frames than threads
    single = chain.encode(x, threads=1)
    assert chain.encode(x, threads=3) == single == chain.encode(x, threads=len(x) + 4)
    y = x
    for stage in chain.stages[:-1]:
        y = stage.encode(y)
    assert single[0] == [chain.stages[-1].encode(f) for f in y]  # one chunk per frame, each on its own
    for threads in (1, 2, 5):
        np.testing.assert_array_equal(chain.decode(single[0], x.shape[1:], single[1], threads=threads),
                                      expected_decode(chain, x))


def test_default_thread_count_is_codec_threads(monkeypatch):
    """stages.chain.CODEC_THREADS is the one setting of the codec's threads."""
    chain = Chain.from_config(RESIDUAL_CHAINS["linquant-ctxrange"], "entropy.dat")
    x = residuals((6, 3, 10, 10))
    calls = []
    real = stages.chain.map_in_threads

    def spy(fn, items, threads=1):
        calls.append(threads)
        return real(fn, items, threads)

    monkeypatch.setattr(stages.chain, "map_in_threads", spy)
    for threads in (1, 3):
        monkeypatch.setattr(stages.chain, "CODEC_THREADS", threads)
        chunks, payload = chain.encode(x)
        chain.decode(chunks, x.shape[1:], payload)
        assert calls[-2:] == [threads, threads]
    chain.encode(x, threads=2)
    assert calls[-1] == 2


def test_wpred_alone_is_a_keyframe_chain():
    """Lossless keyframes' first candidate (sequence/plan.py): the pixels straight to wpred, which
    predicts and codes them itself; recorded and rebuilt like any chain."""
    configs = [{"id": "wpred"}]
    chain = Chain.from_config(json.loads(json.dumps(configs)), "key_frame.dat")
    assert chain.get_config() == configs and chain.tail is chain
    x = pixels()
    chunks, payload = chain.encode(x)
    assert payload == "int32" and len(chunks) == len(x)
    np.testing.assert_array_equal(Chain.from_config(configs, "key_frame.dat").decode(chunks, x.shape[1:]), x)
