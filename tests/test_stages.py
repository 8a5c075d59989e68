"""The stage contract (stages/_codec.py), checked for every stage of the registry.

Every test here is parametrized over `stages._registry()`, so a new stage gets them all by being
registered; what a stage is follows from its class (`lossy`: a quantizer; `emits_bytes`: a byte
coder; neither: an exact stage):

    every stage     its config survives JSON and `from_config`/`codec_from_config`; a corrupted
                    config (wrong id, unknown key, bad value) raises TezipError
    exact stages    decode(encode(x)) == x on int32 stacks (F, C, H, W) and frames (C, H, W), edge
                    values included; frames of a stack never mix
    quantizers      quantize(x) → (codes, x̂) with |x̂ − x| within the tolerance, decode(codes) == x̂
    byte coders     decode(encode(frame), out) == frame; garbage or truncated bytes raise TezipError
                    (never another exception)
    CuPy            the same integers as numba/numpy (skipped without a CUDA device)

Stage-specific behaviour (MED's borders, runmerge's runs, ctxrange against zstd, linquant against
medquant, ...) stays in each stage's own test file.
"""

import json

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stages
from base.errors import TezipError

REGISTRY = stages._registry()
INT32 = np.iinfo(np.int32)
# Within this every exact stage codes every value (MED's documented safe range).
SAFE = 2**30

# Instances beyond each stage's defaults (which are always tested): the configs a real archive holds.
VARIANTS = {
    "linquant": [{"tolerance": 1}, {"tolerance": 4}, {"tolerance": 255}],
    "medquant": [{"tolerance": 1}, {"tolerance": 4}, {"tolerance": 255}],
    "runmerge": [{"representative": "midpoint"}],
    "rct": [{"transform": "gsub"}],
    "ctxrange": [{"fast_rate": 3, "slow_rate": 9}],
    "zstd": [{"level": 3, "shuffle": False}, {"level": 9, "shuffle": True}],
}


def kind(cls):
    return "quantizer" if cls.lossy else "byte coder" if cls.emits_bytes else "exact"


def instances(cls):
    return [cls()] + [cls(**options) for options in VARIANTS.get(cls.codec_id, [])]


def ids_of(which):
    return [cid for cid, cls in REGISTRY.items() if kind(cls) == which]


def all_instances(which=None):
    return [pytest.param(stage, id=f"{cid}-{i}") for cid, cls in REGISTRY.items() if which in (None, kind(cls))
            for i, stage in enumerate(instances(cls))]


def random_stack(shape, seed, low=-300, high=300):
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, shape, dtype=np.int64).astype(np.int32)


def edge_frames(shape):
    """Frames of (C, H, W) made of the extremes of the safe range, zeros and ±1, in several patterns."""
    c, h, w = shape
    values = np.array([-SAFE, -SAFE + 1, -1, 0, 1, SAFE - 2, SAFE - 1], np.int64)
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    out = [np.full(shape, v, np.int32) for v in (-SAFE, SAFE - 1, 0)]
    out.append(rng.choice(values, shape).astype(np.int32))
    checker = np.where((np.indices(shape).sum(axis=0) % 2) == 0, -SAFE, SAFE - 1).astype(np.int32)
    out.append(checker)
    return out


# ------------------------------------------------------------------------------- the registry


def test_registry_lists_every_stage_once_with_its_kind():
    assert stages.codec_ids() == tuple(REGISTRY)
    assert set(REGISTRY) >= {"linquant", "medquant", "runmerge", "med", "delta1d", "rct", "zigzag", "ctxrange", "zstd"}
    for cid, cls in REGISTRY.items():
        assert cls.codec_id == cid
        assert not (cls.lossy and cls.emits_bytes), cid  # a stage is one kind
    assert ids_of("byte coder") and ids_of("quantizer") and ids_of("exact")


# ------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("stage", all_instances())
def test_config_round_trips_through_json(stage):
    cls = type(stage)
    config = stage.get_config()
    assert config["id"] == cls.codec_id
    assert set(config) == {"id", *cls.config_keys}
    recorded = json.loads(json.dumps(config))  # what an archive header holds
    assert recorded == config
    rebuilt = cls.from_config(recorded)
    assert rebuilt == stage and rebuilt.get_config() == config and hash(rebuilt) == hash(stage)
    assert type(stages.codec_from_config(recorded)) is cls
    assert stages.codec_from_config(recorded) == stage
    assert cls.codec_id in repr(stage) or cls.__name__ in repr(stage)


