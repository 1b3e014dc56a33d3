"""Tests for `tf_dsr.core.sharing`: dividing a regrowth budget."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.sharing import regrow_as_many
from tf_dsr.core.sharing import share_out

# --------------------------------------------------------------------------
# share_out: proportional integer shares within capacity.

SHARE_TABLE = [
    # num_to_place, weights, capacity, shares
    pytest.param(10, [1, 1, 1], [99, 99, 99], [4, 3, 3], id="even-tie-lowest"),
    pytest.param(7, [2, 3, 5], [99, 99, 99], [1, 2, 4], id="largest-remainder"),
    pytest.param(5, [1, 2, 2], [99, 99, 99], [1, 2, 2], id="exact"),
    pytest.param(1, [0, 3, 3], [9, 9, 9], [0, 1, 0], id="tie-to-lower-index"),
    pytest.param(2, [1, 2, 2, 1, 2], [9] * 5, [0, 1, 1, 0, 0],
                 id="ties-in-order"),
    pytest.param(0, [4, 5], [9, 9], [0, 0], id="nothing-to-place"),
    pytest.param(5, [7], [9], [5], id="single-tensor"),
    # Round 1: 10*[1,1,2]/4 = [2.5,2.5,5] -> [3,2,5] capped to [1,2,5];
    # round 2: 2*[1,2]/3 -> [1,1] on tensors 1 and 2.
    pytest.param(10, [1, 1, 2], [1, 100, 100], [1, 3, 6], id="overflow-reshared"),
    pytest.param(9, [6, 3], [2, 100], [2, 7], id="overflow-to-other"),
    pytest.param(10, [5, 5], [2, 3], [2, 3], id="capacity-below-demand"),
    # Tensor 0 fills; tensors with room have zero weight -> shares follow room.
    pytest.param(4, [3, 0, 0], [1, 4, 2], [1, 2, 1], id="zero-weight-fallback"),
    pytest.param(3, [0, 0], [1, 2], [1, 2], id="all-zero-weights"),
    pytest.param(5, [0, 4, 0], [9, 9, 9], [0, 5, 0], id="zero-weight-gets-none"),
    pytest.param(6, [1, 1, 1], [0, 0, 6], [0, 0, 6], id="zero-capacity"),
]


@pytest.mark.parametrize("num_to_place,weights,capacity,expected", SHARE_TABLE)
def test_share_out_table(num_to_place, weights, capacity, expected):
    shares = share_out(num_to_place, tf.constant(weights, tf.int64),
                       tf.constant(capacity, tf.int64))
    assert shares.dtype == tf.int64
    np.testing.assert_array_equal(shares.numpy(), expected)


@pytest.mark.parametrize("num_to_place,weights,capacity,expected", SHARE_TABLE)
def test_share_out_table_compiled(num_to_place, weights, capacity, expected):
    # The loop stops as soon as everything is placed: a data-dependent
    # condition that graphs and XLA must run to the same shares.
    args = (tf.constant(num_to_place, tf.int64), tf.constant(weights, tf.int64),
            tf.constant(capacity, tf.int64))
    for jit_compile in (False, True):
        compiled = tf.function(share_out, autograph=False,
                               jit_compile=jit_compile)
        np.testing.assert_array_equal(compiled(*args).numpy(), expected)


def test_share_out_accepts_int32():
    shares = share_out(tf.constant(7), tf.constant([2, 3, 5]),
                       tf.constant([99, 99, 99]))
    np.testing.assert_array_equal(shares.numpy(), [1, 2, 4])


def test_share_out_invariants_grid():
    rng = np.random.RandomState(0)
    for case in range(60):
        num_tensors = rng.randint(1, 7)
        weights = rng.randint(0, 50, num_tensors) * (rng.rand(num_tensors) > 0.2)
        capacity = rng.randint(0, 60, num_tensors)
        num_to_place = rng.randint(0, 200)
        shares = share_out(num_to_place, tf.constant(weights, tf.int64),
                           tf.constant(capacity, tf.int64)).numpy()
        info = f"case {case}: K={num_to_place} w={weights} c={capacity} -> {shares}"
        assert shares.sum() == min(num_to_place, capacity.sum()), info
        assert (shares >= 0).all() and (shares <= capacity).all(), info
        total = weights.sum()
        # With room everywhere, shares are the rounded proportions.
        if total > 0 and (
            -(-num_to_place * weights // total) <= capacity
        ).all():
            assert (np.abs(shares * total - num_to_place * weights) < total).all(), info
        # Zero-weight tensors only receive shares once every weighted
        # tensor is full.
        if (shares[weights == 0] > 0).any():
            full = shares == capacity
            assert full[weights > 0].all(), info


# --------------------------------------------------------------------------
# regrow_as_many: fixed layer budgets.

def test_regrow_as_many_regrows_what_each_tensor_dropped():
    num_pruned = tf.constant([3, 0, 5], tf.int64)
    shares = regrow_as_many(tf.constant([9, 4, 7], tf.int64), num_pruned,
                            tf.constant([1, 1, 1], tf.int64))
    np.testing.assert_array_equal(shares.numpy(), [3, 0, 5])
