"""One RigL update as pure TensorFlow functions.

Evci, Gale, Menick, Castro and Elsen, "Rigging the Lottery: Making All
Tickets Winners", ICML 2020, Algorithm 1. Every sparse tensor is handled on
its own and keeps its number of active weights (no redistribution):

| here                     | paper        | meaning                                   |
| ------------------------ | ------------ | ----------------------------------------- |
| `drop_fraction`          | alpha        | initial fraction of active weights moved  |
| `end_step`               | T_end        | step where updates stop                   |
| `step`                   | t            | training step of this update              |
| `drop_fraction_at(t)`    | f_decay(t)   | `alpha / 2 (1 + cos(pi t / T_end))`        |
| `num_pruned[l]`          | k            | `floor(f_decay(t) * active_l)`             |
| `gradients[l]`           | grad_W L     | dense gradient dL/d(W * M)                |

At each update each tensor drops its `k` active weights of smallest
magnitude (radix select, ties at random) and grows `k` at the positions
inactive after the drop with the largest `|grad_W L|`. As in the RigL code
(`_get_update_op` of `sparse_optimizers_base.py`), positions dropped in
this same step compete for regrowth: one that is regrown was never really
removed and keeps its value and optimizer slots; every other grown weight
starts at exactly 0. Counts are reported net (a weight dropped and regrown
at once counts in neither `num_pruned` nor `num_grown`).
"""

import math

import tensorflow as tf

from tf_dsr.core.reallocation import count_active
from tf_dsr.core.reallocation import layer_seeds
from tf_dsr.core.set import drop_smallest
from tf_dsr.core.set import regrow_as_many
from tf_dsr.core.update import sparse_update
from tf_dsr.core.update import validate_kernels_and_masks


def drop_fraction_at(step, drop_fraction, end_step):
    """The cosine-annealed drop fraction `f(t) = alpha/2 (1 + cos(pi t / T_end))`.

    `t` is clipped to `[0, T_end]`, so `f` is 0 from `T_end` on (RigL's
    `cosine_decay` with `alpha=0`).

    Args:
        step: int scalar, t.
        drop_fraction: float, alpha.
        end_step: int scalar > 0, T_end.

    Returns:
        float32 scalar.
    """
    step = tf.cast(step, tf.float32)
    end_step = tf.cast(end_step, tf.float32)
    progress = tf.clip_by_value(step / end_step, 0.0, 1.0)
    return 0.5 * float(drop_fraction) * (1.0 + tf.cos(math.pi * progress))


def drop_counts(num_active, fraction):
    """`floor(fraction * num_active[l])` per tensor, as int64.

    RigL floors (`int(n_ones * drop_fraction)`). The product is taken in
    float64 so counts are exact for any tensor below 2^53 weights.

    Args:
        num_active: int `[L]`.
        fraction: float scalar in [0, 1].

    Returns:
        int64 `[L]`, `0 <= counts <= num_active`.
    """
    num_active = tf.cast(num_active, tf.int64)
    product = tf.cast(num_active, tf.float64) * tf.cast(fraction, tf.float64)
    return tf.clip_by_value(tf.cast(tf.floor(product), tf.int64), 0, num_active)


def rigl_update(kernels, masks, gradients, drop_fraction, seed=0, step=0):
    """Runs one RigL update over all sparse tensors.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        gradients: list of `L` float tensors shaped like the kernels, the
            dense gradients dL/d(W * M) (nonzero at inactive positions).
        drop_fraction: float scalar in [0, 1], the fraction `f(t)` of each
            tensor's active weights to move now (see `drop_fraction_at`).
        seed: int scalar; with `step` and the tensor's index it breaks ties
            at random. Defaults to 0.
        step: int scalar, the training step. Defaults to 0.

    Returns:
        An `Update` with `info["drop_fraction"]` (float32, the `f(t)` used).
        Every tensor keeps its number of active weights. If a kernel or a
        gradient holds NaN or Inf, nothing changes (`is_finite` False).

    Raises:
        TypeError, ValueError: mismatched lists or shapes.
    """
    validate_kernels_and_masks(kernels, masks)
    if gradients is None:
        raise ValueError(
            "RigL grows where the dense gradient is largest: pass `gradients`, "
            "one tensor per kernel. Received gradients=None."
        )
    fraction = tf.cast(drop_fraction, tf.float32)
    masks = [tf.convert_to_tensor(m) for m in masks]
    counts = drop_counts(tf.stack([count_active(m) for m in masks]), fraction)
    seeds = layer_seeds(seed, step, len(kernels))
    return sparse_update(
        kernels, masks, drop_smallest(counts, seeds), share=regrow_as_many,
        growth="gradient", gradients=gradients, seeds=seeds, regrow_dropped=True,
        finish=lambda num_pruned, num_grown: {"drop_fraction": fraction},
        unchanged_info={"drop_fraction": fraction},
    )
