"""tf_dsr.core.set: prune counts, one SET update."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core import set as set_core

KERNEL = np.array([[0.5, -0.1, 0.0, 2.0], [0.3, -0.05, 1.0, -0.7]], np.float32)
ACTIVE = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)


# ----------------------------------------------------------------------------
# prune_counts
# ----------------------------------------------------------------------------


def test_prune_counts_from_fraction_rounds_per_layer():
    counts = set_core.prune_counts([10, 30, 3, 1], prune_fraction=0.25).numpy()
    # 2.5 -> 2 (round half to even), 7.5 -> 8, 0.75 -> 1, 0.25 -> 0.
    np.testing.assert_array_equal(counts, [2, 8, 1, 0])


def test_prune_counts_from_target_is_proportional_to_active():
    np.testing.assert_array_equal(
        set_core.prune_counts([10, 30], prune_target=8).numpy(), [2, 6]
    )
    # 100 * [1, 2, 7] / 10 = [10, 20, 70]; capped to what is active.
    np.testing.assert_array_equal(
        set_core.prune_counts([1, 2, 7], prune_target=100).numpy(), [1, 2, 7]
    )
    counts = set_core.prune_counts([3, 3, 3], prune_target=4).numpy()
    assert counts.sum() == 4 and counts.max() - counts.min() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"prune_fraction": 0.1, "prune_target": 5},
        {"prune_fraction": 0.0},
        {"prune_fraction": 1.0},
        {"prune_fraction": True},
        {"prune_target": 0},
        {"prune_target": 2.5},
    ],
)
def test_prune_counts_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        set_core.prune_counts([10], **kwargs)


# ----------------------------------------------------------------------------
# set_update
# ----------------------------------------------------------------------------


def test_set_update_hand_computed():
    mask = ACTIVE.astype(np.float32)
    result = set_core.set_update([KERNEL], [mask], [2], seed=0, step=0)
    new_mask = result.masks[0].numpy()
    new_kernel = result.kernels[0].numpy()
    # Pruned: the two smallest, -0.05 at (1,1) and -0.1 at (0,1). The one
    # empty position (0,2) must be regrown; the second regrown weight falls
    # back to a just-pruned position, because no other is empty.
    assert new_mask[0, 2] == 1
    assert new_mask.sum() == mask.sum()
    assert new_mask[1, 1] + new_mask[0, 1] == 1
    np.testing.assert_array_equal(result.num_pruned.numpy(), [2])
    np.testing.assert_array_equal(result.num_grown.numpy(), [2])
    # Survivors keep their values; regrown and pruned weights are zero.
    expected = KERNEL.copy()
    expected[0, 1] = expected[1, 1] = expected[0, 2] = 0.0
    np.testing.assert_array_equal(new_kernel, expected)


@pytest.mark.parametrize("seed", range(6))
def test_set_update_invariants(seed):
    rng = np.random.default_rng(seed)
    shapes = [(6, 8), (3, 3, 2, 4), (10,)]
    kernels, masks = [], []
    for shape in shapes:
        mask = (rng.random(shape) < 0.3).astype(np.float32)
        mask.flat[0] = 1.0
        kernels.append((rng.normal(size=shape) * mask).astype(np.float32))
        masks.append(mask)
    counts = set_core.prune_counts([int(m.sum()) for m in masks], prune_fraction=0.3)
    result = set_core.set_update(kernels, masks, counts, seed=seed, step=7)
    assert bool(result.is_finite)
    num_pruned = result.num_pruned.numpy()
    np.testing.assert_array_equal(num_pruned, counts.numpy())
    for kernel, mask, new_kernel, new_mask, n in zip(
        kernels, masks, result.kernels, result.masks, num_pruned
    ):
        new_kernel, new_mask = new_kernel.numpy(), new_mask.numpy()
        assert set(np.unique(new_mask)) <= {0.0, 1.0}
        assert new_mask.sum() == mask.sum()  # per-layer count fixed
        pruned = (mask == 1) & (new_mask == 0)
        grown = (mask == 0) & (new_mask == 1)
        assert pruned.sum() == n and grown.sum() == n
        survivors = (mask == 1) & (new_mask == 1)
        # Every pruned weight is no larger than every survivor.
        if n and survivors.any():
            assert np.abs(kernel[pruned]).max() <= np.abs(kernel[survivors]).min()
        assert np.all(new_kernel[grown] == 0.0)
        assert np.all(new_kernel[new_mask == 0] == 0.0)
        np.testing.assert_array_equal(new_kernel[survivors], kernel[survivors])


def test_set_update_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(20, 20)).astype(np.float32)
    mask = (rng.random((20, 20)) < 0.2).astype(np.float32)

    def run(seed, step):
        return set_core.set_update([kernel], [mask], [10], seed, step).masks[0].numpy()

    np.testing.assert_array_equal(run(1, 5), run(1, 5))
    assert not np.array_equal(run(1, 5), run(2, 5))
    assert not np.array_equal(run(1, 5), run(1, 6))


def test_set_update_leaves_non_finite_kernels_unchanged():
    kernel = np.array([1.0, np.nan, 0.5, 0.0], np.float32)
    mask = np.array([1, 1, 1, 0], np.float32)
    result = set_core.set_update([kernel], [mask], [1])
    assert not bool(result.is_finite)
    np.testing.assert_array_equal(result.masks[0].numpy(), mask)
    np.testing.assert_array_equal(result.num_pruned.numpy(), [0])


@pytest.mark.parametrize(
    "jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["graph", "xla"]
)
def test_set_update_in_tf_function_equals_eager(jit_compile):
    kernel = tf.constant(np.linspace(-1, 1, 30, dtype=np.float32).reshape(5, 6))
    mask = tf.constant((np.arange(30) % 2).reshape(5, 6).astype(np.float32))
    eager = set_core.set_update([kernel], [mask], [4], seed=2, step=3)
    compiled = tf.function(
        lambda k, m: set_core.set_update([k], [m], [4], seed=2, step=3), jit_compile=jit_compile
    )(kernel, mask)
    np.testing.assert_array_equal(eager.masks[0].numpy(), compiled.masks[0].numpy())
    np.testing.assert_array_equal(eager.kernels[0].numpy(), compiled.kernels[0].numpy())


def test_set_update_rejects_bad_inputs():
    with pytest.raises(TypeError):
        set_core.set_update(np.ones(3), [np.ones(3)], [1])
    with pytest.raises(ValueError):
        set_core.set_update([], [], [])
    with pytest.raises(ValueError):
        set_core.set_update([np.ones(3, np.float32)], [np.ones(4, np.float32)], [1])
