"""zstd: byte-plane shuffle + zstd, one chunk a frame. (Config, round trips of int32 frames, garbage
and truncation for every byte coder: test_stages.py; thread counts: test_chain.py.)"""

import numpy as np
import pytest
import zstandard

from base.errors import TezipError
from stages.zstd import DEFAULT_LEVEL, ZstdCodec

DTYPES = ["u1", "i1", "u2", "i2", "<u4", ">i4", "i4", "i8", ">u8", "f4", "f8", "c16"]


def sample(dtype, count=3000, seed=0):
    rng = np.random.default_rng(seed)
    small = np.round(rng.laplace(0, 3, count))
    if np.dtype(dtype).kind == "u":
        small = np.abs(small)
    return small.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_round_trip(dtype, shuffle):
    codec = ZstdCodec(level=3, shuffle=shuffle)
    arr = sample(dtype)
    out = np.empty(arr.shape, dtype)
    decoded = codec.decode(codec.encode(arr), out)
    assert decoded is out and decoded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(decoded, arr)


def test_multidimensional_input_is_flattened_and_decoded_into_the_declared_shape():
    arr = sample("u2").reshape(30, 100)
    codec = ZstdCodec()
    buf = codec.encode(arr)
    assert buf == codec.encode(arr.reshape(-1)) == codec.encode(np.asfortranarray(arr))
    np.testing.assert_array_equal(codec.decode(buf, np.empty(arr.shape, "u2")), arr)
    np.testing.assert_array_equal(codec.decode(buf, np.empty((3, 10, 100), "u2")), arr.reshape(3, 10, 100))
    planar = np.empty((2, 30, 100), np.uint16)[0]  # a view: filled in place
    assert codec.decode(buf, planar) is planar


def test_byte_order_does_not_change_the_stream():
    arr = sample("i4")
    codec = ZstdCodec()
    assert codec.encode(arr) == codec.encode(arr.astype(">i4"))


def test_shuffle_shrinks_small_unsigned_words():
    arr = np.random.default_rng(1).integers(0, 200, 50000).astype(np.uint32)
    assert len(ZstdCodec(shuffle=True).encode(arr)) < 0.9 * len(ZstdCodec(shuffle=False).encode(arr))


def test_shuffled_stream_is_byte_planes():
    arr = np.array([0x0102, 0x0304], dtype="<u2")
    raw = zstandard.ZstdDecompressor().decompress(ZstdCodec(shuffle=True).encode(arr))
    assert raw == bytes([0x02, 0x04, 0x01, 0x03])


def test_empty_array():
    codec = ZstdCodec()
    decoded = codec.decode(codec.encode(np.zeros(0, np.int32)), np.empty(0, np.int32))
    assert decoded.shape == (0,) and decoded.dtype == np.int32
    assert codec.decode(codec.encode(np.zeros(0, np.uint8)), np.empty((0, 3, 4), np.uint8)).shape == (0, 3, 4)


def corruptions(buf):
    flipped = bytearray(buf)
    flipped[len(buf) // 2] ^= 0x5A
    return {
        "empty": b"",
        "garbage": bytes(range(40)),
        "truncated by one": buf[:-1],
        "truncated to header": buf[:8],
        "half": buf[: len(buf) // 2],
        "trailing byte": buf + b"\x00",
        "two frames": buf + buf,
        "flipped byte": bytes(flipped),
    }


@pytest.mark.parametrize("shuffle", [True, False])
def test_corrupt_data_raises(shuffle):
    codec = ZstdCodec(shuffle=shuffle)
    arr = sample("i4", count=5000)
    buf = codec.encode(arr)
    for name, bad in corruptions(buf).items():
        with pytest.raises(TezipError, match="corrupt"):
            codec.decode(bad, np.empty(arr.size, np.int32))
            pytest.fail(f"{name} was accepted")
    with pytest.raises(TezipError, match="corrupt"):
        codec.decode(buf, np.empty(arr.size - 1, np.int32))
    with pytest.raises(TezipError, match="corrupt"):
        codec.decode(buf, np.empty(arr.size + 1, np.int32))
    with pytest.raises(TezipError, match="corrupt"):
        codec.decode(buf, np.empty(arr.size, np.int16))
    with pytest.raises(TezipError, match="corrupt"):
        codec.decode(buf, np.empty(0, np.int32))


def test_frame_must_declare_its_size():
    raw = np.arange(100, dtype=np.uint8).tobytes()
    buf = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    with pytest.raises(TezipError, match="corrupt"):
        ZstdCodec(shuffle=False).decode(buf, np.empty(100, np.uint8))


def test_huge_declared_size_is_refused_before_decompressing():
    # The header's size (1 MiB) is checked against the out array's (10 bytes)
    # first, so a hostile header can never make the decoder allocate it.
    buf = zstandard.ZstdCompressor().compress(bytes(1 << 20))
    with pytest.raises(TezipError, match="corrupt"):
        ZstdCodec().decode(buf, np.empty(10, np.uint8))


def test_default_config():
    assert DEFAULT_LEVEL == 19
    assert ZstdCodec().get_config() == {"id": "zstd", "level": DEFAULT_LEVEL, "shuffle": True}


@pytest.mark.parametrize(
    "config",
    [
        {"id": "zstd", "level": 99, "shuffle": True},
        {"id": "zstd", "level": "3", "shuffle": True},
        {"id": "zstd", "level": 3.0, "shuffle": True},
        {"id": "zstd", "level": True, "shuffle": True},
        {"id": "zstd", "level": 3, "shuffle": "yes"},
        {"id": "zstd", "level": 3, "shuffle": 1},
    ],
)
def test_bad_level_or_shuffle_flag_raises(config):
    with pytest.raises(TezipError, match="zstd (level|shuffle)"):
        ZstdCodec.from_config(config)
