"""The skeleton every mask-updating method shares: drop, share out, grow.

Every method of the package (DSR, SET, RigL, gradual pruning) changes the
masks of `L` sparse tensors in the same three steps and differs only in
the criteria:

| step      | question                               | DSR                    | SET / RigL                 | gradual   |
| --------- | -------------------------------------- | ---------------------- | -------------------------- | --------- |
| drop      | which active weights leave?            | `|W| < H` (global H)   | smallest `|W|`, per tensor  | smallest `|W|` to `s_t` |
| share out | how many return to each tensor?        | in proportion to survivors | as many as it dropped  | none      |
| grow      | where? (`tf_dsr.core.growth`)          | random or gradient     | random (SET), gradient (RigL) | -      |

`sparse_update` runs the steps, assembles kernels and masks, and guards
the whole update once: if a kernel (or a gradient used for growth) holds
NaN or Inf, nothing changes and `is_finite` is False. Every core returns
the one result type, `Update`.

New weights start at exactly 0 with fresh optimizer state. Whether a
weight dropped in this step may grow back in the same step is the method's
choice (`regrow_dropped`):

- DSR and SET grow into positions that were empty before the step and use
  just-dropped positions only when those run out (then as new, zero
  weights: the old weight's value and optimizer state are gone);
- RigL ranks every position inactive after the drop, just-dropped ones
  included; a weight dropped and regrown at once was never really removed
  and keeps its value and optimizer state (as the RigL code does).

`Update.carried` says which active weights are carried over (survivors of
the drop, and RigL's revived weights); every other active weight is new.
The callback resets optimizer slots wherever a weight is not carried over,
so this is the one place that decides it: the old and new masks alone
cannot tell a survivor from a weight regrown where one was just dropped.
"""

from typing import NamedTuple

import tensorflow as tf

from tf_dsr.core.counts import count_active
from tf_dsr.core.growth import CRITERIA
from tf_dsr.core.growth import validate_growth
from tf_dsr.core.selection import per_shape_function


class Update(NamedTuple):
    """Outcome of one mask update over `L` sparse tensors (every method).

    Attributes:
        kernels: list of `L` kernels, zero wherever the new mask is 0 and
            at every newly grown position.
        masks: list of `L` masks (input dtypes), 0/1.
        carried: list of `L` bool tensors shaped like the kernels, the
            active positions whose weight is carried over from before the
            update, with its value and optimizer state: the survivors of
            the drop and (RigL) weights dropped and regrown at once. Within
            the new mask; at its other positions (`mask & ~carried`) the
            weights are new: value 0, optimizer state to reset. Unchanged
            masks (`is_finite` False) carry every active weight.
        num_pruned: int64 `[L]`, weights removed from each tensor.
        num_grown: int64 `[L]`, weights grown in each tensor.
        is_finite: bool scalar; `False` when a kernel or gradient held NaN
            or Inf: kernels and masks come back unchanged, counts zero.
        info: dict of method-specific float32 scalars (DSR: `"threshold"`,
            the adapted H; gradual pruning: `"sparsity"`, the target s_t;
            RigL: `"drop_fraction"`, f(t)); empty for SET.
    """

    kernels: list
    masks: list
    carried: list
    num_pruned: tf.Tensor
    num_grown: tf.Tensor
    is_finite: tf.Tensor
    info: dict


