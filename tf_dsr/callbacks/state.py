"""What each method needs to resume, kept in variables saved with the model.

Every method (DSR, SET, RigL, gradual pruning) owns one `MethodState`: the
step of its last update, the step it started at, its seed and how many
updates it ran, plus its own variables (DSR: the threshold H). The states
of one model live in a `ModelState` attached to the model as the attribute
`_tf_dsr_state`, one child per method name, so Keras weight files
(`model.save_weights`, `.keras`, `ModelCheckpoint`, `BackupAndRestore`)
save and restore them with the model (as `_tf_dsr_state/<method>/vars`).
Methods run one after another on one model each start from their own
state; `tf_dsr.load_model` restores every state a `.keras` file holds.

Files written before per-method state (one `_tf_dsr_state/vars` with
threshold, last step and count) still load: a usable threshold shows the
state was DSR's and becomes the DSR state; a nan threshold (SET or gradual
pruning) cannot be told apart and is dropped with a warning.
"""

import math
import types
import warnings

import keras
import numpy as np

from tf_dsr.validation import validate_threshold

STATE_ATTRIBUTE = "_tf_dsr_state"

# Method name -> its state class (filled by `register_state`).
STATE_CLASSES = {}


def register_state(method):
    """Class decorator: `cls` holds the state of the method named `method`."""

    def register(cls):
        cls.method = method
        STATE_CLASSES[method] = cls
        return cls

    return register


class MethodState(keras.layers.Layer):
    """Variables of one mask-updating method, saved with its model.

    Attributes (int64 scalar variables):
        last_step: the method's step (optimizer steps since it started) of
            its last update, or where its period grid stands.
        num_reallocations: updates run.
        seed: the seed of its randomness; -1 until the method first runs
            (a callback built with `seed=None` then saves the seed it drew,
            so a resumed run draws the same randomness).
        start_step: the optimizer step where the method started; -1 until
            it first trains. The method's steps count from here, so a
            method that follows another on the same model starts like on a
            fresh model.

    Subclasses add their own variables in `build_method_variables`.
    """

    method = None

    def __init__(self, **kwargs):
        super().__init__(trainable=False, name=kwargs.pop("name", f"{self.method}_state"),
                         **kwargs)
        self.last_step = self._int_variable("last_step", 0)
        self.num_reallocations = self._int_variable("num_reallocations", 0)
        self.seed = self._int_variable("seed", -1)
        self.start_step = self._int_variable("start_step", -1)
        common = len(self.variables)
        self.build_method_variables()
        self._method_variable_names = tuple(v.name for v in self.variables[common:])
        self.built = True
        self._legacy_source = None
        self._initial_values = [v.numpy() for v in self.variables]

    def _int_variable(self, name, value):
        return self.add_weight(shape=(), name=name, dtype="int64", trainable=False,
                               initializer=keras.initializers.Constant(value))

    def build_method_variables(self):
        """Adds the method's own variables (none by default)."""

    def method_variable_names(self):
        """Names of the method's own variables (DSR: `threshold`)."""
        return self._method_variable_names

    def check_usable(self, name):
        """Raises ValueError if training cannot go on from these values
        (`name`: the callback's, for the message). Nothing by default."""

    def reset(self):
        """Back to a method that never ran."""
        self.last_step.assign(0)
        self.num_reallocations.assign(0)
        self.seed.assign(-1)
        self.start_step.assign(-1)
        self.reset_method_variables()

    def reset_method_variables(self):
        """Puts the method's own variables back to their initial values."""

    def started(self):
        return int(self.start_step.numpy()) >= 0

    def at_initial_values(self):
        """Whether every variable still holds its initial value."""
        return all(
            np.array_equal(v.numpy(), initial, equal_nan=True)
            for v, initial in zip(self.variables, self._initial_values)
        )

    def check_values(self, values):
        """Raises ValueError unless loaded `values` (in variable order) are usable."""
        names = [v.name for v in self.variables]
        if len(values) != len(names):
            raise ValueError(
                f"The tf_dsr state of method '{self.method}' in this file has "
                f"{len(values)} values; this version keeps {len(names)} "
                f"({', '.join(names)}). The file was written by another version "
                "or edited."
            )
        bounds = {"last_step": 0, "num_reallocations": 0, "seed": -1, "start_step": -1}
        for name, value in zip(names, values):
            if name in bounds and int(np.asarray(value)) < bounds[name]:
                raise ValueError(
                    f"The tf_dsr state of method '{self.method}' in this file has "
                    f"{name} {int(np.asarray(value))}; it must be >= {bounds[name]}. "
                    "The file is corrupt or was edited."
                )

    def load_own_variables(self, store):
        keys = sorted(store.keys(), key=int) if store is not None else []
        if not keys:
            legacy = self._legacy_source() if self._legacy_source else None
            if legacy is not None:
                self.load_legacy(legacy)
                return
            if not self.at_initial_values():
                warnings.warn(
                    "tf_dsr: the weights file holds no tf_dsr state for method "
                    f"'{self.method}' (it was saved before that method ran on the "
                    "model); kernels and masks are loaded, and the method's state "
                    "starts fresh.",
                    UserWarning,
                    stacklevel=2,
                )
            self.reset()
            return
        values = [np.asarray(store[k]) for k in keys]
        self.check_values(values)
        for variable, value in zip(self.variables, values):
            variable.assign(value)

    def load_legacy(self, values):
        """Loads `[threshold, last_step, num_reallocations]` of an old file."""
        raise NotImplementedError


