"""Checks of arguments that several public functions share, each in one place."""

import math
import numbers

import keras
import numpy as np


def check_built_model(model, function_name):
    """Raises unless `model` is a built `keras.Model`.

    Args:
        model: what the user passed.
        function_name: the public function's name, for the message
            (`"sparsify"` gives `tf_dsr.sparsify`).

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: it is not built.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`tf_dsr.{function_name}` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"`tf_dsr.{function_name}` needs a built model; model "
            f"'{model.name}' is not built. Start it with `keras.Input(...)`, "
            "call it once on data, or call `model.build(input_shape)`."
        )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# The largest seed TensorFlow's int64 random streams take.
MAX_SEED = 2**63 - 1


def validate_sparsity(sparsity, name="sparsity"):
    """Returns `sparsity` (the fraction of zeros) as a float in [0, 1).

    Raises:
        TypeError: not a real number.
        ValueError: outside [0, 1).
    """
    if not _is_real(sparsity):
        raise TypeError(
            f"`{name}` must be a float in [0, 1). Received: {name}={sparsity!r} "
            f"of type {type(sparsity).__name__}."
        )
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(
            f"`{name}` is the fraction of zeros and must be in [0, 1). "
            f"Received: {name}={sparsity}. Use e.g. 0.9 for 10% non-zeros."
        )
    return float(sparsity)


def validate_seed(seed):
    """Returns `seed` as an int (or None) if it can seed TF's int64 streams.

    Raises:
        TypeError: neither None nor an int.
        ValueError: outside [0, 2**63 - 1].
    """
    if seed is not None and not _is_int(seed):
        raise TypeError(
            f"`seed` must be an int or None. Received: seed={seed!r} of type "
            f"{type(seed).__name__}."
        )
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"`seed` must be in [0, 2**63 - 1] (it seeds TensorFlow's int64 "
            f"random streams). Received: seed={seed}. Use e.g. seed % 2**32."
        )
    return None if seed is None else int(seed)


def validate_layer_block_shape(block_shape, layer_class, where=None):
    """Returns a layer's `block_shape` as `(input, output)` ints, or None.

    Args:
        block_shape: None, or a pair of positive ints: the block's extent
            along the kernel's input axis and its output axis.
        layer_class: the sparse class it is given to (its
            `supports_block_shape` says whether its kernels have an
            input/output pair).
        where: who the message names; defaults to the class.

    Raises:
        TypeError: not None and not a sequence.
        ValueError: the class takes no block shape, or not a pair of
            positive ints.
    """
    if block_shape is None:
        return None
    if not getattr(layer_class, "supports_block_shape", False):
        where = where or getattr(layer_class, "sparse_name", layer_class.__name__)
        raise ValueError(
            "`block_shape` is supported by SparseDense, SparseEinsumDense, "
            "SparseConv1D, SparseConv2D, SparseConv3D and SparseReversibleEmbedding "
            "(its logits projection), whose kernels have the input and output "
            f"axes of TFLite's blocks; {where} does not take it. Received: "
            f"block_shape={block_shape!r}. Pass block_shape=None for this "
            "layer (with `tf_dsr.sparsify`, keep it dense with `keep_dense=[...]`)."
        )
    if isinstance(block_shape, (str, bytes)) or not hasattr(block_shape, "__iter__"):
        raise TypeError(
            "`block_shape` must be None or a pair of positive ints (input "
            f"block, output block), e.g. (4, 1). Received: {block_shape!r} of "
            f"type {type(block_shape).__name__}."
        )
    pair = tuple(block_shape)
    if len(pair) != 2 or any(not _is_int(b) or b < 1 for b in pair):
        raise ValueError(
            "`block_shape` must be a pair of positive ints: the block's extent "
            "along the kernel's input axis and along its output axis, e.g. "
            "(4, 1) for 4 consecutive inputs of one output unit (TFLite's 1x4 "
            f"block). Received: block_shape={block_shape!r}."
        )
    return tuple(int(b) for b in pair)


def num_active_at_init(size, sparsity):
    """Active weights a tensor of `size` starts with: round((1 - s) * size)."""
    return int(round((1.0 - sparsity) * size))


def check_leaves_active(sparsity, num_units, where, block_shape=None):
    """Raises unless `sparsity` leaves an active weight (or block).

    Args:
        sparsity: the fraction of zeros, already validated.
        num_units: the kernel's weights, or its blocks when `block_shape`.
        where: the kernel, for the message (`"Layer 'd': its kernel of
            shape (4, 2)"`).
        block_shape: None, or the kernel's full-rank block shape.

    Raises:
        ValueError: `round((1 - sparsity) * num_units)` is 0.
    """
    if num_active_at_init(num_units, sparsity) >= 1:
        return
    unit = "weight" if block_shape is None else f"block of {tuple(block_shape)}"
    raise ValueError(
        f"{where}: sparsity={sparsity} leaves no active {unit} ({num_units} "
        f"{unit.split(' ')[0]}s). Use a sparsity below "
        f"{1 - 0.5 / num_units:.6f}, or keep the layer dense."
    )


def validate_optional_int(value, name, minimum, meaning=""):
    """Returns `value` (None or an int >= `minimum`).

    Raises:
        TypeError: neither None nor an int.
        ValueError: an int below `minimum`.
    """
    if value is not None and not _is_int(value):
        raise TypeError(
            f"`{name}` must be None or an int >= {minimum}{meaning}. Received: {value!r}."
        )
    if value is not None and value < minimum:
        raise ValueError(
            f"`{name}` must be None or an int >= {minimum}{meaning}. Received: {value!r}."
        )
    return None if value is None else int(value)


def validate_bool(value, name):
    """Returns `value` if it is a bool (numpy's too), else raises TypeError
    (`"false"` would be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False. Received: {value!r}.")
    return bool(value)


def validate_period(period):
    """Returns `period` as a schedule `{epoch: steps}` with key 0.

    Args:
        period: a positive int (steps between updates), or a dict
            `{epoch: steps}` with int keys >= 0, one of them 0.

    Raises:
        TypeError: neither an int nor a dict.
        ValueError: a period below 1, a bad epoch, or no epoch 0.
    """
    def check(value, where):
        if not _is_int(value) or value < 1:
            raise ValueError(
                f"`period` {where}must be a positive int number of steps. "
                f"Received: {value!r}."
            )
        return int(value)

    if _is_int(period):
        return {0: check(period, "")}
    if not isinstance(period, dict):
        raise TypeError(
            "`period` must be an int or a dict {epoch: period}. "
            f"Received: {period!r} of type {type(period).__name__}."
        )
    if not period:
        raise ValueError("`period` schedule is empty; give e.g. {0: 100, 25: 200}.")
    schedule = {}
    for epoch, value in period.items():
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(
                f"`period` schedule keys are epochs (ints >= 0). Received key {epoch!r}."
            )
        schedule[int(epoch)] = check(value, f"at epoch {epoch} ")
    if 0 not in schedule:
        raise ValueError(
            "`period` schedule must say the period from epoch 0. "
            f"Received keys {sorted(schedule)}; add a 0 entry."
        )
    return schedule


def validate_fraction(value, name, low_open=True, high_open=True, meaning=""):
    """Returns `value` as a float in the interval between 0 and 1.

    Args:
        value: what the user passed.
        name: the argument's name, for the message.
        low_open, high_open: whether 0 and 1 are excluded.
        meaning: a sentence added to the ValueError (what the value does).

    Raises:
        TypeError: not a real number.
        ValueError: outside the interval.
    """
    interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
    if not _is_real(value):
        raise TypeError(
            f"`{name}` must be a float in {interval}. Received: {value!r} of type "
            f"{type(value).__name__}."
        )
    above = value > 0 if low_open else value >= 0
    below = value < 1 if high_open else value <= 1
    if not (above and below):
        raise ValueError(
            f"`{name}` must be in {interval}. Received: {value}.{meaning and ' ' + meaning}"
        )
    return float(value)


def validate_prune_target(value, fraction_allowed=True):
    """Returns N_prune: an int >= 1 (weights), or a float in (0, 1) (that
    fraction of the active weights) when `fraction_allowed`.

    Raises:
        TypeError: not a number (or not an int when fractions are refused).
        ValueError: a count below 1 or a fraction outside (0, 1).
    """
    kinds = ("an int (weights) or a float in (0, 1) (fraction of active weights)"
             if fraction_allowed else "an int >= 1 (weights)")
    if not _is_real(value) or (not fraction_allowed and not _is_int(value)):
        raise TypeError(f"`prune_target` must be {kinds}. Received: {value!r}.")
    if _is_int(value):
        if value < 1:
            raise ValueError(f"`prune_target` as a count must be >= 1. Received: {value}.")
        return int(value)
    if not 0.0 < value < 1.0:
        raise ValueError(
            "`prune_target` as a fraction must be in (0, 1); pass an int for an "
            f"absolute count. Received: {value}."
        )
    return float(value)


def check_prune_target_below(prune_target, num_active, name):
    """Raises if `prune_target` is a count of at least `num_active`.

    Pruning every active weight at each update leaves nothing to learn:
    DSR's threshold keeps doubling and SET empties every layer.
    """
    if _is_int(prune_target) and prune_target >= num_active:
        raise ValueError(
            f"{name}: prune_target={prune_target} weights per update is at or above "
            f"the model's {num_active} active weights (counted in blocks for "
            "block-sparse layers), so every update would "
            f"prune (nearly) all of them. Pass a count below {num_active}, or a "
            f"fraction of the active weights, e.g. prune_target=0.05 "
            f"({max(1, round(0.05 * num_active))} weights here)."
        )


# The threshold is a float32 variable: below the smallest normal float32 it
# loses precision and below the smallest subnormal it is 0, which never
# prunes (|w| < 0 is never true) and never recovers (2 * 0 = 0).
FLOAT32_SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def validate_threshold(value, name="initial_threshold"):
    """Returns `value` as a float if it is a usable DSR threshold H.

    Raises:
        TypeError: `value` is not a real number.
        ValueError: `value` is not finite, not positive, or outside the
            normal float32 range [1.18e-38, 3.4e38].
    """
    if not _is_real(value):
        raise TypeError(
            f"`{name}` must be a float > 0. Received: {value!r} of type "
            f"{type(value).__name__}."
        )
    value = float(value)
    if not (math.isfinite(value) and FLOAT32_SMALLEST_NORMAL <= value <= FLOAT32_MAX):
        raise ValueError(
            f"`{name}` must be a finite float32 number between "
            f"{FLOAT32_SMALLEST_NORMAL:.4g} and {FLOAT32_MAX:.4g}: an infinite "
            "threshold prunes every weight forever, and one that underflows "
            f"float32 never prunes. Received: {value!r}. The paper starts at 1e-3."
        )
    return value
