"""Loading a `.keras` file together with its reallocation state."""

import io
import math
import os
import zipfile

import h5py
import keras

from tf_dsr.callbacks.state import STATE_ATTRIBUTE
from tf_dsr.callbacks.state import attach_state
from tf_dsr.callbacks.state import check_state_values

_WEIGHTS = "model.weights.h5"


def _saved_state(filepath):
    """The tf_dsr state values a `.keras` file holds, checked; None if none.

    Raises:
        ValueError: the file is not a readable zip archive, a member fails
            its checksum, or the saved state is unusable.
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
                return None
            data = io.BytesIO(archive.read(_WEIGHTS))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{filepath} is a corrupt .keras file ({error}).") from None
    try:
        with h5py.File(data, "r") as weights:
            group = weights.get(f"{STATE_ATTRIBUTE}/vars")
            if group is None:
                return None
            values = {name: group[name][()] for name in group}
    except OSError as error:
        raise ValueError(
            f"{filepath} is a corrupt .keras file: its weights cannot be read ({error})."
        ) from None
    if sorted(values) == ["0", "1", "2"]:
        check_state_values(
            values["0"], values["1"], values["2"],
            uses_threshold=not math.isnan(float(values["0"])),
        )
    return values


def load_model(filepath, **kwargs):
    """`keras.models.load_model`, plus the DSR state the file carries.

    A `.keras` file saved from a model trained with a tf_dsr callback holds
    the `ReparamState` (threshold, last reallocation step, count) next to
    the weights, but Keras rebuilds the model from its config, which does
    not mention it. This loads the model, then attaches the state and its
    saved values, so a new `DynamicReparam` continues with the saved
    threshold instead of `initial_threshold`.

    The file is checked before anything is built: a file that is not a zip
    archive or fails a checksum is reported as corrupt, and saved state
    that cannot work (a threshold that is infinite, not positive or below
    float32's normal range; negative counts) is refused. A nan threshold is
    what SET and GradualPruning save; `DynamicReparam` refuses it when
    attached.

    Args:
        filepath: path to a `.keras` file.
        **kwargs: passed to `keras.models.load_model` (`custom_objects`,
            `compile`, `safe_mode`).

    Returns:
        The Keras model, with its `ReparamState` attached when the file has
        one.

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
    values = None
    if filepath.endswith(".keras") and os.path.isfile(filepath):
        values = _saved_state(filepath)
    model = keras.models.load_model(filepath, **kwargs)
    if values is not None:
        initial = float(values["0"]) if "0" in values else 1e-3
        state = attach_state(model, initial if math.isnan(initial) else 1e-3)
        state.load_own_variables(values)
    return model
