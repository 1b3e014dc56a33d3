"""Per-tensor stateless seeds: every random choice of a mask update.

A mask update draws at random (random growth, ties at a magnitude cut).
Its randomness is fixed by the run's seed, the training step and the
tensor's index, so that a run is reproducible, a resumed run repeats the
uninterrupted one, two identical tensors of one update draw differently,
and every replica of a distribution strategy draws the same. One function
gives every core its seeds: `layer_seeds`. A core that draws twice for one
tensor takes a second, independent `stream`: SET and RigL grow with
stream 0 and break ties at the magnitude cut of their drop with
`TIE_STREAM` (gradual pruning, which never grows, breaks ties with
stream 0).
"""

import numbers

import tensorflow as tf

TIE_STREAM = 1


def layer_seeds(seed, step, num_layers, stream=0):
    """Stateless seeds for `num_layers` tensors at one step.

    Row `i` is `stateless_fold_in([seed, step], i)` (Philox). That is
    `[draw([seed, step]), i]` with a draw that does not depend on `i`, so
    one draw serves every tensor: the graph holds two ops, not two per
    tensor. Stream `s > 0` folds `s` into each row, an independent seed for
    a second random choice on the same tensor.

    Args:
        seed: int scalar, the run's seed (Python or tensor, any int dtype).
        step: int scalar, the training step of the update.
        num_layers: Python int >= 1, the number of tensors `L`.
        stream: Python int >= 0, which random choice of the update the
            seeds are for. Defaults to 0.

    Returns:
        int32 tensor `[num_layers, 2]`, one `tf.random.stateless_*` seed
        per tensor.

    Raises:
        TypeError: `num_layers` or `stream` is not an int.
        ValueError: `num_layers < 1` or `stream < 0`.

    Example:

    >>> layer_seeds(seed=0, step=100, num_layers=3).shape
    TensorShape([3, 2])
    """
    _check_int("num_layers", num_layers, 1)
    _check_int("stream", stream, 0)
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    draw = tf.random.stateless_uniform([], seed=base, minval=None, maxval=None,
                                       dtype=tf.int32, alg="philox")
    seeds = tf.stack(
        [tf.fill([num_layers], draw), tf.range(num_layers, dtype=tf.int32)],
        axis=1,
    )
    if stream == 0:
        return seeds
    return tf.stack([
        tf.random.experimental.stateless_fold_in(seeds[i], stream, alg="philox")
        for i in range(num_layers)
    ])


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a Python int >= {minimum}. Received: {value!r} of "
            f"type {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {value}.")
