"""Sparse recurrent layers in the settings Keras users run them in."""

import keras
import numpy as np
import pytest

import tf_dsr

RECURRENT = {
    "SparseSimpleRNN": tf_dsr.SparseSimpleRNN,
    "SparseGRU": tf_dsr.SparseGRU,
    "SparseLSTM": tf_dsr.SparseLSTM,
}


@pytest.fixture(params=sorted(RECURRENT))
def recurrent(request):
    return RECURRENT[request.param]


def bidirectional_model(recurrent, seed=0):
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 4, mask_zero=True)(tokens)
    h = keras.layers.Bidirectional(
        recurrent(5, sparsity=0.5, seed=seed, return_sequences=True), name="bi")(h)
    return keras.Model(tokens, h)


def test_inside_bidirectional_equals_its_stripped_keras_twin(recurrent):
    model = bidirectional_model(recurrent)
    tokens = np.array([[3, 5, 7, 2, 0, 0], [1, 2, 3, 4, 5, 6]], "int32")
    plain = tf_dsr.strip(model)

    assert type(plain.get_layer("bi").forward_layer) is recurrent.keras_class()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(tokens)), keras.ops.convert_to_numpy(plain(tokens)),
        atol=1e-6)
    # Both directions are sparse, each with its own masks.
    layer = model.get_layer("bi")
    forward = layer.forward_layer.cell.sparse_kernels()
    backward = layer.backward_layer.cell.sparse_kernels()
    assert len(forward) == len(backward) == 2
    for f, b in zip(forward, backward):
        assert f.mask is not b.mask
        assert int(f.mask.numpy().sum()) == int(b.mask.numpy().sum()) == round(0.5 * f.size)


def test_padded_steps_are_masked(recurrent):
    """A padded sequence gives, at its real steps, what the unpadded one gives."""
    model = bidirectional_model(recurrent)
    padded = np.array([[3, 5, 7, 0, 0, 0]], "int32")
    trimmed = keras.Input((3,), dtype="int32")
    embedding, bi = model.layers[1], model.get_layer("bi")
    short = keras.Model(trimmed, bi(embedding(trimmed)))  # same layers, 3 steps

    out_padded = keras.ops.convert_to_numpy(model(padded))
    out_short = keras.ops.convert_to_numpy(short(padded[:, :3]))

    np.testing.assert_allclose(out_padded[:, :3], out_short, atol=1e-6)
    # Keras zeroes the outputs of masked steps.
    np.testing.assert_array_equal(out_padded[:, 3:], 0.0)


def test_return_state_go_backwards_and_stateful(recurrent):
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    layer = recurrent(5, sparsity=0.5, seed=1, return_state=True, go_backwards=True)
    outputs = layer(x)
    twin = tf_dsr.strip(keras.Sequential([keras.Input((4, 3)), recurrent(
        5, sparsity=0.5, seed=1, go_backwards=True, name="r")]))

    assert isinstance(outputs, (list, tuple)) and len(outputs) >= 2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs[1]).shape, (2, 5))

    stateful = recurrent(5, sparsity=0.5, seed=1, stateful=True)
    first = keras.ops.convert_to_numpy(stateful(x))
    second = keras.ops.convert_to_numpy(stateful(x))
    assert not np.allclose(first, second)  # the state carried over
    stateful.reset_state()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stateful(x)), first, atol=1e-6)
    assert twin.get_layer("r").go_backwards


def test_dropout_seed_is_the_mask_seed(recurrent):
    layer = recurrent(5, sparsity=0.5, seed=11, dropout=0.2)
    layer.build((None, 4, 3))
    assert layer.get_config()["seed"] == 11
    assert layer.cell.seed == 11 and layer.cell.sparsity == 0.5
