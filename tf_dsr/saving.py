"""Loading a `.keras` file together with its reallocation state."""

import io
import zipfile

import h5py
import keras

from tf_dsr.callbacks.state import STATE_ATTRIBUTE
from tf_dsr.callbacks.state import attach_state


def load_model(filepath, **kwargs):
    """`keras.models.load_model`, plus the DSR state the file carries.

    A `.keras` file saved from a model trained with a tf_dsr callback holds
    the `ReparamState` (threshold, last reallocation step, count) next to
    the weights, but Keras rebuilds the model from its config, which does
    not mention it. This loads the model, then attaches the state and its
    saved values, so a new `DynamicReparam` continues with the saved
    threshold instead of `initial_threshold`.

    Args:
        filepath: path to a `.keras` file.
        **kwargs: passed to `keras.models.load_model` (`custom_objects`,
            `compile`, `safe_mode`).

    Returns:
        The Keras model, with its `ReparamState` attached when the file has
        one.

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
    model = keras.models.load_model(filepath, **kwargs)
    filepath = str(filepath)
    if not filepath.endswith(".keras"):
        return model
    with zipfile.ZipFile(filepath) as archive:
        if "model.weights.h5" not in archive.namelist():
            return model
        with archive.open("model.weights.h5") as handle:
            data = io.BytesIO(handle.read())
    with h5py.File(data, "r") as weights:
        group = weights.get(f"{STATE_ATTRIBUTE}/vars")
        if group is not None:
            values = {name: group[name][()] for name in group}
            attach_state(model).load_own_variables(values)
    return model
