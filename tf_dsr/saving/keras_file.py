"""Loading a `.keras` file: its sparse layers, masks and method states."""

import os

import h5py
import keras

from tf_dsr._keras_internals import own_variables_group
from tf_dsr._keras_internals import read_keras_archive_weights
from tf_dsr._keras_internals import saved_values
from tf_dsr.saving.record import RECORD_ATTRIBUTE
from tf_dsr.saving.record import RECORD_KEY
from tf_dsr.saving.record import attach_record
from tf_dsr.saving.record import make_recorded_layers_sparse
from tf_dsr.saving.record import parse_record
from tf_dsr.saving.record import register_made_classes
from tf_dsr.saving.state import STATE_ATTRIBUTE
from tf_dsr.saving.state import STATE_CLASSES
from tf_dsr.saving.state import attach_state


def _saved_states(filepath):
    """The tf_dsr method states and sparse-layer record a `.keras` file holds.

    Returns:
        dict, method name -> list of values (variable order), and the
        record's entries under `RECORD_ATTRIBUTE` if the file has one.

    Raises:
        ValueError: the file is not a readable zip archive, or a member
            fails its checksum.
    """
    data = read_keras_archive_weights(filepath)
    if data is None:
        return {}
    states = {}
    try:
        with h5py.File(data, "r") as weights:
            record = own_variables_group(weights, RECORD_ATTRIBUTE)
            if record is not None and RECORD_KEY in record:
                states[RECORD_ATTRIBUTE] = parse_record(record[RECORD_KEY][()])
            root = weights.get(STATE_ATTRIBUTE)
            for name in root if root is not None else ():
                if name in STATE_CLASSES:
                    states[name] = saved_values(
                        own_variables_group(weights, STATE_ATTRIBUTE, name))
    except OSError as error:
        raise ValueError(
            f"{filepath} is a corrupt .keras file: its weights cannot be read ({error})."
        ) from None
    return states


def load_model(filepath, **kwargs):
    """`keras.models.load_model`, plus the method states the file carries.

    A `.keras` file saved from a model trained with tf_dsr callbacks holds
    each method's state (DSR: threshold, last step, seed, count; SET, RigL,
    gradual pruning: last step, start step, seed, count) next to the
    weights, but Keras rebuilds the model from its config, which does not
    mention them. This loads the model, then attaches every state with its
    saved values, so a new callback of the same method continues where the
    saved one stopped (DSR with the saved threshold, not
    `initial_threshold`).

    The file is checked before anything is built: a file that is not a zip
    archive or fails a checksum is reported as corrupt, and saved state
    that cannot work (a threshold that is infinite, not positive or below
    float32's normal range; negative counts) is refused.

    Args:
        filepath: path to a `.keras` file.
        **kwargs: passed to `keras.models.load_model` (`custom_objects`,
            `compile`, `safe_mode`).

    Returns:
        The Keras model, with its `ModelState` attached when the file holds
        method states.

    Raises:
        ValueError: the file is missing, corrupt, or holds unusable state.

    Example:

    >>> reparam = tf_dsr.DynamicReparam(600, 100)
    >>> history = model.fit(x, y, epochs=3, callbacks=[reparam], verbose=0)
    >>> model.save("run.keras")
    >>> restored = tf_dsr.load_model("run.keras")
    >>> resumed = tf_dsr.DynamicReparam(600, 100)
    >>> resumed.set_model(restored)  # `fit(..., callbacks=[resumed])` does this
    >>> float(resumed.state.threshold.numpy()) == float(reparam.state.threshold.numpy())
    True
    """
    filepath = str(filepath)
    states = {}
    if filepath.endswith(".keras") and os.path.isfile(filepath):
        states = _saved_states(filepath)
    record = states.pop(RECORD_ATTRIBUTE, [])
    # Check every state before building anything.
    for method, values in states.items():
        STATE_CLASSES[method]().check_values(values)
    register_made_classes(record, kwargs.get("custom_objects"))
    model = keras.models.load_model(filepath, **kwargs)
    if record:
        with model.distribute_strategy.scope():
            make_recorded_layers_sparse(model, record)
        attach_record(model)
    if states:
        container = attach_state(model)
        for method, values in states.items():
            state = container.state_for(method)
            for variable, value in zip(state.variables, values):
                variable.assign(value)
    if record:
        # Layers the config made plain hold their masked kernels but new
        # masks: load the file's masks (and everything else) into them.
        model.load_weights(filepath)
    return model
