"""Tests for tf_dsr/convert.py: sparsify and strip."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import find_sparse_layers


def resnet_like():
    """Functional: conv stem, a shared conv used twice, BN, residual add,
    a nested Sequential head and a final Dense."""
    inner = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="inner_a"),
            keras.layers.Dense(8, name="inner_b"),
        ],
        name="inner",
    )
    image = keras.Input((6, 6, 3), name="image")
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(image)
    shared = keras.layers.Conv2D(8, 3, padding="same", name="shared")
    y = shared(stem)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(name="relu")(y)
    y = shared(y)
    y = keras.layers.Add(name="residual")([y, stem])
    y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    y = inner(y)
    logits = keras.layers.Dense(3, name="head")(y)
    model = keras.Model(image, logits, name="resnet_like")
    # Non-trivial BatchNorm statistics, so that copying them is tested.
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    return model


def mlp():
    return keras.Sequential(
        [
            keras.Input((12,), name="features"),
            keras.layers.Dense(20, activation="relu", name="fc1"),
            keras.layers.Dense(10, activation="relu", name="fc2"),
            keras.layers.Dense(4, name="logits"),
        ],
        name="mlp",
    )


def images(n=4, seed=0):
    return np.random.RandomState(seed).randn(n, 6, 6, 3).astype("float32")


def kind(layer):
    """tf_dsr's name of a sparse layer's class ("SparseDense"), else the
    class name (sparse classes are named like their Keras class)."""
    return getattr(layer, "sparse_name", type(layer).__name__)


def layer_types(model):
    """Layer name -> kind (`SparseDense`, `Dense`), nested models expanded."""
    types = {}
    for layer in model.layers:
        types[layer.name] = kind(layer)
        if isinstance(layer, keras.Model):
            types.update(layer_types(layer))
    return types


def all_layers(model):
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if isinstance(layer, keras.Model):
            found.update(all_layers(layer))
    return found


def weights_by_layer(model):
    """Layer name -> copies of its weights: sparsify changes the model in
    place, so the values before are kept apart."""
    return {
        name: [w.numpy().copy() for w in layer.weights]
        for name, layer in all_layers(model).items()
    }


# ----- sparsify ----------------------------------------------------------


def test_sparsity_zero_gives_identical_outputs():
    model = resnet_like()
    x = images()
    expected = model(x, training=False).numpy()
    sparse = tf_dsr.sparsify(model, 0.0, keep_dense=[], seed=0)
    assert len(find_sparse_layers(sparse)) == 5
    np.testing.assert_array_equal(sparse(x, training=False).numpy(), expected)


def test_masks_have_requested_sparsity_and_kernels_are_masked():
    model = resnet_like()
    originals = weights_by_layer(model)
    sparse = tf_dsr.sparsify(model, 0.75, keep_dense=[], seed=0)
    for layer in find_sparse_layers(sparse):
        mask = layer.mask.numpy()
        kernel = layer.kernel_variable.numpy()
        original_kernel, original_bias = originals[layer.name]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert int(mask.sum()) == int(round(0.25 * mask.size)), layer.name
        np.testing.assert_array_equal(kernel, original_kernel * mask)
        np.testing.assert_array_equal(kernel, layer.masked_kernel.numpy())
        np.testing.assert_array_equal(layer.bias.numpy(), original_bias)
    for new, old in zip(sparse.get_layer("bn").get_weights(), originals["bn"]):
        np.testing.assert_array_equal(new, old)


def test_default_keeps_first_conv_and_last_dense():
    sparse = tf_dsr.sparsify(resnet_like(), 0.5, seed=0)
    types = layer_types(sparse)
    assert types["stem"] == "Conv2D"
    assert types["head"] == "Dense"
    assert types["shared"] == "SparseConv2D"
    assert types["inner_a"] == "SparseDense"
    assert types["inner_b"] == "SparseDense"
    assert types["bn"] == "BatchNormalization"
    assert types["inner"] == "Sequential"


def test_default_makes_every_dense_of_an_mlp_sparse():
    sparse = tf_dsr.sparsify(mlp(), 0.9, seed=0)
    assert [kind(layer) for layer in sparse.layers] == ["SparseDense"] * 3
    assert all(isinstance(layer, tf_dsr.SparseDense) for layer in sparse.layers)
    assert isinstance(sparse, keras.Sequential)
    assert sparse.name == "mlp"


def test_keep_dense_by_names():
    sparse = tf_dsr.sparsify(resnet_like(), 0.5, keep_dense=["shared", "inner_b"], seed=0)
    types = layer_types(sparse)
    assert types["shared"] == "Conv2D"
    assert types["inner_b"] == "Dense"
    assert types["stem"] == "SparseConv2D"
    assert types["inner_a"] == "SparseDense"
    assert types["head"] == "SparseDense"


def test_keep_dense_by_predicate():
    seen = []

    def is_conv(layer):
        seen.append(layer.name)
        return isinstance(layer, keras.layers.Conv2D)

    sparse = tf_dsr.sparsify(resnet_like(), 0.5, keep_dense=is_conv, seed=0)
    types = layer_types(sparse)
    assert sorted(seen) == ["head", "inner_a", "inner_b", "shared", "stem"]
    assert types["stem"] == types["shared"] == "Conv2D"
    assert types["inner_a"] == types["inner_b"] == types["head"] == "SparseDense"


def test_shared_layer_stays_one_shared_layer():
    sparse = tf_dsr.sparsify(resnet_like(), 0.5, keep_dense=[], seed=0)
    entries = [l for l in sparse.get_config()["layers"] if l["name"] == "shared"]
    assert len(entries) == 1
    assert len(entries[0]["inbound_nodes"]) == 2
    assert [l.name for l in find_sparse_layers(sparse)].count("shared") == 1


def test_nested_model_is_converted_inside():
    sparse = tf_dsr.sparsify(resnet_like(), 0.5, seed=0)
    inner = sparse.get_layer("inner")
    assert isinstance(inner, keras.Sequential)
    assert all(isinstance(l, tf_dsr.SparseDense) for l in inner.layers)
    assert inner.layers[0].mask.shape == (8, 16)


def test_sparsify_converts_in_place_and_returns_the_model():
    model = resnet_like()
    x = images()
    expected = model(x, training=False).numpy()
    before = weights_by_layer(model)
    layers = all_layers(model)
    model_class = type(model)
    sparse = tf_dsr.sparsify(model, 0.0, keep_dense=[], seed=0)
    assert sparse is model
    assert type(model) is model_class and model.name == "resnet_like"
    # The same layer objects, now sparse, in the same places.
    assert all_layers(model) == layers
    sparse_names = {"stem", "shared", "inner_a", "inner_b", "head"}
    assert {l.name for l in find_sparse_layers(model)} == sparse_names
    for name, values in before.items():
        if isinstance(layers[name], keras.Model):
            continue
        # Each layer keeps its own weights first; masks come after them.
        assert len(layers[name].weights) == len(values) + (name in sparse_names)
        for old, new in zip(values, layers[name].weights):
            np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_array_equal(model(x, training=False).numpy(), expected)

    # At a real sparsity, the model given is the one that became sparse.
    other = resnet_like()
    assert tf_dsr.sparsify(other, 0.9, keep_dense=[], seed=0) is other
    assert len(find_sparse_layers(other)) == 5
    assert tf_dsr.sparsity_summary(other).sparsity == pytest.approx(0.9, abs=0.01)


def test_seed_fixes_masks_and_layers_get_different_masks():
    a = tf_dsr.sparsify(mlp(), 0.5, seed=3)
    b = tf_dsr.sparsify(mlp(), 0.5, seed=3)
    c = tf_dsr.sparsify(mlp(), 0.5, seed=4)
    masks = lambda m: [l.mask.numpy() for l in find_sparse_layers(m)]
    for x, y in zip(masks(a), masks(b)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(masks(a), masks(c)))


def test_sparsified_model_trains_and_keeps_zeros():
    sparse = tf_dsr.sparsify(mlp(), 0.8, seed=0)
    sparse.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.RandomState(1).randn(32, 12).astype("float32")
    y = np.random.RandomState(2).randn(32, 4).astype("float32")
    before = sparse.get_layer("fc1").kernel_variable.numpy().copy()
    sparse.fit(x, y, epochs=1, batch_size=16, verbose=0)
    layer = sparse.get_layer("fc1")
    assert not np.array_equal(layer.kernel_variable.numpy(), before)
    assert np.all(layer.masked_kernel.numpy()[layer.mask.numpy() == 0] == 0)


def test_sequential_built_by_calling_it():
    def called_sequential():
        model = keras.Sequential(
            [keras.layers.Dense(5, name="a"), keras.layers.Dense(2, name="b")])
        model(x)
        return model

    x = np.random.RandomState(0).randn(2, 3).astype("float32")
    model = called_sequential()
    weights = [w.copy() for w in model.get_weights()]
    dense_output = model(x).numpy()
    same = tf_dsr.sparsify(model, 0.0, seed=0)
    assert [type(layer) for layer in same.layers] == [tf_dsr.SparseDense] * 2
    np.testing.assert_array_equal(same(x).numpy(), dense_output)

    # At sparsity 0.5 the model computes with its original kernels, masked.
    model = called_sequential()
    model.set_weights(weights)
    sparse = tf_dsr.sparsify(model, 0.5, seed=0)
    expected = x
    for i, layer in enumerate(sparse.layers):
        mask = layer.mask.numpy()
        assert int(mask.sum()) == round(0.5 * mask.size) < mask.size
        expected = expected @ (weights[2 * i] * mask) + weights[2 * i + 1]
    np.testing.assert_allclose(sparse(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(sparse(x).numpy(), dense_output)


# ----- what stays dense: sparsify's report --------------------------------


def sparsify_report(*args, **kwargs):
    """Runs sparsify; returns the model, the report's headline and its
    entries `{path: line}` (one line per layer that stays dense)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparse = tf_dsr.sparsify(*args, **kwargs)
    reports = [w for w in caught if "tf_dsr.sparsify" in str(w.message)]
    assert len(reports) == 1, [str(w.message) for w in caught]
    assert reports[0].category is UserWarning
    head, *lines = str(reports[0].message).splitlines()
    entries = {line.split(" (")[0].strip(): line for line in lines}
    assert len(entries) == len(lines)
    return sparse, head, entries


