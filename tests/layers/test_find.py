"""tf_dsr/layers/find.py: the one traversal, and the 0/1 check of masks."""

import os

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_kernels


def model_with_mask(value):
    model = keras.Sequential([
        keras.Input((4,)),
        tf_dsr.SparseDense(6, sparsity=0.5, seed=0, name="hidden"),
        tf_dsr.SparseDense(2, sparsity=0.5, seed=1, name="out"),
    ])
    mask = model.get_layer("hidden").mask
    values = mask.numpy()
    values.flat[int(np.argmax(values))] = value  # one active entry made not 0/1
    mask.assign(values)
    return model


def snapshot(model):
    return [w.numpy().copy() for w in model.weights]


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0])
@pytest.mark.parametrize("call", ["strip", "export", "to_tflite", "sparsity_summary",
                                  "reallocate"])
def test_non_binary_masks_are_refused_naming_the_layer(call, value, tmp_path):
    model = model_with_mask(value)
    before = snapshot(model)
    path = tmp_path / "artifact"
    with pytest.raises(ValueError, match=r"mask of 'hidden'.*other than 0 and 1"):
        if call == "export":
            tf_dsr.export(model, path, verbose=False)
        elif call == "to_tflite":
            tf_dsr.to_tflite(model, path)
        elif call == "reallocate":
            dsr = tf_dsr.DynamicReparam(prune_target=2, period=1, seed=0)
            dsr.set_model(model)
            dsr.reallocate(step=1)
        else:
            getattr(tf_dsr, call)(model)
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)
    assert not os.path.exists(path)


def test_binary_masks_pass_and_names_follow_the_layer_path():
    inner = keras.Sequential([keras.Input((4,)), tf_dsr.SparseDense(3, sparsity=0.5)],
                             name="inner")
    inputs = keras.Input((4,))
    outputs = keras.layers.TimeDistributed(tf_dsr.SparseDense(2, sparsity=0.5), name="td")(
        keras.layers.Reshape((1, 3))(inner(inputs)))
    model = keras.Model(inputs, outputs)
    names = [name for name, _ in find_sparse_kernels(model)]
    inner_dense = inner.layers[0].name
    td_dense = model.get_layer("td").layer.name

    assert names == [f"inner/{inner_dense}", f"td/{td_dense}"]
    tf_dsr.layers.find.check_masks(find_sparse_kernels(model), "here")
