"""DenseGradients: the gradient of the masked kernel, captured during fit."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.dense_gradients import DenseGradients
from tf_dsr.layers.reading import kernels_read_from
from tf_dsr.layers.find import find_sparse_kernels

L = keras.layers


def _pairs(model):
    return [pair for _, pair in find_sparse_kernels(model)]


def _reference_gradients(model, x, y, loss_fn=None):
    """dL/d(kernel * mask) by an explicit tape, the loss as Keras computes
    it on one device (mean over the batch)."""
    loss_fn = loss_fn or keras.losses.MeanSquaredError()
    pairs = _pairs(model)
    values = [tf.convert_to_tensor(pair.masked) for pair in pairs]
    with tf.GradientTape() as tape:
        tape.watch(values)
        with kernels_read_from(list(zip(pairs, values))):
            loss = loss_fn(y, model(x, training=True))
    # An embedding table's gradient is IndexedSlices: make it dense.
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, values)]


def _dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        tf_dsr.SparseDense(5, sparsity=0.5, seed=1, activation="tanh"),
        tf_dsr.SparseDense(3, sparsity=0.5, seed=2),
    ])


def _data(n=8, shape=(6,), outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype("float32")
    return x, rng.standard_normal((n, outputs)).astype("float32")


def _conv_model():
    inputs = keras.Input((6, 6, 2))
    h = tf_dsr.SparseConv2D(4, 3, sparsity=0.5, seed=1, activation="relu")(inputs)
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(h)))


def _embedding_model():
    inputs = keras.Input((5,), dtype="int32")
    h = tf_dsr.SparseEmbedding(12, 4, sparsity=0.5, seed=1)(inputs)
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(h)))


def _lstm_model():
    inputs = keras.Input((4, 3))
    h = tf_dsr.SparseLSTM(5, sparsity=0.5, seed=1)(inputs)
    return keras.Model(inputs, L.Dense(3)(h))


def _einsum_model():
    inputs = keras.Input((4, 6))
    h = tf_dsr.SparseEinsumDense("abc,cde->abde", (4, 2, 3), bias_axes="de",
                                 sparsity=0.5, seed=1)(inputs)
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(h)))


def _attention_model():
    inputs = keras.Input((4, 6))
    h = tf_dsr.SparseMultiHeadAttention(2, 3, sparsity=0.5, seed=1)(inputs, inputs)
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(h)))


def _wrapped_model(num_steps):
    # TimeDistributed calls its layer once per time step when the number
    # of steps is static (the uses add up), through tf.vectorized_map when
    # it is not; Bidirectional holds two sparse GRUs.
    inputs = keras.Input((num_steps, 4))
    h = L.TimeDistributed(tf_dsr.SparseDense(3, sparsity=0.5, seed=1,
                                             activation="tanh"))(inputs)
    h = L.Bidirectional(tf_dsr.SparseGRU(3, sparsity=0.5, seed=2))(h)
    return keras.Model(inputs, L.Dense(3)(h))


def _inputs_for(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    spec = model.inputs[0]
    shape = (n,) + tuple(5 if d is None else d for d in spec.shape[1:])
    if spec.dtype.startswith("int"):
        # Repeated ids: their row gradients must add up.
        return rng.integers(0, 12, size=shape).astype("int32")
    return rng.standard_normal(shape).astype("float32")


MODELS = {
    "Dense": (_dense_model, 2),
    "Conv2D": (_conv_model, 1),
    "Embedding": (_embedding_model, 1),
    "LSTM": (_lstm_model, 2),
    "EinsumDense": (_einsum_model, 1),
    "MultiHeadAttention": (_attention_model, 4),
    "TimeDistributed-Bidirectional": (lambda: _wrapped_model(5), 5),
    "TimeDistributed-Bidirectional, steps unknown": (lambda: _wrapped_model(None), 5),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_captured_gradient_is_the_gradient_of_the_masked_kernel(name):
    build, num_kernels = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = _inputs_for(model)
    y = np.random.default_rng(1).standard_normal((8, 3)).astype("float32")
    expected = _reference_gradients(model, x, y)
    capture = DenseGradients(_pairs(model))
    assert len(capture.variables) == num_kernels

    capture.request()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    assert bool(capture.captured.numpy())
    for pair, variable, want in zip(capture.kernels, capture.variables, expected):
        got = variable.numpy()
        assert got.shape == tuple(pair.kernel.shape) and variable.dtype == tf.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        mask = pair.mask.numpy()
        # The point of it: non-zero where the mask is 0 too (the
        # optimizer's gradient there is 0).
        assert np.any(got[mask == 0] != 0)


def test_not_requested_leaves_the_variables_unchanged():
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    capture = DenseGradients(_pairs(model))
    model.fit(x, y, batch_size=4, verbose=0)
    assert not bool(capture.captured.numpy())
    for variable in capture.variables:
        assert not np.any(variable.numpy())

    capture.request()
    model.fit(x, y, batch_size=4, verbose=0)
    capture.release()
    held = [v.numpy().copy() for v in capture.variables]
    assert all(np.any(h) for h in held)
    kernels = [p.kernel.numpy().copy() for p in capture.kernels]
    model.fit(x[::-1], y[::-1], batch_size=4, epochs=2, verbose=0)
    # Training went on (the kernels moved), the capture did not.
    assert any(not np.array_equal(k, p.kernel.numpy())
               for k, p in zip(kernels, capture.kernels))
    for h, variable in zip(held, capture.variables):
        np.testing.assert_array_equal(h, variable.numpy())
    assert bool(capture.captured.numpy())
    capture.request()
    assert not bool(capture.captured.numpy())


def test_holds_the_most_recent_requested_step():
    """Several steps while requested: the last one's gradient."""
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = _data(n=12)
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    expected = _reference_gradients(model, x[8:], y[8:])
    for want, variable in zip(expected, capture.variables):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_steps_per_execution_holds_the_last_step_of_the_execution(jit_compile):
    model = _dense_model()
    # No learning: every step's gradient is at the same weights, so the
    # last step's is told apart by its batch.
    model.compile(keras.optimizers.SGD(0.0), "mse", steps_per_execution=3,
                  jit_compile=jit_compile)
    x, y = _data(n=12)
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x[:9], y[:9], batch_size=3, shuffle=False, verbose=0)
    last = _reference_gradients(model, x[6:9], y[6:9])
    first = _reference_gradients(model, x[:3], y[:3])
    for want, other, variable in zip(last, first, capture.variables):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)
        assert not np.allclose(variable.numpy(), other, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["Dense", "Embedding", "LSTM", "Conv2D"])
