import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.entropy import RankCoder, pack_tables, unpack_tables
from compress.errors import TezipError

INT32 = np.iinfo(np.int32)


def reference_tables(values):
    """Straightforward per-partition table: count desc, then value asc."""
    tables = []
    for row in values:
        distinct, counts = np.unique(row, return_counts=True)
        tables.append(distinct[np.lexsort((distinct, -counts))])
    return tables


def check_encoding(values):
    ranks, table_values, table_lengths = RankCoder().encode(values)
    assert ranks.shape == values.shape
    assert table_values.dtype == np.int32 and table_lengths.dtype == np.int32
    assert table_lengths.shape == (values.shape[0],)
    expected = reference_tables(values)
    np.testing.assert_array_equal(table_lengths, [len(t) for t in expected])
    np.testing.assert_array_equal(table_values, np.concatenate(expected) if expected else [])
    assert ranks.dtype == (np.uint16 if table_lengths.max(initial=0) <= 65536 else np.uint32)
    for p, table in enumerate(expected):
        np.testing.assert_array_equal(table[ranks[p]], values[p])
    np.testing.assert_array_equal(RankCoder().decode(ranks, table_values, table_lengths), values)
    return ranks, table_values, table_lengths


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        np.int32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=60),
        elements=st.one_of(st.integers(-6, 6), st.integers(INT32.min, INT32.max)),
    )
)
def test_round_trip_matches_reference(values):
    check_encoding(values)


def test_most_frequent_value_gets_rank_zero_and_ties_go_by_value():
    values = np.array([[5, 3, 5, 3, 1, -2, 9, 9, 9]], dtype=np.int32)
    ranks, table_values, table_lengths = check_encoding(values)
    np.testing.assert_array_equal(table_values, [9, 3, 5, -2, 1])
    np.testing.assert_array_equal(ranks, [[2, 1, 2, 1, 4, 3, 0, 0, 0]])


def test_encoding_is_independent_of_element_order():
    rng = np.random.default_rng(0)
    values = rng.integers(-8, 8, (1, 5000)).astype(np.int32)
    _, table_a, _ = RankCoder().encode(values)
    _, table_b, _ = RankCoder().encode(values[:, rng.permutation(values.shape[1])])
    np.testing.assert_array_equal(table_a, table_b)


def test_single_value_partitions():
    values = np.array([[7] * 10, [0] * 10, [INT32.min] * 10], dtype=np.int32)
    ranks, table_values, table_lengths = check_encoding(values)
    assert not ranks.any()
    np.testing.assert_array_equal(table_values, [7, 0, INT32.min])
    np.testing.assert_array_equal(table_lengths, [1, 1, 1])


def test_many_distinct_values_switch_ranks_to_uint32():
    rng = np.random.default_rng(1)
    row = rng.permutation(np.arange(-40000, 40000, dtype=np.int32))
    values = np.stack([row, np.zeros_like(row)])
    ranks, _, table_lengths = check_encoding(values)
    assert ranks.dtype == np.uint32
    np.testing.assert_array_equal(table_lengths, [80000, 1])


def test_exactly_65536_distinct_values_still_fit_uint16():
    values = np.arange(65536, dtype=np.int32)[None, :]
    ranks, _, _ = check_encoding(values)
    assert ranks.dtype == np.uint16


def test_wide_value_spans_use_the_sorting_path():
    rng = np.random.default_rng(2)
    values = rng.choice(np.array([INT32.min, -(10**9), 0, 3, 10**9, INT32.max], dtype=np.int32), (3, 500))
    check_encoding(values)


def test_empty_inputs():
    for shape in [(0, 0), (0, 4), (3, 0)]:
        ranks, table_values, table_lengths = RankCoder().encode(np.zeros(shape, dtype=np.int32))
        assert ranks.shape == shape and table_values.size == 0
        np.testing.assert_array_equal(table_lengths, np.zeros(shape[0]))
        assert RankCoder().decode(ranks, table_values, table_lengths).shape == shape


def encoded_sample():
    values = np.array([[1, 1, 2, 3], [4, 4, 4, 5]], dtype=np.int32)
    return RankCoder().encode(values)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda r, v, n: (r, v, np.array([3, 1], np.int32)),  # lengths sum below the table size
        lambda r, v, n: (r, v, np.array([3, 3], np.int32)),  # ... and above it
        lambda r, v, n: (r, v, np.array([6, -1], np.int32)),  # negative length
        lambda r, v, n: (r, v, np.array([5], np.int32)),  # wrong partition count
        lambda r, v, n: (r, v[:-1], n),  # missing table entry
        lambda r, v, n: (np.where(r == 2, 3, r).astype(r.dtype), v, n),  # rank beyond table 0
        lambda r, v, n: (np.full_like(r, 65535), v, n),
        lambda r, v, n: (r.astype(np.int64), v, n),  # unexpected rank dtype
        lambda r, v, n: (r.reshape(-1), v, n),  # wrong rank shape
        lambda r, v, n: (r, v.astype(np.float64), n),
        lambda r, v, n: (r, v.reshape(1, -1), n),
    ],
)
def test_decode_rejects_corrupt_input(corrupt):
    with pytest.raises(TezipError):
        RankCoder().decode(*corrupt(*encoded_sample()))


