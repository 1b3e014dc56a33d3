"""Drop rules: which active weights a mask update removes.

The first step of every core on the shared skeleton
(`tf_dsr.core.update.sparse_update`) drops active weights; a method's
drop rule says which. A rule is a plain function
`rule(kernels, masks, *args) -> list of L Dropped`, with its arguments
passed to `sparse_update` as `drop_args`, and returns the one result type
of a drop, `Dropped`, for each tensor:

| rule                     | drops                                          | used by             |
| ------------------------ | ---------------------------------------------- | ------------------- |
| `drop_smallest`          | `num_dropped[l]` smallest `|W|` of each tensor | SET, RigL, gradual  |
| `drop_smallest_overall`  | `num_dropped` smallest `|W|` of all together   | gradual ("global")  |

DSR's own rule, `|W| < H` with one global threshold, is a step of its
algorithm and lives with it (`tf_dsr.core.reallocation.prune`).

Selecting the smallest magnitudes costs no sort: a non-negative float32's
bit pattern, read as an int32, orders like its value, so the radix select
of `tf_dsr.core.selection.smallest_magnitudes` (two histogram passes,
linear in the tensor size, static shapes, XLA-friendly) finds the cut
magnitude exactly. Ties at the cut are broken uniformly at random, which
matters because regrown weights start at exactly zero.
"""

from typing import NamedTuple

import tensorflow as tf

from tf_dsr.core.counts import count_active
from tf_dsr.core.selection import smallest_magnitudes


class Dropped(NamedTuple):
    """What a drop removes from one tensor (every method's drop step).

    The positions that stay are `mask != 0 & ~pruned` (the survivors,
    R_l of them in DSR's notation).

    Attributes:
        pruned: bool, kernel-shaped; active positions removed now.
        num_active: int64 scalar, active positions before the drop.
        num_pruned: int64 scalar, `count(pruned)` (DSR's K_l).
    """

    pruned: tf.Tensor
    num_active: tf.Tensor
    num_pruned: tf.Tensor


def drop_smallest(kernels, masks, num_dropped, seeds):
    """Drops the `num_dropped[l]` active weights of smallest `|W|` per tensor.

    Ties at the cut magnitude are broken at random with the tensor's seed.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        num_dropped: int `[L]`, weights to drop per tensor; clipped to
            `[0, active]`.
        seeds: int32 `[L, 2]`, per-tensor stateless seeds
            (`tf_dsr.core.seeds.layer_seeds`).

    Returns:
        A list of `L` `Dropped`.

    Example:

    >>> dropped = drop_smallest([tf.constant([0.5, -0.1, 0.3, 0.0])],
    ...                         [tf.constant([1.0, 1.0, 1.0, 0.0])], [2],
    ...                         tf.zeros([1, 2], tf.int32))
    >>> dropped[0].pruned.numpy()
    array([False,  True,  True, False])
    """
    dropped = []
    for i, (kernel, mask) in enumerate(zip(kernels, masks)):
        active = tf.not_equal(mask, 0)
        pruned = smallest_magnitudes(kernel, active, num_dropped[i], seeds[i])
        dropped.append(Dropped(pruned, count_active(active), count_active(pruned)))
    return dropped


def drop_smallest_overall(kernels, masks, num_dropped, seed):
    """Drops the `num_dropped` active weights of smallest `|W|` over all tensors.

    One magnitude cut for the whole model: a tensor of small weights loses
    more than one of large weights. Ties at the cut are broken at random.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        num_dropped: int scalar, weights to drop in total; clipped to
            `[0, active]`.
        seed: int32 `[2]`, stateless seed.

    Returns:
        A list of `L` `Dropped`.
    """
    kernels = [tf.convert_to_tensor(k) for k in kernels]
    actives = [tf.not_equal(m, 0) for m in masks]
    flat_kernel = tf.concat([tf.reshape(k, [-1]) for k in kernels], 0)
    flat_active = tf.concat([tf.reshape(a, [-1]) for a in actives], 0)
    flat_pruned = smallest_magnitudes(flat_kernel, flat_active, num_dropped, seed)
    sizes = [k.shape.num_elements() for k in kernels]
    pruned = [tf.reshape(p, tf.shape(k))
              for p, k in zip(tf.split(flat_pruned, sizes), kernels)]
    return [Dropped(p, count_active(a), count_active(p)) for p, a in zip(pruned, actives)]