@pytest.mark.parametrize("cid", list(REGISTRY))
def test_config_with_another_id_is_refused(cid):
    cls = REGISTRY[cid]
    config = cls().get_config()
    for other in [o for o in REGISTRY if o != cid] + ["nonesuch", None, 3]:
        with pytest.raises(TezipError):
            cls.from_config(dict(config, id=other))
    with pytest.raises(TezipError):
        cls.from_config({k: v for k, v in config.items() if k != "id"})


@pytest.mark.parametrize("cid", list(REGISTRY))
def test_config_with_an_unknown_key_is_refused(cid):
    cls = REGISTRY[cid]
    config = cls().get_config()
    for key in ("threads", "order", "x"):
        with pytest.raises(TezipError, match="unknown option"):
            cls.from_config(dict(config, **{key: 1}))
        with pytest.raises(TezipError, match=f"invalid configuration for stage '{cid}'"):
            stages.codec_from_config(dict(config, **{key: 1}), "entropy.dat")


@pytest.mark.parametrize("cid", list(REGISTRY))
def test_config_that_is_not_an_object_is_refused(cid):
    for bad in (None, [], "zstd", [cid], 3):
        with pytest.raises(TezipError):
            REGISTRY[cid].from_config(bad)


BAD_VALUES = [None, "bogus", 1.5, -(2**40), 2**40, [1], {}]


@pytest.mark.parametrize("cid, key", [(cid, key) for cid, cls in REGISTRY.items() for key in cls.config_keys])
def test_config_with_a_bad_value_is_refused(cid, key):
    cls = REGISTRY[cid]
    config = cls().get_config()
    for value in BAD_VALUES:
        with pytest.raises(TezipError):
            cls.from_config(dict(config, **{key: value}))
        with pytest.raises(TezipError, match=f"key_frame.dat has an invalid configuration for stage '{cid}'"):
            stages.codec_from_config(dict(config, **{key: value}), "key_frame.dat")


@pytest.mark.parametrize("config, match", [
    (None, "entropy.dat is corrupt"),
    ([], "entropy.dat is corrupt"),
    ("zstd", "entropy.dat is corrupt"),
    ({}, "entropy.dat uses a codec stage 'None' this TEZip does not know"),
    ({"id": "rank"}, "entropy.dat uses a codec stage 'rank' this TEZip does not know"),
    ({"id": ["zstd"]}, "does not know"),
    ({"id": "x" * 5000}, "does not know"),
])
def test_registry_refuses_what_is_not_a_stage(config, match):
    with pytest.raises(TezipError, match=match) as info:
        stages.codec_from_config(config, "entropy.dat")
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


# ------------------------------------------------------------------------------- exact stages

SHAPES = [(2, 3, 5, 7), (1, 1, 1, 1), (4, 1, 9, 1), (3, 2, 1, 11), (0, 3, 4, 5), (2, 3, 0, 5), (2, 3, 5, 0),
          (0, 4, 4), (2, 0, 4)]


def stage_shape_params(which):
    """(stage, shape) pairs of every stage of a kind."""
    params = []
    for stage in all_instances(which):
        for shape in SHAPES:
            params.append(pytest.param(stage.values[0], shape, id=f"{stage.id}-{'x'.join(map(str, shape))}"))
    return params


def check_exact(stage, x):
    y = stage.encode(x)
    assert y.shape == x.shape
    back = stage.decode(y)
    assert back.dtype == np.int32 and back.shape == x.shape
    np.testing.assert_array_equal(back, x)
    out = np.full(x.shape, -7, np.int32)
    assert stage.decode(y, out) is out
    np.testing.assert_array_equal(out, x)
    return y


@pytest.mark.parametrize("stage, shape", stage_shape_params("exact"))
def test_exact_stage_round_trips_stacks_and_frames(stage, shape):
    x = random_stack(shape, seed=sum(shape))
    y = check_exact(stage, x)
    for f in range(shape[0] if x.ndim == 4 else 0):  # a frame alone: as within the stack (frames never mix)
        np.testing.assert_array_equal(check_exact(stage, x[f]), y[f])


@pytest.mark.parametrize("stage", all_instances("exact"))
def test_exact_stage_round_trips_edge_values(stage):
    for shape in [(3, 4, 5), (1, 1, 6), (2, 6, 1), (1, 1, 1)]:
        for frame in edge_frames(shape):
            check_exact(stage, frame)
            check_exact(stage, np.stack([frame, -frame - 1, np.zeros_like(frame)]))


