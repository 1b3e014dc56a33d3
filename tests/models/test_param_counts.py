"""The model zoo's sparse-tensor sizes match the paper (Mostafa & Wang, ICML 2019)."""

import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers
from tf_dsr.models import common
from tf_dsr.models.resnet import resnet50
from tf_dsr.models.wrn import wide_resnet


def sparse_sizes(model):
    return [int(np.prod(layer.kernel.shape)) for layer in find_sparse_layers(model)]


def dense_kernel_names(model):
    sparse = {id(layer) for layer in find_sparse_layers(model)}
    return sorted(
        layer.name
        for layer in model.layers
        if id(layer) not in sparse and getattr(layer, "kernel", None) is not None
    )


def test_lenet_300_100_sparse_weights():
    model = tf_dsr.models.lenet_300_100(input_shape=(784,), sparsity=0.9, seed=0)
    sizes = sparse_sizes(model)
    assert sizes == [784 * 300, 300 * 100, 100 * 10]
    assert sum(sizes) == 266_200


def test_wrn_28_2_sparse_weights_and_dense_split():
    # Spatial size does not change kernel sizes; 8x8 builds faster.
    model = wide_resnet(28, 2, input_shape=(8, 8, 3), sparsity=0.9, seed=0)
    sizes = sparse_sizes(model)
    assert len(sizes) == 24
    assert sum(sizes) == 1_451_520
    # Dense: the stem, the three 1x1 shortcuts (16->32, 32->64, 64->128) and
    # the classifier.
    assert dense_kernel_names(model) == [
        "group1_block1_shortcut", "group2_block1_shortcut",
        "group3_block1_shortcut", "logits", "stem_conv",
    ]
    active = sum(int(layer.mask.numpy().sum()) for layer in find_sparse_layers(model))
    assert active == sum(round(0.1 * s) for s in sizes)
    assert model(np.zeros((2, 8, 8, 3), "float32")).shape == (2, 10)


@pytest.mark.parametrize("depth,width", [(10, 1), (16, 4)])
def test_wrn_other_depths_and_widths(depth, width):
    model = wide_resnet(depth, width, input_shape=(8, 8, 3), sparsity=0.5, seed=0)
    n = (depth - 4) // 6
    widths = [16 * width, 32 * width, 64 * width]
    expected, channels = 0, 16
    for filters in widths:
        expected += 9 * channels * filters + 9 * filters * filters
        expected += (n - 1) * 2 * 9 * filters * filters
        channels = filters
    sizes = sparse_sizes(model)
    assert len(sizes) == 2 * 3 * n
    assert sum(sizes) == expected


@pytest.mark.parametrize("depth,width", [(27, 2), (28, 0), (4, 1)])
def test_wrn_rejects_bad_depth_or_width(depth, width):
    with pytest.raises(ValueError):
        wide_resnet(depth, width)


def test_resnet50_sparse_weights_and_dense_split():
    model = resnet50(input_shape=(32, 32, 3), sparsity=0.9, seed=0)
    layers = find_sparse_layers(model)
    assert len(layers) == 49
    assert sum(sparse_sizes(model)) == 22_724_608
    assert layers[-1].name == "logits" and tuple(layers[-1].kernel.shape) == (2048, 1000)
    assert dense_kernel_names(model) == sorted(
        ["stem_conv"] + [f"stage{s}_block1_downsample" for s in range(1, 5)]
    )
    # The builders' analytic counts (thin dense, ERK) agree with the model.
    plan = common.plan(resnet50, input_shape=(32, 32, 3))
    assert list(plan.sparse_kernel_shapes) == [
        tuple(layer.kernel.shape) for layer in layers
    ]
    assert tf_dsr.models.num_nonzero_params(model) == plan.num_nonzero_params(0.9)
