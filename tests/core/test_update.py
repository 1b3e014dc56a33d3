"""The shared update skeleton: which active weights are carried over.

`Update.carried` decides where the callback keeps optimizer slots, so it
must tell a survivor from a weight regrown where one was just dropped:
new for DSR and SET, carried over for RigL.
"""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core import gradual
from tf_dsr.core import reallocation
from tf_dsr.core import rigl
from tf_dsr.core import set as set_core
from tf_dsr.core.counts import count_active

# Active: 0.5 (0), 0.1 (1), 0.05 (2); position 3 is the only empty one.
# Every method below drops 0.1 and 0.05 and grows two weights: one must go
# to position 3, the other returns to a just-dropped position.
KERNEL = np.array([[0.5, 0.1, 0.05, 0.0]], np.float32)
MASK = np.array([[1, 1, 1, 0]], np.float32)
# Position 1 has the largest gradient, position 3 the second.
GRADIENT = np.array([[0.0, 5.0, 0.1, 3.0]], np.float32)


def _carried(result):
    return result.carried[0].numpy()


def test_set_regrown_after_drop_is_new():
    result = set_core.set_update([KERNEL], [MASK], [2], seed=0, step=0)
    mask = result.masks[0].numpy()
    # Position 3, then one of the two just dropped (at random).
    assert mask[0, 0] == mask[0, 3] == 1 and mask[0, 1] + mask[0, 2] == 1
    np.testing.assert_array_equal(_carried(result), [[True, False, False, False]])
    np.testing.assert_array_equal(result.kernels[0].numpy(), [[0.5, 0, 0, 0]])


@pytest.mark.parametrize("seed", range(4))
def test_dsr_regrown_after_drop_is_new(seed):
    # |W| < 0.2 prunes 0.1 and 0.05 (K = 2); the one empty position takes
    # one, the other falls back to a just-pruned position.
    result = reallocation.reallocate([KERNEL], [MASK], threshold=0.2, prune_target=2,
                                     seed=seed, step=1)
    mask = result.masks[0].numpy()
    assert mask[0, 0] == mask[0, 3] == 1 and mask[0, 1] + mask[0, 2] == 1
    np.testing.assert_array_equal(_carried(result), [[True, False, False, False]])
    np.testing.assert_array_equal(result.kernels[0].numpy(), [[0.5, 0, 0, 0]])


def test_dsr_gradient_growth_regrown_after_drop_is_new():
    # Empty position 3 first, then the just-pruned one of largest gradient:
    # position 1, the same one RigL revives below, but here a new weight.
    result = reallocation.reallocate([KERNEL], [MASK], threshold=0.2, prune_target=2,
                                     growth="gradient", gradients=[GRADIENT])
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 1, 0, 1]])
    np.testing.assert_array_equal(_carried(result), [[True, False, False, False]])
    np.testing.assert_array_equal(result.kernels[0].numpy(), [[0.5, 0, 0, 0]])


def test_rigl_regrown_after_drop_is_carried():
    # floor(0.7 * 3) = 2 dropped; the two largest gradients among positions
    # 1, 2, 3 are at 1 (just dropped: revived, value kept) and 3 (new).
    result = rigl.rigl_update([KERNEL], [MASK], [GRADIENT], 0.7, seed=0, step=0)
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 1, 0, 1]])
    np.testing.assert_array_equal(_carried(result), [[True, True, False, False]])
    np.testing.assert_array_equal(result.kernels[0].numpy(), np.float32([[0.5, 0.1, 0, 0]]))
    assert result.num_pruned.numpy().tolist() == [1]
    assert result.num_grown.numpy().tolist() == [1]


def test_gradual_pruning_carries_every_remaining_weight():
    result = gradual.prune_to_sparsity([KERNEL], [MASK], 0.5)
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(_carried(result), [[True, True, False, False]])


def test_unchanged_update_carries_every_active_weight():
    kernel = KERNEL.copy()
    kernel[0, 0] = np.nan
    result = set_core.set_update([kernel], [MASK], [2])
    assert not bool(result.is_finite.numpy())
    np.testing.assert_array_equal(_carried(result), MASK != 0)


def _random_case(rng, shapes, density):
    kernels, masks, gradients = [], [], []
    for shape in shapes:
        mask = (rng.random(shape) < density).astype(np.float32)
        mask.flat[0] = 1.0
        kernels.append((rng.normal(size=shape) * mask).astype(np.float32))
        masks.append(mask)
        gradients.append(rng.normal(size=shape).astype(np.float32))
    return kernels, masks, gradients


UPDATES = {
    "dsr": lambda k, m, g, seed: reallocation.reallocate(
        k, m, threshold=0.8, prune_target=10, seed=seed, step=3),
    "dsr-gradient": lambda k, m, g, seed: reallocation.reallocate(
        k, m, threshold=0.8, prune_target=10, seed=seed, step=3, growth="gradient",
        gradients=g),
    "set": lambda k, m, g, seed: set_core.set_update(
        k, m, set_core.prune_counts([count_active(tf.convert_to_tensor(x)) for x in m],
                                    prune_fraction=0.4),
        seed=seed, step=3),
    "rigl": lambda k, m, g, seed: rigl.rigl_update(k, m, g, 0.4, seed=seed, step=3),
}


@pytest.mark.parametrize("density", [0.3, 0.95])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", sorted(UPDATES))
def test_carried_invariants(method, seed, density):
    # At density 0.95 the empty positions run out: DSR and SET fall back
    # to just-dropped ones.
    rng = np.random.default_rng(seed)
    kernels, masks, gradients = _random_case(rng, [(6, 7), (3, 3, 2, 2)], density)
    result = UPDATES[method](kernels, masks, gradients, seed)
    regrown_after_drop = 0
    for kernel, mask, new_kernel, new_mask, carried, num_grown in zip(
        kernels, masks, result.kernels, result.masks, result.carried,
        result.num_grown.numpy(),
    ):
        new_kernel, carried = new_kernel.numpy(), carried.numpy()
        active, new_active = mask != 0, new_mask.numpy() != 0
        assert carried.dtype == bool
        # Carried weights were active and stay active with their value.
        assert not (carried & ~(active & new_active)).any()
        np.testing.assert_array_equal(new_kernel[carried], kernel[carried])
        # Every other active weight is new: value 0, and as many as grown.
        new = new_active & ~carried
        assert (new_kernel[new] == 0).all()
        assert new.sum() == num_grown
        regrown_after_drop += (new & active).sum()
    if method != "rigl" and density == 0.95:
        assert regrown_after_drop > 0  # the case this test is about occurs


def test_carried_is_the_same_in_graph_and_xla():
    rng = np.random.default_rng(5)
    kernels, masks, gradients = _random_case(rng, [(8, 9)], 0.9)

    def run(k, m, g):
        return [UPDATES[name](k, m, g, 1).carried for name in sorted(UPDATES)]

    eager = run(kernels, masks, gradients)
    for jit_compile in (False, True):
        other = tf.function(run, jit_compile=jit_compile)(kernels, masks, gradients)
        for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(other)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