class Position(keras.layers.Layer):
    """A user's layer with a kernel of its own (a learned position table)."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), name="table")

    def call(self, x):
        return x + self.table


def transformer_like():
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(50, 16, name="emb")(tokens)
    h = Position(name="position")(h)
    a = keras.layers.MultiHeadAttention(2, 8, name="mha")(h, h)
    h = keras.layers.LayerNormalization(name="ln")(h + a)
    f = keras.layers.Dense(32, activation="relu", name="ffn1")(h)
    h = h + keras.layers.Dense(16, name="ffn2")(f)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(h))


def test_report_lists_exactly_what_stays_dense_in_a_conv_net():
    sparse, head, entries = sparsify_report(resnet_like(), 0.5, seed=0)

    assert set(entries) == {"stem", "head"}
    assert "stem (Conv2D, 216 weights): paper's rule: the first convolution" in entries["stem"]
    assert "head (Dense, 24 weights): paper's rule: the last Dense" in entries["head"]
    assert "include=['stem']" in entries["stem"]
    summary = tf_dsr.sparsity_summary(sparse)
    assert f"{summary.sparse_share:.1%} of its {summary.num_trainable:,} trainable" in head
    assert f"{summary.num_dense_trainable:,} are dense" in head


def test_report_lists_exactly_what_stays_dense_in_a_transformer():
    sparse, head, entries = sparsify_report(transformer_like(), 0.5, seed=0)

    # In a transformer the token table becomes sparse too.
    assert set(entries) == {"position"}
    assert "position (Position, 96 weights): unsupported layer type" in entries["position"]
    assert isinstance(sparse.get_layer("emb"), tf_dsr.SparseEmbedding)
    # Attention stays a MultiHeadAttention; its four projections are sparse.
    assert type(sparse.get_layer("mha")) is keras.layers.MultiHeadAttention
    assert [l.name for l in find_sparse_layers(sparse)] == [
        "emb", "query", "key", "value", "attention_output", "ffn1", "ffn2", "logits"]
    assert all(isinstance(l, tf_dsr.SparseEinsumDense)
               for l in find_sparse_layers(sparse.get_layer("mha")))
    assert "1 weight layer(s)" in head
    holders = {layer.name for _, layer, _ in tf_dsr.layers.find_dense_kernels(sparse)}
    assert holders == set(entries)


def test_include_converts_what_the_paper_keeps_dense():
    sparse, _, entries = sparsify_report(resnet_like(), 0.5, include=["stem"], seed=0)
    assert set(entries) == {"head"}
    assert layer_types(sparse)["stem"] == "SparseConv2D"

    def bag_of_words():
        return keras.Sequential([
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(50, 16, name="emb"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, name="logits"),
        ])

    # Outside transformers embedding tables stay dense by default...
    sparse, _, entries = sparsify_report(bag_of_words(), 0.5, seed=0)
    assert set(entries) == {"emb"}
    assert "emb (Embedding, 800 weights): default: embedding tables" in entries["emb"]
    assert type(sparse.get_layer("emb")) is keras.layers.Embedding
    # ...and `include` converts them.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparse = tf_dsr.sparsify(
            bag_of_words(), 0.5, include=lambda layer: layer.name == "emb", seed=0)
    assert isinstance(sparse.get_layer("emb"), tf_dsr.SparseEmbedding)


def test_a_layer_kept_dense_is_reported_once_with_all_its_kernels():
    inputs = keras.Input((5, 3))
    h = keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(h))
    sparse, _, entries = sparsify_report(model, 0.5, keep_dense=["forward_lstm"], seed=0)

    # Kernel 3x16 and recurrent kernel 4x16 of the forward cell, in one
    # entry for the cell that holds them both.
    assert set(entries) == {"bi/forward_lstm/lstm_cell"}
    assert "bi/forward_lstm/lstm_cell (LSTMCell, 112 weights): named by keep_dense" in (
        entries["bi/forward_lstm/lstm_cell"])
    bi = sparse.get_layer("bi")
    assert type(bi.forward_layer.cell) is keras.layers.LSTMCell
    assert isinstance(bi.backward_layer.cell, tf_dsr.SparseLSTMCell)


def test_a_users_subclass_of_dense_is_reported_as_unsupported():
    class Scaled(keras.layers.Dense):
        pass

    model = keras.Sequential(
        [keras.Input((4,)), Scaled(3, name="scaled"), keras.layers.Dense(2, name="out")])
    _, _, entries = sparsify_report(model, 0.5, seed=0)
    assert set(entries) == {"scaled"}
    assert "no sparse layer for Scaled (a subclass of Dense" in entries["scaled"]


def test_nothing_reported_when_every_weight_layer_is_sparse():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparse = tf_dsr.sparsify(mlp(), 0.5, seed=0)
    assert tf_dsr.sparsity_summary(sparse).num_dense_trainable == 20 + 10 + 4


def test_keep_dense_and_include_naming_one_layer_raises_value_error():
    with pytest.raises(ValueError, match=r"\['fc2'\] are selected by both"):
        tf_dsr.sparsify(mlp(), 0.5, keep_dense=["fc1", "fc2"], include=["fc2"])


def test_include_of_an_unknown_or_unreachable_layer_raises_value_error():
    with pytest.raises(ValueError, match=r"`include` names \['nope'\]"):
        tf_dsr.sparsify(mlp(), 0.5, include=["nope"])
    # A layer that neither converts nor holds a convertible layer.
    with pytest.raises(ValueError, match=r"`include` names \['ln'\], which are neither"):
        tf_dsr.sparsify(transformer_like(), 0.5, include=["ln"])
    with pytest.raises(TypeError, match="`include` must be"):
        tf_dsr.sparsify(mlp(), 0.5, include="fc1")


def test_attention_projections_are_selected_one_by_one_or_by_the_attention():
    # One projection of the attention can be named...
    _, _, entries = sparsify_report(transformer_like(), 0.5, keep_dense=["query"], seed=0)
    assert set(entries) == {"position", "mha/query"}
    assert "mha/query (EinsumDense, 256 weights): named by keep_dense" in entries["mha/query"]
    def conv_attention():
        inputs = keras.Input((6, 4))
        h = keras.layers.Conv1D(8, 1, name="conv")(inputs)
        h = keras.layers.MultiHeadAttention(2, 4, name="mha")(h, h)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(h))

    # The paper's rule keeps the last projection of a conv net dense...
    sparse, _, entries = sparsify_report(conv_attention(), 0.5, seed=0)
    assert set(entries) == {"conv", "mha/attention_output"}
    assert "the last Dense of a conv net" in entries["mha/attention_output"]
    # ...and `include` converts that one projection by its name.
    sparse, _, entries = sparsify_report(
        conv_attention(), 0.5, include=["attention_output"], seed=0)
    assert set(entries) == {"conv"}
    mha = sparse.get_layer("mha")
    assert isinstance(mha._output_dense, tf_dsr.SparseEinsumDense)
    assert type(mha) is keras.layers.MultiHeadAttention
    # ...and naming the attention keeps all four projections dense.
    sparse, _, entries = sparsify_report(transformer_like(), 0.5, keep_dense=["mha"], seed=0)
    assert set(entries) == {
        "position", "mha/query", "mha/key", "mha/value", "mha/attention_output"}
    assert not find_sparse_layers(sparse.get_layer("mha"))
    assert [l.name for l in find_sparse_layers(sparse)] == [
        "emb", "ffn1", "ffn2", "logits"]


# ----- strip -------------------------------------------------------------


def test_strip_inverts_sparsify_config():
    model = resnet_like()
    config = model.get_config()
    sparse = tf_dsr.sparsify(model, 0.0, keep_dense=[], seed=0)
    assert sparse.get_config() != config
    plain = tf_dsr.strip(sparse)
    # The copy comes through a file: equal as JSON (tuples come back lists).
    assert json.loads(json.dumps(plain.get_config())) == json.loads(json.dumps(config))


def test_strip_keeps_outputs_and_holds_exact_zeros():
    sparse = tf_dsr.sparsify(resnet_like(), 0.8, seed=0)
    plain = tf_dsr.strip(sparse)
    x = images()
    np.testing.assert_allclose(
        plain(x, training=False).numpy(), sparse(x, training=False).numpy(), atol=1e-6
    )
    stripped = all_layers(plain)
    for layer in find_sparse_layers(sparse):
        kernel = stripped[layer.name].kernel.numpy()
        assert type(stripped[layer.name]) in (keras.layers.Dense, keras.layers.Conv2D)
        np.testing.assert_array_equal(kernel, layer.masked_kernel.numpy())
        assert int((kernel == 0).sum()) == int((layer.mask.numpy() == 0).sum())


def test_strip_leaves_nothing_from_tf_dsr():
    plain = tf_dsr.strip(tf_dsr.sparsify(resnet_like(), 0.8, keep_dense=[], seed=0))
    assert not find_sparse_layers(plain)
    assert "tf_dsr" not in json.dumps(plain.get_config())
    assert not any("mask" in w.path for w in plain.weights)


def test_strip_sparse_layers_built_directly():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            tf_dsr.SparseConv2D(4, 3, sparsity=0.5, seed=1, activation="relu", name="c"),
            keras.layers.Flatten(),
            tf_dsr.SparseDense(3, sparsity=0.5, seed=2, use_bias=False, name="d"),
        ]
    )
    plain = tf_dsr.strip(model)
    assert [type(l).__name__ for l in plain.layers] == ["Conv2D", "Flatten", "Dense"]
    assert plain.get_layer("d").bias is None
    assert plain.get_layer("c").get_config()["activation"] == "relu"
    x = np.random.RandomState(0).randn(2, 6, 6, 2).astype("float32")
    np.testing.assert_allclose(plain(x).numpy(), model(x).numpy(), atol=1e-6)


def test_strip_sequential_compiled_with_a_lambda_loss():
    # keras.models.clone_model recompiles Sequential copies and fails on this.
    model = tf_dsr.sparsify(mlp(), 0.5, seed=0)
    model.compile("sgd", loss=lambda y, p: tf.reduce_mean((y - p) ** 2))
    plain = tf_dsr.strip(model)
    assert not find_sparse_layers(plain)


# ----- bad input ---------------------------------------------------------


@pytest.mark.parametrize("function", [tf_dsr.sparsify, tf_dsr.strip])
def test_non_model_input_raises_type_error(function):
    args = (0.5,) if function is tf_dsr.sparsify else ()
    with pytest.raises(TypeError, match="expects a `keras.Model`"):
        function(keras.layers.Dense(3), *args)


def test_sparsify_converts_a_subclassed_model_in_place():
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    model = TwoWays()
    model(x)
    hidden, out = model.hidden, model.out
    expected = keras.ops.convert_to_numpy(model(x))
    assert tf_dsr.sparsify(model, 0.0, seed=0) is model
    # Same class, same layer objects in the same attributes, same outputs.
    assert type(model) is TwoWays
    assert model.hidden is hidden and model.out is out
    assert [kind(l) for l in (model.hidden, model.norm, model.out)] == [
        "SparseDense", "BatchNormalization", "SparseDense"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), expected)

    model = TwoWays()
    model(x)
    kernel = model.hidden.kernel.numpy().copy()
    tf_dsr.sparsify(model, 0.75, seed=0)
    mask = model.hidden.mask.numpy()
    assert int(mask.sum()) == round(0.25 * mask.size)
    np.testing.assert_array_equal(model.hidden.kernel_variable.numpy(), kernel * mask)
    # It trains as any sparse model: masked weights stay zero.
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, np.arange(5) % 3, epochs=1, verbose=0)
    assert np.all(model.hidden.kernel_variable.numpy()[mask == 0] == 0)


class TwoWays(keras.Model):
    """A subclassed model that builds plain or sparse layers, like a user's."""

    def __init__(self, sparsity=None, **kwargs):
        super().__init__(**kwargs)
        self.sparsity = sparsity

        def dense(units, name, **options):
            if sparsity is None:
                return keras.layers.Dense(units, name=name, **options)
            return tf_dsr.SparseDense(units, sparsity=sparsity, seed=len(name),
                                      block_shape=(2, 1), name=name, **options)

        self.hidden = dense(8, "hidden", activation="relu")
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.out = dense(3, "out")

    def call(self, x, training=False):
        return self.out(self.norm(self.hidden(x), training=training))

    def get_config(self):
        return {**super().get_config(), "sparsity": self.sparsity}


