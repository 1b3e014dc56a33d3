"""grow_by_score: hand-computed tables, invariants, eager = graph = XLA."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.growth import grow_by_score


def _grow(mask, score, num_to_grow):
    return grow_by_score(np.asarray(mask, np.float32), np.asarray(score, np.float32),
                         num_to_grow).numpy()


@pytest.mark.parametrize("mask, score, num_to_grow, expected", [
    # The largest scores among inactive positions; an active position's
    # score (9) does not count.
    ([1, 0, 0, 0, 0], [9, 1, 5, 3, 4], 2, [1, 0, 1, 0, 1]),
    # Ties go to the lowest flat index.
    ([0, 0, 0, 0], [2, 7, 7, 7], 2, [0, 1, 1, 0]),
    ([0, 0, 0, 0], [3, 3, 3, 3], 3, [1, 1, 1, 0]),
    # Negative scores rank below zero; -0 equals +0 (tie, lower index).
    ([0, 0, 0, 0], [-1, -0.0, 0.0, -5], 1, [0, 1, 0, 0]),
    ([0, 0, 0, 0], [-1, -0.0, 0.0, -5], 3, [1, 1, 1, 0]),
    # NaN ranks below every number, -Inf included (tie, lower index).
    ([0, 0, 0], [np.nan, -np.inf, 1], 2, [0, 1, 1]),
    # Clipped to the number of inactive positions; negative means none.
    ([1, 0, 1, 0], [1, 2, 3, 4], 10, [1, 1, 1, 1]),
    ([1, 0, 1, 0], [1, 2, 3, 4], -3, [1, 0, 1, 0]),
    ([1, 0, 1, 0], [1, 2, 3, 4], 0, [1, 0, 1, 0]),
    ([1, 1], [1, 2], 1, [1, 1]),
    # Scores differing in the last bit are told apart.
    ([0, 0], [1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], 1, [0, 1]),
    # Tiny and huge magnitudes.
    ([0, 0, 0], [1e-30, 1e30, 1e-45], 2, [1, 1, 0]),
])
def test_table(mask, score, num_to_grow, expected):
    np.testing.assert_array_equal(_grow(mask, score, num_to_grow), expected)


def test_two_dimensional_ties_follow_row_major_order():
    mask = [[1, 0, 0], [0, 0, 1]]
    score = [[5, 2, 1], [2, 2, 0]]
    # Inactive scores: (0,1)=2 (0,2)=1 (1,0)=2 (1,1)=2; grow 2 of the three 2s.
    np.testing.assert_array_equal(_grow(mask, score, 2), [[1, 1, 0], [1, 0, 1]])


def _reference(mask, score, num_to_grow):
    flat_mask, flat_score = mask.ravel(), score.ravel().astype(np.float32)
    candidates = np.flatnonzero(flat_mask == 0)
    # Stable sort by descending score keeps ties in index order; NaN last.
    nan = np.isnan(flat_score[candidates])
    by_score = np.where(nan, 0, -flat_score[candidates])
    order = candidates[np.lexsort((candidates, by_score, nan))]
    grown = flat_mask.copy()
    grown[order[:max(0, min(num_to_grow, candidates.size))]] = 1
    return grown.reshape(mask.shape)


@pytest.mark.parametrize("seed", range(8))
def test_matches_a_stable_sort(seed):
    rng = np.random.default_rng(seed)
    shape = [(7,), (13, 11), (4, 5, 6), (300, 70)][seed % 4]
    mask = (rng.random(shape) < rng.random()).astype(np.float32)
    # Coarse scores make many ties; some negatives and zeros.
    score = np.round(rng.standard_normal(shape) * 3) / 2
    score[rng.random(shape) < 0.05] = np.nan
    score[rng.random(shape) < 0.05] = -np.inf
    num_to_grow = int(rng.integers(-2, mask.size + 3))
    got = _grow(mask, score, num_to_grow)
    np.testing.assert_array_equal(got, _reference(mask, score, num_to_grow))
    # Conservation: only inactive positions grow, exactly the clipped count.
    assert np.all(got >= mask) and set(np.unique(got)) <= {0.0, 1.0}
    assert got.sum() - mask.sum() == max(0, min(num_to_grow, int((mask == 0).sum())))


def test_keeps_the_mask_dtype():
    grown = grow_by_score(tf.constant([0, 1, 0], tf.int32), [1.0, 2.0, 3.0], 1)
    assert grown.dtype == tf.int32
    np.testing.assert_array_equal(grown.numpy(), [0, 1, 1])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same static shape"):
        grow_by_score(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), 1)


def test_eager_equals_graph_and_xla_with_a_traced_count():
    rng = np.random.default_rng(3)
    mask = (rng.random((40, 30)) < 0.8).astype(np.float32)
    score = np.abs(np.round(rng.standard_normal((40, 30)), 1)).astype(np.float32)
    spec = [tf.TensorSpec((40, 30), tf.float32), tf.TensorSpec((40, 30), tf.float32),
            tf.TensorSpec((), tf.int32)]
    graph = tf.function(grow_by_score, input_signature=spec, autograph=False)
    xla = tf.function(grow_by_score, input_signature=spec, autograph=False,
                      jit_compile=True)
    for num_to_grow in (0, 1, 17, 240, 10_000):
        eager = grow_by_score(mask, score, num_to_grow).numpy()
        np.testing.assert_array_equal(eager, _reference(mask, score, num_to_grow))
        count = tf.constant(num_to_grow, tf.int32)
        np.testing.assert_array_equal(graph(mask, score, count).numpy(), eager)
        np.testing.assert_array_equal(xla(mask, score, count).numpy(), eager)
