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
"""

import types
import warnings

import keras
import numpy as np

from tf_dsr._keras_internals import track_for_checkpoints

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

    def start_with(self, step, **arguments):
        """Starts the method at optimizer step `step`, its own variables
        at the initial values of `arguments` (the state's constructor
        arguments, from the callback that starts it: DSR's
        `initial_threshold`)."""
        for name, value in arguments.items():
            setattr(self, name, value)
        self.reset_method_variables()
        self.start_step.assign(step)
        self.last_step.assign(0)

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
            self._method_names.append(method)
            # Not tracked by Keras (the state is no sublayer of anything);
            # weight files find it by walking attributes.
            object.__setattr__(self, method, state)
            track_for_checkpoints(self, state, method)
        return state

    def all_variables(self):
        return [v for state in self.method_states().values() for v in state.variables]

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
        track_for_checkpoints(model, state, STATE_ATTRIBUTE)
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

    This is set on the model instance because Keras offers no hook around
    a whole load: `Model.load_weights` goes to `saving_lib.load_weights_only`,
    whose `_load_state` calls each object's `load_own_variables` in turn,
    records any exception and raises only after the walk. The one object
    called before every layer is the model itself (its own
    `load_own_variables`, the user's class); the method state is a private
    attribute, visited after every layer; nothing is called after the
    walk. So no object tf_dsr attaches can undo what was loaded before a
    refusal.
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