def test_strip_recreates_a_subclassed_model_with_plain_layers():
    model = TwoWays(0.7)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    model(x)
    model.norm.moving_mean.assign(np.arange(8, dtype="float32"))
    before = [w.numpy().copy() for w in model.weights]
    plain = tf_dsr.strip(model)
    assert type(plain) is TwoWays and plain is not model
    assert [type(layer).__name__ for layer in (plain.hidden, plain.norm, plain.out)] == [
        "Dense", "BatchNormalization", "Dense"]
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)
    np.testing.assert_array_equal(plain.norm.moving_mean, np.arange(8))
    assert np.count_nonzero(plain.hidden.kernel) == np.count_nonzero(model.hidden.mask)
    assert not any("mask" in w.path for w in plain.weights)
    # The model given is untouched.
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(old, weight.numpy())


def test_strip_of_a_subclassed_model_after_training_leaves_the_method_state_out():
    model = TwoWays(0.7)
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = np.arange(16) % 3
    model(x)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0, batch_size=4,
              callbacks=[tf_dsr.DynamicReparam(prune_target=2, period=1, seed=0)])
    plain = tf_dsr.strip(model)
    twin = TwoWays(None)
    twin(x)
    assert [(w.name, w.shape) for w in plain.weights] == [
        (w.name, w.shape) for w in twin.weights]
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)


