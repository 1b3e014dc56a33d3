"""One SET update as pure TensorFlow functions.

Sparse Evolutionary Training (Mocanu et al., "Scalable training of
artificial neural networks with adaptive sparse connectivity inspired by
network science", Nature Communications 2018), the baseline of DSR_SPEC
section 5. Every tensor is handled on its own:

| here                | paper    | meaning                                    |
| ------------------- | -------- | ------------------------------------------ |
| `prune_fraction`    | zeta     | fraction of a tensor's active weights cut  |
| `num_pruned[l]`     |          | weights pruned (and regrown) in tensor l   |
| `kernels`, `masks`  | W, M     | sparse tensors and their 0/1 masks         |

The DSR paper compares at equal N_prune: `zeta = N_prune / active`, which
`prune_counts` gives from an absolute `prune_target` by sharing it out in
proportion to each tensor's active weights.

Each tensor loses its `num_pruned[l]` active weights of smallest magnitude
and gains as many at random positions that were empty before this step,
with value zero. The number of active weights of every tensor is constant.

Selecting the smallest magnitudes costs no sort: a non-negative float32's
bit pattern, read as an int32, orders like its value, so the radix select
of `tf_dsr.core.selection` (two histogram passes, linear in the tensor
size, static shapes, XLA-friendly) finds the cut magnitude exactly. Ties at
the cut are broken uniformly at random, which matters because regrown
weights start at exactly zero.
"""

import numbers
from typing import NamedTuple

import tensorflow as tf

from tf_dsr.core import selection
from tf_dsr.core.reallocation import all_finite
from tf_dsr.core.reallocation import layer_seed
from tf_dsr.core.reallocation import share_out
from tf_dsr.core.reallocation import validate_kernels_and_masks
from tf_dsr.core.selection import count_true
from tf_dsr.core.selection import random_subset

_MAGNITUDE_HIGH_BUCKETS = 1 << 15


class SETUpdate(NamedTuple):
    """Outcome of one SET update over `L` sparse tensors.

    Attributes:
        kernels: list of `L` kernels, zero wherever the new mask is 0 and at
            every regrown position.
        masks: list of `L` masks (input dtype), 0/1, same counts as before.
        num_pruned: int64 `[L]`, weights pruned in each tensor.
        num_grown: int64 `[L]`, weights regrown in each tensor (equal to
            `num_pruned`).
        is_finite: bool scalar; `False` when a kernel held NaN or Inf, in
            which case kernels and masks come back unchanged, counts zero.
    """

    kernels: list
    masks: list
    num_pruned: tf.Tensor
    num_grown: tf.Tensor
    is_finite: tf.Tensor


def smallest_magnitudes(kernel, candidates, num_selected, seed):
    """Selects the `num_selected` candidates of smallest `|kernel|`.

    Linear in the tensor size (radix select on the float32 bit pattern of
    `|kernel|`, no sort). Candidates tied at the cut magnitude are chosen
    uniformly at random. Magnitudes must be finite.

    Args:
        kernel: float tensor, any static shape.
        candidates: bool tensor shaped like `kernel`; positions that may be
            selected (the active weights).
        num_selected: int scalar; clipped to `[0, count(candidates)]`.
        seed: int tensor `[2]`, stateless seed for breaking ties.

    Returns:
        bool tensor shaped like `kernel`, `True` at exactly
        `min(num_selected, count(candidates))` candidates, none of which has
        a larger magnitude than an unselected candidate.
    """
    candidates = tf.reshape(tf.convert_to_tensor(candidates, tf.bool), [-1])
    magnitude = tf.abs(tf.reshape(tf.cast(kernel, tf.float32), [-1]))
    # |w| >= 0 has a clear sign bit, so its bits as int32 lie in [0, 2^31)
    # and order exactly like the magnitudes.
    keys = tf.bitcast(magnitude, tf.int32)
    num_selected = tf.clip_by_value(
        tf.cast(num_selected, tf.int64), 0, count_true(candidates)
    )
    below, at_cut, num_from_cut = selection.select_smallest(
        tf.bitwise.right_shift(keys, 16),
        tf.bitwise.bitwise_and(keys, (1 << 16) - 1),
        _MAGNITUDE_HIGH_BUCKETS,
        candidates,
        num_selected,
    )
    at_cut = candidates & at_cut
    ties = random_subset(at_cut, num_from_cut, seed)
    return tf.reshape(candidates & (below | ties), tf.shape(kernel))


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
        A `SETUpdate`. Regrown weights go to positions empty before this
        step; only when a tensor has fewer empty positions than it pruned
        do the rest return to just-pruned positions, so counts always hold.

    Raises:
        TypeError: `kernels` or `masks` is not a list.
        ValueError: the lists are empty, differ in length, or shapes differ.
    """
    validate_kernels_and_masks(kernels, masks)
    kernels = [tf.convert_to_tensor(k) for k in kernels]
    masks = [tf.convert_to_tensor(m) for m in masks]
    num_pruned = tf.cast(tf.convert_to_tensor(num_pruned), tf.int64)
    is_finite = all_finite(kernels)

    def finite():
        new_kernels, new_masks, counts = [], [], []
        for i, (kernel, mask) in enumerate(zip(kernels, masks)):
            active = tf.not_equal(mask, 0)
            grow_seed = layer_seed(seed, step, i)
            tie_seed = tf.random.experimental.stateless_fold_in(grow_seed, 1, alg="philox")
            pruned = smallest_magnitudes(kernel, active, num_pruned[i], tie_seed)
            survivors = active & ~pruned
            num = count_true(pruned)
            grown = random_subset(~active, num, grow_seed, fallback=pruned)
            new_masks.append(tf.cast(survivors | grown, mask.dtype))
            new_kernels.append(tf.where(survivors, kernel, tf.zeros_like(kernel)))
            counts.append(num)
        counts = tf.stack(counts)
        return SETUpdate(new_kernels, new_masks, counts, counts, tf.constant(True))

    def unchanged():
        zeros = tf.zeros([len(kernels)], tf.int64)
        return SETUpdate(kernels, masks, zeros, zeros, tf.constant(False))

    return tf.cond(is_finite, finite, unchanged)
