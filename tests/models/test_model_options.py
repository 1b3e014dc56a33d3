"""Builder options: dense, width multiplier, ERK, LeNet-5, thin dense."""

import math

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers
from tf_dsr.models import common
from tf_dsr.models import lenet5
from tf_dsr.models import lenet_300_100
from tf_dsr.models import num_nonzero_params
from tf_dsr.models import resnet50
from tf_dsr.models import small_convnet
from tf_dsr.models import thin_dense_width
from tf_dsr.models import wide_resnet

# (builder, architecture arguments) small enough to build in well under a second.
SMALL = [
    (lenet_300_100, dict(input_shape=(64,))),
    (small_convnet, dict(input_shape=(8, 8, 1))),
    (lenet5, dict(input_shape=(8, 8, 1))),
    (wide_resnet, dict(depth=10, width=1, input_shape=(8, 8, 3))),
]


def num_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def kernel_layers(model):
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]


def test_lenet5_sparse_weights_28x28():
    model = lenet5(input_shape=(28, 28, 1), sparsity=0.9, seed=0)
    shapes = [tuple(layer.kernel.shape) for layer in find_sparse_layers(model)]
    assert shapes == [(5, 5, 1, 20), (5, 5, 20, 50), (800, 500), (500, 10)]
    assert sum(math.prod(s) for s in shapes) == 20 * 25 + 50 * 20 * 25 + 800 * 500 + 500 * 10
    assert sum(math.prod(s) for s in shapes) == 430_500
    assert [layer.seed for layer in find_sparse_layers(model)] == [0, 1, 2, 3]
    assert model(np.zeros((2, 28, 28, 1), "float32")).shape == (2, 10)


@pytest.mark.parametrize("builder,keep_dense", [
    (small_convnet, None),  # the paper's split for conv nets: sparsify's default
    (lenet5, []),  # every kernel sparse, as the pruning literature does
])
def test_builder_split_equals_sparsify_of_its_dense_version(builder, keep_dense):
    built = builder(input_shape=(8, 8, 1), sparsity=0.9, seed=0)
    converted = tf_dsr.sparsify(builder(input_shape=(8, 8, 1), sparsity=None, seed=0), 0.9,
                                keep_dense=keep_dense, seed=0)
    names = lambda model: [layer.name for layer in find_sparse_layers(model)]
    assert names(built) == names(converted)
    assert tf_dsr.sparsity_summary(built).num_weights == (
        tf_dsr.sparsity_summary(converted).num_weights)


def test_small_convnet_keeps_first_conv_and_logits_dense():
    model = small_convnet(input_shape=(8, 8, 1), sparsity=0.9, seed=0)
    assert [layer.name for layer in find_sparse_layers(model)] == ["conv2", "dense"]
    # 3x3x32x64 conv and the 4*4*64 -> 128 Dense.
    assert tf_dsr.sparsity_summary(model).num_weights == 18_432 + 131_072
    assert common.plan(small_convnet, input_shape=(8, 8, 1)).sparse_kernel_shapes == (
        (3, 3, 32, 64), (1024, 128))


def test_lenet5_on_8x8_digits_uses_same_padding():
    model = lenet5(input_shape=(8, 8, 1), num_classes=10, sparsity=0.9, seed=0)
    # "same": 8 -> pool 4 -> pool 2, so 2 * 2 * 50 = 200 flattened features.
    shapes = [tuple(layer.kernel.shape) for layer in find_sparse_layers(model)]
    assert shapes == [(5, 5, 1, 20), (5, 5, 20, 50), (200, 500), (500, 10)]
    assert model(np.zeros((3, 8, 8, 1), "float32")).shape == (3, 10)


def test_lenet5_valid_padding_on_small_input_explains_the_fix():
    with pytest.raises(ValueError, match="padding='same'"):
        lenet5(input_shape=(8, 8, 1), padding="valid")


@pytest.mark.parametrize("builder,kwargs", SMALL)
def test_dense_option_same_names_and_initializers(builder, kwargs):
    sparse = builder(sparsity=0.8, seed=0, **kwargs)
    dense = builder(sparsity=None, seed=0, **kwargs)
    assert find_sparse_layers(dense) == []
    sparse_kernels, dense_kernels = kernel_layers(sparse), kernel_layers(dense)
    assert [l.name for l in sparse_kernels] == [l.name for l in dense_kernels]
    for s, d in zip(sparse_kernels, dense_kernels):
        assert type(s.kernel_initializer) is type(d.kernel_initializer)
        assert s.use_bias == d.use_bias
        assert tuple(s.kernel.shape) == tuple(d.kernel.shape)
    # The dense net has all the weights the sparse one could activate.
    assert num_trainable(dense) == num_trainable(sparse)
    assert num_nonzero_params(dense) == num_trainable(dense)
    assert num_nonzero_params(sparse) < num_trainable(sparse)


