"""A keras-hub model converted in place trains sparse under MirroredStrategy."""

import numpy as np
import pytest
import tensorflow as tf

import tf_dsr

keras_hub = pytest.importorskip("keras_hub")


def _mirrored(num_replicas):
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def test_gpt2_sparsified_outside_the_scope_trains_with_mirrored_masks():
    import keras

    strategy = _mirrored(2)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=64, num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=8)
        lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    # Called outside the scope: the masks follow the model's strategy.
    tf_dsr.sparsify(lm, 0.8, seed=0)
    pairs = [pair for _, pair in tf_dsr.layers.find_sparse_kernels(lm)]
    assert pairs and all(
        len(strategy.experimental_local_results(p.mask.value)) == 2 for p in pairs)
    with strategy.scope():
        lm.compile(optimizer=keras.optimizers.Adam(1e-2),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 64, (32, 8)), "padding_mask": np.ones((32, 8), "int32")}
    y = rng.integers(1, 64, (32, 8))
    before = [p.mask.numpy().copy() for p in pairs]
    reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=4, seed=0)
    lm.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[reparam])

    assert int(reparam.state.num_reallocations.numpy()) >= 2
    after = [p.mask.numpy() for p in pairs]
    assert sum(int(a.sum()) for a in after) == sum(int(b.sum()) for b in before)
    assert sum(int((a != b).sum()) for a, b in zip(after, before)) > 0
    for p in pairs:
        replicas = [v.numpy() for v in strategy.experimental_local_results(p.mask.value)]
        np.testing.assert_array_equal(replicas[0], replicas[1])
        kernels = [v.numpy() for v in strategy.experimental_local_results(p.kernel.value)]
        np.testing.assert_array_equal(kernels[0], kernels[1])
        assert not np.any(kernels[0][replicas[0] == 0])
