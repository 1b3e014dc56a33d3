"""Counting active weights in the graph: the one in-graph counter.

An active weight is a position whose mask is nonzero (a bool tensor counts
its `True` entries). Every core (DSR, SET, RigL, gradual pruning), the
growth criteria, the update skeleton and the callback count here, so the
count is exact and the same everywhere. Outside the graph, on a model's
variables, `tf_dsr.counting.num_active` is the same fact.
"""

import tensorflow as tf

# Float32 sums of 0/1 values are exact while every partial sum is an
# integer below 2^24, whatever the summation order.
_MAX_EXACT_FLOAT32 = 2**24
# int32 partial sums are exact below 2^31 elements.
_MAX_EXACT_INT32 = 2**31


def count_active(mask):
    """Exact number of nonzero (or `True`) entries of a mask, as int64.

    A float32 mask of at most 2^24 entries is summed in float32: no cast
    pass is needed and the sum is exact. Other masks are compared with zero
    (bool masks as they are) and summed as int32 partial sums, which move
    half the bytes of int64 ones, or as int64 above 2^31 entries or when
    the size is not static.

    Args:
        mask: tensor of 0/1 values, any numeric dtype, or a bool tensor.

    Returns:
        int64 scalar.

    Example:

    >>> int(count_active(tf.constant([[1.0, 0.0], [1.0, 1.0]])))
    3
    """
    mask = tf.convert_to_tensor(mask)
    size = mask.shape.num_elements()
    if mask.dtype == tf.float32 and size is not None and size <= _MAX_EXACT_FLOAT32:
        return tf.cast(tf.reduce_sum(mask), tf.int64)
    if mask.dtype != tf.bool:
        mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
    dtype = tf.int32 if size is not None and size < _MAX_EXACT_INT32 else tf.int64
    return tf.cast(tf.reduce_sum(tf.cast(mask, dtype)), tf.int64)