def check_threshold_value(threshold):
    """Raises ValueError unless a loaded threshold is usable."""
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


def legacy_method(values):
    """The method an old single state belongs to ("dsr"), or None if unknown.

    Raises:
        ValueError: the values are unusable (negative counts).
    """
    threshold, last_step, num_reallocations = (np.asarray(v) for v in values)
    for name, value in (("last_step", last_step), ("num_reallocations", num_reallocations)):
        if int(value) < 0:
            raise ValueError(
                f"The tf_dsr state in this file has {name} {int(value)}; it must "
                "be >= 0. The file is corrupt or was edited."
            )
    if math.isnan(float(threshold)):
        return None
    check_threshold_value(float(threshold))
    return "dsr"


def warn_unmapped_legacy(values):
    warnings.warn(
        "tf_dsr: this file holds the single method state of tf_dsr before "
        f"per-method state (threshold nan, last step {int(np.asarray(values[1]))}, "
        f"{int(np.asarray(values[2]))} updates), written by SET or GradualPruning, "
        "which cannot be told apart; it is not loaded. Kernels and masks are "
        "loaded; the method you attach starts fresh.",
        UserWarning,
        stacklevel=3,
    )


class ModelState(keras.layers.Layer):
    """The `MethodState`s of one model, one per method name.

    Attached to the model as `_tf_dsr_state`; each state is an attribute
    named after its method, which is how Keras weight files find it, and a
    `tf.train.Checkpoint` dependency of the model (and each method state
    of this), so `tf.train.Checkpoint(model=model)` saves and restores
    them too.
    """

    # Marks the layer as tf_dsr's method state for code below the callbacks
    # (`tf_dsr.strip` leaves it out of the plain copy).
    _tf_dsr_internal = True

    def __init__(self, strategy=None, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.built = True
        self._strategy = strategy
        # Names only: Keras walks the attributes of what it saves, and would
        # visit a dict of states a second time at a path the file lacks.
        self._method_names = []
        self._legacy = None
        # The callback training now, and the optimizer step it began at
        # (see `claim`).
        self._running = None
        # The callback whose dense-gradient hooks are in the model's layers.
        self.gradient_user = None

    def method_states(self):
        """dict, method name -> `MethodState` (those attached so far).

        A method, not a property: Keras reads every attribute of what it
        saves, and would visit the states twice through a property.
        """
        return {name: getattr(self, name) for name in self._method_names}

    def state_for(self, method, **kwargs):
        """The `MethodState` of `method`, created (with `kwargs`) if needed."""
        state = self.method_states().get(method)
        if state is None:
            cls = STATE_CLASSES[method]
            if self._strategy is not None:
                with self._strategy.scope():
                    state = cls(**kwargs)
            else:
                state = cls(**kwargs)
            state._legacy_source = lambda m=method: self._legacy_for(m)
            self._method_names.append(method)
            # Not tracked by Keras (the state is no sublayer of anything);
            # weight files find it by walking attributes.
            object.__setattr__(self, method, state)
            _track_for_checkpoints(self, state, method)
        return state

    def _legacy_for(self, method):
        if self._legacy is not None and self._legacy[0] == method:
            return self._legacy[1]
        return None

    def all_variables(self):
        return [v for state in self.method_states().values() for v in state.variables]

    def load_own_variables(self, store):
        # Called before the children: a file from before per-method state
        # keeps its one state here.
        self._legacy = None
        keys = sorted(store.keys(), key=int) if store is not None else []
        if not keys:
            return
        if len(keys) != 3:
            raise ValueError(
                f"The tf_dsr state in this file has {len(keys)} values at "
                f"'{STATE_ATTRIBUTE}'; files from before per-method state have 3 "
                "(threshold, last step, count). The file is corrupt or was edited."
            )
        values = [np.asarray(store[k]) for k in keys]
        method = legacy_method(values)
        if method is None:
            warn_unmapped_legacy(values)
        elif method not in self._method_names:
            warnings.warn(
                "tf_dsr: this file holds DSR state from before per-method state "
                "(threshold, last step, count); it is loaded only into a model "
                "that has a DynamicReparam attached, or by tf_dsr.load_model.",
                UserWarning,
                stacklevel=2,
            )
        else:
            self._legacy = (method, values)

    # ----- one method at a time ----------------------------------------
    def claim(self, callback, fit):
        """Marks `callback` as training the model in the fit `fit`.

        Args:
            fit: an object identifying one `fit` call: the `params` dict,
                which Keras gives, as one object, to every callback of a
                fit. A fit that crashed and a later one are told apart
                even at the same optimizer step.

        Raises:
            ValueError: another tf_dsr callback claimed the model in the
                same fit: two methods in one `fit`.
        """
        # The id, not the dict: Keras' attribute tracking would store a copy.
        # The id stays unique while the claim holds: `callback.params` keeps
        # the dict alive.
        running = self._running
        if running is not None and running[0] is not callback and running[1] == id(fit):
            other = running[0]
            raise ValueError(
                f"Two tf_dsr methods on one model in the same fit: "
                f"{type(other).__name__} and {type(callback).__name__}. Each "
                "method moves the masks on its own schedule, so running both "
                "would undo each other's updates. Pass one of them to `fit`, and "
                "run the other in a later `fit` if you want both."
            )
        self._running = (callback, id(fit))

    def release(self, callback):
        if self._running is not None and self._running[0] is callback:
            self._running = None


def _track_for_checkpoints(parent, child, name):
    """Makes `child` a `tf.train.Checkpoint` dependency of `parent`.

    The attributes set above bypass Keras' and TensorFlow's attribute
    tracking (the model's tracker is locked once built), so
    `tf.train.Checkpoint(model=model)` would not see the method state.
    TensorFlow's `_track_trackable` adds the dependency by name; a state
    created after `checkpoint.restore(...)` (a callback attached after the
    restore) gets the saved values then (TensorFlow's deferred
    restoration).
    """
    # Keras wraps TensorFlow's dependency dict in its own tracked dict,
    # which would also make `child` a Keras sublayer (and raise on a built
    # subclassed model, whose Keras tracker is locked): add the TensorFlow
    # dependency with Keras' tracking off. Keras has no public switch for
    # that; its private one is used here only.
    from keras.src.utils.tracking import DotNotTrackScope

    with DotNotTrackScope():
        parent._track_trackable(child, name=name, overwrite=True)


def existing_state(model):
    """The `ModelState` attached to `model`, or None."""
    return getattr(model, STATE_ATTRIBUTE, None)


def attach_state(model):
    """Returns the model's `ModelState`, creating it if needed.

    Attaching also makes the model's `load_weights` all-or-nothing (see
    `_load_weights_whole`).
    """
    state = existing_state(model)
    if state is None:
        strategy = getattr(model, "distribute_strategy", None)
        state = ModelState(strategy=strategy, name="tf_dsr_state")
        # The model's Keras tracker is locked once built; the state is not
        # a sublayer of the model's graph, only something its weight files
        # carry, which Keras finds by walking attributes.
        object.__setattr__(model, STATE_ATTRIBUTE, state)
        _track_for_checkpoints(model, state, STATE_ATTRIBUTE)
        object.__setattr__(model, "load_weights", types.MethodType(_load_weights_whole, model))
    return state


def _load_weights_whole(model, filepath, *args, **kwargs):
    """`keras.Model.load_weights` that leaves the model as it was if it fails.

    Keras loads a weights file object by object and raises at the end, so
    a file it cannot load completely (a refused tf_dsr state, which Keras
    visits last; a layer that does not match) would leave some variables
    loaded and others not. This keeps a copy of the model's, optimizer's
    and states' variables while the load runs and puts them back if it
    raises. The copy is host memory the size of those variables, for the
    duration of the load.
    """
    variables, seen = [], set()
    optimizer = getattr(model, "optimizer", None)
    for variable in [
        *model.variables,
        *(optimizer.variables if optimizer is not None else []),
        *existing_state(model).all_variables(),
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