@pytest.mark.parametrize("stage", all_instances("exact"))
def test_exact_stage_at_int32_extremes_round_trips_or_refuses(stage):
    """Beyond the safe range a stage may refuse values it cannot code (TezipError), never code
    them wrongly."""
    rng = np.random.default_rng(5)
    for x in [np.array([[[INT32.min, INT32.max]]], np.int32), np.array([[[INT32.max], [INT32.min]]], np.int32),
              rng.choice(np.array([INT32.min, INT32.max, 0, -1], np.int32), (2, 3, 4, 5))]:
        try:
            y = stage.encode(x)
        except TezipError:
            continue
        np.testing.assert_array_equal(stage.decode(y), x)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("cid", ids_of("exact"))
def test_exact_stage_round_trips_any_safe_stack(cid, data):
    stage = REGISTRY[cid]()
    x = data.draw(hnp.arrays(np.int32, hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6),
                             elements=st.integers(-SAFE, SAFE - 1) | st.integers(-3, 3)))
    check_exact(stage, x)


@pytest.mark.parametrize("stage", all_instances("exact"))
def test_exact_stage_refuses_codes_of_a_foreign_dtype(stage):
    with pytest.raises(TezipError):
        stage.decode(np.zeros((1, 2, 3, 4), np.float64))


# ------------------------------------------------------------------------------- quantizers


def quantizer_bound(stage, tolerances):
    """Each value's allowed error: the stage's one tolerance when its config has one, else the
    per-value tolerances it was given."""
    return getattr(stage, "tolerance", tolerances)


def check_quantizer(stage, x, tolerances):
    codes, rec = stage.quantize(x, tolerances)
    assert codes.dtype == np.int32 and rec.dtype == np.int32
    assert codes.shape == rec.shape == x.shape
    assert (np.abs(rec.astype(np.int64) - x) <= quantizer_bound(stage, tolerances)).all()
    decoded = stage.decode(codes)
    assert decoded.dtype == np.int32 and decoded.shape == x.shape
    np.testing.assert_array_equal(decoded, rec)
    out = np.full(x.shape, -7, np.int32)
    assert stage.decode(codes, out) is out
    np.testing.assert_array_equal(out, rec)
    return codes, rec


@pytest.mark.parametrize("stage, shape", stage_shape_params("quantizer"))
def test_quantizer_within_tolerance_and_decoder_rebuilds_the_same(stage, shape):
    x = random_stack(shape, seed=sum(shape) + 1)
    tolerances = np.random.default_rng(2).integers(0, 6, shape).astype(np.int32)
    codes, rec = check_quantizer(stage, x, tolerances)
    for f in range(shape[0] if x.ndim == 4 else 0):  # frames never mix
        codes_f, rec_f = check_quantizer(stage, x[f], tolerances[f])
        np.testing.assert_array_equal(codes_f, codes[f])
        np.testing.assert_array_equal(rec_f, rec[f])


@pytest.mark.parametrize("stage", all_instances("quantizer"))
def test_quantizer_encode_keeps_the_codes_and_no_tolerances_means_its_own(stage):
    x = random_stack((2, 3, 6, 7), seed=9, low=-5000, high=5000)
    codes, rec = stage.quantize(x)
    np.testing.assert_array_equal(stage.encode(x), codes)
    np.testing.assert_array_equal(stage.decode(codes), rec)
    assert (np.abs(rec.astype(np.int64) - x) <= getattr(stage, "tolerance", 0)).all()


@pytest.mark.parametrize("stage", all_instances("quantizer"))
def test_quantizer_edge_values(stage):
    for shape in [(3, 4, 5), (1, 1, 6), (2, 6, 1)]:
        for frame in edge_frames(shape):
            frame = frame // 2  # residuals: differences of pixels, far inside int32
            check_quantizer(stage, frame, np.full(shape, 3, np.int32))
            check_quantizer(stage, frame, np.zeros(shape, np.int32))


@pytest.mark.parametrize("stage", all_instances("quantizer"))
def test_quantizer_at_int32_extremes_holds_the_bound_or_refuses(stage):
    x = np.random.default_rng(6).choice(np.array([INT32.min, INT32.max, 0, -1], np.int32), (2, 3, 4, 5))
    tolerances = np.full(x.shape, 2, np.int32)
    try:
        codes, rec = stage.quantize(x, tolerances)
    except TezipError:
        return
    assert (np.abs(rec.astype(np.int64) - x) <= quantizer_bound(stage, tolerances)).all()
    np.testing.assert_array_equal(stage.decode(codes), rec)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("cid", ids_of("quantizer"))
