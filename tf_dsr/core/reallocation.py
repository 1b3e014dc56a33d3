"""One DSR reallocation as pure TensorFlow functions.

Mostafa & Wang, "Parameter Efficient Training of Deep Convolutional Neural
Networks by Dynamic Sparse Reparameterization", ICML 2019, Algorithm 1, as
the authors' code runs it. Names used here and the
paper's symbols:

| here                     | paper      | meaning                               |
| ------------------------ | ---------- | ------------------------------------- |
| `threshold`              | H          | global magnitude threshold            |
| `prune_target`           | N_prune    | wanted number of pruned weights       |
| `tolerance`              | delta      | band around N_prune that keeps H      |
| `num_pruned[l]`          | K_l        | weights pruned in tensor l            |
| `num_survivors[l]`       | R_l        | active weights kept in tensor l       |
| `sum(num_pruned)`        | K          | weights to regrow across all tensors  |
| `kernels[l]`, `masks[l]` | W_l, M_l   | a sparse tensor and its 0/1 mask      |

Each step of the algorithm is one function: `prune`, `share_out` (shared
with other methods, in `tf_dsr.core.sharing`), `grow`, `adapt_threshold`;
`reallocate` chains them over all tensors on the shared skeleton
(`tf_dsr.core.update.sparse_update`). Growth is random, as in the
paper, or where the dense gradient is largest (`growth="gradient"`, RigL's
criterion on DSR's global threshold and share-out). Nothing here
touches Keras or variables: tensors go in, an `Update` comes out, so
the same code runs eagerly, in a `tf.function`, under XLA and in every
replica of a distribution strategy.
"""

import math

import tensorflow as tf

from tf_dsr.core.counts import count_active
from tf_dsr.core.drop import Dropped
from tf_dsr.core.growth import validate_growth
from tf_dsr.core.seeds import layer_seeds
from tf_dsr.core.selection import per_shape_function
from tf_dsr.core.selection import random_subset
from tf_dsr.core.sharing import share_out
from tf_dsr.core.update import sparse_update
from tf_dsr.core.update import validate_kernels_and_masks


def prune(kernel, mask, threshold):
    """Step 1: prunes active weights whose magnitude is below `threshold`.

    The comparison is strict (`|W| < H`). A tensor that would lose every
    active weight keeps its largest-magnitude one, so no layer is ever cut
    off from the network.

    Args:
        kernel: float tensor, any shape.
        mask: tensor of the same shape, 0/1 (any numeric dtype).
        threshold: float scalar, H.

    Returns:
        A `tf_dsr.core.drop.Dropped`: the pruned positions (bool, shaped
        like `kernel`), `num_active` and `num_pruned` (K_l).
    """
    active = tf.not_equal(mask, 0)
    magnitude = tf.abs(tf.cast(kernel, tf.float32))
    weak = active & (magnitude < tf.cast(threshold, tf.float32))
    num_active = count_active(mask)
    num_weak = count_active(weak)
    lost_all = tf.equal(num_weak, num_active) & tf.greater(num_active, 0)

    def spare_largest():
        flat_weak = tf.reshape(weak, [-1])
        largest = tf.argmax(
            tf.reshape(tf.where(active, magnitude, -1.0), [-1]),
            output_type=tf.int64,
        )
        flat_weak = tf.tensor_scatter_nd_update(flat_weak, [[largest]], [False])
        return tf.reshape(flat_weak, tf.shape(weak))

    # The argmax is a full extra pass, needed only in the rare tensor that
    # would lose every weight.
    pruned = tf.cond(lost_all, spare_largest, lambda: weak)
    return Dropped(
        pruned=pruned,
        num_active=num_active,
        num_pruned=num_weak - tf.cast(lost_all, tf.int64),
    )


def grow(candidates, num_grown, seed, fallback=None, num_candidates=None,
         num_fallback=None):
    """Step 5: picks `num_grown` candidate positions uniformly at random.

    Args:
        candidates: bool tensor; empty positions that may receive a new
            weight (positions pruned in this step excluded).
        num_grown: int scalar, `<= count(candidates | fallback)`.
        seed: int tensor `[2]`, stateless RNG seed.
        fallback: optional bool tensor, positions pruned in this step; used
            only once every candidate is taken (see `reallocate`).
        num_candidates, num_fallback: optional int scalars, the counts of
            `candidates` and `fallback` when the caller knows them.

    Returns:
        bool tensor shaped like `candidates`, exactly `num_grown` `True`.
    """
    return random_subset(candidates, num_grown, seed, fallback=fallback,
                         num_candidates=num_candidates,
                         num_fallback=num_fallback)


