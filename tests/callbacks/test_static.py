"""Static sparse training: sparse layers without a callback never change
their masks, and masked weights stay zero."""

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: keras.optimizers.SGD(0.1, momentum=0.9), lambda: keras.optimizers.AdamW(0.05)],
    ids=["SGD-momentum", "AdamW"],
)
def test_static_masks_never_change_during_fit(make_optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            tf_dsr.SparseConv2D(4, 3, sparsity=0.7, seed=1, activation="relu"),
            keras.layers.Flatten(),
            tf_dsr.SparseDense(3, sparsity=0.8, seed=2),
        ]
    )
    model.compile(make_optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layers = find_sparse_layers(model)
    masks = [l.mask.numpy().copy() for l in layers]
    kernels = [l.kernel_variable.numpy().copy() for l in layers]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for layer, mask, kernel in zip(layers, masks, kernels):
        np.testing.assert_array_equal(layer.mask.numpy(), mask)
        new_kernel = layer.kernel_variable.numpy()
        assert np.all(new_kernel[mask == 0] == 0.0)
        # Training did happen: active weights moved.
        assert np.any(new_kernel[mask == 1] != kernel[mask == 1])
