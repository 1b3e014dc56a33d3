"""The private Keras and TensorFlow names tf_dsr relies on, each in one place.

Changing a built layer in place is what Keras' own `Model.quantize()` and
`Dense.enable_lora()` do, through the same private attributes: the layer's
tracker (locked once built) and its own variable lists. Saving reads a few
more: TensorFlow's checkpoint dependencies, the input shapes a subclassed
model recorded, the layout of a `.keras` archive, TFLite's op list, and
whether a graph is traced for XLA. Each use here is pinned by
`tests/test_keras_internals.py`, which fails with a clear message when a
Keras or TensorFlow upgrade moves one.
"""

import contextlib
import io
import os
import warnings
import zipfile


def _tracker(layer):
    tracker = getattr(layer, "_tracker", None)
    if tracker is None or not hasattr(tracker, "locked"):
        raise RuntimeError(
            f"tf_dsr cannot change layer '{layer.name}' in place: this Keras "
            "version has no `Layer._tracker` with a `locked` flag (the switch "
            "`Model.quantize()` uses to add state to built layers). Please "
            "report your Keras version."
        )
    return tracker


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built `layer` take new variables and sublayers, as
    `Dense.enable_lora` does; the lock is put back as it was."""
    tracker = _tracker(layer)
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield
    finally:
        if was_locked:
            tracker.lock()


def untrack(layer, value):
    """Removes a sublayer or variable from `layer`'s Keras tracking."""
    with unlocked(layer):
        _tracker(layer).untrack(value)


def own_variables(layer):
    """The variables `layer` holds itself (not through sublayers), in the
    order Keras' `Layer.save_own_variables` writes them."""
    try:
        return list(layer._trainable_variables) + list(layer._non_trainable_variables)
    except AttributeError:
        raise RuntimeError(
            "tf_dsr cannot list a layer's own variables: this Keras version "
            "has no `Layer._trainable_variables`/`_non_trainable_variables` "
            "(what `Layer.save_own_variables` writes). Please report your "
            "Keras version."
        ) from None


def reset_compiled_functions(model):
    """Drops a model's traced train/test/predict functions, as
    `Model.quantize()` does after changing layers, so the next `fit`
    traces the changed layers."""
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def set_keras_mask(tensor, mask):
    """Attaches a Keras padding mask to `tensor`, as Keras'
    `ReversibleEmbedding.call` does (no public API for it)."""
    try:
        from keras.src.backend import set_keras_mask as keras_set_mask
    except ImportError:
        raise RuntimeError(
            "tf_dsr cannot attach a padding mask: this Keras version has no "
            "`keras.src.backend.set_keras_mask`. Please report your Keras "
            "version."
        ) from None
    keras_set_mask(tensor, mask)


def track_for_checkpoints(parent, child, name):
    """Makes `child` a `tf.train.Checkpoint` dependency of `parent`, named
    `name`, without making it a Keras sublayer.

    TensorFlow's `Trackable._track_trackable` adds the dependency; Keras
    wraps TensorFlow's dependency dict in its own tracked dict, which would
    also make `child` a sublayer (and raise on a built model, whose Keras
    tracker is locked), so Keras' tracking is switched off meanwhile with
    its private `DotNotTrackScope`.
    """
    try:
        from keras.src.utils.tracking import DotNotTrackScope
    except ImportError:
        raise RuntimeError(
            "tf_dsr cannot add its method state to checkpoints: this Keras "
            "version has no `keras.src.utils.tracking.DotNotTrackScope`. Please "
            "report your Keras version."
        ) from None
    track = getattr(parent, "_track_trackable", None)
    if track is None:
        raise RuntimeError(
            f"tf_dsr cannot add its method state to checkpoints of '{parent.name}': "
            "this TensorFlow version has no `Trackable._track_trackable`. Please "
            "report your TensorFlow version."
        )
    with DotNotTrackScope():
        track(child, name=name, overwrite=True)


def build_shapes(model):
    """The input shapes Keras recorded when a subclassed `model` was first
    called (`Layer._build_shapes_dict`: argument name -> shape), or None
    if it recorded none."""
    shapes = getattr(model, "_build_shapes_dict", None)
    if not isinstance(shapes, dict) or not shapes:
        return None
    return shapes


# The member of a `.keras` archive holding the weights (Keras'
# `saving_lib._VARS_FNAME_H5`).
KERAS_WEIGHTS_MEMBER = "model.weights.h5"


def read_keras_archive_weights(filepath):
    """The weights file inside the `.keras` archive `filepath`, as bytes in
    a `BytesIO`, or None if the archive holds no weights.

    Raises:
        ValueError: the file is not a zip archive, or a member fails its
            checksum.
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
            if KERAS_WEIGHTS_MEMBER not in archive.namelist():
                return None
            return io.BytesIO(archive.read(KERAS_WEIGHTS_MEMBER))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{filepath} is a corrupt .keras file ({error}).") from None


def own_variables_group(weights, *attributes):
    """The group of an open Keras weights file (`h5py.File`) where the
    object reached from the model by `attributes` keeps its own variables
    (Keras' `saving_lib` layout: `<attribute>/.../vars`), or None."""
    return weights.get("/".join((*attributes, "vars")))


def saved_values(group):
    """The values `Layer.save_own_variables` wrote in `group`, in variable
    order (keys "0", "1", ...)."""
    if group is None:
        return []
    return [group[key][()] for key in sorted(group, key=int)]


def tflite_ops_details(interpreter):
    """`tf.lite.Interpreter._get_ops_details()`: one dict per op of the
    flatbuffer (`op_name`, `inputs`, `outputs`), which no public API lists."""
    details = getattr(interpreter, "_get_ops_details", None)
    if details is None:
        import tensorflow as tf

        raise RuntimeError(
            "This TensorFlow's tf.lite.Interpreter has no `_get_ops_details`, "
            "which tf_dsr reads to find DENSIFY ops. Please report this with "
            f"your TensorFlow version ({tf.__version__})."
        )
    return details()


_XLA_CONTEXT_WARNED = []


def in_xla_context():
    """True while tracing for XLA (or when that cannot be told), read from
    TensorFlow's private `control_flow_util.GraphOrParentsInXlaContext`."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:
        if not _XLA_CONTEXT_WARNED:
            _XLA_CONTEXT_WARNED.append(True)
            warnings.warn(
                "tf_dsr: this TensorFlow version has no "
                "`tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext`; "
                "random selection always takes its XLA-safe path (same result, "
                "slower outside XLA). Please report your TensorFlow version.",
                RuntimeWarning,
                stacklevel=2,
            )
        return True
    return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
