"""tf_dsr.core.gradual: the cubic schedule and pruning to a sparsity."""

import numpy as np
import pytest

from tf_dsr.core import gradual


def cubic(step, s_i, s_f, t0, t1):
    progress = min(max((step - t0) / (t1 - t0), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - progress) ** 3


# (step, s_i, s_f, t0, t1) -> hand-computed s_t.
SCHEDULE = [
    ((0, 0.0, 0.9, 0, 100), 0.0),
    ((50, 0.0, 0.9, 0, 100), 0.9 - 0.9 * 0.125),  # 0.7875
    ((75, 0.0, 0.9, 0, 100), 0.9 - 0.9 / 64),  # 0.8859375
    ((100, 0.0, 0.9, 0, 100), 0.9),
    ((500, 0.0, 0.9, 0, 100), 0.9),
    ((5, 0.5, 0.9, 10, 20), 0.5),  # before t0: s_i
    ((15, 0.5, 0.9, 10, 20), 0.9 - 0.4 * 0.125),  # 0.85
]


@pytest.mark.parametrize("args,expected", SCHEDULE)
def test_scheduled_sparsity_table(args, expected):
    assert gradual.scheduled_sparsity(*args).numpy() == pytest.approx(expected, abs=1e-6)
    assert cubic(*args) == pytest.approx(expected, abs=1e-12)


def test_scheduled_sparsity_is_monotonic():
    values = [float(gradual.scheduled_sparsity(t, 0.2, 0.95, 10, 110)) for t in range(0, 130)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(0.2) and values[-1] == pytest.approx(0.95)


def test_num_to_keep_rounds_and_keeps_one():
    assert int(gradual.num_to_keep(100, 0.9)) == 10
    assert int(gradual.num_to_keep(10, 0.25)) == 8  # 7.5 -> 8
    assert int(gradual.num_to_keep(10, 0.99)) == 1  # 0.1 -> 0 -> at least 1


KERNELS = [
    np.array([[0.5, -0.1], [0.0, 2.0]], np.float32),
    np.array([0.3, -0.05, 1.0, -0.7, 0.2, 0.4], np.float32),
]
DENSE = [np.ones_like(k) for k in KERNELS]


def test_prune_to_sparsity_per_layer_hand_computed():
    # Sparsity 0.5: keep 2 of 4 and 3 of 6 per layer.
    result = gradual.prune_to_sparsity(KERNELS, DENSE, 0.5, scope="layer")
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(result.masks[1].numpy(), [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(result.num_pruned.numpy(), [2, 3])
    np.testing.assert_array_equal(result.kernels[0].numpy(), [[0.5, 0.0], [0.0, 2.0]])


def test_prune_to_sparsity_global_hand_computed():
    # Sparsity 0.6 over 10 weights: keep the 4 largest overall:
    # 2.0, 1.0, 0.7, 0.5.
    result = gradual.prune_to_sparsity(KERNELS, DENSE, 0.6, scope="global")
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(result.masks[1].numpy(), [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(result.num_pruned.numpy(), [2, 4])


@pytest.mark.parametrize("scope", gradual.SCOPES)
def test_prune_to_sparsity_only_shrinks_masks(scope):
    rng = np.random.default_rng(0)
    kernels = [
        rng.normal(size=(8, 8)).astype(np.float32),
        rng.normal(size=(3, 3, 2, 2)).astype(np.float32),
    ]
    masks = [(rng.random(k.shape) < 0.5).astype(np.float32) for k in kernels]
    for target in (0.2, 0.5, 0.7, 0.9):
        result = gradual.prune_to_sparsity(kernels, masks, target, scope=scope, seed=1, step=2)
        new_masks = [m.numpy() for m in result.masks]
        for mask, new_mask, kernel in zip(masks, new_masks, result.kernels):
            assert np.all(new_mask <= mask)
            assert np.all(kernel.numpy()[new_mask == 0] == 0.0)
        sizes = [m.size for m in masks]
        if scope == "layer":
            for mask, new_mask in zip(masks, new_masks):
                expected = min(mask.sum(), max(1, round((1 - target) * mask.size)))
                assert new_mask.sum() == expected
        else:
            expected = min(sum(m.sum() for m in masks), round((1 - target) * sum(sizes)))
            assert sum(m.sum() for m in new_masks) == expected
        kernels, masks = [k.numpy() for k in result.kernels], new_masks


def test_prune_to_sparsity_leaves_non_finite_kernels_unchanged():
    kernels = [np.array([1.0, np.inf, 0.5], np.float32)]
    masks = [np.ones(3, np.float32)]
    result = gradual.prune_to_sparsity(kernels, masks, 0.5)
    assert not bool(result.is_finite)
    np.testing.assert_array_equal(result.masks[0].numpy(), masks[0])


def test_prune_to_sparsity_rejects_bad_inputs():
    with pytest.raises(ValueError):
        gradual.prune_to_sparsity(KERNELS, DENSE, 0.5, scope="model")
    with pytest.raises(TypeError):
        gradual.prune_to_sparsity(KERNELS[0], DENSE[0], 0.5)
    with pytest.raises(ValueError):
        gradual.prune_to_sparsity(KERNELS, DENSE[:1], 0.5)
    with pytest.raises(ValueError):
        gradual.prune_to_sparsity(KERNELS, DENSE[::-1], 0.5)
