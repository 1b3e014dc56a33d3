"""Gradual magnitude pruning as pure TensorFlow functions.

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning
for model compression", ICLR Workshop 2018: the "compressed sparse"
baseline of the DSR paper's experiments. Sparsity follows a cubic schedule from
`s_i` at step `t0` to `s_f` at step `t0 + n dt`:

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3

| here                | paper      |
| ------------------- | ---------- |
| `initial_sparsity`  | s_i        |
| `final_sparsity`    | s_f        |
| `begin_step`        | t0         |
| `end_step`          | t0 + n dt  |

At each pruning step every tensor (scope "layer") or all tensors together
(scope "global", one magnitude cut) keep their largest-magnitude active
weights, `max(1, round((1 - s_t) * size))` of them; masks only ever shrink.
The smallest magnitudes are found by the linear radix select of
`tf_dsr.core.drop` (`drop_smallest`, `drop_smallest_overall`), no sort.
"""

import tensorflow as tf

from tf_dsr.core.counts import count_active
from tf_dsr.core.drop import drop_smallest
from tf_dsr.core.drop import drop_smallest_overall
from tf_dsr.core.seeds import layer_seeds
from tf_dsr.core.update import sparse_update
from tf_dsr.core.update import validate_kernels_and_masks

SCOPES = ("layer", "global")


def scheduled_sparsity(step, initial_sparsity, final_sparsity, begin_step, end_step):
    """The cubic schedule `s_t` (constant outside `[begin_step, end_step]`).

    Args:
        step: int scalar, t.
        initial_sparsity: float, s_i.
        final_sparsity: float, s_f.
        begin_step: int, t0.
        end_step: int > begin_step, t0 + n dt.

    Returns:
        float32 scalar.
    """
    step = tf.cast(step, tf.float32)
    progress = (step - float(begin_step)) / float(end_step - begin_step)
    progress = tf.clip_by_value(progress, 0.0, 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


def num_to_keep(size, sparsity):
    """`max(1, round((1 - sparsity) * size))` as int64 (float32 arithmetic)."""
    keep = tf.round(tf.cast(size, tf.float32) * (1.0 - tf.cast(sparsity, tf.float32)))
    return tf.maximum(tf.cast(keep, tf.int64), 1)


def prune_to_sparsity(kernels, masks, sparsity, scope="layer", seed=0, step=0):
    """Prunes the smallest-magnitude active weights down to `sparsity`.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        sparsity: float scalar in [0, 1), the target (e.g. from
            `scheduled_sparsity`).
        scope: "layer" (each tensor to `sparsity`) or "global" (all tensors
            together to `sparsity`, one magnitude cut). Defaults to "layer".
        seed: int scalar; with `step` breaks ties at the cut at random.
        step: int scalar, the training step.

    Returns:
        An `Update` (`info["sparsity"]`: the target, float32; no growth).
        A tensor (scope "layer") or the model ("global")
        already at or above `sparsity` is left as it is: masks only shrink.

    Raises:
        TypeError: `kernels` or `masks` is not a list.
        ValueError: the lists are empty or mismatched, or `scope` is unknown.
    """
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}. Received: {scope!r}.")
    validate_kernels_and_masks(kernels, masks)
    sparsity = tf.cast(sparsity, tf.float32)
    kernels = [tf.convert_to_tensor(k) for k in kernels]
    masks = [tf.convert_to_tensor(m) for m in masks]
    seeds = layer_seeds(seed, step, len(kernels))
    if scope == "layer":
        num_dropped = tf.stack([count_active(m) - num_to_keep(tf.size(k), sparsity)
                                for k, m in zip(kernels, masks)])
        drop, drop_args = drop_smallest, (num_dropped, seeds)
    else:
        num_active = tf.add_n([count_active(m) for m in masks])
        size = sum(k.shape.num_elements() for k in kernels)
        num_dropped = num_active - num_to_keep(size, sparsity)
        drop, drop_args = drop_smallest_overall, (num_dropped, seeds[0])
    return sparse_update(
        kernels, masks, drop, drop_args=drop_args, share=None,
        finish=lambda num_pruned, num_grown: {"sparsity": sparsity},
        unchanged_info={"sparsity": sparsity},
    )
