"""Optimizer slot variables of a kernel: the one place that reads private
Keras optimizer attributes.

A regrown weight starts at zero; so must its optimizer state, or stale
momentum from before it was pruned moves the "new" weight on its first
step. Keras 3 keeps per-variable slots in lists indexed like the
optimizer's trainable variables, under attribute names that differ per
optimizer and are not public API. This module names them for every
built-in Keras optimizer, with the value each slot holds for a fresh
weight:

| optimizer | slots reset at inactive positions and new weights (value) |
| --- | --- |
| SGD | `momentums` (0; none without momentum) |
| Adam, AdamW | `_momentums`, `_velocities` (0), `_velocity_hats` with amsgrad (0) |
| Nadam | `_momentums`, `_velocities` (0) |
| Adamax | `_m`, `_u` (0) |
| RMSprop | `_velocities` (0), `_momentums` with momentum, `_average_gradients` when centered (0) |
| Adagrad | `_accumulators` (`initial_accumulator_value`) |
| Adadelta | `_accumulated_grads`, `_accumulated_delta_vars` (0) |
| Ftrl | `_accumulators` (`initial_accumulator_value`), `_linears` (0) |
| Lion | `_momentums` (0) |
| Lamb | `_momentums`, `_velocities` (0) |
| Muon | `momentums`, `adam_velocities` (0; Muon keeps no velocity for most kernels) |
| ScheduleFreeAdamW | `_momentums` (z: 0, the regrown weight's value), `_velocities` (0) |
| Adafactor | none (see below) |

`LossScaleOptimizer` is looked through (`inner_optimizer`), and
`MultiOptimizer` is asked for the sub-optimizer that updates the kernel.

Adafactor keeps no per-position state of a kernel: its row and column
statistics (`_r`, `_c`) are averages over whole rows and columns, shared
with the active weights there, and its kernel-shaped `_v` is recomputed
from them at every step before it is used. Resetting a row or column
would disturb the active weights that share it, so nothing is reset.

An optimizer class not in this table (a user's own, or one Keras adds
later) gets a warning naming it, once per class. When a supported
optimizer lacks an attribute or index this module expects (Keras renamed
it), `kernel_slots` raises instead of silently resetting nothing.
"""

import warnings
from typing import NamedTuple

import keras
import tensorflow as tf


class Slot(NamedTuple):
    """One optimizer variable shaped like a kernel.

    Attributes:
        variable: the slot variable.
        initial_value: float, what the optimizer holds for a fresh weight.
    """

    variable: object
    initial_value: float

    def reset_inactive(self, mask):
        """Sets the slot to its initial value wherever `mask` is 0."""
        # tf.where, not a product: `slot * 0` keeps a NaN or Inf.
        initial = tf.fill(tf.shape(self.variable), tf.cast(self.initial_value,
                                                           self.variable.dtype))
        self.variable.assign(tf.where(tf.not_equal(mask, 0), self.variable.value, initial))


def _adam(optimizer):
    slots = [("_momentums", 0.0), ("_velocities", 0.0)]
    return slots + ([("_velocity_hats", 0.0)] if optimizer.amsgrad else [])


def _rmsprop(optimizer):
    slots = [("_velocities", 0.0)]
    if optimizer.momentum > 0:
        slots.append(("_momentums", 0.0))
    if optimizer.centered:
        slots.append(("_average_gradients", 0.0))
    return slots


# Optimizer class name -> function of the optimizer giving
# [(attribute, initial value)]. The classes are looked up in
# `keras.optimizers` by these names, so a class missing from the installed
# Keras is simply not supported.
_SLOT_ATTRIBUTES = {
    "SGD": lambda o: [("momentums", 0.0)] if o.momentum else [],
    "Adam": _adam,
    "AdamW": _adam,
    "Nadam": lambda o: [("_momentums", 0.0), ("_velocities", 0.0)],
    "Adamax": lambda o: [("_m", 0.0), ("_u", 0.0)],
    "RMSprop": _rmsprop,
    "Adagrad": lambda o: [("_accumulators", float(o.initial_accumulator_value))],
    "Adadelta": lambda o: [("_accumulated_grads", 0.0), ("_accumulated_delta_vars", 0.0)],
    "Ftrl": lambda o: [
        ("_accumulators", float(o.initial_accumulator_value)), ("_linears", 0.0),
    ],
    "Lion": lambda o: [("_momentums", 0.0)],
    "Lamb": lambda o: [("_momentums", 0.0), ("_velocities", 0.0)],
    "Muon": lambda o: [("momentums", 0.0), ("adam_velocities", 0.0)],
    "ScheduleFreeAdamW": lambda o: [("_momentums", 0.0), ("_velocities", 0.0)],
    "Adafactor": lambda o: [],
}