@pytest.mark.parametrize("builder,kwargs", SMALL)
@pytest.mark.parametrize(
    "sparsity,width_multiplier,distribution",
    [(0.9, 1.0, "uniform"), (None, 0.5, "uniform"), (0.8, 0.7, "erk")],
)
def test_planned_counts_match_built_model(builder, kwargs, sparsity, width_multiplier,
                                          distribution):
    model = builder(sparsity=sparsity, width_multiplier=width_multiplier,
                    distribution=distribution, seed=1, **kwargs)
    plan = common.plan(builder, width_multiplier=width_multiplier, **kwargs)
    assert num_trainable(model) == plan.num_params
    if sparsity is None:
        assert num_nonzero_params(model) == plan.num_params
    else:
        assert num_nonzero_params(model) == plan.num_nonzero_params(sparsity, distribution)
        shapes = [tuple(layer.kernel.shape) for layer in find_sparse_layers(model)]
        assert shapes == list(plan.sparse_kernel_shapes)


def test_num_nonzero_params_lenet_by_hand():
    model = lenet_300_100(input_shape=(784,), sparsity=0.9, seed=0)
    # 10% of 266,200 kernel weights, biases 300 + 100 + 10, BN 2 * (300 + 100).
    assert num_nonzero_params(model) == 26_620 + 410 + 800


@pytest.mark.parametrize("w,widths", [(0.5, (150, 50)), (0.1, (30, 10)), (1e-3, (1, 1)),
                                      (2.0, (600, 200))])
def test_lenet_300_100_width_multiplier(w, widths):
    model = lenet_300_100(input_shape=(64,), num_classes=7, sparsity=0.4,
                          width_multiplier=w, seed=0)
    units = [layer.units for layer in find_sparse_layers(model)]
    assert units == list(widths) + [7]
    assert [l.name for l in find_sparse_layers(model)] == ["dense_300", "dense_100", "logits"]


def test_wide_resnet_width_multiplier_scales_every_conv():
    model = wide_resnet(10, 2, input_shape=(8, 8, 3), num_classes=5, sparsity=None,
                        width_multiplier=0.5)
    filters = {l.name: l.filters for l in model.layers if hasattr(l, "filters")}
    assert filters["stem_conv"] == 8
    assert filters["group1_block1_shortcut"] == 16
    assert filters["group2_block1_conv1"] == 32
    assert filters["group3_block1_conv2"] == 64
    assert model.get_layer("logits").units == 5


def test_resnet50_planned_widths():
    plan = common.plan(resnet50, width_multiplier=0.5)
    shapes = plan.sparse_kernel_shapes
    assert len(shapes) == 49
    assert shapes[0] == (1, 1, 32, 32)  # stem 64 -> 32, bottleneck 64 -> 32
    assert shapes[2] == (1, 1, 32, 128)
    assert shapes[-1] == (1024, 1000)
    full = common.plan(resnet50)
    assert sum(math.prod(s) for s in full.sparse_kernel_shapes) == 22_724_608
    # torchvision's ResNet-50 has 25,557,032 parameters.
    assert full.num_params == 25_557_032


def test_resnet50_small_dense_and_erk_builds_match_plan():
    kwargs = dict(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.125)
    sparse = resnet50(sparsity=0.9, distribution="erk", seed=0, **kwargs)
    plan = common.plan(resnet50, **kwargs)
    layers = find_sparse_layers(sparse)
    expected = tf_dsr.erk_sparsities(plan.sparse_kernel_shapes, 0.9)
    assert [layer.sparsity for layer in layers] == pytest.approx(expected)
    assert num_nonzero_params(sparse) == plan.num_nonzero_params(0.9, "erk")
    dense = resnet50(sparsity=None, **kwargs)
    assert num_trainable(dense) == plan.num_params
    assert [l.name for l in kernel_layers(dense)] == [l.name for l in kernel_layers(sparse)]


