"""tf_dsr.core.rigl: hand-computed tables, invariants, eager = graph = XLA."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core import rigl
from tf_dsr.core.reallocation import reallocate
from tf_dsr.methods.rigl import RigL

# ----- the cosine schedule -------------------------------------------------


@pytest.mark.parametrize("step, expected", [
    (0, 0.3),
    (25, 0.15 * (1 + math.cos(math.pi / 4))),
    (50, 0.15),
    (100, 0.0),
    (150, 0.0),  # after T_end: nothing moves
])
def test_drop_fraction_follows_the_cosine_schedule(step, expected):
    got = float(rigl.drop_fraction_at(step, 0.3, 100).numpy())
    assert got == pytest.approx(expected, abs=1e-7)


def test_drop_counts_floor_like_rigl():
    counts = rigl.drop_counts(tf.constant([10, 7, 0, 3]), 0.3).numpy().tolist()
    assert counts == [3, 2, 0, 0]


@pytest.mark.parametrize("value, error", [
    (0.0, ValueError), (1.5, ValueError), (-0.1, ValueError),
    ("0.3", TypeError), (True, TypeError),
])
def test_bad_drop_fraction_is_refused(value, error):
    # The check lives with the method's options (tf_dsr/validation.py).
    with pytest.raises(error, match="drop_fraction"):
        RigL(drop_fraction=value)


# ----- one update, by hand ----------------------------------------------------
# Active: 0.5 (0), -0.1 (1), 0.3 (4), -0.05 (6). Half of 4 is dropped: the two
# smallest magnitudes, -0.05 and -0.1. Candidates are every position inactive
# after the drop, the two just dropped included.
KERNEL = np.array([[0.5, -0.1, 0.0, 0.0], [0.3, 0.0, -0.05, 0.0]], np.float32)
MASK = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], np.float32)


def _update(gradient, fraction=0.5):
    return rigl.rigl_update([KERNEL], [MASK], [np.asarray(gradient, np.float32)],
                            fraction, seed=0, step=0)


def test_drops_smallest_and_grows_largest_gradient():
    # |g| over the candidates 1, 2, 3, 5, 6, 7: 0.2, 0.9, 0.4, 0.7, 0.3, 0.1.
    gradient = [[9.0, 0.2, -0.9, 0.4], [9.0, 0.7, 0.3, -0.1]]
    result = _update(gradient)
    np.testing.assert_array_equal(result.masks[0].numpy(),
                                  [[1, 0, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(result.kernels[0].numpy(),
                                  np.float32([[0.5, 0, 0, 0], [0.3, 0, 0, 0]]))
    assert result.num_pruned.numpy().tolist() == [2]
    assert result.num_grown.numpy().tolist() == [2]
    assert bool(result.is_finite.numpy())
    assert float(result.info["drop_fraction"].numpy()) == 0.5


def test_a_weight_dropped_and_regrown_at_once_keeps_its_value():
    # Position 1 (-0.1) is dropped, then has the largest gradient: as in the
    # RigL code it was never really removed.
    gradient = [[0.0, 5.0, 0.9, 0.4], [0.0, 0.2, 0.3, 0.1]]
    result = _update(gradient)
    np.testing.assert_array_equal(result.masks[0].numpy(),
                                  [[1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(result.kernels[0].numpy(),
                                  np.float32([[0.5, -0.1, 0, 0], [0.3, 0, 0, 0]]))
    # Net counts: only -0.05 left, only position 2 is new.
    assert result.num_pruned.numpy().tolist() == [1]
    assert result.num_grown.numpy().tolist() == [1]


def test_non_finite_gradient_changes_nothing():
    result = _update([[0.0, np.nan, 0.9, 0.4], [0.0, 0.2, 0.3, 0.1]])
    assert not bool(result.is_finite.numpy())
    np.testing.assert_array_equal(result.masks[0].numpy(), MASK)
    np.testing.assert_array_equal(result.kernels[0].numpy(), KERNEL)
    assert result.num_pruned.numpy().tolist() == [0]


def test_missing_or_mismatched_gradients_are_refused():
    with pytest.raises(ValueError, match="gradients"):
        rigl.rigl_update([KERNEL], [MASK], None, 0.3)
    with pytest.raises(ValueError, match="Kernel 0 has shape .* its gradient has shape"):
        rigl.rigl_update([KERNEL], [MASK], [np.zeros((3, 3), np.float32)], 0.3)


# ----- invariants over shapes and seeds ---------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_invariants(seed):
    rng = np.random.default_rng(seed)
    shapes = [(7, 5), (3, 3, 2, 4), (40,)]
    kernels, masks, gradients = [], [], []
    for shape in shapes:
        mask = (rng.random(shape) < rng.uniform(0.1, 0.6)).astype(np.float32)
        mask.flat[0] = 1.0
        kernels.append((rng.normal(size=shape) * mask).astype(np.float32))
        masks.append(mask)
        gradients.append(rng.normal(size=shape).astype(np.float32))
    fraction = float(rng.uniform(0.05, 0.6))
    result = rigl.rigl_update(kernels, masks, gradients, fraction, seed=seed, step=3)

    for kernel, mask, gradient, new_kernel, new_mask in zip(
            kernels, masks, gradients, result.kernels, result.masks):
        new_kernel, new_mask = new_kernel.numpy(), new_mask.numpy()
        active, new_active = mask != 0, new_mask != 0
        assert set(np.unique(new_mask)) <= {0.0, 1.0}
        # Per-layer counts are conserved exactly.
        assert new_active.sum() == active.sum()
        num_drop = math.floor(active.sum() * np.float64(np.float32(fraction)))
        # The kept weights are the largest magnitudes among the active ones.
        magnitude = np.abs(kernel)
        order = np.sort(magnitude[active])
        cut = order[num_drop - 1] if num_drop else -1.0
        survivors = active & (magnitude > cut)
        assert (survivors <= new_active).all()
        # Grown positions have the largest |gradient| among the positions
        # not surviving the drop.
        candidates = ~survivors
        grown = new_active & ~survivors
        if grown.any() and (candidates & ~grown).any():
            assert np.abs(gradient[grown]).min() >= np.abs(gradient[candidates & ~grown]).max()
        # New weights start at 0; kept ones keep their value.
        new = new_active & ~active
        assert (new_kernel[new] == 0).all()
        np.testing.assert_array_equal(new_kernel[active & new_active],
                                      kernel[active & new_active])
        assert (new_kernel[~new_active] == 0).all()


def test_eager_graph_and_xla_agree():
    rng = np.random.default_rng(1)
    kernels = [rng.normal(size=(30, 20)).astype(np.float32)]
    masks = [(rng.random((30, 20)) < 0.2).astype(np.float32)]
    kernels[0] *= masks[0]
    gradients = [rng.normal(size=(30, 20)).astype(np.float32)]

    def run(k, m, g):
        result = rigl.rigl_update(k, m, g, 0.3, seed=2, step=4)
        return result.kernels, result.masks, result.num_pruned

    eager = run(kernels, masks, gradients)
    graph = tf.function(run)(kernels, masks, gradients)
    xla = tf.function(run, jit_compile=True)(kernels, masks, gradients)
    for other in (graph, xla):
        for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(other)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----- DSR with gradient growth --------------------------------------------------


def test_dsr_gradient_growth_grows_at_largest_gradient_free_positions():
    # Threshold 0.2 prunes -0.1 and -0.05 (K = 2); survivors 0.5 and 0.3 in
    # layer 0, 0.8 in layer 1: shares 2 * 2/3 -> 1, 1 (largest remainder).
    kernels = [KERNEL, np.array([[0.8, 0.0, 0.0]], np.float32)]
    masks = [MASK, np.array([[1, 0, 0]], np.float32)]
    gradients = [np.array([[0, 5.0, 0.9, 0.4], [0, 0.7, 3.0, 0.1]], np.float32),
                 np.array([[0, 0.1, 0.6]], np.float32)]
    result = reallocate(kernels, masks, threshold=0.2, prune_target=2, seed=0,
                        growth="gradient", gradients=gradients)
    # Layer 0: free positions 2, 3, 5, 7 (pruned 1 and 6 excluded): 0.9 wins.
    np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 0, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(result.masks[1].numpy(), [[1, 0, 1]])
    assert result.num_grown.numpy().tolist() == [1, 1]
    assert sum(int(m.numpy().sum()) for m in result.masks) == 5
    assert (result.kernels[0].numpy()[0, 2] == 0) and (result.kernels[1].numpy()[0, 2] == 0)


def test_dsr_gradient_growth_needs_gradients():
    with pytest.raises(ValueError, match="gradient"):
        reallocate([KERNEL], [MASK], threshold=0.2, prune_target=2, growth="gradient")
    with pytest.raises(ValueError, match="growth"):
        reallocate([KERNEL], [MASK], threshold=0.2, prune_target=2, growth="momentum")
