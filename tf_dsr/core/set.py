"""One SET update as pure TensorFlow functions.

Sparse Evolutionary Training (Mocanu et al., "Scalable training of
artificial neural networks with adaptive sparse connectivity inspired by
network science", Nature Communications 2018), a baseline of the
DSR paper's experiments. Every tensor is handled on its own:

| here                | paper    | meaning                                    |
| ------------------- | -------- | ------------------------------------------ |
| `prune_fraction`    | zeta     | fraction of a tensor's active weights cut  |
| `num_pruned[l]`     |          | weights pruned (and regrown) in tensor l   |
| `kernels`, `masks`  | W, M     | sparse tensors and their 0/1 masks         |

The DSR paper compares at equal N_prune: `zeta = N_prune / active`, which
`prune_counts` gives from an absolute `prune_target` by sharing it out in
proportion to each tensor's active weights.

Each tensor loses its `num_pruned[l]` active weights of smallest magnitude
(`tf_dsr.core.drop.drop_smallest`, ties at random) and gains as many at
random positions that were empty before this step, with value zero
(`tf_dsr.core.sharing.regrow_as_many`). The number of active weights of
every tensor is constant.
"""

import numbers

import tensorflow as tf

from tf_dsr.core.drop import drop_smallest
from tf_dsr.core.seeds import TIE_STREAM
from tf_dsr.core.seeds import layer_seeds
from tf_dsr.core.sharing import regrow_as_many
from tf_dsr.core.sharing import share_out
from tf_dsr.core.update import sparse_update
from tf_dsr.core.update import validate_kernels_and_masks


def prune_counts(num_active, prune_fraction=None, prune_target=None):
    """Weights to prune in each tensor.

    Exactly one of `prune_fraction` and `prune_target` is given.

    Args:
        num_active: int `[L]`, active weights per tensor.
        prune_fraction: float in (0, 1), zeta: each tensor prunes
            `round(zeta * num_active[l])` (float32 arithmetic, exact for
            tensors below 2^24 weights).
        prune_target: int >= 1, N_prune: shared out in proportion to
            `num_active` (largest remainder, sums to
            `min(N_prune, sum(num_active))`).

    Returns:
        int64 `[L]`, `0 <= counts <= num_active`.

    Raises:
        ValueError: neither or both are given, or a value is out of range.
    """
    if (prune_fraction is None) == (prune_target is None):
        raise ValueError(
            "Give exactly one of `prune_fraction` (zeta in (0, 1)) and "
            f"`prune_target` (int N_prune). Received: prune_fraction="
            f"{prune_fraction!r}, prune_target={prune_target!r}."
        )
    num_active = tf.cast(num_active, tf.int64)
    if prune_target is not None:
        if (
            isinstance(prune_target, bool)
            or not isinstance(prune_target, numbers.Integral)
            or prune_target < 1
        ):
            raise ValueError(f"`prune_target` must be an int >= 1. Received: {prune_target!r}.")
        return share_out(prune_target, num_active, num_active)
    if (
        isinstance(prune_fraction, bool)
        or not isinstance(prune_fraction, numbers.Real)
        or not 0.0 < prune_fraction < 1.0
    ):
        raise ValueError(
            f"`prune_fraction` must be a float in (0, 1). Received: {prune_fraction!r}."
        )
    counts = tf.round(tf.cast(num_active, tf.float32) * float(prune_fraction))
    return tf.minimum(tf.cast(counts, tf.int64), num_active)


def set_update(kernels, masks, num_pruned, seed=0, step=0):
    """Runs one SET update over all sparse tensors.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        num_pruned: int `[L]`, weights to prune and regrow per tensor
            (see `prune_counts`); clipped to each tensor's active count.
        seed: int scalar; with `step` and the tensor's index it fixes every
            random choice. Defaults to 0.
        step: int scalar, the training step. Defaults to 0.

    Returns:
        An `Update` (empty `info`). Regrown weights go to positions empty
        before this step; only when a tensor has fewer empty positions than
        it pruned do the rest return to just-pruned positions, so counts
        always hold. Those are new weights too: value 0, not in `carried`.

    Raises:
        TypeError: `kernels` or `masks` is not a list.
        ValueError: the lists are empty, differ in length, or shapes differ.
    """
    validate_kernels_and_masks(kernels, masks)
    num_pruned = tf.cast(tf.convert_to_tensor(num_pruned), tf.int64)
    tie_seeds = layer_seeds(seed, step, len(kernels), stream=TIE_STREAM)
    return sparse_update(kernels, masks, drop_smallest, drop_args=(num_pruned, tie_seeds),
                         share=regrow_as_many, growth="random",
                         seeds=layer_seeds(seed, step, len(kernels)))
