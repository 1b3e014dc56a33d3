"""Reallocation state that must survive a restart, kept in variables."""

import math
import numbers
import types
import warnings

import keras
import numpy as np

STATE_ATTRIBUTE = "_tf_dsr_state"

# The threshold is a float32 variable: below the smallest normal float32 it
# loses precision and below ~1.4e-45 it is 0, which never prunes (|w| < 0
# is never true) and never recovers (2 * 0 = 0).
FLOAT32_SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def validate_threshold(value, name="initial_threshold"):
    """Returns `value` as a float if it is a usable DSR threshold H.

    Raises:
        TypeError: `value` is not a real number.
        ValueError: `value` is not finite, not positive, or outside the
            normal float32 range [1.18e-38, 3.4e38].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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


class ReparamState(keras.layers.Layer):
    """Variables of a reallocation method: threshold, last step, count.

    The callback attaches one to its model as the attribute
    `_tf_dsr_state`, so Keras weight files (`model.save_weights`,
    `.keras`, `ModelCheckpoint`, `BackupAndRestore`) save and restore it
    with the model. For `tf.train.Checkpoint`, pass it explicitly
    (`tf.train.Checkpoint(model=model, dsr=callback.state)`).

    Loading checks what it reads: a file without tf_dsr state (saved
    before any callback was attached) leaves the state at its initial
    values, with a warning; a method with a threshold (NaN
    `initial_threshold` means none, as for SET) refuses a loaded threshold
    that is not a positive normal float32, and negative counts are refused.

    Args:
        initial_threshold: float, H at the start; NaN for methods without
            a threshold. Defaults to 1e-3.
    """

    # Marks the layer as tf_dsr's method state for code below the callbacks
    # (`tf_dsr.strip` leaves it out of the plain copy).
    _tf_dsr_method_state = True

    def __init__(self, initial_threshold=1e-3, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.initial_threshold = float(initial_threshold)
        self.threshold = self.add_weight(
            shape=(), name="threshold", dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(initial_threshold),
        )
        self.last_step = self.add_weight(
            shape=(), name="last_step", dtype="int64", trainable=False,
            initializer="zeros",
        )
        self.num_reallocations = self.add_weight(
            shape=(), name="num_reallocations", dtype="int64",
            trainable=False, initializer="zeros",
        )
        self.built = True

    @property
    def uses_threshold(self):
        return not math.isnan(self.initial_threshold)

    def reset(self):
        """Back to the initial values: H at its start, no reallocation yet."""
        self.threshold.assign(self.initial_threshold)
        self.last_step.assign(0)
        self.num_reallocations.assign(0)

    def load_own_variables(self, store):
        keys = list(store.keys())
        if not keys:
            warnings.warn(
                "tf_dsr: the weights file holds no tf_dsr state (it was saved "
                "before a tf_dsr callback was attached); kernels and masks are "
                "loaded, and the method state starts fresh: threshold "
                f"{self.initial_threshold:g}, last reallocation step 0.",
                UserWarning,
                stacklevel=2,
            )
            self.reset()
            return
        if len(keys) == 3:
            check_state_values(store["0"], store["1"], store["2"], self.uses_threshold)
        super().load_own_variables(store)


def check_state_values(threshold, last_step, num_reallocations, uses_threshold=True):
    """Raises a `ValueError` unless saved state values are usable.

    Args:
        threshold, last_step, num_reallocations: the values read from a
            file (scalars or 0-d arrays), in the state's variable order.
        uses_threshold: whether the method needs a threshold; if not (SET,
            GradualPruning store nan), the threshold is not checked.
    """
    threshold = float(np.asarray(threshold))
    if uses_threshold:
        try:
            validate_threshold(threshold, "threshold")
        except ValueError:
            raise ValueError(
                f"The tf_dsr state in this file has threshold {threshold!r}; a "
                "threshold must be a positive normal float32 number. The file "
                "is corrupt or was edited: load an earlier checkpoint, or load "
                "it before attaching the tf_dsr callback (Keras then skips the "
                "state, and the callback's starts fresh)."
            ) from None
    for name, value in (("last_step", last_step), ("num_reallocations", num_reallocations)):
        if int(np.asarray(value)) < 0:
            raise ValueError(
                f"The tf_dsr state in this file has {name} {int(np.asarray(value))}; "
                "it must be >= 0. The file is corrupt or was edited."
            )


def existing_state(model):
    """The `ReparamState` attached to `model`, or None."""
    return getattr(model, STATE_ATTRIBUTE, None)


def attach_state(model, initial_threshold=1e-3):
    """Returns the model's `ReparamState`, creating it if needed.

    Attaching also makes the model's `load_weights` all-or-nothing (see
    `_load_weights_whole`).
    """
    state = existing_state(model)
    if state is None:
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                state = ReparamState(initial_threshold, name="tf_dsr_state")
        else:
            state = ReparamState(initial_threshold, name="tf_dsr_state")
        # The model's Keras tracker is locked once built; the state is not
        # a sublayer of the model's graph, only something its weight files
        # carry, which Keras finds by walking attributes.
        object.__setattr__(model, STATE_ATTRIBUTE, state)
        object.__setattr__(model, "load_weights", types.MethodType(_load_weights_whole, model))
    return state


def _load_weights_whole(model, filepath, *args, **kwargs):
    """`keras.Model.load_weights` that leaves the model as it was if it fails.

    Keras loads a weights file object by object and raises at the end, so
    a file it cannot load completely (a refused tf_dsr state, which Keras
    visits last; a layer that does not match) would leave some variables
    loaded and others not. This keeps a copy of the model's, optimizer's
    and state's variables while the load runs and puts them back if it
    raises. The copy is host memory the size of those variables, for the
    duration of the load.
    """
    variables, seen = [], set()
    optimizer = getattr(model, "optimizer", None)
    for variable in [
        *model.variables,
        *(optimizer.variables if optimizer is not None else []),
        *existing_state(model).variables,
    ]:
        if id(variable) not in seen:
            seen.add(id(variable))
            variables.append(variable)
    saved = [np.array(variable.numpy(), copy=True) for variable in variables]
    try:
        return type(model).load_weights(model, filepath, *args, **kwargs)
    except BaseException:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        raise
