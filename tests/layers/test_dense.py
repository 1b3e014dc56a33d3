"""SparseDense: same outputs as keras.layers.Dense at sparsity 0; bad units."""

import json

import keras
import numpy as np
import pytest

import tf_dsr


def dense_pair(input_shape, **kwargs):
    """A SparseDense at sparsity 0 and a keras Dense holding the same weights."""
    sparse = tf_dsr.SparseDense(5, sparsity=0.0, seed=0, **kwargs)
    sparse.build(input_shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=sparse.kernel.shape).astype("float32")]
    sparse.kernel_variable.assign(weights[0])
    if sparse.use_bias:
        weights.append(rng.normal(size=(5,)).astype("float32"))
        sparse.bias.assign(weights[1])
    dense = keras.layers.Dense(5, **kwargs)
    dense.build(input_shape)
    dense.set_weights(weights)
    return sparse, dense


@pytest.mark.parametrize(
    "input_shape, kwargs",
    [
        ((4, 12), {}),
        ((4, 12), {"activation": "relu"}),
        ((4, 12), {"use_bias": False}),
        ((2, 3, 12), {"activation": "tanh"}),
        ((2, 3, 12), {"use_bias": False, "activation": "sigmoid"}),
    ],
)
def test_matches_keras_dense_at_sparsity_zero(input_shape, kwargs):
    sparse, dense = dense_pair(input_shape, **kwargs)
    x = np.random.default_rng(2).normal(size=input_shape).astype("float32")

    assert np.all(sparse.mask.numpy() == 1.0)
    expected = keras.ops.convert_to_numpy(dense(x))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(sparse(x)), expected, rtol=1e-6, atol=1e-6
    )
    assert tuple(sparse.compute_output_shape(input_shape)) == tuple(
        dense.compute_output_shape(input_shape)
    )
    assert (sparse.bias is None) == (not kwargs.get("use_bias", True))


def test_kernel_shape_follows_input_and_units():
    layer = tf_dsr.SparseDense(7, sparsity=0.5, seed=0)
    layer.build((None, 3, 11))
    assert tuple(layer.kernel.shape) == (11, 7)
    assert tuple(layer.bias.shape) == (7,)


@pytest.mark.parametrize("units", [0, -1])
def test_non_positive_units_raise(units):
    with pytest.raises(ValueError, match="units"):
        tf_dsr.SparseDense(units)


@pytest.mark.parametrize("units", [2.5, "8"])
def test_non_int_units_raise(units):
    with pytest.raises((ValueError, TypeError), match="units"):
        tf_dsr.SparseDense(units)


def test_numpy_integer_units_are_accepted_and_saved_as_int():
    layer = tf_dsr.SparseDense(np.int64(5), sparsity=np.float32(0.5), seed=np.int32(1))
    assert layer.units == 5 and type(layer.units) is int
    layer.build((None, 3))
    assert tuple(layer.kernel.shape) == (3, 5)
    json.dumps(layer.get_config())  # numpy scalars would not serialize


@pytest.mark.parametrize("seed", [-1, 2**63, 2**70])
def test_seed_out_of_range_raises(seed):
    with pytest.raises(ValueError, match=r"seed.*\[0, 2\*\*63 - 1\]"):
        tf_dsr.SparseDense(4, seed=seed)
