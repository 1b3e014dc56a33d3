"""Sparse recurrent layers in the settings Keras users run them in."""

import concurrent.futures

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    # Both directions are sparse. Keras builds the backward layer from the
    # forward layer's config, seed included: with a seed the two start from
    # the same masks (documented), without one each draws its own.
    layer = model.get_layer("bi")
    forward = layer.forward_layer.cell.sparse_kernels()
    backward = layer.backward_layer.cell.sparse_kernels()
    assert len(forward) == len(backward) == 2
    for f, b in zip(forward, backward):
        assert int(f.mask.numpy().sum()) == int(b.mask.numpy().sum()) == round(0.5 * f.size)
        np.testing.assert_array_equal(f.mask.numpy(), b.mask.numpy())
    unseeded = keras.layers.Bidirectional(recurrent(5, sparsity=0.5))
    unseeded(np.ones((1, 4, 3), "float32"))
    assert not np.array_equal(
        unseeded.forward_layer.cell.sparse_kernels()[1].mask.numpy(),
        unseeded.backward_layer.cell.sparse_kernels()[1].mask.numpy())


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
    inputs = keras.Input((4, 3), batch_size=2)
    model = keras.Model(inputs, recurrent(
        5, sparsity=0.5, seed=1, return_state=True, go_backwards=True, name="r")(inputs))
    plain = tf_dsr.strip(model)

    outputs, twin_outputs = model(x), plain(x)
    assert isinstance(outputs, (list, tuple)) and len(outputs) >= 2
    assert plain.get_layer("r").go_backwards and plain.get_layer("r").return_state
    for a, b in zip(outputs, twin_outputs):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a),
                                   keras.ops.convert_to_numpy(b), atol=1e-6)

    stateful = keras.Sequential([inputs, recurrent(5, sparsity=0.5, seed=1, stateful=True,
                                                   name="s")])
    stateful_plain = tf_dsr.strip(stateful)
    for _ in range(2):  # the state carries over between calls, in both
        np.testing.assert_allclose(keras.ops.convert_to_numpy(stateful(x)),
                                   keras.ops.convert_to_numpy(stateful_plain(x)), atol=1e-6)
    stateful.get_layer("s").reset_state()
    stateful_plain.get_layer("s").reset_state()
    first = keras.ops.convert_to_numpy(stateful(x))
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(stateful_plain(x)),
                               atol=1e-6)
    # The state carried over: the second call starts from the first's
    # state, not from zeros. (Later calls may converge to a fixed point.)
    assert not np.allclose(keras.ops.convert_to_numpy(stateful(x)), first)


def test_concurrent_calls_from_threads():
    """Masked kernels computed once per call are per thread."""
    layer = tf_dsr.SparseLSTM(4, sparsity=0.5, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(layer(x))
    fn = tf.function(layer)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fn(tf.constant(x)).numpy(), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_dropout_seed_is_the_mask_seed(recurrent):
    layer = recurrent(5, sparsity=0.5, seed=11, dropout=0.2)
    layer.build((None, 4, 3))
    assert layer.get_config()["seed"] == 11
    assert layer.cell.seed == 11 and layer.cell.sparsity == 0.5
