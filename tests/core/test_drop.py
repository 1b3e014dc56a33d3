"""Tests for `tf_dsr.core.drop`: smallest-magnitude drop rules."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.drop import Dropped
from tf_dsr.core.drop import drop_smallest
from tf_dsr.core.drop import drop_smallest_overall

SEEDS = tf.constant([[3, 4]], tf.int32)

KERNEL = np.array([[0.5, -0.1, 0.0, 2.0], [0.3, -0.05, 1.0, -0.7]], np.float32)
ACTIVE = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)
MASK = ACTIVE.astype(np.float32)

# Active magnitudes in order: 0.05 (1,1), 0.1 (0,1), 0.3 (1,0), 0.5 (0,0),
# 0.7 (1,3), 1.0 (1,2), 2.0 (0,3). The inactive 0.0 at (0,2) never counts.
SMALLEST = {
    0: [],
    1: [(1, 1)],
    2: [(1, 1), (0, 1)],
    4: [(1, 1), (0, 1), (1, 0), (0, 0)],
    7: [(1, 1), (0, 1), (1, 0), (0, 0), (1, 3), (1, 2), (0, 3)],
    99: [(1, 1), (0, 1), (1, 0), (0, 0), (1, 3), (1, 2), (0, 3)],
}


def _drop_one(kernel, mask, num, seed):
    return drop_smallest([kernel], [mask], [num], seed[None])[0].pruned.numpy()


# ----------------------------------------------------------------------------
# drop_smallest
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num", sorted(SMALLEST))
def test_drop_smallest_table(num):
    dropped = drop_smallest([KERNEL], [MASK], [num], SEEDS)
    assert len(dropped) == 1 and isinstance(dropped[0], Dropped)
    expected = np.zeros_like(ACTIVE)
    for position in SMALLEST[num]:
        expected[position] = True
    np.testing.assert_array_equal(dropped[0].pruned.numpy(), expected)
    assert dropped[0].num_active.dtype == dropped[0].num_pruned.dtype == tf.int64
    assert int(dropped[0].num_active) == 7
    assert int(dropped[0].num_pruned) == len(SMALLEST[num])


def test_drop_smallest_breaks_ties_at_random_with_exact_count():
    # Ten zeros tied at the cut (regrown weights), then larger ones.
    kernel = np.concatenate([np.zeros(10), np.arange(1, 11)]).astype(np.float32)
    mask = np.ones(20, np.float32)
    picks = []
    for seed in range(8):
        chosen = _drop_one(kernel, mask, 4, tf.constant([seed, 0], tf.int32))
        assert chosen.sum() == 4
        assert not chosen[10:].any()
        picks.append(tuple(np.flatnonzero(chosen)))
    assert len(set(picks)) > 1, "ties always broken the same way"


def test_drop_smallest_matches_sort_over_many_shapes():
    rng = np.random.default_rng(0)
    for trial in range(10):
        shape = [(7,), (5, 6), (3, 3, 4, 2)][trial % 3]
        kernel = rng.normal(size=shape).astype(np.float32)
        active = rng.random(shape) < 0.6
        num = int(rng.integers(0, active.sum() + 1))
        chosen = _drop_one(kernel, active.astype(np.float32), num, SEEDS[0])
        assert chosen.sum() == num and not chosen[~active].any()
        magnitudes = np.sort(np.abs(kernel[active]))
        expected = set(magnitudes[:num].tolist())
        assert set(np.abs(kernel[chosen]).tolist()) == expected


def test_drop_smallest_handles_each_tensor_with_its_own_count():
    kernels = [KERNEL, np.array([0.2, -0.9, 0.1], np.float32)]
    masks = [MASK, np.array([1, 1, 1], np.int32)]
    seeds = tf.constant([[1, 0], [1, 1]], tf.int32)
    dropped = drop_smallest(kernels, masks, tf.constant([1, 2], tf.int64), seeds)
    np.testing.assert_array_equal(dropped[1].pruned.numpy(), [True, False, True])
    assert [int(d.num_pruned) for d in dropped] == [1, 2]
    assert [int(d.num_active) for d in dropped] == [7, 3]


def test_drop_smallest_clips_negative_counts_to_zero():
    dropped = drop_smallest([KERNEL], [MASK], [-3], SEEDS)
    assert not dropped[0].pruned.numpy().any()
    assert int(dropped[0].num_pruned) == 0


# ----------------------------------------------------------------------------
# drop_smallest_overall
# ----------------------------------------------------------------------------


def test_drop_smallest_overall_hand_computed():
    # Active magnitudes over both tensors: 0.05, 0.1, 0.15, 0.3, 0.35, 0.5,
    # 0.7, 0.8, 1.0, 2.0 (the inactive 5.0 never counts); the five smallest
    # are 0.05, 0.1, 0.3 in tensor 0 and 0.15, 0.35 in tensor 1.
    kernels = [KERNEL, np.array([0.35, -0.8, 0.15, 5.0], np.float32)]
    masks = [MASK, np.array([1, 1, 1, 0], np.float32)]
    dropped = drop_smallest_overall(kernels, masks, 5, tf.constant([0, 1], tf.int32))
    expected = np.zeros_like(ACTIVE)
    expected[1, 1] = expected[0, 1] = expected[1, 0] = True
    np.testing.assert_array_equal(dropped[0].pruned.numpy(), expected)
    np.testing.assert_array_equal(dropped[1].pruned.numpy(), [True, False, True, False])
    assert [int(d.num_pruned) for d in dropped] == [3, 2]
    assert [int(d.num_active) for d in dropped] == [7, 3]


@pytest.mark.parametrize("seed", range(4))
def test_drop_smallest_overall_cuts_one_magnitude_for_all(seed):
    rng = np.random.default_rng(seed)
    shapes = [(6, 5), (3, 3, 2, 2), (11,)]
    kernels = [rng.normal(size=s).astype(np.float32) * rng.choice([0.1, 1.0]) for s in shapes]
    masks = [(rng.random(s) < 0.6).astype(np.float32) for s in shapes]
    num = int(rng.integers(1, sum(int(m.sum()) for m in masks)))
    dropped = drop_smallest_overall(kernels, masks, num,
                                    tf.constant([seed, 0], tf.int32))
    pruned = [d.pruned.numpy() for d in dropped]
    assert sum(int(p.sum()) for p in pruned) == num
    kept = [(m != 0) & ~p for m, p in zip(masks, pruned)]
    assert not any((p & (m == 0)).any() for p, m in zip(pruned, masks))
    largest_dropped = max(np.abs(k[p]).max(initial=0.0) for k, p in zip(kernels, pruned))
    smallest_kept = min(np.abs(k[s]).min(initial=np.inf) for k, s in zip(kernels, kept))
    assert largest_dropped <= smallest_kept


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_drop_rules_compiled_equal_eager(jit_compile):
    rng = np.random.default_rng(7)
    kernels = [np.round(rng.normal(size=s), 1).astype(np.float32) for s in [(5, 6), (4,)]]
    masks = [(rng.random(k.shape) < 0.7).astype(np.float32) for k in kernels]
    seeds = tf.constant([[2, 0], [2, 1]], tf.int32)

    def run(ks, ms):
        each = drop_smallest(ks, ms, tf.constant([4, 1], tf.int64), seeds)
        overall = drop_smallest_overall(ks, ms, tf.constant(6, tf.int64), seeds[0])
        return [tuple(d) for d in each + overall]

    eager = run(kernels, masks)
    compiled = tf.function(run, jit_compile=jit_compile)(kernels, masks)
    for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(compiled)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