def test_quantizer_holds_any_tolerance(cid, data):
    cls = REGISTRY[cid]
    stage = cls(**data.draw(st.sampled_from([{}] + VARIANTS.get(cid, []))))
    x = data.draw(hnp.arrays(np.int32, hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6),
                             elements=st.integers(-70000, 70000) | st.integers(-3, 3)))
    tolerances = data.draw(hnp.arrays(np.int32, x.shape, elements=st.integers(0, 300)))
    check_quantizer(stage, x, tolerances)


@pytest.mark.parametrize("stage", all_instances("quantizer"))
def test_quantizer_refuses_codes_of_a_foreign_dtype(stage):
    for dtype in (np.int64, np.int16, np.float32):
        with pytest.raises(TezipError):
            stage.decode(np.zeros((1, 2, 3, 4), dtype))


# ------------------------------------------------------------------------------- byte coders

FRAME_SHAPES = [(3, 20, 30), (1, 1, 1), (1, 9, 1), (2, 1, 17)]


def coded_frames(shape, seed=0):
    rng = np.random.default_rng(seed)
    yield np.zeros(shape, np.int32)
    yield np.round(rng.laplace(0, 4, shape)).astype(np.int32)
    yield rng.integers(-300, 300, shape).astype(np.int32)
    yield rng.choice(np.array([INT32.min, INT32.max, 0, -1, 1], np.int32), shape)


@pytest.mark.parametrize("shape", FRAME_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("stage", all_instances("byte coder"))
def test_byte_coder_round_trips_a_frame(stage, shape):
    for frame in coded_frames(shape, seed=sum(shape)):
        buf = stage.encode(frame)
        assert isinstance(buf, bytes)
        assert stage.encode(frame) == buf  # deterministic
        out = np.full(shape, 99, np.int32)
        assert stage.decode(buf, out) is out
        np.testing.assert_array_equal(out, frame)
        np.testing.assert_array_equal(stage.decode(memoryview(buf), np.empty(shape, np.int32)), frame)


@pytest.mark.parametrize("stage", all_instances("byte coder"))
def test_byte_coder_refuses_truncated_data(stage):
    frame = np.round(np.random.default_rng(4).laplace(0, 50, (3, 30, 40))).astype(np.int32)
    buf = stage.encode(frame)
    # (An empty chunk is not always refused: ctxrange decodes b"" as a frame of zeros when the frame is
    # small, which the archive's frame checksum then catches; test_byte_coder_survives_garbage.)
    for cut in (buf[: len(buf) // 2], buf[: len(buf) // 4], buf[:5]):
        with pytest.raises(TezipError):
            stage.decode(cut, np.empty(frame.shape, np.int32))


@pytest.mark.parametrize("stage", all_instances("byte coder"))
def test_byte_coder_refuses_an_out_array_of_another_dtype(stage):
    frame = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    buf = stage.encode(frame)
    with pytest.raises(TezipError):
        stage.decode(buf, np.empty(frame.shape, np.int16))


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300), shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)))
@pytest.mark.parametrize("cid", ids_of("byte coder"))
def test_byte_coder_survives_garbage(cid, data, shape):
    """Garbage is refused (TezipError) or, where a coder cannot tell (ctxrange checks no sum; the
    archive's frame checksums do), decodes to some frame of the declared shape: never another
    exception, never out of bounds."""
    out = np.zeros(shape, np.int32)
    try:
        got = REGISTRY[cid]().decode(data, out)
    except TezipError:
        return
    assert got is out


@pytest.mark.parametrize("stage", all_instances("byte coder"))
def test_byte_coder_survives_corrupted_bytes(stage):
    frame = np.round(np.random.default_rng(8).laplace(0, 20, (3, 16, 16))).astype(np.int32)
    buf = stage.encode(frame)
    rng = np.random.default_rng(9)
    for _ in range(40):
        bad = bytearray(buf)
        for i in rng.integers(0, len(bad), rng.integers(1, 5)):
            bad[i] ^= int(rng.integers(1, 256))
        try:
            stage.decode(bytes(bad), np.empty(frame.shape, np.int32))
        except TezipError:
            pass
    try:
        stage.decode(buf + bytes(20), np.empty(frame.shape, np.int32))
    except TezipError:
        pass


# ------------------------------------------------------------------------------- CuPy


