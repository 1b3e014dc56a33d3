"""Pins each private Keras name tf_dsr/_keras_internals.py relies on.

When a Keras upgrade moves one, the test naming it fails here, with the
name in its message, before anything downstream breaks in a puzzling way.
"""

import io
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr import _keras_internals


def built_dense():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    return layer


def test_layer_tracker_locks_once_built_and_unlocks():
    layer = built_dense()
    assert layer._tracker.locked, "Keras no longer locks a built layer's `_tracker`"
    with _keras_internals.unlocked(layer):
        assert not layer._tracker.locked
        extra = layer.add_weight(shape=(2,), name="extra", trainable=False)
    assert layer._tracker.locked
    _keras_internals.untrack(layer, extra)
    assert all(v is not extra for v in layer.weights), "`Tracker.untrack` moved"


def test_own_variables_are_what_keras_saves_for_the_layer():
    layer = built_dense()
    own = _keras_internals.own_variables(layer)
    assert [v.name for v in own] == ["kernel", "bias"]
    store = {}
    keras.layers.Layer.save_own_variables(layer, store)
    assert len(store) == len(own), "`Layer.save_own_variables` no longer writes " \
        "`_trainable_variables + _non_trainable_variables`"


def test_set_keras_mask_attaches_a_mask():
    x = keras.ops.ones((2, 3))
    mask = keras.ops.convert_to_tensor([[True, False, True]] * 2)
    _keras_internals.set_keras_mask(x, mask)
    assert getattr(x, "_keras_mask", None) is not None


def test_keras_saving_names_list_entries_by_class_name(tmp_path):
    # Sparse classes are named like their Keras class because Keras
    # addresses a layer in a model's `layers` list by its class name.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    tf_dsr.sparsify(model, 0.5, seed=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        names = []
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visit(names.append)
    assert "layers/dense/vars" in names, names
    assert "layers/dense/_tf_dsr_mask_set/vars" in names, names
    plain = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        plain.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())


def test_reset_compiled_functions_drops_traced_functions():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 4)), np.ones((4, 1)), verbose=0)
    assert model.train_function is not None
    _keras_internals.reset_compiled_functions(model)
    assert model.train_function is None


def test_track_for_checkpoints_adds_a_checkpoint_dependency_not_a_sublayer(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    child = keras.layers.Layer(name="child")
    child.value = child.add_weight(shape=(), initializer="zeros", trainable=False)
    _keras_internals.track_for_checkpoints(model, child, "extra")
    assert child not in model.layers, "`DotNotTrackScope` no longer keeps Keras' tracking off"
    child.value.assign(7.0)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    child.value.assign(0.0)
    tf.train.Checkpoint(model=model).read(path).expect_partial()
    assert float(child.value.numpy()) == 7.0, "`Trackable._track_trackable` no longer " \
        "adds a checkpoint dependency"


def test_build_shapes_are_the_first_call_shapes_of_a_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.ones((3, 5), "float32"))
    shapes = _keras_internals.build_shapes(model)
    assert shapes is not None, "Keras no longer records `Layer._build_shapes_dict`"
    assert [tuple(s) for s in shapes.values()] == [(3, 5)], shapes


def test_keras_archive_layout_holds_weights_by_attribute_path(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "m.keras"
    model.save(path)
    data = _keras_internals.read_keras_archive_weights(path)
    assert data is not None, \
        f"a .keras archive no longer holds `{_keras_internals.KERAS_WEIGHTS_MEMBER}`"
    with h5py.File(data, "r") as weights:
        group = _keras_internals.own_variables_group(weights, "layers", "dense")
        assert group is not None, "Keras' weights file no longer keeps `<path>/vars` groups"
        values = _keras_internals.saved_values(group)
    assert len(values) == 2, "`Layer.save_own_variables` no longer writes keys 0, 1, ..."
    np.testing.assert_array_equal(values[0], model.layers[0].kernel.numpy())


def test_keras_archive_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        _keras_internals.read_keras_archive_weights(path)


def test_tflite_ops_details_lists_the_ops():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    flatbuffer = tf_dsr.to_tflite(model)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    ops = _keras_internals.tflite_ops_details(interpreter)
    assert [op["op_name"] for op in ops] == ["FULLY_CONNECTED"], \
        "`tf.lite.Interpreter._get_ops_details` moved or changed its fields"
    assert {"inputs", "outputs"} <= set(ops[0])


def test_in_xla_context_is_true_only_while_tracing_for_xla():
    seen = []

    def probe():
        seen.append(_keras_internals.in_xla_context())
        return tf.constant(0)

    tf.function(probe)()
    tf.function(probe, jit_compile=True)()
    assert seen == [False, True], \
        "`tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext` moved"