def _check_pairs(items, kernels, what, hint):
    """Raises unless `items` is a list of one tensor per kernel, each of the
    kernel's shape (`what`: "mask" or "gradient")."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"`{what}s` must be a list of tensors, one per kernel. Received: "
            f"{type(items).__name__}."
        )
    if len(items) != len(kernels):
        raise ValueError(
            f"Expected one {what} per kernel. Received {len(kernels)} kernels and "
            f"{len(items)} {what}s."
        )
    for i, (kernel, item) in enumerate(zip(kernels, items)):
        if kernel.shape != item.shape:
            raise ValueError(
                f"Kernel {i} has shape {kernel.shape} but its {what} has shape "
                f"{item.shape}; {hint}"
            )


def validate_kernels_and_masks(kernels, masks):
    """Raises TypeError/ValueError unless `kernels` and `masks` pair up."""
    if not isinstance(kernels, (list, tuple)) or not isinstance(masks, (list, tuple)):
        raise TypeError(
            "`kernels` and `masks` must be lists of tensors. Received: "
            f"kernels={type(kernels).__name__}, masks={type(masks).__name__}."
        )
    if not kernels:
        raise ValueError(
            "A mask update needs at least one sparse tensor. Received an empty "
            "list of kernels: does the model contain tf_dsr sparse layers?"
        )
    _check_pairs(masks, kernels, "mask", "each mask must match its kernel.")


def validate_gradients(gradients, kernels):
    """Raises unless `gradients` is a list of tensors shaped like `kernels`."""
    _check_pairs(gradients, kernels, "gradient",
                 "pass the dense gradient dL/d(kernel * mask).")


def all_finite(tensors):
    """Bool scalar: no tensor in the list holds NaN or Inf."""
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


# One per-tensor assembly function per (criterion, regrow rule, gradient or
# not), made once, so `per_shape_function` traces each once per shape.
_ASSEMBLERS = {}


def _assembler(growth, regrow_dropped, with_gradient):
    key = (growth, regrow_dropped, with_gradient)
    if key in _ASSEMBLERS:
        return _ASSEMBLERS[key]
    criterion = CRITERIA[growth]

    def assemble(kernel, mask, pruned, num_grown, num_active, num_pruned, seed,
                 gradient=None):
        active = tf.not_equal(mask, 0)
        survivors = active & ~pruned
        size = mask.shape.num_elements()
        num_free = tf.constant(size, tf.int64) - num_active
        if regrow_dropped:
            grown = criterion(~survivors, num_grown, seed,
                              num_candidates=num_free + num_pruned, gradient=gradient)
            revived = grown & pruned
            kept = survivors | revived
            num_revived = count_active(revived)
        else:
            grown = criterion(~active, num_grown, seed, fallback=pruned,
                              num_candidates=num_free, num_fallback=num_pruned,
                              gradient=gradient)
            kept = survivors
            num_revived = tf.constant(0, tf.int64)
        return (tf.where(kept, kernel, tf.zeros_like(kernel)),
                tf.cast(survivors | grown, mask.dtype),
                kept,
                num_revived)

    if with_gradient:
        function = per_shape_function(assemble)
    else:
        function = per_shape_function(
            lambda kernel, mask, pruned, num_grown, num_active, num_pruned, seed:
            assemble(kernel, mask, pruned, num_grown, num_active, num_pruned, seed)
        )
    _ASSEMBLERS[key] = function
    return function


def sparse_update(kernels, masks, drop, drop_args=(), share=None, growth="random",
                  gradients=None, seeds=None, regrow_dropped=False, finish=None,
                  unchanged_info=None):
    """Runs drop -> share out -> grow over all tensors, guarded once.

    Args:
        kernels: list of `L` float tensors.
        masks: list of `L` 0/1 tensors shaped like the kernels.
        drop: a drop rule, `drop(kernels, masks, *drop_args) -> list of L
            tf_dsr.core.drop.Dropped` (`tf_dsr.core.drop`, or a method's
            own, such as DSR's `|W| < H`).
        drop_args: tuple, the rule's further arguments. Defaults to `()`.
        share: a share-out rule `(num_active, num_pruned, num_free) ->
            num_grown`, int64 `[L]` vectors (`tf_dsr.core.sharing`); None
            grows nothing (pure pruning).
        growth: a name in `tf_dsr.core.growth.GROWTH`. Defaults to "random".
        gradients: list of `L` dense gradients, needed by "gradient" growth.
        seeds: int32 `[L, 2]` per-tensor stateless seeds.
        regrow_dropped: bool, may a weight dropped now grow back at once
            (RigL: yes, and it is carried over, value and optimizer state)?
            Otherwise just-dropped positions are used only once the empty
            ones run out, and hold new weights (DSR, SET).
        finish: function `(num_pruned, num_grown) -> dict` of info scalars
            (e.g. DSR's adapted threshold). Defaults to `{}`.
        unchanged_info: dict of the info scalars when nothing changes.

    Returns:
        An `Update`. With `regrow_dropped`, counts are net: a weight dropped
        and regrown at once counts in neither, and is in `carried`.

    Raises:
        TypeError, ValueError: mismatched lists, unknown growth, or gradient
            growth without gradients.
    """
    validate_kernels_and_masks(kernels, masks)
    validate_growth(growth)
    kernels = [tf.convert_to_tensor(k) for k in kernels]
    masks = [tf.convert_to_tensor(m) for m in masks]
    if growth == "gradient" and share is not None:
        if gradients is None:
            raise ValueError(
                "growth='gradient' needs `gradients`, the dense gradient of each "
                "kernel. Received gradients=None."
            )
    if gradients is not None:
        validate_gradients(gradients, kernels)
        gradients = [tf.convert_to_tensor(g) for g in gradients]
    num_tensors = len(kernels)
    guarded = kernels + (gradients if growth == "gradient" and gradients else [])
    is_finite = all_finite(guarded)
    finish = finish or (lambda num_pruned, num_grown: {})
    unchanged_info = dict(unchanged_info or {})

    def finite():
        dropped = drop(kernels, masks, *drop_args)
        num_active = tf.stack([d.num_active for d in dropped])
        num_pruned = tf.stack([d.num_pruned for d in dropped])
        sizes = tf.constant([m.shape.num_elements() for m in masks], tf.int64)
        if share is None:
            new_kernels, new_masks, carried = [], [], []
            for kernel, mask, d in zip(kernels, masks, dropped):
                keep = tf.not_equal(mask, 0) & ~d.pruned
                new_kernels.append(tf.where(keep, kernel, tf.zeros_like(kernel)))
                new_masks.append(tf.cast(keep, mask.dtype))
                carried.append(keep)
            num_grown = tf.zeros_like(num_pruned)
        else:
            num_grown = share(num_active, num_pruned, sizes - num_active)
            with_gradient = growth == "gradient"
            assemble = _assembler(growth, bool(regrow_dropped), with_gradient)
            new_kernels, new_masks, carried, revived = [], [], [], []
            for i, (kernel, mask, d) in enumerate(zip(kernels, masks, dropped)):
                args = (kernel, mask, d.pruned, num_grown[i], d.num_active,
                        d.num_pruned, seeds[i])
                if with_gradient:
                    args += (gradients[i],)
                new_kernel, new_mask, kept, num_revived = assemble(*args)
                new_kernels.append(new_kernel)
                new_masks.append(new_mask)
                carried.append(kept)
                revived.append(num_revived)
            revived = tf.stack(revived)
            num_pruned, num_grown = num_pruned - revived, num_grown - revived
        info = finish(num_pruned, num_grown)
        return Update(list(new_kernels), list(new_masks), list(carried), num_pruned,
                      num_grown, tf.constant(True), info)

    def unchanged():
        zeros = tf.zeros([num_tensors], tf.int64)
        return Update(kernels, masks, [tf.not_equal(m, 0) for m in masks], zeros, zeros,
                      tf.constant(False), unchanged_info)

    return tf.cond(is_finite, finite, unchanged)