def test_jit_compiled_training(name):
    keras.utils.set_random_seed(0)
    model = MODELS[name][0]()
    model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=True)
    x = _inputs_for(model)
    y = np.random.default_rng(1).standard_normal((8, 3)).astype("float32")
    expected = _reference_gradients(model, x, y)
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=8, verbose=0)
    assert bool(capture.captured.numpy())
    for want, variable in zip(expected, capture.variables):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)


def test_run_eagerly():
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse", run_eagerly=True)
    x, y = _data()
    expected = _reference_gradients(model, x, y)
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=8, verbose=0)
    for want, variable in zip(expected, capture.variables):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)


def test_shared_layer_gets_the_sum_over_its_uses():
    keras.utils.set_random_seed(0)
    shared = tf_dsr.SparseDense(4, sparsity=0.5, seed=1, activation="tanh")
    a, b = keras.Input((4,)), keras.Input((4,))
    h = L.Concatenate()([shared(a), shared(shared(b))])
    model = keras.Model([a, b], L.Dense(3)(h))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    xa, xb = (rng.standard_normal((8, 4)).astype("float32") for _ in range(2))
    y = rng.standard_normal((8, 3)).astype("float32")
    (expected,) = _reference_gradients(model, [xa, xb], y)
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit([xa, xb], y, batch_size=8, verbose=0)
    np.testing.assert_allclose(capture.variables[0].numpy(), expected,
                               rtol=1e-5, atol=1e-6)


def _mirrored(num_replicas):
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def _train_once_under(strategy, x, y):
    with strategy.scope():
        model = _dense_model()
        model.compile(keras.optimizers.SGD(0.1), "mse")
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=len(x), verbose=0)
    return model, capture


