"""SparseConv2D: same outputs as keras.layers.Conv2D at sparsity 0; bad args."""

import json

import keras
import numpy as np
import pytest

import tf_dsr

INPUT_SHAPE = (2, 9, 9, 6)

# Each combination is passed unchanged to SparseConv2D and keras Conv2D.
COMBOS = [
    {"kernel_size": 3},
    {"kernel_size": (3, 2), "strides": 2, "padding": "same", "activation": "relu"},
    {"kernel_size": 3, "strides": (2, 1)},
    {"kernel_size": 3, "padding": "same", "dilation_rate": 2, "use_bias": False},
    {"kernel_size": (2, 3), "dilation_rate": (1, 2)},
    {"kernel_size": 3, "padding": "same", "groups": 2, "activation": "tanh"},
    {"kernel_size": 1, "groups": 3},
    {"kernel_size": 3, "groups": 6, "use_bias": False},
]


def conv_pair(input_shape, filters=6, **kwargs):
    """A SparseConv2D at sparsity 0 and a keras Conv2D with the same weights."""
    sparse = tf_dsr.SparseConv2D(filters, sparsity=0.0, seed=0, **kwargs)
    sparse.build(input_shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=sparse.kernel.shape).astype("float32")]
    sparse.kernel_variable.assign(weights[0])
    if sparse.use_bias:
        weights.append(rng.normal(size=(filters,)).astype("float32"))
        sparse.bias.assign(weights[1])
    conv = keras.layers.Conv2D(filters, **kwargs)
    conv.build(input_shape)
    conv.set_weights(weights)
    return sparse, conv


@pytest.mark.parametrize("kwargs", COMBOS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_matches_keras_conv2d_at_sparsity_zero(kwargs):
    sparse, conv = conv_pair(INPUT_SHAPE, **kwargs)
    x = np.random.default_rng(2).normal(size=INPUT_SHAPE).astype("float32")

    assert np.all(sparse.mask.numpy() == 1.0)
    assert tuple(sparse.kernel.shape) == tuple(conv.kernel.shape)
    expected = keras.ops.convert_to_numpy(conv(x))
    actual = keras.ops.convert_to_numpy(sparse(x))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    assert tuple(sparse.compute_output_shape(INPUT_SHAPE)) == expected.shape


@pytest.mark.parametrize("kwargs", COMBOS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_channels_first_output_shape_matches_keras(kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k not in ("activation", "use_bias")}
    shape = (2, 6, 9, 11)
    sparse = tf_dsr.SparseConv2D(6, data_format="channels_first", **kwargs)
    conv = keras.layers.Conv2D(6, data_format="channels_first", **kwargs)

    assert tuple(sparse.compute_output_shape(shape)) == tuple(
        conv.compute_output_shape(shape)
    )


def test_channels_first_matches_keras_conv2d():
    # Keras' TensorFlow backend runs channels_first on CPU by transposing;
    # this also checks that the bias lands on the channel axis.
    shape = (2, 6, 9, 9)
    sparse, conv = conv_pair(shape, kernel_size=3, padding="same", data_format="channels_first")
    x = np.random.default_rng(2).normal(size=shape).astype("float32")

    expected = keras.ops.convert_to_numpy(conv(x))
    assert expected.shape == (2, 6, 9, 9)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(sparse(x)), expected, rtol=1e-6, atol=1e-6
    )


def test_channels_first_output_shape_with_unknown_batch_and_size():
    layer = tf_dsr.SparseConv2D(4, 3, strides=2, padding="same", data_format="channels_first")
    assert tuple(layer.compute_output_shape((None, 3, None, 10))) == (None, 4, None, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "filters"),
        ({"filters": -2}, "filters"),
        ({"groups": 0}, "groups"),
        ({"filters": 6, "groups": 4}, "divisible"),
        ({"padding": "causal"}, "padding"),
        ({"padding": "full"}, "padding"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": (3, 3, 3)}, "kernel_size"),
        ({"strides": 0}, "strides"),
        ({"dilation_rate": (1, -1)}, "dilation_rate"),
        ({"strides": 2, "dilation_rate": 2}, "dilation_rate"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    arguments = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        tf_dsr.SparseConv2D(**arguments)


def test_input_channels_not_divisible_by_groups_raise_at_build():
    layer = tf_dsr.SparseConv2D(4, 3, groups=4)
    with pytest.raises(ValueError, match="groups"):
        layer.build(INPUT_SHAPE)  # 6 channels, 4 groups


def test_numpy_integer_arguments_are_accepted_and_saved_as_int():
    layer = tf_dsr.SparseConv2D(np.int64(4), (np.int64(3), 3), strides=np.int32(1),
                                groups=np.int64(2), sparsity=0.5, seed=0)
    assert (layer.filters, layer.kernel_size, layer.groups) == (4, (3, 3), 2)
    assert all(type(v) is int for v in (layer.filters, layer.groups, *layer.kernel_size))
    layer.build((None, 5, 5, 2))
    json.dumps(layer.get_config())
