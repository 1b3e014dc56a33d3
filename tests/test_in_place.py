"""In-place conversion beyond the basics: every method, weight files,
TFLite, refusals that change nothing, selection of whole blocks."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import find_sparse_kernels
from tf_dsr.layers import find_sparse_layers

keras_hub = pytest.importorskip("keras_hub")

VOCAB, STEPS = 64, 8


def gpt2(seed=0):
    keras.utils.set_random_seed(seed)
    # No dropout: a resumed run must compute exactly what the first one did.
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=STEPS, dropout=0.0)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def data(num=16):
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, VOCAB, (num, STEPS)),
         "padding_mask": np.ones((num, STEPS), "int32")}
    return x, rng.integers(1, VOCAB, (num, STEPS))


def sparse_gpt2(sparsity=0.9, seed=0, **kwargs):
    model = gpt2(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the position embedding stays dense
        tf_dsr.sparsify(model, sparsity, seed=seed, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def masks(model):
    return [pair.mask.numpy().copy() for _, pair in find_sparse_kernels(model)]


def num_active(model):
    return sum(int(m.sum()) for m in masks(model))


@pytest.mark.parametrize("make_callback, sparsity, expected_active", [
    (lambda: tf_dsr.SET(period=4, prune_fraction=0.2, seed=0), 0.9, None),
    (lambda: tf_dsr.DynamicReparam(prune_target=0.05, period=4, growth="gradient",
                                   seed=0), 0.9, None),
    (lambda: tf_dsr.GradualPruning(final_sparsity=0.95, begin_step=0, end_step=6,
                                   period=4), 0.5, "final"),
])
def test_every_method_trains_a_keras_hub_model_converted_in_place(
        make_callback, sparsity, expected_active):
    model = sparse_gpt2(sparsity)
    before = masks(model)
    x, y = data()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[make_callback()])
    after = masks(model)
    assert sum(int((a != b).sum()) for a, b in zip(after, before)) > 0
    if expected_active is None:
        assert num_active(model) == sum(int(m.sum()) for m in before)
    else:
        assert tf_dsr.sparsity_summary(model).sparsity == pytest.approx(0.95, abs=0.01)
    for _, pair in find_sparse_kernels(model):
        assert not np.any(pair.kernel.numpy()[pair.mask.numpy() == 0])


def test_static_sparse_training_keeps_masks_and_zeros():
    model = sparse_gpt2()
    before = masks(model)
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(masks(model), before):
        np.testing.assert_array_equal(a, b)
    for _, pair in find_sparse_kernels(model):
        # The masked product is what the layers use: its gradient is zero
        # wherever the mask is 0, so those entries stay exactly 0.
        assert not np.any(pair.kernel.numpy()[pair.mask.numpy() == 0])


def test_weights_file_loads_into_a_model_converted_the_same_way(tmp_path):
    model = sparse_gpt2(seed=1)
    x, y = data()
    reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=4, seed=0)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[reparam])
    path = tmp_path / "run.weights.h5"
    model.save_weights(path)

    other = sparse_gpt2(seed=2)  # other masks and weights until loaded
    other.load_weights(path)
    for a, b in zip(masks(other), masks(model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_to_tflite_of_a_keras_hub_model_matches_keras(tmp_path):
    model = sparse_gpt2()
    signature = [{"token_ids": tf.TensorSpec((1, STEPS), tf.int32),
                  "padding_mask": tf.TensorSpec((1, STEPS), tf.int32)}]
    tf_dsr.to_tflite(model, tmp_path / "lm.tflite", input_signature=signature)
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "lm.tflite"))
    runner = interpreter.get_signature_runner()
    x, _ = data(1)
    names = sorted(runner.get_input_details())
    # The dict input is flattened in sorted key order, as tf.nest does.
    assert len(names) == 2, names
    inputs = {name: np.asarray(x[key], "int32")
              for name, key in zip(names, sorted(x))}
    got = list(runner(**inputs).values())[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4)


def test_a_refused_call_changes_nothing():
    model = gpt2()
    weights = [w.numpy().copy() for w in model.weights]
    # A block that tiles no kernel (widths are multiples of 4): refused, and
    # no layer was converted before the refusal.
    with pytest.raises(ValueError, match="block_shape=\\(3, 1\\) cannot apply"):
        tf_dsr.sparsify(model, 0.9, block_shape=(3, 1))
    assert not find_sparse_layers(model)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))


def test_naming_a_block_keeps_every_layer_inside_it_dense():
    model = sparse_gpt2(keep_dense=["self_attention"])
    paths = [name for name, _ in find_sparse_kernels(model)]
    assert paths and not any("self_attention/" in p for p in paths)
    assert any("feedforward_intermediate_dense" in p for p in paths)
    assert any(p.endswith("token_embedding") for p in paths)


def test_block_shape_applies_where_the_layers_take_it():
    model = sparse_gpt2(
        block_shape=(4, 1),
        keep_dense=lambda layer: not isinstance(layer, keras.layers.Dense))
    kernels = find_sparse_kernels(model)
    assert kernels and all(isinstance(p.layer, keras.layers.Dense) for _, p in kernels)
    for _, pair in kernels:
        grid = pair.mask.numpy().reshape(-1, 4, pair.mask.shape[-1])
        assert np.all((grid == grid[:, :1, :]))  # whole 4x1 blocks


def test_sparsify_returns_the_model_and_a_compiled_model_retraces():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8)(inputs)))
    model.compile("sgd", "mse")
    x, y = np.ones((8, 6), "float32"), np.zeros((8, 3), "float32")
    model.fit(x, y, verbose=0)
    optimizer = model.optimizer
    assert tf_dsr.sparsify(model, 0.5, seed=0) is model
    assert model.optimizer is optimizer and model.train_function is None
    model.fit(x, y, verbose=0, epochs=2)
    for _, pair in find_sparse_kernels(model):
        assert not np.any(pair.kernel.numpy()[pair.mask.numpy() == 0])


def test_an_unbuilt_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="needs a built model"):
        tf_dsr.sparsify(Net(), 0.5)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_a_keras_hub_model_exactly(tmp_path):
    x, y = data()

    def run(seed, extra=()):
        model = sparse_gpt2(seed=seed)
        reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=3, seed=4)
        model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                  callbacks=[reparam, *extra])
        return model, reparam

    reference, reparam = run(0)
    assert int(reparam.state.num_reallocations.numpy()) >= 3
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(0, [keras.callbacks.BackupAndRestore(backup), _Interrupt(at_epoch=1)])
    # A new process rebuilds and sparsifies the model from code: another
    # seed, so only what BackupAndRestore restores can make them equal.
    resumed, resumed_reparam = run(7, [keras.callbacks.BackupAndRestore(backup)])

    assert float(resumed_reparam.state.threshold.numpy()) == float(
        reparam.state.threshold.numpy())
    for a, b in zip(masks(resumed), masks(reference)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(resumed.predict(x, verbose=0),
                               reference.predict(x, verbose=0), atol=1e-5)