def test_erk_gives_larger_density_to_small_tensors():
    model = lenet_300_100(input_shape=(784,), sparsity=0.9, distribution="erk", seed=0)
    layers = find_sparse_layers(model)
    shapes = [tuple(layer.kernel.shape) for layer in layers]
    assert [layer.sparsity for layer in layers] == pytest.approx(
        tf_dsr.erk_sparsities(shapes, 0.9))
    assert layers[0].sparsity > layers[1].sparsity > layers[2].sparsity
    active = sum(int(layer.mask.numpy().sum()) for layer in layers)
    assert abs(active - 0.1 * 266_200) <= 1.5


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(width_multiplier=0), ValueError, "width_multiplier=0"),
        (dict(width_multiplier=-1.0), ValueError, "width_multiplier"),
        (dict(width_multiplier=float("nan")), ValueError, "width_multiplier"),
        (dict(width_multiplier="0.5"), TypeError, "width_multiplier"),
        (dict(width_multiplier=True), TypeError, "width_multiplier"),
        (dict(distribution="gaussian"), ValueError, "erk"),
        (dict(sparsity=1.0), ValueError, "sparsity"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
@pytest.mark.parametrize("builder", [lenet_300_100, lenet5, wide_resnet, resnet50])
def test_builders_reject_bad_options(builder, kwargs, error, match):
    # Raised before any layer is built, so even ResNet-50 is instant here.
    with pytest.raises(error, match=match):
        builder(**kwargs)


@pytest.mark.parametrize("sparsity", [0.9, 0.95])
def test_thin_dense_lenet_300_100_matches_nonzero_count(sparsity):
    w = thin_dense_width(lenet_300_100, sparsity, input_shape=(784,), num_classes=10)
    assert 0 < w < 1
    target = num_nonzero_params(lenet_300_100((784,), 10, sparsity, seed=0))
    thin = lenet_300_100((784,), 10, sparsity=None, width_multiplier=w)
    assert find_sparse_layers(thin) == []
    assert abs(num_trainable(thin) - target) <= 0.02 * target


def test_thin_dense_wrn_16_2_matches_nonzero_count():
    kwargs = dict(depth=16, width=2, input_shape=(8, 8, 3), num_classes=10)
    w = thin_dense_width(wide_resnet, 0.9, **kwargs)
    target = num_nonzero_params(wide_resnet(sparsity=0.9, seed=0, **kwargs))
    thin = wide_resnet(sparsity=None, width_multiplier=w, **kwargs)
    assert abs(num_trainable(thin) - target) <= 0.02 * target


def test_thin_dense_with_erk_targets_the_erk_count():
    kwargs = dict(input_shape=(64,), num_classes=10, distribution="erk")
    w = thin_dense_width(lenet_300_100, 0.9, **kwargs)
    target = common.plan(lenet_300_100, **kwargs).num_nonzero_params(0.9, "erk")
    thin = common.plan(lenet_300_100, width_multiplier=w, **kwargs).num_params
    assert abs(thin - target) <= 0.02 * target


def test_thin_dense_extreme_sparsity_reports_best_mismatch():
    # At 99% LeNet-300-100 keeps 3,872 parameters; one more hidden unit
    # changes the dense count by ~800, so nothing comes within 2%.
    with pytest.raises(ValueError, match=r"closest, width_multiplier=.* 2\.82% off"):
        thin_dense_width(lenet_300_100, 0.99)
    assert 0 < thin_dense_width(lenet_300_100, 0.99, tolerance=0.03) < 0.02


def test_thin_dense_for_a_builder_outside_the_zoo():
    def tiny(sparsity=0.9, width_multiplier=1.0):
        units = common.scaled_width(40, width_multiplier)
        layers = [keras.Input((20,))]
        if sparsity is None:
            layers += [keras.layers.Dense(units), keras.layers.Dense(3)]
        else:
            layers += [tf_dsr.SparseDense(units, sparsity=sparsity, seed=0),
                       tf_dsr.SparseDense(3, sparsity=sparsity, seed=1)]
        return keras.Sequential(layers)

    w = thin_dense_width(tiny, 0.75, tolerance=0.1)
    target = num_nonzero_params(tiny(0.75))
    assert abs(num_trainable(tiny(None, w)) - target) <= 0.1 * target


@pytest.mark.parametrize(
    "args,kwargs,error",
    [
        (("lenet", 0.9), {}, TypeError),
        ((lenet_300_100, 1.0), {}, ValueError),
        ((lenet_300_100, None), {}, TypeError),
        ((lenet_300_100, 0.9), dict(tolerance=-0.1), ValueError),
        ((lenet_300_100, 0.9), dict(width_multiplier=0.5), TypeError),
        ((lenet_300_100, 0.9), dict(num_layers=3), TypeError),
    ],
)
def test_thin_dense_rejects_bad_arguments(args, kwargs, error):
    with pytest.raises(error):
        thin_dense_width(*args, **kwargs)
