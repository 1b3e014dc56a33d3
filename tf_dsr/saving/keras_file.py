"""Loading a `.keras` file: its sparse layers, masks and method states."""

import io
import os
import zipfile

import h5py
import keras

from tf_dsr.saving.state import STATE_ATTRIBUTE
from tf_dsr.saving.state import STATE_CLASSES
from tf_dsr.saving.state import attach_state
from tf_dsr.saving.state import legacy_method
from tf_dsr.saving.state import warn_unmapped_legacy
from tf_dsr.saving.record import RECORD_ATTRIBUTE
from tf_dsr.saving.record import RECORD_KEY
from tf_dsr.saving.record import attach_record
from tf_dsr.saving.record import make_recorded_layers_sparse
from tf_dsr.saving.record import parse_record
from tf_dsr.saving.record import register_made_classes

_WEIGHTS = "model.weights.h5"


def _values(group):
    if group is None:
        return []
    return [group[key][()] for key in sorted(group, key=int)]


def _saved_states(filepath):
    """The tf_dsr method states a `.keras` file holds, checked.

    Returns:
        dict, method name -> list of values (variable order); a state from
        before per-method state appears under "dsr" when it was DSR's.

    Raises:
        ValueError: the file is not a readable zip archive, a member fails
            its checksum, or a saved state is unusable.
    """
    if not zipfile.is_zipfile(filepath):
        raise ValueError(
            f"{filepath} is not a valid .keras file: it is not a zip archive "
            f"({os.path.getsize(filepath)} bytes). It is corrupt or truncated "
            "(an interrupted save?); load an earlier copy."
        )
    try:
        with zipfile.ZipFile(filepath) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise ValueError(
                    f"{filepath} is a corrupt .keras file: its member '{damaged}' "
                    "fails its checksum. Load an earlier copy."
                )
            if _WEIGHTS not in archive.namelist():
                return {}
            data = io.BytesIO(archive.read(_WEIGHTS))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{filepath} is a corrupt .keras file ({error}).") from None
    states = {}
    try:
        with h5py.File(data, "r") as weights:
            record = weights.get(f"{RECORD_ATTRIBUTE}/vars/{RECORD_KEY}")
            if record is not None:
                states[RECORD_ATTRIBUTE] = parse_record(record[()])
            root = weights.get(STATE_ATTRIBUTE)
            if root is None:
                return states
            legacy = _values(root.get("vars"))
            for name in root:
                if name != "vars" and name in STATE_CLASSES:
                    states[name] = _values(root[name].get("vars"))
    except OSError as error:
        raise ValueError(
            f"{filepath} is a corrupt .keras file: its weights cannot be read ({error})."
        ) from None
    if legacy:
        if len(legacy) != 3:
            raise ValueError(
                f"{filepath}: the tf_dsr state has {len(legacy)} values; files from "
                "before per-method state have 3. The file is corrupt or was edited."
            )
        method = legacy_method(legacy)
        if method is None:
            warn_unmapped_legacy(legacy)
        else:
            states.setdefault(method, ("legacy", legacy))
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
    `initial_threshold`). A file written before per-method state holds one
    state: DSR's is restored; SET's or gradual pruning's (nan threshold)
    cannot be told apart and is skipped with a warning.

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
        if not (isinstance(values, tuple) and values[0] == "legacy"):
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
            if isinstance(values, tuple) and values[0] == "legacy":
                state.load_legacy(values[1])
            else:
                for variable, value in zip(state.variables, values):
                    variable.assign(value)
    if record:
        # Layers the config made plain hold their masked kernels but new
        # masks: load the file's masks (and everything else) into them.
        model.load_weights(filepath)
    return model