def test_mirrored_strategy_sums_replicas_to_the_one_device_gradient():
    x, y = _data(n=8)
    _, single = _train_once_under(tf.distribute.OneDeviceStrategy("/cpu:0"), x, y)
    strategy = _mirrored(2)
    model, mirrored = _train_once_under(strategy, x, y)
    assert bool(mirrored.captured.numpy())
    for one, two in zip(single.variables, mirrored.variables):
        np.testing.assert_allclose(two.numpy(), one.numpy(), rtol=1e-5, atol=1e-7)
        # Each replica holds the gradient of its half of the global batch.
        local = [v.numpy() for v in strategy.experimental_local_results(two)]
        assert len(local) == 2 and not np.allclose(local[0], local[1])
        # Read inside a tf.function (as a callback's reallocation does),
        # outside and inside the strategy's scope.
        for read in (two.read_value, lambda: tf.convert_to_tensor(two)):
            np.testing.assert_allclose(tf.function(read)().numpy(), one.numpy(),
                                       rtol=1e-5, atol=1e-7)
            with strategy.scope():
                np.testing.assert_allclose(tf.function(read)().numpy(),
                                           one.numpy(), rtol=1e-5, atol=1e-7)


def _every_kind_model():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8,), dtype="int32")
    h = tf_dsr.SparseEmbedding(40, 8, sparsity=0.5, seed=1)(inputs)
    h = tf_dsr.SparseSeparableConv1D(8, 3, padding="same", sparsity=0.5, seed=2)(h)
    h = tf_dsr.SparseLSTM(6, sparsity=0.5, seed=3)(h)
    return keras.Model(inputs, tf_dsr.SparseDense(3, sparsity=0.5, seed=4)(h))


