"""Tests for `tf_dsr.core.reallocation` (DSR's Algorithm 1)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.reallocation import adapt_threshold
from tf_dsr.core.reallocation import grow
from tf_dsr.core.reallocation import prune
from tf_dsr.core.reallocation import reallocate
from tf_dsr.core.seeds import layer_seeds


def _np(tensors):
    return [t.numpy() for t in tensors]


def _survivors(mask, dropped):
    return tf.not_equal(mask, 0) & ~dropped.pruned


# --------------------------------------------------------------------------
# Step 1: prune.

PRUNE_TABLE = [
    # kernel, mask, threshold, survivors, pruned
    pytest.param(
        [0.5, -0.05, 0.2, -0.03, 0.0, 0.01], [1, 1, 1, 0, 1, 0], 0.1,
        [1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0],
        id="below-threshold-active-only",
    ),
    pytest.param(
        [0.25, -0.25, 0.2499, -0.2501, 0.3], [1, 1, 1, 1, 1], 0.25,
        [1, 1, 0, 1, 1], [0, 0, 1, 0, 0],
        id="strict-less-than",
    ),
    pytest.param(
        [0.01, -0.04, 0.03, 0.9], [1, 1, 1, 0], 0.1,
        [0, 1, 0, 0], [1, 0, 1, 0],
        id="keep-largest-active-not-inactive",
    ),
    pytest.param(
        [0.0, 0.0, 5.0], [1, 0, 0], 0.1,
        [1, 0, 0], [0, 0, 0],
        id="keep-only-active-even-if-zero",
    ),
    pytest.param(
        [0.01, 0.02, 0.0], [0, 0, 0], 0.1,
        [0, 0, 0], [0, 0, 0],
        id="no-active-weights",
    ),
    pytest.param(
        [0.5, -0.6, 0.7], [1, 1, 1], 0.0,
        [1, 1, 1], [0, 0, 0],
        id="zero-threshold-prunes-nothing",
    ),
    pytest.param(
        [[0.2, -0.01], [0.0, -3.0], [0.05, 0.07]],
        [[1, 1], [0, 1], [1, 1]], 0.1,
        [[1, 0], [0, 1], [0, 0]], [[0, 1], [0, 0], [1, 1]],
        id="2d",
    ),
]


@pytest.mark.parametrize("kernel,mask,threshold,survivors,pruned", PRUNE_TABLE)
@pytest.mark.parametrize("mask_dtype", [tf.float32, tf.int32])
def test_prune_table(kernel, mask, threshold, survivors, pruned, mask_dtype):
    mask = tf.constant(mask, mask_dtype)
    result = prune(tf.constant(kernel, tf.float32), mask, threshold)
    assert result.pruned.dtype == tf.bool
    np.testing.assert_array_equal(_survivors(mask, result).numpy(),
                                  np.array(survivors, bool))
    np.testing.assert_array_equal(result.pruned.numpy(), np.array(pruned, bool))


def test_prune_conv_shape_keep_one():
    kernel = np.full((3, 3, 2, 4), 0.01, np.float32)
    mask = np.zeros_like(kernel)
    mask[0, 1, 1, 2] = mask[2, 2, 0, 3] = mask[1, 0, 0, 0] = 1
    kernel[2, 2, 0, 3] = -0.08  # largest active magnitude
    kernel[2, 2, 1, 3] = 0.5  # larger, but inactive
    result = prune(tf.constant(kernel), tf.constant(mask), tf.constant(0.1))
    expected = np.zeros(kernel.shape, bool)
    expected[2, 2, 0, 3] = True
    np.testing.assert_array_equal(_survivors(mask, result).numpy(), expected)
    np.testing.assert_array_equal(result.pruned.numpy(),
                                  (mask == 1) & ~expected)


# --------------------------------------------------------------------------
# Step 6: adapt the threshold.

@pytest.mark.parametrize(
    "num_pruned,prune_target,tolerance,expected_factor",
    [
        (111, 100, 0.1, 0.5),
        (110, 100, 0.1, 1.0),  # boundary (1 + delta) N: unchanged
        (100, 100, 0.1, 1.0),
        (90, 100, 0.1, 1.0),  # boundary (1 - delta) N: unchanged
        (89, 100, 0.1, 2.0),
        (0, 100, 0.1, 2.0),
        (661, 600, 0.1, 0.5),
        (660, 600, 0.1, 1.0),
        (540, 600, 0.1, 1.0),
        (539, 600, 0.1, 2.0),
        (24000, 20000, 0.2, 1.0),
        (24001, 20000, 0.2, 0.5),
        (15999, 20000, 0.2, 2.0),
        (440000, 400000, 0.1, 1.0),
        (440001, 400000, 0.1, 0.5),
        (359999, 400000, 0.1, 2.0),
        (11, 10, 0.0, 0.5),
        (10, 10, 0.0, 1.0),
        (9, 10, 0.0, 2.0),
    ],
)
@pytest.mark.parametrize("as_tensors", [False, True], ids=["python", "tensors"])
def test_adapt_threshold_table(num_pruned, prune_target, tolerance,
                               expected_factor, as_tensors):
    threshold = np.float32(0.003)
    if as_tensors:
        prune_target = tf.constant(prune_target)
        tolerance = tf.constant(tolerance, tf.float64)
        num_pruned = tf.constant(num_pruned, tf.int64)
    result = adapt_threshold(threshold, num_pruned, prune_target, tolerance)
    assert result.dtype == tf.float32
    assert result.numpy() == np.float32(threshold * np.float32(expected_factor))


def test_adapt_threshold_accepts_tensors():
    result = adapt_threshold(tf.constant(1e-3), tf.constant(5, tf.int64),
                             tf.constant(100.0), tf.constant(0.1))
    assert result.numpy() == np.float32(2e-3)


def test_adapt_threshold_boundary_with_small_python_tolerance():
    # (1 - 0.01) * 100 == 99.0 in Python float64 arithmetic (as in the
    # reference), so K = 99 is inside the band; a float32 0.01 would not be.
    assert adapt_threshold(1.0, 99, 100, 0.01).numpy() == 1.0
    assert adapt_threshold(1.0, 101, 100, 0.01).numpy() == 1.0
    assert adapt_threshold(1.0, 98, 100, 0.01).numpy() == 2.0
    assert adapt_threshold(1.0, 102, 100, 0.01).numpy() == 0.5


def test_adapt_threshold_boundary_with_float64_tensors():
    tolerance = tf.constant(0.01, tf.float64)
    assert adapt_threshold(1.0, 99, 100, tolerance).numpy() == 1.0
    assert adapt_threshold(1.0, 98, 100, tolerance).numpy() == 2.0


def test_adapt_threshold_boundary_tensor_target_python_tolerance():
    assert adapt_threshold(1.0, 99, tf.constant(100), 0.01).numpy() == 1.0


# --------------------------------------------------------------------------
# grow.

def test_grow_picks_exact_count_among_candidates():
    candidates = np.random.RandomState(5).rand(6, 7) < 0.5
    grown = grow(tf.constant(candidates), 9, layer_seeds(1, 2, 1)[0]).numpy()
    assert grown.sum() == 9
    assert not (grown & ~candidates).any()


def test_grow_with_fallback_takes_every_candidate_first():
    rng = np.random.RandomState(6)
    candidates = rng.rand(6, 7) < 0.3
    fallback = ~candidates & (rng.rand(6, 7) < 0.5)
    num_extra = 4
    grown = grow(tf.constant(candidates), int(candidates.sum()) + num_extra,
                 layer_seeds(1, 2, 1)[0], fallback=tf.constant(fallback)).numpy()
    assert (grown[candidates]).all()
    assert grown[fallback].sum() == num_extra
    assert not (grown & ~(candidates | fallback)).any()


# --------------------------------------------------------------------------
# reallocate: hand-checked examples.

def test_reallocate_hand_example():
    # Tensor 0: prunes 0.05 (K_0 = 1), keeps 2, one free position (index 2).
    # Tensor 1: prunes 0.02 and -0.01 (K_1 = 2), keeps 1, two free positions.
    # K = 3, shares by survivors 3*[2,1]/3 = [2,1]; tensor 0 holds only 1,
    # the other goes to tensor 1 -> grown [1, 2], filling every free slot.
    kernels = [tf.constant([[0.5, 0.05], [0.4, -0.7]]),
               tf.constant([0.02, 0.3, -0.01, 0.6, -0.2])]
    masks = [tf.constant([[1.0, 1.0], [0.0, 1.0]]),
             tf.constant([1.0, 1.0, 1.0, 0.0, 0.0])]
    result = reallocate(kernels, masks, threshold=0.1, prune_target=10,
                        tolerance=0.1, seed=3, step=100)
    masks_out, kernels_out = _np(result.masks), _np(result.kernels)
    np.testing.assert_array_equal(masks_out[0], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(masks_out[1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(kernels_out[0],
                                  np.array([[0.5, 0.0], [0.0, -0.7]], np.float32))
    np.testing.assert_array_equal(kernels_out[1],
                                  np.array([0, 0.3, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(result.num_pruned.numpy(), [1, 2])
    np.testing.assert_array_equal(result.num_grown.numpy(), [1, 2])
    assert result.num_pruned.dtype == tf.int64
    assert result.num_grown.dtype == tf.int64
    # K = 3 < 0.9 * 10: H doubles.
    assert result.info["threshold"].numpy() == np.float32(0.2)
    assert bool(result.is_finite.numpy()) is True


def test_reallocate_hand_example_random_placement():
    # Tensor 1 has 4 free positions for its 2 new weights: which two is
    # random, but only among positions empty before this step.
    kernels = [tf.constant([[0.5, 0.05], [0.0, -0.7]]),
               tf.constant([0.02, 0.3, -0.01, 0.0, 0.0, 0.0, 0.0])]
    masks = [tf.constant([[1.0, 1.0], [0.0, 1.0]]),
             tf.constant([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])]
    seen = set()
    for step in range(8):
        result = reallocate(kernels, masks, 0.1, prune_target=3, seed=0,
                            step=step)
        mask1 = result.masks[1].numpy()
        assert mask1[1] == 1 and mask1[0] == 0 and mask1[2] == 0
        assert mask1[3:].sum() == 2
        seen.add(tuple(mask1))
        np.testing.assert_array_equal(result.masks[0].numpy(), [[1, 0], [1, 1]])
        np.testing.assert_array_equal(result.num_grown.numpy(), [1, 2])
        # K = 3 == N_prune: H unchanged.
        assert result.info["threshold"].numpy() == np.float32(0.1)
    assert len(seen) > 1


def test_reallocate_dead_tensor_gets_nothing_while_others_have_room():
    kernels = [tf.constant([0.5, 0.01, 0.0, 0.0]), tf.constant([0.3, 0.2, 0.0])]
    masks = [tf.constant([1.0, 1.0, 0.0, 0.0]), tf.constant([0.0, 0.0, 0.0])]
    result = reallocate(kernels, masks, 0.1, prune_target=1)
    np.testing.assert_array_equal(result.masks[1].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(result.kernels[1].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(result.num_grown.numpy(), [1, 0])
    assert result.masks[0].numpy()[[0, 1]].tolist() == [1, 0]
    assert result.masks[0].numpy().sum() == 2


# --------------------------------------------------------------------------
# reallocate: invariant grid.

DENSE_SHAPES = [(64, 32), (128, 64), (300, 100), (20, 10), (256, 10)]
CONV_SHAPES = [(3, 3, 16, 32), (3, 3, 8, 8), (1, 1, 32, 64), (5, 5, 3, 16)]
THRESHOLDS = [1e-4, 1e-3, 1e-2, 0.05, 0.2, 1.0, 10.0]
MASK_DTYPES = [np.float32, np.float32, np.int32, np.float16]


def _random_mask(shape, sparsity, rng):
    size = int(np.prod(shape))
    flat = np.zeros(size)
    flat[rng.choice(size, int(round((1 - sparsity) * size)), replace=False)] = 1
    return flat.reshape(shape)


def _random_case(case):
    rng = np.random.RandomState(1000 + case)
    num_tensors = rng.randint(1, 5)
    shapes = [
        (DENSE_SHAPES + CONV_SHAPES)[i]
        for i in rng.randint(0, len(DENSE_SHAPES) + len(CONV_SHAPES),
                             num_tensors)
    ]
    sparsity = rng.uniform(0.5, 0.99)
    mask_dtype = MASK_DTYPES[case % len(MASK_DTYPES)]
    kernels, masks = [], []
    for shape in shapes:
        scale = rng.choice([0.01, 0.1, 1.0])
        # Nonzero everywhere: entries under a zero mask model leftover
        # optimizer momentum and must come back zeroed.
        kernels.append((rng.randn(*shape) * scale).astype(np.float32))
        masks.append(_random_mask(shape, sparsity, rng).astype(mask_dtype))
    threshold = float(rng.choice(THRESHOLDS))
    total_active = sum(np.count_nonzero(m) for m in masks)
    prune_target = int(rng.randint(1, max(2, total_active)))
    return kernels, masks, threshold, prune_target, int(rng.randint(0, 2**31))


def _expected_prune(kernel, mask, threshold):
    active = mask != 0
    survivors = active & (np.abs(kernel) >= np.float32(threshold))
    if active.any() and not survivors.any():
        flat = np.where(active, np.abs(kernel), -1.0).ravel()
        survivors = np.zeros(kernel.size, bool)
        survivors[np.argmax(flat)] = True
        survivors = survivors.reshape(kernel.shape)
    return survivors, active & ~survivors


def _expected_threshold(threshold, num_pruned, prune_target, tolerance=0.1):
    threshold = np.float32(threshold)
    if num_pruned > (1 + tolerance) * prune_target:
        return threshold / np.float32(2)
    if num_pruned < (1 - tolerance) * prune_target:
        return threshold * np.float32(2)
    return threshold


def check_invariants(kernels, masks, threshold, prune_target, result,
                     tolerance=0.1):
    """Asserts every invariant of DSR's Algorithm 1 on one reallocation."""
    assert bool(result.is_finite.numpy())
    assert len(result.masks) == len(result.kernels) == len(masks)
    new_masks, new_kernels = _np(result.masks), _np(result.kernels)
    num_pruned = result.num_pruned.numpy()
    num_grown = result.num_grown.numpy()

    expected = [_expected_prune(k, m, threshold) for k, m in zip(kernels, masks)]
    survivors = [s for s, _ in expected]
    pruned = [p for _, p in expected]
    free = [(m == 0) for m in masks]
    total_pruned = sum(int(p.sum()) for p in pruned)
    num_survivors = np.array([s.sum() for s in survivors], np.int64)
    num_free = np.array([f.sum() for f in free], np.int64)

    # Total active count conserved exactly.
    # (Counted as nonzeros: a float16 sum of ones is inexact above 2048.)
    assert (sum(np.count_nonzero(m) for m in new_masks)
            == sum(np.count_nonzero(m) for m in masks))
    np.testing.assert_array_equal(num_pruned, [p.sum() for p in pruned])
    assert num_grown.sum() == total_pruned

    for i, (kernel, mask, new_kernel, new_mask) in enumerate(
        zip(kernels, masks, new_kernels, new_masks)
    ):
        assert new_mask.dtype == mask.dtype
        assert new_kernel.dtype == kernel.dtype
        assert new_mask.shape == new_kernel.shape == kernel.shape
        assert np.isin(new_mask, [0, 1]).all(), f"tensor {i}: mask not 0/1"
        active = new_mask != 0
        # Survivors stay active with unchanged values.
        assert active[survivors[i]].all()
        np.testing.assert_array_equal(new_kernel[survivors[i]],
                                      kernel[survivors[i]])
        # Zero wherever the new mask is 0.
        assert (new_kernel[~active] == 0).all(), f"tensor {i}"
        # Regrown positions start at exactly 0.
        grown = active & ~survivors[i]
        assert grown.sum() == num_grown[i], f"tensor {i}"
        assert (new_kernel[grown] == 0).all(), f"tensor {i}"
        if total_pruned <= num_free.sum():
            # Enough room: nothing pruned in this step comes back.
            assert not (grown & pruned[i]).any(), f"tensor {i}"

    # Proportional to survivors when no tensor hits capacity.
    total_survivors = num_survivors.sum()
    if total_survivors > 0 and (
        -(-total_pruned * num_survivors // total_survivors) <= num_free
    ).all():
        assert (
            np.abs(num_grown * total_survivors - total_pruned * num_survivors)
            < total_survivors
        ).all(), (num_grown, num_survivors, total_pruned)
    assert (num_grown <= num_free + np.array([p.sum() for p in pruned])).all()

    assert result.info["threshold"].dtype == tf.float32
    assert result.info["threshold"].numpy() == _expected_threshold(
        threshold, total_pruned, prune_target, tolerance
    )


@pytest.mark.parametrize("case", range(36))
def test_reallocate_invariants_grid(case):
    kernels, masks, threshold, prune_target, seed = _random_case(case)
    result = reallocate(kernels, masks, threshold, prune_target, seed=seed,
                        step=case * 100)
    check_invariants(kernels, masks, threshold, prune_target, result)


def test_grid_covers_interesting_regimes():
    # Guards the grid above against degenerating into easy cases.
    regimes = {"no-prune": 0, "keep-one": 0, "capacity-hit": 0, "halve": 0,
               "double": 0, "multi-tensor": 0}
    for case in range(36):
        kernels, masks, threshold, prune_target, _ = _random_case(case)
        expected = [_expected_prune(k, m, threshold) for k, m in zip(kernels, masks)]
        total_pruned = sum(int(p.sum()) for _, p in expected)
        survivors = np.array([s.sum() for s, _ in expected])
        free = np.array([(m == 0).sum() for m in masks])
        regimes["no-prune"] += total_pruned == 0
        regimes["keep-one"] += any(
            s.sum() == 1 and p.sum() > 0 for s, p in expected
        )
        if survivors.sum() > 0:
            regimes["capacity-hit"] += bool(
                (-(-total_pruned * survivors // survivors.sum()) > free).any()
            )
        factor = _expected_threshold(1.0, total_pruned, prune_target)
        regimes["halve"] += factor == 0.5
        regimes["double"] += factor == 2.0
        regimes["multi-tensor"] += len(masks) > 1
    assert all(count > 0 for count in regimes.values()), regimes


def test_dense_ish_fallback_conserves_count():
    # Sparsity 0.1 and a huge threshold: nearly every active weight is
    # pruned, far more than the free positions, so some pruned positions
    # must be reused for the count to be conserved.
    rng = np.random.RandomState(7)
    shapes = [(20, 10), (3, 3, 4, 4), (30, 7)]
    kernels = [rng.randn(*s).astype(np.float32) for s in shapes]
    masks = [_random_mask(s, 0.1, rng).astype(np.float32) for s in shapes]
    result = reallocate(kernels, masks, threshold=100.0, prune_target=50,
                        seed=1, step=2)
    check_invariants(kernels, masks, 100.0, 50, result)
    new_masks = _np(result.masks)
    num_free = sum(int((m == 0).sum()) for m in masks)
    assert num_free < int(result.num_pruned.numpy().sum())
    for mask, new_mask in zip(masks, new_masks):
        # Every previously free position is used before any pruned one.
        assert (new_mask[mask == 0] == 1).all()
    assert (sum(np.count_nonzero(m) for m in new_masks)
            == sum(np.count_nonzero(m) for m in masks))


def test_reproducible_from_seed_and_step():
    kernels, masks, threshold, prune_target, _ = _random_case(3)
    threshold = 0.05
    # Keep plenty of randomness: many pruned, many free positions.
    first = reallocate(kernels, masks, threshold, prune_target, seed=5, step=200)
    assert first.num_pruned.numpy().sum() > 10
    again = reallocate(kernels, masks, threshold, prune_target, seed=5, step=200)
    for a, b in zip(first.masks + first.kernels, again.masks + again.kernels):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for other in [
        reallocate(kernels, masks, threshold, prune_target, seed=5, step=201),
        reallocate(kernels, masks, threshold, prune_target, seed=6, step=200),
    ]:
        np.testing.assert_array_equal(other.num_grown.numpy(),
                                      first.num_grown.numpy())
        assert any(
            not np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(first.masks, other.masks)
        )


def test_identical_tensors_grow_differently():
    # The tensor's index is part of its seed: two identical tensors in one
    # call must not receive identical new positions.
    rng = np.random.RandomState(8)
    kernel = (rng.randn(40, 40) * 0.1).astype(np.float32)
    mask = _random_mask((40, 40), 0.8, rng).astype(np.float32)
    result = reallocate([kernel, kernel], [mask, mask], 0.05, 100, seed=0,
                        step=0)
    assert result.num_grown.numpy()[0] > 10
    np.testing.assert_array_equal(result.num_grown.numpy()[0],
                                  result.num_grown.numpy()[1])
    assert not np.array_equal(result.masks[0].numpy(), result.masks[1].numpy())


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("active", [True, False], ids=["active", "inactive"])
def test_non_finite_kernel_returns_inputs_unchanged(bad_value, active):
    rng = np.random.RandomState(9)
    kernels = [(rng.randn(6, 5) * 0.1).astype(np.float32),
               (rng.randn(3, 3, 2, 2) * 0.1).astype(np.float32)]
    masks = [_random_mask((6, 5), 0.5, rng).astype(np.float32),
             _random_mask((3, 3, 2, 2), 0.5, rng).astype(np.float32)]
    position = tuple(np.argwhere((masks[1] != 0) == active)[0])
    kernels[1][position] = bad_value
    result = reallocate(kernels, masks, threshold=0.05, prune_target=5, seed=1,
                        step=1)
    assert bool(result.is_finite.numpy()) is False
    for before, after in zip(kernels, result.kernels):
        np.testing.assert_array_equal(after.numpy(), before)  # NaN == NaN here
    for before, after in zip(masks, result.masks):
        assert after.dtype == before.dtype
        np.testing.assert_array_equal(after.numpy(), before)
    assert result.info["threshold"].numpy() == np.float32(0.05)
    np.testing.assert_array_equal(result.num_pruned.numpy(), [0, 0])
    np.testing.assert_array_equal(result.num_grown.numpy(), [0, 0])
    assert result.num_pruned.dtype == result.num_grown.dtype == tf.int64


def test_bad_input_types():
    kernel, mask = tf.zeros([2, 3]), tf.ones([2, 3])
    with pytest.raises(TypeError, match="must be lists of tensors"):
        reallocate(kernel, mask, 0.1, 1)
    with pytest.raises(TypeError, match="masks=EagerTensor"):
        reallocate([kernel], mask, 0.1, 1)


def test_bad_input_values():
    kernel, mask = tf.zeros([2, 3]), tf.ones([2, 3])
    with pytest.raises(ValueError, match="at least one sparse tensor"):
        reallocate([], [], 0.1, 1)
    with pytest.raises(ValueError, match="one mask per kernel.*2 kernels and 1 masks"):
        reallocate([kernel, kernel], [mask], 0.1, 1)
    with pytest.raises(ValueError, match=r"Kernel 1 has shape \(3, 4\).*\(4, 3\)"):
        reallocate([kernel, tf.zeros([3, 4])], [mask, tf.ones([4, 3])], 0.1, 1)


def test_tuples_are_accepted():
    kernels = (tf.constant([0.5, 0.01, 0.0]),)
    masks = (tf.constant([1.0, 1.0, 0.0]),)
    result = reallocate(kernels, masks, 0.1, 1)
    np.testing.assert_array_equal(result.masks[0].numpy(), [1, 0, 1])


def test_xla_matches_eager():
    rng = np.random.RandomState(10)
    kernels = [(rng.randn(8, 6) * 0.1).astype(np.float32),
               (rng.randn(3, 3, 2, 4) * 0.1).astype(np.float32)]
    masks = [_random_mask((8, 6), 0.7, rng).astype(np.float32),
             _random_mask((3, 3, 2, 4), 0.7, rng).astype(np.float32)]

    @tf.function(jit_compile=True)
    def compiled(kernels, masks, threshold, seed, step):
        return reallocate(kernels, masks, threshold, prune_target=10,
                          tolerance=0.1, seed=seed, step=step)

    xla = compiled(kernels, masks, tf.constant(0.05), tf.constant(7, tf.int64),
                   tf.constant(300, tf.int64))
    eager = reallocate(kernels, masks, 0.05, prune_target=10, tolerance=0.1,
                       seed=7, step=300)
    assert eager.num_pruned.numpy().sum() > 0
    for a, b in zip(xla.masks + xla.kernels, eager.masks + eager.kernels):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert xla.info["threshold"].numpy() == eager.info["threshold"].numpy()
    np.testing.assert_array_equal(xla.num_pruned.numpy(), eager.num_pruned.numpy())
    np.testing.assert_array_equal(xla.num_grown.numpy(), eager.num_grown.numpy())
    assert bool(xla.is_finite.numpy())
    check_invariants(kernels, masks, 0.05, 10, xla)


@pytest.mark.parametrize("kernel,mask,threshold,survivors,pruned", PRUNE_TABLE)
def test_prune_counts_match_masks(kernel, mask, threshold, survivors, pruned):
    result = prune(tf.constant(kernel, tf.float32), tf.constant(mask, tf.float32),
                   threshold)
    assert result.num_active.dtype == tf.int64
    assert int(result.num_active) == int(np.sum(mask))
    assert int(result.num_pruned) == int(np.sum(pruned))


def test_graph_reallocation_equals_eager():
    # In a graph, per-tensor work runs as shared per-shape functions; the
    # result must equal the eager one op for op.
    rng = np.random.RandomState(12)
    kernels, masks = [], []
    for shape in [(3, 3, 4, 8), (3, 3, 4, 8), (20, 10), (3, 3, 4, 8)]:
        mask = (rng.rand(*shape) < 0.3).astype(np.float32)
        kernels.append(tf.constant(rng.normal(0, 0.02, shape).astype(np.float32) * mask))
        masks.append(tf.constant(mask))

    def run(ks, ms):
        r = reallocate(ks, ms, 0.01, 40, seed=5, step=9)
        return r.kernels, r.masks, r.num_pruned, r.num_grown

    eager = run(kernels, masks)
    graph = tf.function(run, autograph=False)(kernels, masks)
    for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(graph)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(tf.reduce_sum(eager[2])) > 0