def adapt_threshold(threshold, num_pruned, prune_target, tolerance):
    """Step 6: halves or doubles H to steer K towards N_prune.

    Args:
        threshold: float scalar, H.
        num_pruned: int scalar, K (pruned over all tensors).
        prune_target: number scalar, N_prune.
        tolerance: float scalar, delta.

    Returns:
        float32 scalar: `H / 2` if `K > (1 + delta) N_prune`, `2 H` if
        `K < (1 - delta) N_prune`, else `H`.
    """
    threshold = tf.cast(threshold, tf.float32)
    if tf.is_tensor(prune_target) or tf.is_tensor(tolerance):
        # convert_to_tensor, not cast: a Python 0.01 cast to float64 goes
        # through float32 first.
        def as_float64(x):
            if tf.is_tensor(x):
                return tf.cast(x, tf.float64)
            return tf.convert_to_tensor(x, tf.float64)

        num_pruned = tf.cast(num_pruned, tf.float64)
        upper = (1.0 + as_float64(tolerance)) * as_float64(prune_target)
        lower = (1.0 - as_float64(tolerance)) * as_float64(prune_target)
    else:
        # Python numbers: exact integer bounds, computed here in float64, so
        # K == (1 - delta) N_prune keeps H (a float32 0.1 would not), and the
        # graph compares int64 only (TPUs have no float64).
        num_pruned = tf.cast(num_pruned, tf.int64)
        upper = tf.constant(math.floor((1.0 + tolerance) * prune_target), tf.int64)
        lower = tf.constant(math.ceil((1.0 - tolerance) * prune_target), tf.int64)
    too_many = num_pruned > upper
    too_few = num_pruned < lower
    return tf.where(
        too_many, threshold / 2.0, tf.where(too_few, threshold * 2.0, threshold)
    )


def _prune_all(kernels, masks, threshold):
    """Step 1 on every tensor: DSR's drop rule for `sparse_update`.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        threshold: float32 scalar, H.

    Returns:
        A list of `L` `tf_dsr.core.drop.Dropped`.
    """
    # In a graph, `prune` is traced once per kernel shape, not per kernel.
    return [per_shape_function(prune)(k, m, threshold) for k, m in zip(kernels, masks)]


def _share_regrowth(num_active, num_pruned, num_free):
    """Steps 3-4 for regrowth: empty positions first, then just-pruned ones."""
    num_survivors = num_active - num_pruned
    total_pruned = tf.reduce_sum(num_pruned)
    # New weights go to positions that were empty before this step. Only
    # when those run out (dense-ish tensors, large K) does the rest fall back
    # to positions pruned in this step, so the count is always conserved.
    into_free = share_out(total_pruned, num_survivors, num_free)
    into_pruned = share_out(
        total_pruned - tf.reduce_sum(into_free), num_survivors, num_pruned
    )
    return into_free + into_pruned


def reallocate(kernels, masks, threshold, prune_target, tolerance=0.1,
               seed=0, step=0, growth="random", gradients=None):
    """Runs one DSR reallocation (Algorithm 1) over all sparse tensors.

    Prunes every active weight with `|W| < threshold` (keeping the largest
    weight of a tensor that would lose all), zeroes the kernels wherever the
    mask is 0, regrows exactly as many weights as were pruned, shared across
    tensors in proportion to their surviving weights and placed among
    positions that were empty before this step (uniformly at random, or
    where `|gradient|` is largest), then adapts the threshold. The total
    number of active weights is conserved exactly.

    If any kernel (or, for gradient growth, any gradient) holds NaN or Inf,
    nothing changes: the inputs come back with `is_finite=False` and zero
    counts.

    Args:
        kernels: list of `L` float tensors, W_l.
        masks: list of `L` 0/1 tensors shaped like the kernels, M_l.
        threshold: float scalar, H.
        prune_target: number scalar, N_prune.
        tolerance: float scalar, delta. Defaults to 0.1.
        seed: int scalar. Together with `step` and the tensor's index it
            fixes every random choice. Defaults to 0.
        step: int scalar, the training step. Defaults to 0.
        growth: "random" (the paper's) or "gradient". Defaults to "random".
        gradients: list of `L` dense gradients dL/d(W * M), shaped like
            the kernels; required by `growth="gradient"`.

    Returns:
        An `Update` whose `info["threshold"]` is the adapted H (float32).

    Raises:
        TypeError: `kernels` or `masks` is not a list.
        ValueError: the lists are empty, differ in length, or a mask's shape
            differs from its kernel's; unknown `growth`; gradient growth
            without `gradients`.
    """
    validate_kernels_and_masks(kernels, masks)
    validate_growth(growth)
    threshold = tf.cast(threshold, tf.float32)

    def finish(num_pruned, num_grown):
        return {"threshold": adapt_threshold(threshold, tf.reduce_sum(num_pruned),
                                             prune_target, tolerance)}

    return sparse_update(
        kernels, masks, _prune_all, drop_args=(threshold,), share=_share_regrowth,
        growth=growth,
        gradients=gradients,
        seeds=layer_seeds(seed, step, len(kernels)),
        finish=finish, unchanged_info={"threshold": threshold},
    )
