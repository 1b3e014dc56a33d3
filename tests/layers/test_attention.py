"""SparseMultiHeadAttention: Keras' attention with sparse projections."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import find_sparse_kernels


def attention_model(layer):
    query, value = keras.Input((5, 16)), keras.Input((7, 12))
    return keras.Model([query, value], layer(query, value))


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 5, 16)).astype("float32"),
            rng.normal(size=(2, 7, 12)).astype("float32")]


def test_projections_are_sparse_with_exact_counts_and_own_masks():
    layer = tf_dsr.SparseMultiHeadAttention(2, 8, sparsity=0.75, seed=3, name="mha")
    attention_model(layer)
    found = find_sparse_kernels(layer)

    assert [name for name, _ in found] == ["query", "key", "value", "attention_output"]
    # query 16x2x8, key and value 12x2x8, output 2x8x16.
    assert [pair.size for _, pair in found] == [256, 192, 192, 256]
    for _, pair in found:
        assert int(pair.mask.numpy().sum()) == round(0.25 * pair.size)
        assert np.all(pair.kernel.numpy()[pair.mask.numpy() == 0] == 0)
    masks = [pair.mask.numpy() for _, pair in found]
    assert not np.array_equal(masks[1], masks[2])  # seed + i per projection


def test_sparsity_zero_computes_what_keras_attention_computes():
    sparse = attention_model(tf_dsr.SparseMultiHeadAttention(2, 8, sparsity=0.0, seed=0))
    plain = attention_model(keras.layers.MultiHeadAttention(2, 8))
    rng = np.random.default_rng(1)
    for _, pair in find_sparse_kernels(sparse):
        pair.kernel.assign(rng.normal(size=pair.kernel.shape))
    masks = {id(p.mask) for _, p in find_sparse_kernels(sparse)}
    for target, source in zip(plain.weights, [w for w in sparse.weights if id(w) not in masks]):
        target.assign(source)
    x = [tf.constant(a) for a in inputs()]

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_sparse, y_plain = sparse(x), plain(x)
    np.testing.assert_array_equal(y_sparse.numpy(), y_plain.numpy())
    np.testing.assert_array_equal(tape.gradient(y_sparse, x)[0].numpy(),
                                  tape.gradient(y_plain, x)[0].numpy())


def test_gradients_vanish_at_inactive_positions_and_strip_keeps_outputs(tmp_path):
    model = attention_model(tf_dsr.SparseMultiHeadAttention(2, 8, sparsity=0.5, seed=0,
                                                            name="mha"))
    x = inputs()
    pairs = [pair for _, pair in find_sparse_kernels(model)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    for pair, grad in zip(pairs, tape.gradient(loss, [p.kernel for p in pairs])):
        assert np.all(grad.numpy()[pair.mask.numpy() == 0] == 0)

    plain = tf_dsr.strip(model)
    assert type(plain.get_layer("mha")) is keras.layers.MultiHeadAttention
    assert not tf_dsr.layers.find_sparse_layers(plain)
    np.testing.assert_allclose(plain(x).numpy(), model(x).numpy(), atol=1e-6)

    model.save(tmp_path / "m.keras")
    loaded = tf_dsr.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    for (_, a), (_, b) in zip(find_sparse_kernels(model), find_sparse_kernels(loaded)):
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())


def test_config_round_trips():
    layer = tf_dsr.SparseMultiHeadAttention(4, 16, value_dim=8, dropout=0.1, sparsity=0.8,
                                            seed=5, name="probe")
    config = layer.get_config()
    assert tf_dsr.SparseMultiHeadAttention.from_config(config).get_config() == config
    assert config["sparsity"] == 0.8 and config["seed"] == 5
    assert set(keras.layers.MultiHeadAttention(4, 16).get_config()) <= set(config)


def transformer_block():
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(30, 16, name="emb")(tokens)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(
        2, 8, name="mha")(h, h))
    f = keras.layers.Dense(16, name="ff2")(keras.layers.Dense(32, activation="relu",
                                                              name="ff1")(h))
    h = keras.layers.LayerNormalization()(h + f)
    return keras.Model(tokens, keras.layers.Dense(3, name="cls")(
        keras.layers.GlobalAveragePooling1D()(h)))


def test_sparsify_converts_attentions_projections_and_the_embedding_in_place():
    model = transformer_block()
    tokens = np.random.default_rng(0).integers(1, 30, size=(8, 6)).astype("int32")
    expected = model(tokens).numpy()
    same = tf_dsr.sparsify(model, 0.0, seed=0)
    assert same is model
    np.testing.assert_array_equal(same(tokens).numpy(), expected)

    # sparsify changes its model: a fresh one for sparsity 0.5.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparse = tf_dsr.sparsify(transformer_block(), 0.5, seed=0)
    # Nothing stays dense in a transformer: no report.
    assert not [w for w in caught if "tf_dsr.sparsify" in str(w.message)]
    # The attention stays a Keras MultiHeadAttention; its four projections
    # are sparse, and so is the token table.
    mha = sparse.get_layer("mha")
    assert type(mha) is keras.layers.MultiHeadAttention
    assert [l.name for l in tf_dsr.layers.find_sparse_layers(mha)] == [
        "query", "key", "value", "attention_output"]
    assert all(isinstance(l, tf_dsr.SparseEinsumDense)
               for l in tf_dsr.layers.find_sparse_layers(mha))
    assert isinstance(sparse.get_layer("emb"), tf_dsr.SparseEmbedding)

    sparse.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dsr = tf_dsr.DynamicReparam(prune_target=0.1, period=2, seed=0)
    before = [row.num_active for row in tf_dsr.sparsity_summary(sparse).layers]
    sparse.fit(tokens, np.arange(8) % 3, batch_size=4, epochs=3, verbose=0, callbacks=[dsr])
    after = [row.num_active for row in tf_dsr.sparsity_summary(sparse).layers]
    assert sum(after) == sum(before) and after != before
    # The table, four projections, two feed-forward, classifier.
    assert len(dsr.kernels) == 8
