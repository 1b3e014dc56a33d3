"""Pins each private Keras name tf_dsr/_keras_internals.py relies on.

When a Keras upgrade moves one, the test naming it fails here, with the
name in its message, before anything downstream breaks in a puzzling way.
"""

import io
import zipfile

import h5py
import keras
import numpy as np

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