def test_mirrored_strategy_every_layer_kind():
    """Embedding rows, a separable convolution's two kernels, a recurrent
    cell's two kernels and a Dense kernel: replica sums = one device."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 40, size=(16, 8)).astype("int32")
    labels = rng.integers(0, 3, size=16)
    results = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), _mirrored(2)):
        with strategy.scope():
            model = _every_kind_model()
            model.compile(keras.optimizers.Adam(0.01),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        capture = DenseGradients(_pairs(model))
        capture.request()
        model.fit(tokens, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
        results.append([v.numpy() for v in capture.variables])
    assert len(results[0]) == 6
    for one, two in zip(*results):
        assert np.any(one)
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6)


def test_inference_while_requested_writes_nothing():
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=8, verbose=0)
    held = [v.numpy().copy() for v in capture.variables]
    capture.request()
    model.predict(x, verbose=0)
    model.evaluate(x[::-1], y, verbose=0)
    model(x[:3])
    assert not bool(capture.captured.numpy())
    for h, variable in zip(held, capture.variables):
        np.testing.assert_array_equal(h, variable.numpy())


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_holds_the_loss_scaled_gradient(mixed_float16):
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = _data()
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.optimizer.build(model.trainable_variables)
    scale = float(model.optimizer.dynamic_scale.numpy())
    keras.mixed_precision.set_global_policy("float32")
    # The reference: the same weights, in float32, unscaled.
    reference = _dense_model()
    reference.set_weights(model.get_weights())
    expected = _reference_gradients(reference, x, y)
    keras.mixed_precision.set_global_policy("mixed_float16")
    model.fit(x, y, batch_size=8, verbose=0)

    assert scale > 1
    assert float(model.optimizer.dynamic_scale.numpy()) == scale  # no overflow
    for want, variable in zip(expected, capture.variables):
        got = variable.numpy()
        assert variable.dtype == tf.float32 and np.all(np.isfinite(got))
        np.testing.assert_allclose(got / scale, want, rtol=2e-2, atol=1e-3)


def test_mirrored_strategy_with_mixed_precision(mixed_float16):
    x, y = _data(n=8)
    results = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), _mirrored(2)):
        model, capture = _train_once_under(strategy, x, y)
        scale = float(model.optimizer.dynamic_scale.numpy())
        results.append([v.numpy() / scale for v in capture.variables])
    for one, two in zip(*results):
        assert np.all(np.isfinite(two)) and np.any(one)
        np.testing.assert_allclose(two, one, rtol=1e-2, atol=1e-4)


def test_attach_after_training_needs_a_new_train_function():
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, verbose=0)  # traces the train function
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.fit(x, y, batch_size=8, verbose=0)
    # The train function traced before attaching has no hook.
    assert not bool(capture.captured.numpy())
    model.make_train_function(force=True)
    model.fit(x, y, batch_size=8, verbose=0)
    assert bool(capture.captured.numpy())


def test_detach_restores_outputs_and_leaves_no_capture_in_exports(tmp_path):
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    before = model.predict(x, verbose=0)
    capture = DenseGradients(_pairs(model))
    capture.request()
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    model.fit(x, y, batch_size=8, verbose=0)
    after_fit = model.predict(x, verbose=0)
    assert not np.array_equal(after_fit, before)

    # tf_dsr.export and strip read the kernels without hooks, attached or not.
    tf_dsr.export(model, str(tmp_path / "attached"), verbose=False)
    stripped = tf_dsr.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), after_fit, rtol=1e-6)

    def gradient_variables(of):
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(of(x, training=True))
            return tape.gradient(loss, of.trainable_variables)
        return {v.name for v in tf.function(step).get_concrete_function().variables}

    # The check can fail: the attached model's backward pass holds them.
    assert any("dense_gradient" in name for name in gradient_variables(model))
    assert not any("dense_gradient" in name for name in gradient_variables(stripped))
    capture.detach()
    assert not capture.attached
    model.make_train_function(force=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), after_fit)
    with pytest.raises(ValueError, match="detached"):
        capture.request()
    capture.detach()  # idempotent

    # Keras' own export traces `call`: after detach, nothing of the capture.
    model.export(str(tmp_path / "keras"), verbose=False)
    for path in ("attached", "keras"):
        loaded = tf.saved_model.load(str(tmp_path / path))
        names = [v.name for v in loaded.variables]
        assert names and not any("dense_gradient" in n for n in names), names
        np.testing.assert_allclose(loaded.serve(x).numpy(), after_fit, rtol=1e-6)

    # Detached: training no longer writes the variables.
    held = [v.numpy().copy() for v in capture.variables]
    capture._requested.assign(True)
    model.fit(x, y, batch_size=8, verbose=0)
    for h, variable in zip(held, capture.variables):
        np.testing.assert_array_equal(h, variable.numpy())


def test_traced_train_function_has_no_capture_ops_after_detach():
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    capture = DenseGradients(_pairs(model))

    def captured_variables():
        # A train step traced as Keras traces it, with the layers as they
        # are now.
        step = tf.function(lambda: model.train_step((x, y)))
        return {v.name for v in step.get_concrete_function().variables}

    attached = captured_variables()
    assert any("dense_gradient" in n for n in attached), attached
    capture.detach()
    detached = captured_variables()
    assert not any("dense_gradient" in n for n in detached), detached


def test_second_capture_on_the_same_kernels_is_refused():
    model = _dense_model()
    pairs = _pairs(model)
    first = DenseGradients(pairs)
    with pytest.raises(ValueError, match="already has a gradient hook"):
        DenseGradients(pairs[::-1])
    # The refused one attached nothing: the first still owns every kernel.
    first.detach()
    DenseGradients(pairs).detach()


@pytest.mark.parametrize("bad, error, match", [
    ("kernels", TypeError, "list of tf_dsr SparseKernel"),
    ([("dense", None)], TypeError, "item 0 is a tuple"),
    ([], ValueError, "no kernel"),
])
def test_bad_kernels_are_refused(bad, error, match):
    with pytest.raises(error, match=match):
        DenseGradients(bad)


def test_found_pairs_are_refused_with_a_hint():
    model = _dense_model()
    with pytest.raises(TypeError, match=r"\[pair for _, pair in"):
        DenseGradients(find_sparse_kernels(model))
    pairs = _pairs(model)
    with pytest.raises(ValueError, match="twice"):
        DenseGradients([pairs[0], pairs[0]])


def test_kernels_of_different_strategies_are_refused():
    one = _dense_model()
    with _mirrored(2).scope():
        two = _dense_model()
    with pytest.raises(ValueError, match="different distribution strategies"):
        DenseGradients(_pairs(one)[:1] + _pairs(two)[:1])


def test_attached_capture_is_not_model_state(tmp_path):
    """Weights, `.keras` files and checkpoints do not see the capture."""
    model = _dense_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, verbose=0)
    names = [v.path for v in model.weights]
    checkpoint_keys = {
        name for name, _ in tf.train.list_variables(
            tf.train.Checkpoint(model=model).write(str(tmp_path / "before")))}
    capture = DenseGradients(_pairs(model))
    capture.request()
    model.make_train_function(force=True)
    model.fit(x, y, batch_size=8, verbose=0)
    assert bool(capture.captured.numpy())
    assert [v.path for v in model.weights] == names
    assert {
        name for name, _ in tf.train.list_variables(
            tf.train.Checkpoint(model=model).write(str(tmp_path / "after")))
    } == checkpoint_keys
    model.save(tmp_path / "m.keras")
    loaded = tf_dsr.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]
