"""Growth criteria: where the weights of a mask update grow back.

A method's core decides how many weights each tensor regrows; a growth
criterion decides where. Both criteria take the positions that may
receive a new weight (`candidates`), optionally positions to use only
once every candidate is taken (`fallback`: the positions DSR and SET
dropped in the same step), and return exactly `num_grown` of them:

| name         | picks                                      | used by                        |
| ------------ | ------------------------------------------ | ------------------------------ |
| `"random"`   | uniformly at random (`random_subset`)      | DSR, SET                       |
| `"gradient"` | largest `|dL/d(W * M)|` (`grow_by_score`)  | RigL, DSR `growth="gradient"`  |

Growth by score: gradient-based growth (RigL, Evci et al., ICML 2020,
Algorithm 1: "grow the connections with the highest gradient magnitude",
`ArgTopK(|grad|)` over the positions not active after the drop; and DSR
with `growth="gradient"`) chooses, among the positions where the mask is
0, the `num_to_grow` whose score (the magnitude of the dense gradient) is
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

from tf_dsr.core.counts import count_active
from tf_dsr.core.selection import random_subset
from tf_dsr.core.selection import select_smallest

GROWTH = ("random", "gradient")

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
    num_inactive = count_active(inactive)
    num_to_grow = tf.clip_by_value(tf.cast(num_to_grow, tf.int64), 0, num_inactive)

    high, low = _descending_keys(tf.reshape(score, [-1]))
    below, at_cut, num_from_cut = select_smallest(
        high, low, 1 << _LOW_BITS, inactive, num_to_grow
    )
    at_cut = inactive & at_cut
    ties = tf.cond(
        num_from_cut < count_active(at_cut),
        lambda: _lowest_positions(at_cut, num_from_cut, size),
        lambda: at_cut,
    )
    grown = inactive & (below | ties)
    return mask + tf.reshape(tf.cast(grown, mask.dtype), tf.shape(mask))


def validate_growth(growth):
    """Returns `growth` if it names a criterion, else raises ValueError."""
    if growth not in GROWTH:
        raise ValueError(
            f"`growth` must be one of {GROWTH}. Received: {growth!r}. Use "
            "'random' (the DSR paper's) or 'gradient' (RigL's: largest dense "
            "gradient magnitude)."
        )
    return growth


def random_growth(candidates, num_grown, seed, fallback=None, num_candidates=None,
                  num_fallback=None, gradient=None):
    """Picks `num_grown` positions uniformly at random, candidates first.

    Args:
        candidates: bool tensor, positions that may receive a weight.
        num_grown: int scalar, `<= count(candidates | fallback)`.
        seed: int tensor `[2]`, stateless RNG seed.
        fallback: optional bool tensor disjoint from `candidates`, used only
            once every candidate is taken.
        num_candidates, num_fallback: optional int scalars, their counts
            when the caller knows them.
        gradient: ignored (the signature every criterion shares).

    Returns:
        bool tensor shaped like `candidates`, exactly `num_grown` `True`.
    """
    del gradient
    return random_subset(candidates, num_grown, seed, fallback=fallback,
                         num_candidates=num_candidates, num_fallback=num_fallback)


def gradient_growth(candidates, num_grown, seed, fallback=None, num_candidates=None,
                    num_fallback=None, gradient=None):
    """Picks the `num_grown` positions of largest `|gradient|`, candidates first.

    RigL's criterion (Evci et al., ICML 2020, section 3): a zero weight
    whose loss gradient is large would reduce the loss fastest once it is
    allowed to move. Ties go to the lowest flat index (`grow_by_score`),
    as with RigL's `top_k`.

    Args:
        candidates: bool tensor, positions that may receive a weight.
        num_grown: int scalar, `<= count(candidates | fallback)`.
        seed: ignored (the choice is deterministic).
        fallback: optional bool tensor disjoint from `candidates`, ranked
            by gradient too but used only once every candidate is taken.
        num_candidates, num_fallback: ignored.
        gradient: float tensor shaped like `candidates`, the dense gradient
            of the loss with respect to the masked kernel. Required.

    Returns:
        bool tensor shaped like `candidates`, exactly
        `min(num_grown, count(candidates | fallback))` `True`; no selected
        candidate has a smaller `|gradient|` than an unselected one.

    Raises:
        ValueError: `gradient` is missing.
    """
    del seed, num_candidates, num_fallback
    if gradient is None:
        raise ValueError(
            "Gradient growth needs the dense gradient of every kernel. "
            "Received gradient=None; pass `gradients` to the core, or use "
            "growth='random'."
        )
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    score = tf.abs(tf.cast(gradient, tf.float32))
    num_grown = tf.cast(num_grown, tf.int64)

    def grow_among(allowed, count):
        blocked = tf.cast(~allowed, tf.float32)
        return tf.not_equal(grow_by_score(blocked, score, count) - blocked, 0)

    from_candidates = grow_among(candidates, num_grown)
    if fallback is None:
        return from_candidates
    num_rest = num_grown - count_active(from_candidates)
    # The fallback pass runs only when candidates ran out (rare).
    return from_candidates | tf.cond(
        num_rest > 0,
        lambda: grow_among(tf.convert_to_tensor(fallback, tf.bool), num_rest),
        lambda: tf.zeros_like(from_candidates),
    )


CRITERIA = {"random": random_growth, "gradient": gradient_growth}