class Unconfigurable(keras.Model):
    """Its constructor takes a layer, which Keras cannot put in a config."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, x):
        return self.layer(x)


def test_strip_refuses_a_model_without_config_and_shows_how_to_ship_it():
    model = Unconfigurable(tf_dsr.SparseDense(3, sparsity=0.5))
    model(np.ones((1, 4), "float32"))
    with pytest.raises(TypeError, match="get_config") as error:
        tf_dsr.strip(model)
    assert 'tf_dsr.export(model, "artifact/")' in str(error.value)


def test_strip_refuses_an_unbuilt_subclassed_model():
    with pytest.raises(ValueError, match="not built"):
        tf_dsr.strip(TwoWays(0.5))


def test_unbuilt_model_raises_value_error():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="built"):
        tf_dsr.sparsify(model, 0.5)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_out_of_range_raises_value_error(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        tf_dsr.sparsify(mlp(), sparsity)


@pytest.mark.parametrize("sparsity", ["0.5", None, True])
def test_sparsity_of_wrong_type_raises_type_error(sparsity):
    with pytest.raises(TypeError, match="sparsity"):
        tf_dsr.sparsify(mlp(), sparsity)


def test_unknown_keep_dense_name_raises_value_error():
    with pytest.raises(ValueError, match=r"\['nope'\].*Convertible layers"):
        tf_dsr.sparsify(mlp(), 0.5, keep_dense=["fc1", "nope"])


def test_keep_dense_naming_a_non_dense_layer_raises_value_error():
    with pytest.raises(ValueError, match="bn"):
        tf_dsr.sparsify(resnet_like(), 0.5, keep_dense=["bn"])


def test_keep_dense_as_a_bare_string_raises_type_error():
    with pytest.raises(TypeError, match=r"\['fc1'\]"):
        tf_dsr.sparsify(mlp(), 0.5, keep_dense="fc1")


def test_nothing_to_sparsify_warns():
    with pytest.warns(UserWarning, match="without sparse layers"):
        sparse = tf_dsr.sparsify(mlp(), 0.5, keep_dense=lambda layer: True)
    assert not find_sparse_layers(sparse)


def test_sparsifying_a_sparse_model_raises_and_says_to_strip_first():
    sparse = tf_dsr.sparsify(mlp(), 0.5, seed=0)
    masks = [layer.mask.numpy().copy() for layer in find_sparse_layers(sparse)]
    with pytest.raises(ValueError, match=r"already has tf_dsr sparse layers.*tf_dsr\.strip"):
        tf_dsr.sparsify(sparse, 0.9, seed=0)
    for before, layer in zip(masks, find_sparse_layers(sparse)):
        np.testing.assert_array_equal(layer.mask.numpy(), before)
    again = tf_dsr.sparsify(tf_dsr.strip(sparse), 0.9, seed=0)
    assert tf_dsr.sparsity_summary(again).sparsity == pytest.approx(0.9, abs=0.01)


def test_too_high_sparsity_for_a_small_kernel_raises_value_error():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="tiny")])
    with pytest.raises(ValueError, match="no active weight"):
        tf_dsr.sparsify(model, 0.9)


def ops_between_layers():
    """Keras ops between layers, as transformer and residual code writes them."""
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, name="fc1")(inputs)
    h = keras.ops.relu(h) + inputs
    h = keras.layers.Dense(8, name="fc2")(h * 2.0)
    outputs = keras.layers.Dense(3, name="logits")(keras.ops.tanh(h))
    return keras.Model(inputs, outputs)


def test_models_with_keras_ops_between_layers_sparsify_and_strip(tmp_path):
    model = ops_between_layers()
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))

    same = tf_dsr.sparsify(model, 0.0, seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same(x)), expected)
    sparse = tf_dsr.sparsify(ops_between_layers(), 0.5, seed=0)
    assert [l.name for l in find_sparse_layers(sparse)] == ["fc1", "fc2", "logits"]
    plain = tf_dsr.strip(sparse)
    assert not find_sparse_layers(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)),
                               keras.ops.convert_to_numpy(sparse(x)), atol=1e-6)
    tf_dsr.export(sparse, tmp_path / "saved", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(),
                               keras.ops.convert_to_numpy(sparse(x)), atol=1e-6)


def test_layers_inside_wrappers_are_converted_and_stripped():
    def wrapped():
        inputs = keras.Input((5, 3))
        h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(inputs)
        h = keras.layers.TimeDistributed(keras.layers.Dense(6), name="td")(h)
        h = keras.layers.Conv1D(4, 2, name="conv")(h)
        h = keras.layers.GlobalAveragePooling1D()(h)
        return keras.Model(inputs, keras.layers.Dense(2, name="logits")(h))

    model = wrapped()
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    same = tf_dsr.sparsify(model, 0.0, seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same(x)), expected)
    sparse = tf_dsr.sparsify(wrapped(), 0.5, seed=0)
    kinds = [kind(l) for l in find_sparse_layers(sparse)]
    # The first convolution and the last Dense stay dense (the paper's rule).
    assert kinds == ["SparseLSTMCell", "SparseLSTMCell", "SparseDense"]
    assert isinstance(sparse.get_layer("td").layer, tf_dsr.SparseDense)
    plain = tf_dsr.strip(sparse)
    assert type(plain.get_layer("td").layer) is keras.layers.Dense
    assert not find_sparse_layers(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)),
                               keras.ops.convert_to_numpy(sparse(x)), atol=1e-6)


def test_same_named_layers_in_one_wrapper_are_converted_alike_or_one_by_one(tmp_path):
    def bidirectional():
        inputs = keras.Input((5, 3))
        rnn = keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True)
        outputs = keras.layers.Bidirectional(rnn, name="bi")(inputs)
        model = keras.Model(inputs, outputs)
        bi = model.get_layer("bi")
        return model, [bi.forward_layer.cell, bi.backward_layer.cell]

    model, cells = bidirectional()
    assert cells[0].name == cells[1].name  # Keras copies the forward config
    sparse = tf_dsr.sparsify(model, 0.5, keep_dense=[], seed=0)
    assert find_sparse_layers(sparse) == cells
    assert [kind(l) for l in cells] == ["SparseLSTMCell"] * 2

    # Converted in place, one of the two same-named cells can stay dense,
    # and the model saves, loads and strips as it computes.
    model, cells = bidirectional()
    tf_dsr.sparsify(model, 0.5, keep_dense=lambda layer: layer is cells[0], seed=0)
    assert type(cells[0]) is keras.layers.LSTMCell
    assert find_sparse_layers(model) == [cells[1]]
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "model.keras")
    loaded = tf_dsr.load_model(tmp_path / "model.keras")
    bi = loaded.get_layer("bi")
    assert type(bi.forward_layer.cell) is keras.layers.LSTMCell
    assert kind(bi.backward_layer.cell) == "SparseLSTMCell"
    np.testing.assert_array_equal(bi.backward_layer.cell.kernel_mask.numpy(),
                                  cells[1].kernel_mask.numpy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)
    plain = tf_dsr.strip(model)
    assert not find_sparse_layers(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), expected, atol=1e-6)