def test_decode_rejects_ranks_for_an_empty_table():
    ranks = np.zeros((2, 3), dtype=np.uint16)
    with pytest.raises(TezipError):
        RankCoder().decode(ranks, np.array([1], np.int32), np.array([1, 0], np.int32))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(INT32.min, INT32.max), max_size=20),
        max_size=6,
    )
)
def test_pack_tables_round_trip(tables):
    table_values = np.array([v for t in tables for v in t], dtype=np.int32)
    table_lengths = np.array([len(t) for t in tables], dtype=np.int32)
    buf = pack_tables(table_values, table_lengths)
    assert isinstance(buf, bytes)
    values, lengths = unpack_tables(buf, len(tables))
    assert values.dtype == np.int32 and lengths.dtype == np.int32
    np.testing.assert_array_equal(values, table_values)
    np.testing.assert_array_equal(lengths, table_lengths)


def test_small_table_values_take_one_byte():
    buf = pack_tables(np.array([0, -1, 1, -64, 63], np.int32), np.array([5], np.int32))
    assert len(buf) == 6


def test_unpack_rejects_every_truncation():
    _, table_values, table_lengths = encoded_sample()
    table_values = np.concatenate([table_values, [INT32.min]]).astype(np.int32)
    table_lengths = table_lengths + np.array([0, 1], np.int32)
    buf = pack_tables(table_values, table_lengths)
    for cut in range(len(buf)):
        with pytest.raises(TezipError):
            unpack_tables(buf[:cut], 2)


@pytest.mark.parametrize(
    "buf, n_partitions",
    [
        (b"\x01\x00\x00", 1),  # trailing byte
        (b"\x01\x02", 2),  # fewer bytes than partitions
        (b"\xff\xff\xff\xff\x07", 1),  # 2**31 - 1 values declared, none present
        (b"\x80\x80\x80\x80\x80\x01", 1),  # overlong varint
        (b"\xff\xff\xff\xff\x0f", 1),  # length beyond int32
        (b"\x01\xff\xff\xff\xff\x1f", 1),  # value beyond 32 bits
        (b"", 1),
        (b"\x00", -1),
    ],
)
def test_unpack_rejects_garbage(buf, n_partitions):
    with pytest.raises(TezipError):
        unpack_tables(buf, n_partitions)


def test_unpack_empty():
    values, lengths = unpack_tables(b"", 0)
    assert values.size == 0 and lengths.size == 0


def test_config_round_trip():
    config = RankCoder().get_config()
    assert config == {"id": "freqrank"}
    assert RankCoder.from_config(config) == RankCoder()
    for bad in [{"id": "delta1d"}, {"id": "freqrank", "tables": 1}, None]:
        with pytest.raises(TezipError):
            RankCoder.from_config(bad)


# ---------------------------------------------------------------- CuPy kernels


# The `cp` fixture (CuPy with a CUDA device, else skip) lives in conftest.py.


def cupy_test_vectors():
    rng = np.random.default_rng(3)
    return [
        rng.integers(-20, 20, (9, 3001)).astype(np.int32),
        np.round(rng.laplace(0, 3, (4, 5000))).astype(np.int32),
        np.array([[5, 3, 5, 3, 1, -2, 9, 9, 9]], dtype=np.int32),
        np.array([[7] * 10, [INT32.min] * 10], dtype=np.int32),
        np.stack([rng.permutation(np.arange(-40000, 40000, dtype=np.int32)), np.zeros(80000, np.int32)]),
        rng.choice(np.array([INT32.min, 0, 3, INT32.max], dtype=np.int32), (3, 500)),  # wide span
        np.zeros((3, 0), dtype=np.int32),
    ]


def test_cupy_matches_numba(cp):
    coder = RankCoder()
    for values in cupy_test_vectors():
        ranks, table_values, table_lengths = coder.encode(values)
        got = coder.encode(cp.asarray(values))
        assert all(isinstance(a, cp.ndarray) for a in got)
        assert got[0].dtype == ranks.dtype
        np.testing.assert_array_equal(cp.asnumpy(got[0]), ranks)
        np.testing.assert_array_equal(cp.asnumpy(got[1]), table_values)
        np.testing.assert_array_equal(cp.asnumpy(got[2]), table_lengths)
        decoded = coder.decode(*got)
        assert isinstance(decoded, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(decoded), values)


def test_cupy_decode_rejects_corrupt_input(cp):
    ranks, table_values, table_lengths = encoded_sample()
    bad_ranks = cp.asarray(np.where(ranks == 2, 3, ranks).astype(ranks.dtype))
    with pytest.raises(TezipError):
        RankCoder().decode(bad_ranks, cp.asarray(table_values), cp.asarray(table_lengths))
    with pytest.raises(TezipError):
        RankCoder().decode(cp.asarray(ranks), cp.asarray(table_values), cp.asarray(np.array([3, 1], np.int32)))


def test_zigzag_round_trip_and_small_magnitudes_stay_small():
    from compress.entropy import ZigZagCoder

    z = ZigZagCoder()
    v = np.array([[0, -1, 1, -2, 2, 300, -300]], np.int32)
    u = z.encode(v)
    assert u.dtype == np.uint16 and list(u[0]) == [0, 1, 2, 3, 4, 600, 599]
    np.testing.assert_array_equal(z.decode(u), v)
    wide = np.array([[np.iinfo(np.int32).min, np.iinfo(np.int32).max, -70000]], np.int32)
    assert z.encode(wide).dtype == np.uint32
    np.testing.assert_array_equal(z.decode(z.encode(wide)), wide)
    with pytest.raises(TezipError):
        z.decode(np.zeros((1, 2), np.int16))
