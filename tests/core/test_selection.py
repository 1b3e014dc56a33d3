"""Tests for `tf_dsr.core.selection.random_subset`."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core import selection
from tf_dsr.core.selection import random_subset


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _candidates(shape, density, rng):
    size = int(np.prod(shape))
    flat = np.zeros(size, bool)
    flat[rng.choice(size, int(round(density * size)), replace=False)] = True
    return flat.reshape(shape)


def _select(candidates, num_selected, seed):
    return random_subset(tf.constant(candidates), num_selected, seed).numpy()


@pytest.mark.parametrize(
    "shape", [(1,), (7,), (20, 30), (3, 3, 8, 16), (1000,)]
)
@pytest.mark.parametrize("density", [0.0, 0.01, 0.3, 1.0])
def test_exact_count_and_only_candidates(shape, density):
    rng = np.random.RandomState(int(np.prod(shape)) * 1000 + int(density * 100))
    candidates = _candidates(shape, density, rng)
    num_candidates = int(candidates.sum())
    requests = {0, 1, num_candidates // 2, num_candidates,
                num_candidates + 5, 10**9}
    for i, num_selected in enumerate(sorted(requests)):
        selected = _select(candidates, num_selected, _seed(i, 17))
        assert selected.shape == candidates.shape
        assert selected.dtype == bool
        assert selected.sum() == min(num_selected, num_candidates), (
            f"shape={shape} density={density} n={num_selected}"
        )
        assert not (selected & ~candidates).any(), "selected a non-candidate"


def test_all_candidates_selected_when_n_covers_them():
    candidates = _candidates((13, 11), 0.4, np.random.RandomState(0))
    np.testing.assert_array_equal(
        _select(candidates, int(candidates.sum()), _seed(5)), candidates
    )
    np.testing.assert_array_equal(_select(candidates, 10**6, _seed(5)),
                                  candidates)


@pytest.mark.parametrize(
    "num_selected",
    [7, np.int32(7), np.int64(7), tf.constant(7), tf.constant(7, tf.int64)],
    ids=["int", "np.int32", "np.int64", "tf.int32", "tf.int64"],
)
def test_num_selected_types(num_selected):
    candidates = _candidates((10, 10), 0.5, np.random.RandomState(1))
    seed = tf.constant([3, 4], tf.int32)
    assert _select(candidates, num_selected, seed).sum() == 7


def test_same_seed_same_result_different_seed_different_result():
    candidates = _candidates((40, 25), 0.8, np.random.RandomState(2))
    first = _select(candidates, 100, _seed(11, 3))
    again = _select(candidates, 100, _seed(11, 3))
    np.testing.assert_array_equal(first, again)
    for other_seed in [_seed(12, 3), _seed(11, 4)]:
        other = _select(candidates, 100, other_seed)
        assert other.sum() == 100
        assert not np.array_equal(first, other)


def test_roughly_uniform_over_seeds():
    # 20 candidates among 30 positions, 5 picked per draw, 200 draws: each
    # candidate is expected 50 times (binomial sd ~6.1). The bounds are ~4 sd
    # wide, so a correct implementation fails with negligible probability
    # (and the seeds are fixed anyway).
    candidates = np.zeros(30, bool)
    candidates[np.random.RandomState(3).choice(30, 20, replace=False)] = True
    num_draws, num_selected = 200, 5
    # One graph traced once (the seed is a tensor argument) runs the 200
    # draws several times faster than eager calls.
    draw = tf.function(random_subset)
    counts = np.zeros(30, np.int64)
    for s in range(num_draws):
        counts += draw(tf.constant(candidates), tf.constant(num_selected),
                       _seed(s, 99)).numpy()
    assert draw.experimental_get_tracing_count() == 1
    assert counts[~candidates].sum() == 0
    assert counts.sum() == num_draws * num_selected
    expected = num_draws * num_selected / 20
    assert counts[candidates].min() >= 25, counts
    assert counts[candidates].max() <= 75, counts
    chi2 = ((counts[candidates] - expected) ** 2 / expected).sum()
    # 19 degrees of freedom; P(chi2 > 50) < 1e-4.
    assert chi2 < 50, (chi2, counts)


def test_selected_positions_spread_over_a_larger_tensor():
    # A bias towards low or high positions (e.g. a broken tie-break or a cut
    # in the wrong bucket) shows up as lopsided halves.
    candidates = np.ones((64, 64), bool)
    selected = _select(candidates, 2048, _seed(21))
    positions = np.flatnonzero(selected)
    # Each count is hypergeometric with mean 1024 and sd 16.
    assert 950 < (positions < 2048).sum() < 1100
    assert 950 < (positions % 2 == 0).sum() < 1100


def _fake_keys(keys):
    """A stand-in for `tf.random.stateless_uniform` returning fixed keys."""
    keys = np.asarray(keys, np.int64).astype(np.int32)

    def fake(shape, seed, minval=None, maxval=None, dtype=tf.float32,
             **unused_kwargs):  # e.g. `alg`
        assert dtype == tf.int32
        assert list(shape) == [keys.size]
        return tf.constant(keys)

    return fake


def _smallest_keys_oracle(keys, candidates, num_selected, fallback=None):
    if fallback is None:
        fallback = np.zeros_like(candidates)
    keys = (np.asarray(keys, np.int64) & (2**31 - 1))
    positions = np.flatnonzero(candidates | fallback)
    # Candidates before fallback positions, then by key, then by position.
    order = np.lexsort((positions, keys[positions], fallback[positions]))
    expected = np.zeros(candidates.size, bool)
    expected[positions[order[:num_selected]]] = True
    return expected


@pytest.mark.parametrize("key_range", [2**31, 2**17, 300, 1],
                         ids=["full", "two-high-buckets", "many-ties", "all-tied"])
def test_selects_smallest_keys_ties_by_position(monkeypatch, key_range):
    # Fixing the random keys turns the radix select into a deterministic
    # function: the `n` candidates with the smallest 31-bit keys, candidates
    # sharing the cut key taken by lowest position. Small key ranges force
    # ties at the cut, which exercises the position-based select.
    rng = np.random.RandomState(key_range % 1000)
    size = 5000
    if key_range == 2**31:
        # Negative int32 values must be masked to 31 bits, not compared signed.
        keys = rng.randint(-2**31, 2**31, size, dtype=np.int64)
    else:
        keys = rng.randint(0, key_range, size)
    candidates = rng.rand(size) < 0.6
    monkeypatch.setattr(tf.random, "stateless_uniform", _fake_keys(keys))
    num_candidates = int(candidates.sum())
    for num_selected in [0, 1, 2, 17, 1000, num_candidates - 1, num_candidates]:
        selected = random_subset(tf.constant(candidates), num_selected,
                                 _seed(0)).numpy()
        expected = _smallest_keys_oracle(keys, candidates, num_selected)
        np.testing.assert_array_equal(
            selected, expected, err_msg=f"num_selected={num_selected}"
        )


@pytest.mark.parametrize("key_range", [2**31, 300], ids=["full", "many-ties"])
def test_fallback_sorts_after_candidates_with_fixed_keys(monkeypatch,
                                                         key_range):
    rng = np.random.RandomState(key_range % 997)
    size = 4000
    keys = rng.randint(-2**31 if key_range == 2**31 else 0, key_range, size,
                       dtype=np.int64)
    candidates = rng.rand(size) < 0.3
    fallback = ~candidates & (rng.rand(size) < 0.5)
    monkeypatch.setattr(tf.random, "stateless_uniform", _fake_keys(keys))
    num_candidates, num_fallback = int(candidates.sum()), int(fallback.sum())
    for num_selected in [0, 5, num_candidates, num_candidates + 1,
                         num_candidates + 700, num_candidates + num_fallback,
                         10**7]:
        selected = random_subset(tf.constant(candidates), num_selected,
                                 _seed(0), fallback=tf.constant(fallback)).numpy()
        expected = _smallest_keys_oracle(keys, candidates, num_selected,
                                         fallback)
        np.testing.assert_array_equal(
            selected, expected, err_msg=f"num_selected={num_selected}"
        )


def test_tie_path_beyond_one_position_bucket(monkeypatch):
    # All keys equal: every choice is made by the position select, whose
    # positions span several 2^16 buckets here.
    size = 300_000
    candidates = np.zeros(size, bool)
    candidates[::3] = True
    candidates[200_000:200_050] = True
    monkeypatch.setattr(tf.random, "stateless_uniform",
                        _fake_keys(np.full(size, 12345)))
    positions = np.flatnonzero(candidates)
    for num_selected in [1, 70_000, 66_680, len(positions)]:
        selected = random_subset(tf.constant(candidates), num_selected,
                                 _seed(0)).numpy()
        expected = np.zeros(size, bool)
        expected[positions[:num_selected]] = True
        np.testing.assert_array_equal(selected, expected)


@pytest.mark.parametrize("shape", [(50,), (12, 9), (3, 3, 4, 8)])
def test_fallback_used_only_after_every_candidate(shape):
    rng = np.random.RandomState(len(shape))
    candidates = _candidates(shape, 0.2, rng)
    fallback = ~candidates & (rng.rand(*shape) < 0.5)
    num_candidates, num_fallback = int(candidates.sum()), int(fallback.sum())
    for i, num_selected in enumerate(
        [0, num_candidates // 2, num_candidates, num_candidates + 1,
         num_candidates + num_fallback // 2, num_candidates + num_fallback,
         num_candidates + num_fallback + 3]
    ):
        selected = random_subset(tf.constant(candidates), num_selected,
                                 _seed(i, 5), fallback=tf.constant(fallback)
                                 ).numpy()
        info = f"shape={shape} n={num_selected}"
        assert selected.sum() == min(num_selected,
                                     num_candidates + num_fallback), info
        assert not (selected & ~(candidates | fallback)).any(), info
        if num_selected <= num_candidates:
            assert not (selected & fallback).any(), info
        else:
            assert selected[candidates].all(), info
            assert selected[fallback].sum() == min(
                num_selected - num_candidates, num_fallback), info


def test_fallback_choice_is_random():
    candidates = np.zeros(200, bool)
    candidates[:10] = True
    fallback = np.zeros(200, bool)
    fallback[100:] = True
    draws = {
        tuple(np.flatnonzero(random_subset(
            tf.constant(candidates), 30, _seed(s, 1),
            fallback=tf.constant(fallback)).numpy()))
        for s in range(5)
    }
    assert len(draws) == 5
    for draw in draws:
        assert set(range(10)) <= set(draw)
        assert len(draw) == 30


def test_more_than_2_pow_24_elements_uses_exact_positions():
    # Float32 indices cannot represent odd integers above 2^24; selecting
    # odd positions there proves the indexing is exact.
    shape = (4100, 4100)  # 16,810,000 elements > 2^24 = 16,777,216
    first = 2**24 - 50_000
    flat = np.zeros(shape[0] * shape[1], bool)
    flat[first:] = True
    selected = random_subset(tf.constant(flat.reshape(shape)), 40_000,
                             _seed(1, 2)).numpy()
    assert selected.shape == shape
    positions = np.flatnonzero(selected)
    assert positions.size == 40_000
    assert positions.min() >= first
    beyond = positions[positions >= 2**24]
    # ~47% of candidates lie beyond 2^24; expect ~19,000 of the picks there.
    assert beyond.size > 15_000
    assert (beyond % 2 == 1).sum() > 5_000
    assert positions.max() > 2**24 + 30_000


def test_xla_matches_eager():
    candidates = _candidates((20, 30), 0.5, np.random.RandomState(4))
    compiled = tf.function(random_subset, jit_compile=True)
    seed = tf.constant([3, 4], tf.int64)
    for num_selected in [37, 150]:
        xla = compiled(tf.constant(candidates),
                       tf.constant(num_selected, tf.int64), seed).numpy()
        eager = _select(candidates, num_selected, seed)
        assert xla.sum() == num_selected
        np.testing.assert_array_equal(xla, eager)
    # A different seed tensor runs the same executable and still differs.
    other = compiled(tf.constant(candidates), tf.constant(150, tf.int64),
                     tf.constant([3, 5], tf.int64)).numpy()
    assert other.sum() == 150
    assert not np.array_equal(other, xla)
    assert compiled.experimental_get_tracing_count() == 1


# --------------------------------------------------------------------------
# Outside XLA, `random_subset` filters candidates by a key cutoff and finds
# the cut among the few that pass; under XLA it runs the radix select. Both
# must return the same subset, so masks do not depend on `jit_compile`.


def _radix_only(monkeypatch):
    monkeypatch.setattr(selection, "_in_xla_context", lambda: True)


@pytest.mark.parametrize("with_fallback", [False, True])
def test_filter_path_equals_radix_path(monkeypatch, with_fallback):
    rng = np.random.RandomState(7)
    draw = tf.function(random_subset, autograph=False)
    cases = []
    for shape, density in [((5000,), 0.9), ((3, 3, 16, 32), 0.5),
                           ((200, 30), 0.05), ((7,), 1.0)]:
        candidates = _candidates(shape, density, rng)
        fallback = (~candidates & (rng.rand(*shape) < 0.5)) if with_fallback \
            else None
        num_candidates = int(candidates.sum())
        for n in [0, 1, num_candidates // 50, num_candidates // 2,
                  num_candidates, num_candidates + 3]:
            cases.append((candidates, fallback, n))

    def run():
        return [
            draw(tf.constant(c), tf.constant(n, tf.int64), _seed(i, 8),
                 fallback=None if f is None else tf.constant(f)).numpy()
            for i, (c, f, n) in enumerate(cases)
        ]

    filtered = run()
    _radix_only(monkeypatch)
    draw = tf.function(random_subset, autograph=False)
    radix = run()
    for (c, f, n), a, b in zip(cases, filtered, radix):
        pool = c if f is None else c | f
        assert a.sum() == min(n, pool.sum())
        assert not (a & ~pool).any()
        np.testing.assert_array_equal(a, b, err_msg=f"n={n} shape={c.shape}")


def test_shortfall_sorts_the_whole_pool(monkeypatch):
    # Force the 6-sigma event: a cutoff that about n / 3 candidates pass.
    calls = []
    pool_sort = selection._smallest_in_pool

    def counting_pool_sort(*args):
        calls.append(1)
        return pool_sort(*args)

    candidates = _candidates((40, 50), 0.7, np.random.RandomState(9))
    expected = [_select(candidates, n, _seed(n, 2)) for n in (30, 300)]
    monkeypatch.setattr(selection, "_num_expected_passing", lambda n: n / 3)
    monkeypatch.setattr(selection, "_smallest_in_pool", counting_pool_sort)
    for n, want in zip((30, 300), expected):
        got = _select(candidates, n, _seed(n, 2))
        assert got.sum() == n
        np.testing.assert_array_equal(got, want)
    assert len(calls) == 2


def test_uniform_when_filtering_is_active():
    # 4000 candidates, 20 picked per draw: about 111 candidates pass the
    # cutoff, so this exercises the filtered path (not a full sort). Counts
    # over 40 blocks of 100 positions, 500 draws: 250 expected per block
    # (sd ~15.6). 39 degrees of freedom; P(chi2 > 80) < 1e-4.
    candidates = np.ones(4000, bool)
    draw = tf.function(random_subset, autograph=False)
    counts = np.zeros(4000, np.int64)
    for s in range(500):
        counts += draw(tf.constant(candidates), tf.constant(20, tf.int64),
                       _seed(s, 123)).numpy()
    assert counts.sum() == 500 * 20
    blocks = counts.reshape(40, 100).sum(axis=1)
    chi2 = ((blocks - 250.0) ** 2 / 250.0).sum()
    assert chi2 < 80, (chi2, blocks)
    # No position is favoured: a single position is picked 2.5 times on
    # average; 15 would be a 7-sigma outlier for a Poisson count.
    assert counts.max() < 15


def test_known_counts_give_the_same_subset():
    rng = np.random.RandomState(10)
    candidates = _candidates((30, 40), 0.6, rng)
    fallback = ~candidates & (rng.rand(30, 40) < 0.5)
    for n in [10, int(candidates.sum()) + 5]:
        plain = random_subset(tf.constant(candidates), n, _seed(4),
                              fallback=tf.constant(fallback)).numpy()
        counted = random_subset(
            tf.constant(candidates), n, _seed(4),
            fallback=tf.constant(fallback),
            num_candidates=int(candidates.sum()),
            num_fallback=tf.constant(int(fallback.sum()), tf.int64),
        ).numpy()
        np.testing.assert_array_equal(plain, counted)


def test_xla_matches_graph_with_fallback():
    rng = np.random.RandomState(11)
    candidates = _candidates((12, 10), 0.3, rng)
    fallback = ~candidates & (rng.rand(12, 10) < 0.5)
    compiled = tf.function(random_subset, jit_compile=True)
    for n in [5, int(candidates.sum()) + 4]:
        args = (tf.constant(candidates), tf.constant(n, tf.int64), _seed(6))
        xla = compiled(*args, fallback=tf.constant(fallback)).numpy()
        graph = random_subset(*args, fallback=tf.constant(fallback)).numpy()
        np.testing.assert_array_equal(xla, graph)


def test_per_shape_function_traces_each_signature_once():
    calls = []

    def double(x):
        calls.append(tuple(x.shape))
        return x * 2

    wrapped = selection.per_shape_function(double)

    @tf.function(autograph=False)
    def run(a, b, c):
        return wrapped(a), wrapped(b), wrapped(c)

    a = tf.ones([3, 4])
    out = run(a, a + 1, tf.ones([5]))
    assert sorted(calls) == [(3, 4), (5,)]
    np.testing.assert_array_equal(out[1].numpy(), np.full((3, 4), 4.0))
    # Eagerly the function simply runs.
    np.testing.assert_array_equal(wrapped(tf.ones([2])).numpy(), [2.0, 2.0])

