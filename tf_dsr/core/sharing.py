"""Sharing out a regrowth budget: how many weights each tensor gets.

After a drop, a method decides how many weights each of its `L` tensors
regrows (the share-out step of `tf_dsr.core.update.sparse_update`). DSR
shares the total it pruned in proportion to the surviving weights of each
tensor, within the room each tensor has (Mostafa & Wang, ICML 2019,
Algorithm 1, steps 3 and 4: `tf_dsr.core.reallocation`); SET shares an
absolute N_prune in proportion to each tensor's active weights
(`tf_dsr.core.set.prune_counts`); SET and RigL then regrow in each tensor
as many as it dropped. Both rules are here, in exact integer arithmetic.

Every share-out rule passed to `sparse_update` takes
`(num_active, num_pruned, num_free)`, int64 `[L]` vectors, and returns
the int64 `[L]` number of weights each tensor grows.
"""

import tensorflow as tf


def share_out(num_to_place, weights, capacity):
    """Integer shares proportional to `weights`, within capacity.

    Shares are proportional to `weights` with largest-remainder rounding
    (ties go to the lower index), so they sum to exactly `num_to_place`.
    What a tensor cannot hold beyond its `capacity` is shared again among
    the tensors with room, in the same proportions, until everything is
    placed. Tensors with room but zero weight only receive shares when no
    tensor with room has positive weight; then shares follow free room.
    Integer arithmetic throughout: no float rounding, no float64 (TPUs).

    Args:
        num_to_place: int scalar, the budget (DSR's K).
        weights: int `[L]`, non-negative (DSR's R_l).
        capacity: int `[L]`, non-negative, free positions per tensor.

    Returns:
        int64 `[L]` shares with `0 <= shares <= capacity` and
        `sum(shares) == min(num_to_place, sum(capacity))`.

    Example:

    >>> share_out(7, [2, 3, 5], [99, 99, 99]).numpy()
    array([1, 2, 4])
    """
    num_to_place = tf.cast(num_to_place, tf.int64)
    weights = tf.cast(weights, tf.int64)
    capacity = tf.cast(capacity, tf.int64)
    num_to_place = tf.minimum(num_to_place, tf.reduce_sum(capacity))
    num_tensors = tf.size(weights)

    def one_round(shares):
        remaining = num_to_place - tf.reduce_sum(shares)
        room = capacity - shares
        has_room = room > 0
        share_weights = tf.where(has_room, weights, 0)
        share_weights = tf.where(
            tf.reduce_sum(share_weights) > 0,
            share_weights,
            tf.where(has_room, room, 0),
        )
        total = tf.maximum(tf.reduce_sum(share_weights), 1)
        exact = remaining * share_weights
        floor = exact // total
        remainder = exact - floor * total
        num_left_over = remaining - tf.reduce_sum(floor)
        # Largest remainder first; ties to the lower index.
        order = tf.argsort(remainder, direction="DESCENDING", stable=True)
        rank = tf.math.invert_permutation(tf.cast(order, tf.int32))
        extra = tf.cast(tf.cast(rank, tf.int64) < num_left_over, tf.int64)
        return shares + tf.minimum(floor + extra, room)

    # Each round either places everything or fills at least one tensor, so
    # L rounds always finish. The loop stops once everything is placed (a
    # further round would add zero to every share), usually after one
    # round; XLA compiles the data-dependent condition as it would a fixed
    # count.
    shares = tf.zeros_like(weights)
    shares = tf.while_loop(
        lambda i, s: (i < num_tensors) & (tf.reduce_sum(s) < num_to_place),
        lambda i, s: (i + 1, one_round(s)),
        (tf.constant(0), shares),
    )[1]
    return shares


def regrow_as_many(num_active, num_pruned, num_free):
    """A share-out rule with fixed layer budgets: each tensor regrows what it
    dropped (SET, RigL).

    Args:
        num_active: int64 `[L]`, ignored.
        num_pruned: int64 `[L]`, weights dropped per tensor.
        num_free: int64 `[L]`, ignored.

    Returns:
        `num_pruned`.
    """
    del num_active, num_free
    return num_pruned
