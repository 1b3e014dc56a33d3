"""Mixed precision, XLA-compiled reallocation, custom loops under a strategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr import optimizer_slots
from tf_dsr.app.data import load_digits
from tf_dsr.models import lenet_300_100


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_float16_training_conserves_count(mixed_float16):
    # Seeded: the Dense layers' initial weights come from Keras' global
    # generator, whose state would otherwise depend on the tests run before.
    keras.utils.set_random_seed(2)
    (x, y), _ = load_digits()
    model = lenet_300_100((64,), 10, sparsity=0.9, seed=2)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reparam = tf_dsr.DynamicReparam(prune_target=0.1, period=5, seed=2)
    num_active = tf_dsr.sparsity_summary(model).num_active
    masks_before = [l.mask.numpy().copy() for l in tf_dsr.layers.find_sparse_layers(model)]
    model.fit(x[:500], y[:500], batch_size=50, epochs=2, verbose=0, callbacks=[reparam])

    assert int(reparam.state.num_reallocations.numpy()) == 4
    assert tf_dsr.sparsity_summary(model).num_active == num_active
    assert any(not np.array_equal(a, l.mask.numpy())
               for a, l in zip(masks_before, reparam.layers))
    for layer in reparam.layers:
        assert layer.compute_dtype == "float16"
        assert layer.kernel_variable.dtype == "float32" and layer.mask.dtype == "float32"
        assert np.all(layer.kernel_variable.numpy()[layer.mask.numpy() == 0] == 0)
        # Slots are found through the LossScaleOptimizer and reset.
        slots = optimizer_slots.kernel_slots(model.optimizer, layer.kernel_variable)
        assert len(slots) == 1
        assert np.all(slots[0].variable.numpy()[layer.mask.numpy() == 0] == 0)


def _small_model_with_weights(seed):
    # XLA compile time grows with the number of layers; two small kernels
    # exercise every code path.
    model = keras.Sequential([
        keras.Input((20,)),
        tf_dsr.SparseDense(30, sparsity=0.8, seed=seed),
        tf_dsr.SparseDense(5, sparsity=0.8, seed=seed + 1),
    ])
    rng = np.random.default_rng(seed)
    for layer in tf_dsr.layers.find_sparse_layers(model):
        values = rng.normal(0, 0.01, layer.kernel.shape).astype("float32")
        layer.kernel_variable.assign(values * layer.mask.numpy())
    return model


def test_xla_compiled_reallocation_equals_graph():
    reports, states = [], []
    for jit_compile in (False, True):
        model = _small_model_with_weights(seed=5)
        reparam = tf_dsr.DynamicReparam(prune_target=30, period=1, seed=3,
                                        initial_threshold=4e-3, jit_compile=jit_compile)
        reparam.set_model(model)
        reports.append([reparam.reallocate(step=s) for s in (10, 20)])
        states.append([l.mask.numpy() for l in reparam.layers]
                      + [l.kernel_variable.numpy() for l in reparam.layers])
    for graph, xla in zip(*reports):
        assert list(graph.num_pruned.values()) == list(xla.num_pruned.values())
        assert list(graph.num_grown.values()) == list(xla.num_grown.values())
        assert graph.info["threshold"] == xla.info["threshold"]
    assert reports[0][0].total_pruned > 0
    for a, b in zip(*states):
        np.testing.assert_array_equal(a, b)


def test_custom_training_loop_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    (x, y), _ = load_digits()
    with strategy.scope():
        model = lenet_300_100((64,), 10, sparsity=0.9, batch_norm=False, seed=1)
        model.build((None, 64))
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        optimizer.build(model.trainable_variables)
        model.optimizer = optimizer
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="sum")
    reparam = tf_dsr.DynamicReparam(prune_target=100, period=5, seed=1)
    reparam.set_model(model)
    num_active = tf_dsr.sparsity_summary(model).num_active

    @tf.function
    def train_step(batch):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True)) / 100.0
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return strategy.run(replica_step, args=batch)

    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x[:1000], y[:1000])).batch(100))
    num_reallocations = 0
    for step, batch in enumerate(dataset, start=1):
        train_step(batch)
        if step % 5 == 0:
            report = reparam.reallocate(step=int(optimizer.iterations.numpy()))
            num_reallocations += 1
            assert report.total_pruned == sum(report.num_grown.values())
    assert num_reallocations == 2
    assert tf_dsr.sparsity_summary(model).num_active == num_active
    for layer in reparam.layers:
        replicas = strategy.experimental_local_results(layer.mask.value)
        np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())
        kernels = strategy.experimental_local_results(layer.kernel_variable.value)
        np.testing.assert_array_equal(kernels[0].numpy(), kernels[1].numpy())
