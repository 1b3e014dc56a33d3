"""ERK split of an overall sparsity among tensors (tf_dsr/distribution.py)."""

import math

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.distribution import erk_sparsities
from tf_dsr.validation import num_active_at_init


def test_exported():
    assert tf_dsr.erk_sparsities is erk_sparsities
    assert "erk_sparsities" in tf_dsr.__all__


def test_hand_computed_without_capping():
    # Density is eps * sum(shape) / prod(shape), so each tensor keeps
    # eps * sum(shape) weights: eps = 70 / (20 + 50) = 1 for 70 = (1 - 0.86) * 500.
    sparsities = erk_sparsities([(10, 10), (10, 40)], 0.86)
    assert sparsities == pytest.approx([1 - 20 / 100, 1 - 50 / 400])


def test_hand_computed_with_capping():
    # 5002 weights to keep. Uncapped, eps = 5002 / (4 + 200) puts 24.5 into
    # the 2x2 kernel's density: it is made dense, and the 100x100 kernel
    # keeps the other 4998 weights.
    sparsities = erk_sparsities([(2, 2), (100, 100)], 0.5)
    assert sparsities[0] == 0.0
    assert sparsities[1] == pytest.approx(1 - 4998 / 10000)


def test_conv_density_ratio_is_sum_over_product_of_dims():
    shapes = [(3, 3, 16, 32), (3, 3, 32, 64), (256, 10)]
    sparsities = erk_sparsities(shapes, 0.9)
    density = [1 - s for s in sparsities]
    ratio = [sum(s) / math.prod(s) for s in shapes]
    assert density[0] / density[1] == pytest.approx(ratio[0] / ratio[1])
    assert density[0] / density[2] == pytest.approx(ratio[0] / ratio[2])


@pytest.mark.parametrize("shapes", [[(5, 7)], [(5, 7)] * 3, [(3, 3, 8, 8)] * 4])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_equals_uniform_when_all_ratios_are_equal(shapes, sparsity):
    assert erk_sparsities(shapes, sparsity) == pytest.approx([sparsity] * len(shapes))


def test_zero_sparsity_is_dense():
    assert erk_sparsities([(784, 300), (300, 100), (100, 10)], 0.0) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.98])
def test_total_active_matches_target_within_rounding(seed, sparsity):
    rng = np.random.default_rng(seed)
    shapes = []
    for _ in range(rng.integers(1, 8)):
        if rng.random() < 0.5:
            shapes.append(tuple(int(d) for d in rng.integers(1, 300, size=2)))
        else:
            k = int(rng.choice([1, 3, 5]))
            shapes.append((k, k) + tuple(int(d) for d in rng.integers(1, 64, size=2)))
    sizes = [math.prod(s) for s in shapes]
    sparsities = erk_sparsities(shapes, sparsity)
    assert all(0.0 <= s < 1.0 for s in sparsities)
    active = sum(num_active_at_init(n, s) for n, s in zip(sizes, sparsities))
    # Each tensor rounds its own count: at most 1/2 off per tensor.
    assert abs(active - (1 - sparsity) * sum(sizes)) <= 0.5 * len(shapes) + 1e-6
    ratios = [sum(s) / math.prod(s) for s in shapes]
    uncapped = [l for l, s in enumerate(sparsities) if s > 0.0]
    if uncapped:
        # Capped tensors have the largest ratios, and densities stay <= 1.
        capped = [l for l, s in enumerate(sparsities) if s == 0.0]
        assert all(ratios[c] >= max(ratios[u] for u in uncapped) for c in capped)


@pytest.mark.parametrize(
    "shapes,sparsity,error",
    [
        ([(3, 3)], 1.0, ValueError),
        ([(3, 3)], -0.1, ValueError),
        ([(3, 3)], "0.9", TypeError),
        ([(3, 3)], True, TypeError),
        ([], 0.9, ValueError),
        ([(3, 0)], 0.9, ValueError),
        ([(3, 2.5)], 0.9, ValueError),
        ([()], 0.9, ValueError),
        ([3], 0.9, TypeError),
        ("3x3", 0.9, TypeError),
    ],
)
def test_rejects_bad_arguments(shapes, sparsity, error):
    with pytest.raises(error):
        erk_sparsities(shapes, sparsity)


def test_erk_takes_the_kernel_shapes_of_every_sparse_layer_type():
    """Kernels of rank 2 to 5 from the layer family, as `sparse_kernels()` gives them."""
    inputs = keras.Input((6, 6, 6, 2))
    h = tf_dsr.SparseConv3D(4, 3)(inputs)                      # (3, 3, 3, 2, 4)
    h = keras.layers.Reshape((16, 4 * 4))(h)
    h = tf_dsr.SparseSeparableConv1D(8, 3)(h)                  # (3, 16, 1), (1, 16, 8)
    h = tf_dsr.SparseLSTM(5)(h)                                # (8, 20), (5, 20)
    model = keras.Model(inputs, tf_dsr.SparseEinsumDense("ab,bcd->acd", (2, 3))(h))
    shapes = [tuple(pair.kernel.shape) for _, pair in tf_dsr.layers.find_sparse_kernels(model)]
    assert shapes == [(3, 3, 3, 2, 4), (3, 16, 1), (1, 16, 8), (8, 20), (5, 20), (5, 2, 3)]

    sparsities = tf_dsr.erk_sparsities(shapes, 0.8)
    sizes = [int(np.prod(shape)) for shape in shapes]
    active = sum(num_active_at_init(size, s) for size, s in zip(sizes, sparsities))
    assert abs(active - 0.2 * sum(sizes)) <= len(shapes)
    # Smaller tensors (relative to the sum of their dimensions) are denser.
    density = [1 - s for s in sparsities]
    assert density[2] > density[0] and density[1] > density[3]
