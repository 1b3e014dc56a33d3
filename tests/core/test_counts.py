"""Tests for `tf_dsr.core.counts`: the one in-graph count of active weights."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.counts import count_active


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.int32, tf.bool])
def test_count_active_exact(dtype):
    mask = np.random.RandomState(3).rand(3, 3, 16, 32) < 0.37
    assert int(count_active(tf.cast(tf.constant(mask), dtype))) == mask.sum()


def test_count_active_above_2_pow_24_float32():
    # Above 2^24 a float32 sum could round; the count takes the integer path.
    size = 2**24 + 3
    mask = tf.ones([size], tf.float32)
    assert int(count_active(mask)) == size


@pytest.mark.parametrize("mask,expected", [
    ([[1.0, 0.0], [1.0, 1.0]], 3),
    ([0, 0, 0], 0),
    ([True, False, True, True, True], 4),
    ([[0.0]], 0),
])
def test_count_active_table(mask, expected):
    count = count_active(tf.constant(mask))
    assert count.dtype == tf.int64
    assert int(count) == expected


def test_count_active_without_a_static_shape():
    # No static size: the count takes the int64 path.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def count(mask):
        return count_active(mask)

    mask = (np.random.RandomState(4).rand(7, 9) < 0.5).astype(np.float32)
    assert int(count(mask)) == int(mask.sum())


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_count_active_compiled_equals_eager(jit_compile):
    masks = [tf.constant((np.arange(60) % 3 == 0).reshape(6, 10), dtype)
             for dtype in (tf.float32, tf.int32, tf.bool)]
    compiled = tf.function(lambda ms: [count_active(m) for m in ms],
                           jit_compile=jit_compile)
    assert [int(c) for c in compiled(masks)] == [20, 20, 20]
