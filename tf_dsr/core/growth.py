"""Growth by score: activate the inactive positions that score highest.

Gradient-based growth (RigL, Evci et al., ICML 2020, Algorithm 1: "grow
the connections with the highest gradient magnitude", `ArgTopK(|grad|)`
over the positions not active after the drop; and DSR with
`growth="gradient"`) chooses, among the positions where the mask is 0,
the `num_to_grow` whose score (the magnitude of the dense gradient) is
largest.

A sort of the whole kernel would do it; instead each score becomes a
32-bit key whose unsigned order is the scores' descending order, and the
`num_to_grow` smallest keys are found by the same two-level radix select
as random growth (`tf_dsr.core.selection.select_smallest`): linear in
the kernel size, static shapes, no long `cumsum`, so it compiles with XLA
and takes `num_to_grow` as a traced tensor.

Names: `mask` is the 0/1 mask after the drop step (RigL's "the mask after
dropping"), `score` RigL's `|grad|` (any float score works), `num_to_grow`
RigL's `k` for the layer (its number of dropped weights).
"""

import tensorflow as tf

from tf_dsr.core.selection import count_true
from tf_dsr.core.selection import select_smallest

_LOW_BITS = 16
_LOW_MASK = (1 << _LOW_BITS) - 1


def _descending_keys(score):
    """int32 `(high, low)` halves of a key whose unsigned order is the
    descending order of `score` (float32).

    IEEE-754 bits read as a signed integer order positive floats like the
    floats and negative floats in reverse. Positive scores therefore get
    the key `~bits` with the sign bit cleared (larger score, smaller key,
    all below 2^31) and negative scores keep their bits (sign bit set, so
    above every positive score's key; more negative, larger key). NaN
    gets the largest key, 2^32 - 1, after -Inf's; -0 counts as +0, so
    equal numbers get equal keys.
    """
    score = score + tf.constant(0.0, score.dtype)  # -0 + 0 = +0
    bits = tf.bitcast(score, tf.int32)
    key = tf.where(bits >= 0, tf.bitwise.bitwise_and(tf.bitwise.invert(bits), 0x7FFFFFFF), bits)
    key = tf.where(tf.math.is_nan(score), tf.constant(-1, tf.int32), key)
    high = tf.bitwise.bitwise_and(tf.bitwise.right_shift(key, _LOW_BITS), _LOW_MASK)
    return high, tf.bitwise.bitwise_and(key, _LOW_MASK)


def _lowest_positions(at_cut, num_wanted, size):
    """The `num_wanted` lowest positions among `at_cut` (bool `[size]`)."""
    position = tf.range(size, dtype=tf.int64)
    below, last, num_last = select_smallest(
        tf.bitwise.right_shift(position, _LOW_BITS),
        tf.bitwise.bitwise_and(position, _LOW_MASK),
        max(1, -(-size // (1 << _LOW_BITS))),
        at_cut,
        num_wanted,
    )
    # Positions are unique: at most one holds the cut, taken iff wanted.
    return at_cut & (below | (last & (num_last > 0)))


def grow_by_score(mask, score, num_to_grow):
    """Activates the `num_to_grow` inactive positions with the largest score.

    Ties are broken deterministically: among positions with equal scores
    the one with the lowest flat (row-major) index is grown first. NaN
    scores rank below every number, -Inf included; -0.0 equals +0.0.

    Args:
        mask: 0/1 tensor of any static shape (float or int), the mask after
            the drop step. Positions where it is 0 may grow.
        score: float tensor of `mask`'s shape (cast to float32), e.g. the
            magnitude of the dense gradient of the masked kernel.
        num_to_grow: int scalar, Python or a traced tensor. Values above
            the number of inactive positions are clipped to it, negative
            values to 0.

    Returns:
        A tensor of `mask`'s shape and dtype: `mask` with ones added at
        exactly `min(max(num_to_grow, 0), count(mask == 0))` positions,
        the inactive positions with the largest scores.

    Raises:
        ValueError: if `mask` and `score` shapes differ or are not static.

    Example:

    >>> grow_by_score([1., 0., 0., 0.], [9., 1., 3., 3.], 2).numpy()
    array([1., 0., 1., 1.], dtype=float32)
    """
    mask = tf.convert_to_tensor(mask)
    score = tf.cast(tf.convert_to_tensor(score), tf.float32)
    if not mask.shape.is_fully_defined() or mask.shape != score.shape:
        raise ValueError(
            "grow_by_score: `mask` and `score` must have the same static "
            f"shape. Received: mask.shape={mask.shape}, score.shape="
            f"{score.shape}."
        )
    inactive = tf.reshape(tf.equal(mask, tf.zeros((), mask.dtype)), [-1])
    size = int(inactive.shape[0])
    num_inactive = count_true(inactive)
    num_to_grow = tf.clip_by_value(tf.cast(num_to_grow, tf.int64), 0, num_inactive)

    high, low = _descending_keys(tf.reshape(score, [-1]))
    below, at_cut, num_from_cut = select_smallest(
        high, low, 1 << _LOW_BITS, inactive, num_to_grow
    )
    at_cut = inactive & at_cut
    ties = tf.cond(
        num_from_cut < count_true(at_cut),
        lambda: _lowest_positions(at_cut, num_from_cut, size),
        lambda: at_cut,
    )
    grown = inactive & (below | ties)
    return mask + tf.reshape(tf.cast(grown, mask.dtype), tf.shape(mask))