# The `cp` fixture (CuPy with a CUDA device, else skip) lives in conftest.py.

GPU_CASES = [
    ("smooth", (2, 3, 64, 96)),
    ("thin rows", (1, 2, 1, 40)),
    ("thin columns", (2, 1, 40, 1)),
    ("tall", (1, 2, 300, 7)),
    ("wide", (1, 5, 7, 300)),
    ("short rows", (1, 2, 5, 130)),
    ("odd", (2, 3, 47, 33)),
    ("one pixel", (1, 3, 1, 1)),
]


def gpu_inputs(shape, seed):
    """Values over half the safe range (residuals at most), the top half of each frame much smoother."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-SAFE // 2, SAFE // 2, shape).astype(np.int32)
    x[..., : shape[-2] // 2, :] //= 2**20
    return x


def same_on_both(cpu, gpu, cp):
    """Run cpu() and gpu(): both raise TezipError, or both give the same integers (gpu on the device)."""
    try:
        expected = cpu()
    except TezipError:
        with pytest.raises(TezipError):
            gpu()
        return
    got = gpu()
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,), got if isinstance(got, tuple) else (got,)):
        assert isinstance(g, cp.ndarray) and g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(cp.asnumpy(g), e)


@pytest.mark.parametrize("case, shape", GPU_CASES, ids=[c for c, _ in GPU_CASES])
@pytest.mark.parametrize("stage", all_instances("exact") + all_instances("quantizer"))
def test_cupy_equals_numba(stage, case, shape, cp):
    x = gpu_inputs(shape, seed=len(case))
    tolerances = np.random.default_rng(1).integers(0, 9, shape).astype(np.int32)
    if stage.lossy:
        codes, rec = stage.quantize(x, tolerances)
        same_on_both(lambda: (codes, rec), lambda: stage.quantize(cp.asarray(x), cp.asarray(tolerances)), cp)
        same_on_both(lambda: rec, lambda: stage.decode(cp.asarray(codes)), cp)
    else:
        y = stage.encode(x)
        same_on_both(lambda: y, lambda: stage.encode(cp.asarray(x)), cp)
        same_on_both(lambda: x, lambda: stage.decode(cp.asarray(y)), cp)


@pytest.mark.parametrize("stage", all_instances("exact") + all_instances("quantizer"))
def test_cupy_equals_numba_at_edge_values(stage, cp):
    for frame in edge_frames((3, 9, 11)):
        x = frame // 2 if stage.lossy else frame
        tolerances = np.full(x.shape, 3, np.int32)
        if stage.lossy:
            same_on_both(lambda: stage.quantize(x, tolerances), lambda: stage.quantize(cp.asarray(x), cp.asarray(tolerances)), cp)
        else:
            same_on_both(lambda: stage.encode(x), lambda: stage.encode(cp.asarray(x)), cp)
            same_on_both(lambda: stage.decode(stage.encode(x)), lambda: stage.decode(cp.asarray(stage.encode(x))), cp)


@pytest.mark.parametrize("stage", all_instances("exact") + all_instances("quantizer"))
def test_cupy_refuses_what_numba_refuses(stage, cp):
    """At the int32 extremes (values, tolerances, hostile codes) the GPU refuses what the CPU
    refuses (TezipError) and otherwise gives the same integers: never wrong codes."""
    rng = np.random.default_rng(7)
    extremes = np.array([INT32.min, INT32.max, 0, -1, 5], np.int32)
    for x in [np.array([[[INT32.min, INT32.max]], [[INT32.max, INT32.min]]], np.int32),
              np.array([[[0, INT32.max], [INT32.min, INT32.max]]], np.int32),
              rng.choice(extremes, (2, 3, 4, 5))]:
        if stage.lossy:
            t = rng.choice(np.array([0, 3, INT32.max], np.int32), x.shape)
            same_on_both(lambda: stage.quantize(x, t), lambda: stage.quantize(cp.asarray(x), cp.asarray(t)), cp)
        else:
            same_on_both(lambda: stage.encode(x), lambda: stage.encode(cp.asarray(x)), cp)
        # hostile codes, of the dtype the stage emits: decoding them overflows or not, the same way
        probe = np.full((1, 1, 1), INT32.max, np.int32)
        code_dtype = (stage.quantize(probe)[0] if stage.lossy else stage.encode(probe)).dtype
        codes = x.astype(np.int64).astype(code_dtype)
        same_on_both(lambda: stage.decode(codes), lambda: stage.decode(cp.asarray(codes)), cp)
