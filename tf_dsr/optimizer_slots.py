"""Optimizer slot variables of a kernel: the one place that reads private
Keras optimizer attributes.

A regrown weight starts at zero; so must its optimizer state, or stale
momentum from before it was pruned moves the "new" weight on its first
step. Keras 3 keeps per-variable slots in lists indexed like the
optimizer's trainable variables, under attribute names that differ per
optimizer and are not public API.
"""

from absl import logging

# Slots that start at zero for a fresh weight, by optimizer class name.
_ZERO_INIT_SLOTS = {
    "SGD": ("momentums",),
    "Adam": ("_momentums", "_velocities", "_velocity_hats"),
    "AdamW": ("_momentums", "_velocities", "_velocity_hats"),
    "Nadam": ("_momentums", "_velocities"),
    "Adamax": ("_m", "_u"),
    "RMSprop": ("_velocities", "_momentums", "_average_gradients"),
}

_warned = set()


def supported_optimizers():
    """Names of optimizer classes whose slots are reset at regrown weights."""
    return tuple(sorted(_ZERO_INIT_SLOTS))


def _unwrap(optimizer):
    # LossScaleOptimizer (mixed precision) keeps the real slots inside.
    return getattr(optimizer, "inner_optimizer", optimizer)


def kernel_slots(optimizer, kernel):
    """Returns the slot variables `optimizer` holds for `kernel`.

    Args:
        optimizer: a Keras optimizer (possibly a LossScaleOptimizer).
        kernel: a trainable variable the optimizer updates.

    Returns:
        A list of variables shaped like `kernel`; empty when the optimizer
        is not built yet, has no slots for it, or is not supported (a
        warning names it once).
    """
    optimizer = _unwrap(optimizer)
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    name = type(optimizer).__name__
    if name not in _ZERO_INIT_SLOTS:
        if name not in _warned:
            _warned.add(name)
            logging.warning(
                "tf_dsr: optimizer %s is not one whose state tf_dsr resets; "
                "regrown weights keep whatever slot values %s holds at their "
                "positions. Supported: %s.",
                name, name, ", ".join(supported_optimizers()),
            )
        return []
    try:
        index = optimizer._get_variable_index(kernel)
    except KeyError:
        return []
    slots = []
    for attribute in _ZERO_INIT_SLOTS[name]:
        values = getattr(optimizer, attribute, None) or []
        if index < len(values) and values[index] is not None:
            slots.append(values[index])
    return [s for s in slots if tuple(s.shape) == tuple(kernel.shape)]