# Attributes whose list may hold None for a kernel: Keras creates no
# variable there (Muon's Adam velocity only exists for the variables it
# updates with AdamW).
_MAY_BE_NONE = {("Muon", "adam_velocities")}

_warned = set()


def supported_optimizers():
    """Names of the Keras optimizer classes whose slots are handled."""
    return tuple(sorted(_SLOT_ATTRIBUTES))


def _slot_attributes(optimizer):
    """The table entry for `optimizer`'s exact class, or None."""
    name = type(optimizer).__name__
    if name in _SLOT_ATTRIBUTES and getattr(keras.optimizers, name, None) is type(optimizer):
        return _SLOT_ATTRIBUTES[name]
    return None


def _renamed(optimizer, what):
    return RuntimeError(
        f"tf_dsr: Keras {keras.__version__}'s {type(optimizer).__name__} has no "
        f"{what}, where tf_dsr expects the optimizer state of each weight. "
        "Keras has probably renamed it, so the state of regrown weights cannot "
        "be reset. Install a Keras version tf_dsr supports, or report it with "
        "your Keras version."
    )


def _variable_index(optimizer, kernel):
    """The kernel's index in the optimizer's slot lists, or None if the
    optimizer does not update it (a frozen layer)."""
    try:
        find = optimizer._get_variable_index
    except AttributeError:
        raise _renamed(optimizer, "`_get_variable_index` method") from None
    try:
        return find(kernel)
    except KeyError:
        return None


def kernel_slots(optimizer, kernel):
    """Returns the slots `optimizer` holds for `kernel`, with their initial values.

    Args:
        optimizer: a Keras optimizer, possibly a `LossScaleOptimizer` or a
            `MultiOptimizer`, or None.
        kernel: a trainable variable the optimizer updates.

    Returns:
        A list of `Slot`s whose variables are shaped like `kernel`; empty
        when there is no optimizer, it is not built yet, it does not update
        `kernel`, it keeps no per-position state (SGD without momentum,
        Adafactor), or its class is not supported (a warning names it once).

    Raises:
        RuntimeError: a supported optimizer lacks an attribute this module
            expects, or a slot is not shaped like the kernel (Keras changed).
    """
    if optimizer is None:
        return []
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return kernel_slots(optimizer.inner_optimizer, kernel)
    if not getattr(optimizer, "built", False):
        return []
    if type(optimizer) is getattr(keras.optimizers, "MultiOptimizer", None):
        slots = []
        for inner in optimizer.optimizers:
            if getattr(inner, "built", False) and _variable_index(inner, kernel) is not None:
                slots.extend(kernel_slots(inner, kernel))
        return slots
    attributes = _slot_attributes(optimizer)
    name = type(optimizer).__name__
    if attributes is None:
        if name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"tf_dsr: optimizer {name} is not one whose state tf_dsr resets; "
                f"regrown weights keep whatever state {name} holds at their "
                f"positions. Supported: {', '.join(supported_optimizers())}.",
                UserWarning,
                stacklevel=2,
            )
        return []
    index = _variable_index(optimizer, kernel)
    if index is None:
        return []
    slots = []
    for attribute, initial_value in attributes(optimizer):
        values = getattr(optimizer, attribute, None)
        if values is None:
            raise _renamed(optimizer, f"attribute `{attribute}`")
        if index >= len(values):
            raise _renamed(optimizer, f"entry {index} in `{attribute}` (it has {len(values)})")
        variable = values[index]
        if variable is None:
            if (name, attribute) in _MAY_BE_NONE:
                continue
            raise _renamed(optimizer, f"variable in `{attribute}[{index}]`")
        if tuple(variable.shape) != tuple(kernel.shape):
            raise _renamed(
                optimizer,
                f"`{attribute}[{index}]` shaped like the kernel ({tuple(variable.shape)} "
                f"instead of {tuple(kernel.shape)})",
            )
        slots.append(Slot(variable, initial_value))
    return slots
