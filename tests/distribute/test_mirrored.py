"""DynamicReparam under MirroredStrategy on logical CPU devices."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.app.data import load_digits
from tf_dsr.models import lenet_300_100

NUM_STEPS = 24
PERIOD = 6


def _mirrored(num_replicas):
    # Reduction through one device: several MirroredStrategy objects with
    # different device counts in one process otherwise collide on TF's
    # collective group keys ("joining a group with size 4, but that group
    # has size 2").
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


class MaskRecorder(keras.callbacks.Callback):
    """After each reallocation: every replica's masks and kernels, and H."""

    def __init__(self, reparam, strategy):
        super().__init__()
        self.reparam = reparam
        self.strategy = strategy
        self.snapshots = []

    def _replicas(self, variable):
        return [v.numpy() for v in self.strategy.experimental_local_results(variable.value)]

    def on_train_batch_end(self, batch, logs=None):
        done = int(self.reparam.state.num_reallocations.numpy())
        if done > len(self.snapshots):
            self.snapshots.append(
                {
                    # Methods without a threshold (RigL) record nan.
                    "threshold": (float(self.reparam.state.threshold.numpy())
                                  if hasattr(self.reparam.state, "threshold") else np.nan),
                    "masks": [self._replicas(l.mask) for l in self.reparam.layers],
                    "kernels": [self._replicas(l.kernel_variable) for l in self.reparam.layers],
                }
            )


def _train(strategy, make_callback=None):
    """One epoch of 24 steps on the digits; returns model, callback, snapshots."""
    (x, y), _ = load_digits()
    x, y = x[: NUM_STEPS * 40], y[: NUM_STEPS * 40]
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = lenet_300_100((64,), 10, sparsity=0.9, batch_norm=False, seed=3)
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    reparam = (make_callback or (lambda: tf_dsr.DynamicReparam(
        prune_target=150, period=PERIOD, seed=5)))()
    recorder = MaskRecorder(reparam, strategy)
    model.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0,
              callbacks=[reparam, recorder])
    return model, reparam, recorder.snapshots


@pytest.fixture(scope="module")
def single_device_run():
    return _train(tf.distribute.OneDeviceStrategy("/cpu:0"))


@pytest.mark.parametrize("num_replicas", [2, 4])
def test_replicas_agree_and_match_single_device(num_replicas, single_device_run):
    strategy = _mirrored(num_replicas)
    model, reparam, snapshots = _train(strategy)
    _, _, reference = single_device_run

    assert len(snapshots) == NUM_STEPS // PERIOD == len(reference)
    num_active = int(sum(np.sum(m[0]) for m in snapshots[0]["masks"]))
    for snap, ref in zip(snapshots, reference):
        for replicas in snap["masks"] + snap["kernels"]:
            for other in replicas[1:]:
                np.testing.assert_array_equal(replicas[0], other)
        assert int(sum(np.sum(m[0]) for m in snap["masks"])) == num_active
        # Same seed and data; gradients are summed across replicas in another
        # order, so weights differ in the last bits and a weight sitting on the
        # threshold can fall either way: thresholds agree, masks nearly.
        assert snap["threshold"] == ref["threshold"]
        for masks, ref_masks in zip(snap["masks"], ref["masks"]):
            agreement = np.mean(masks[0] == ref_masks[0])
            assert agreement >= 0.995, agreement
    assert tf_dsr.sparsity_summary(model).num_active == num_active


def test_reallocation_from_identical_state_is_identical():
    """Given the same weights, a 4-replica reallocation equals 1 device's, bit for bit."""
    results = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"),
                     _mirrored(4)):
        with strategy.scope():
            model = lenet_300_100((64,), 10, sparsity=0.9, batch_norm=False, seed=3)
            model.build((None, 64))
        rng = np.random.default_rng(0)
        for layer in tf_dsr.layers.find_sparse_layers(model):
            layer.kernel_variable.assign(rng.normal(0, 0.01, layer.kernel.shape).astype("float32")
                                * layer.mask.numpy())
        reparam = tf_dsr.DynamicReparam(prune_target=200, period=1, seed=9,
                                        initial_threshold=5e-3)
        reparam.set_model(model)
        report = reparam.reallocate(step=7)
        results.append((report, [l.mask.numpy() for l in reparam.layers],
                        [l.kernel_variable.numpy() for l in reparam.layers]))
    (r1, masks1, kernels1), (r4, masks4, kernels4) = results
    assert r1.num_pruned == r4.num_pruned and r1.num_grown == r4.num_grown
    assert r1.info["threshold"] == r4.info["threshold"]
    assert r1.total_pruned > 0
    for a, b in zip(masks1 + kernels1, masks4 + kernels4):
        np.testing.assert_array_equal(a, b)


def test_every_layer_kind_stays_identical_across_replicas():
    """Embedding, a recurrent cell's two kernels, a separable convolution's
    two kernels and a Dense kernel, trained with DSR on 2 replicas."""
    strategy = _mirrored(2)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 40, size=(96, 8)).astype("int32")
    labels = rng.integers(0, 3, size=96)
    with strategy.scope():
        keras.utils.set_random_seed(2)
        inputs = keras.Input((8,), dtype="int32")
        h = tf_dsr.SparseEmbedding(40, 8, sparsity=0.5, seed=1)(inputs)
        h = tf_dsr.SparseSeparableConv1D(8, 3, padding="same", sparsity=0.5, seed=2)(h)
        h = tf_dsr.SparseLSTM(6, sparsity=0.5, seed=3)(h)
        model = keras.Model(inputs, tf_dsr.SparseDense(3, sparsity=0.5, seed=4)(h))
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reparam = tf_dsr.DynamicReparam(prune_target=0.1, period=2, seed=5)
    before = tf_dsr.sparsity_summary(model).num_active
    model.fit(tokens, labels, batch_size=16, epochs=1, verbose=0, callbacks=[reparam])

    assert int(reparam.state.num_reallocations.numpy()) == 3
    assert len(reparam.kernels) == 6
    for pair in reparam.kernels:
        for variable in (pair.mask, pair.kernel):
            replicas = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
            np.testing.assert_array_equal(replicas[0], replicas[1])
    assert tf_dsr.sparsity_summary(model).num_active == before
