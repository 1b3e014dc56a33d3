"""The contract every tf_dsr sparse layer keeps, run over each layer class.

A new sparse layer class joins by adding one `LayerCase` to `CASES`.
"""

from typing import Callable, NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr


class LayerCase(NamedTuple):
    """How to make one sparse layer class and what its kernel holds.

    Attributes:
        make: callable `(sparsity, seed, **kwargs) -> layer`.
        input_shape: shape of a test input, batch included.
        num_active: sparsity -> expected active weights in the kernel,
            round((1 - s) * size) computed by hand.
    """

    make: Callable
    input_shape: tuple
    num_active: dict


CASES = {
    # kernel (40, 50): 2000 weights.
    "SparseDense": LayerCase(
        make=lambda sparsity, seed, **kw: tf_dsr.SparseDense(
            50, sparsity=sparsity, seed=seed, **kw
        ),
        input_shape=(3, 40),
        num_active={0.0: 2000, 0.5: 1000, 0.9: 200, 0.99: 20},
    ),
    # kernel (3, 3, 6, 8): 432 weights.
    "SparseConv2D": LayerCase(
        make=lambda sparsity, seed, **kw: tf_dsr.SparseConv2D(
            8, 3, padding="same", sparsity=sparsity, seed=seed, **kw
        ),
        input_shape=(2, 7, 7, 6),
        num_active={0.0: 432, 0.5: 216, 0.9: 43, 0.99: 4},
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def inputs_for(case, seed=0):
    return np.random.default_rng(seed).normal(size=case.input_shape).astype("float32")


def built(case, sparsity=0.9, seed=1, **kwargs):
    layer = case.make(sparsity, seed, **kwargs)
    layer.build(case.input_shape)
    return layer


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_mask_is_binary_non_trainable_with_exact_count(case, sparsity):
    layer = built(case, sparsity=sparsity)
    mask = layer.mask.numpy()

    assert mask.shape == tuple(layer.kernel.shape)
    assert not layer.mask.trainable
    assert any(w is layer.mask for w in layer.non_trainable_weights)
    assert all(w is not layer.mask for w in layer.trainable_weights)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert int(mask.sum()) == case.num_active[sparsity]


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_kernel_is_zero_where_mask_is_zero_after_build(case, sparsity):
    layer = built(case, sparsity=sparsity)
    kernel, mask = layer.kernel.numpy(), layer.mask.numpy()

    assert np.all(kernel[mask == 0] == 0.0)
    # The initializer still ran at active positions.
    assert np.count_nonzero(kernel[mask == 1]) == case.num_active[sparsity]


def test_same_seed_same_mask_other_seed_other_mask(case):
    first = built(case, seed=7).mask.numpy()
    again = built(case, seed=7).mask.numpy()
    other = built(case, seed=8).mask.numpy()

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert other.sum() == first.sum()


def test_gradient_is_zero_at_inactive_positions(case):
    layer = built(case, sparsity=0.9)
    x = inputs_for(case)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    grad = tape.gradient(loss, layer.kernel).numpy()
    mask = layer.mask.numpy()

    assert np.all(grad[mask == 0] == 0.0)
    assert np.count_nonzero(grad[mask == 1]) > 0


def test_masked_kernel_is_kernel_times_mask(case):
    layer = built(case, sparsity=0.5)
    # Make the kernel dense so the product has something to remove.
    layer.kernel.assign(np.random.default_rng(0).normal(size=layer.kernel.shape))
    kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
    masked = keras.ops.convert_to_numpy(layer.masked_kernel)

    np.testing.assert_array_equal(masked, kernel * mask)
    assert np.count_nonzero(masked) == case.num_active[0.5]


def test_config_round_trip(case):
    layer = case.make(0.9, 3, activation="relu", use_bias=False, name="probe")
    config = layer.get_config()
    clone = type(layer).from_config(config)

    assert clone.get_config() == config
    assert config["sparsity"] == 0.9
    assert config["seed"] == 3
    assert config["use_bias"] is False


def test_keras_file_round_trip(case, tmp_path):
    x = inputs_for(case)
    model = keras.Sequential(
        [keras.Input(case.input_shape[1:]), case.make(0.9, None, name="sparse")]
    )
    layer = model.get_layer("sparse")
    # A mask the seed could not reproduce: only the file can restore it.
    rng = np.random.default_rng(0)
    new_mask = rng.permutation(layer.mask.numpy().ravel()).reshape(layer.mask.shape)
    layer.mask.assign(new_mask)
    layer.kernel.assign(rng.normal(size=layer.kernel.shape) * new_mask)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    loaded_layer = loaded.get_layer("sparse")

    assert type(loaded_layer) is type(layer)
    np.testing.assert_array_equal(loaded_layer.mask.numpy(), new_mask)
    np.testing.assert_array_equal(loaded_layer.kernel.numpy(), layer.kernel.numpy())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


@pytest.mark.parametrize(
    "sparsity, error",
    [(1.0, ValueError), (-0.1, ValueError), (True, TypeError), ("0.9", TypeError)],
)
def test_bad_sparsity_raises(case, sparsity, error):
    with pytest.raises(error, match="sparsity"):
        case.make(sparsity, 0)


def test_sparsity_leaving_no_active_weight_raises(case):
    # 0.9999 of a few hundred or thousand weights rounds to zero active.
    layer = case.make(0.9999, 0)
    with pytest.raises(ValueError, match="no active weight"):
        layer.build(case.input_shape)
