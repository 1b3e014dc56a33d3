"""Every method on blocks: whole blocks after every update, counts
conserved in blocks, and a hand-computed DSR table on block scores."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.training import blocks as block_views
from tf_dsr.core import reallocation
from tf_dsr.core.blocks import is_block_mask


def test_dsr_on_block_scores_by_hand():
    # Tensor A, 8x2 in blocks of (4, 1): four blocks, one per column half.
    a = np.zeros((8, 2), np.float32)
    a[0:4, 0] = [1, -1, 1, -1]            # block (0, 0): score 1.0
    a[0:4, 1] = [0.001, -0.001, 0.002, 0]  # block (0, 1): score 0.001
    a[4:8, 1] = [2, 2, -2, 2]             # block (1, 1): score 2.0; (1, 0) inactive
    mask_a = np.array([[1, 1], [0, 1]], np.float32).repeat(4, axis=0)
    # Tensor B, 4x3: one active block (score 0.5), two free.
    b = np.zeros((4, 3), np.float32)
    b[:, 0] = 0.5
    mask_b = np.array([[1, 0, 0]], np.float32).repeat(4, axis=0)
    shapes = [(4, 1), (4, 1)]
    kernels = [tf.constant(a), tf.constant(b)]
    scores, block_masks, _ = block_views.to_blocks(
        kernels, [tf.constant(mask_a), tf.constant(mask_b)], None, shapes)
    np.testing.assert_allclose(scores[0], [[1.0, 0.001], [0.0, 2.0]], rtol=1e-6)
    np.testing.assert_array_equal(block_masks[0], [[1, 1], [0, 1]])
    np.testing.assert_allclose(scores[1], [[0.5, 0.0, 0.0]])

    # H = 0.01 prunes block (0, 1) of A: K = 1 block. Survivors R = (2, 1):
    # shares 2/3 and 1/3 round by largest remainder to (1, 0), so A regrows
    # one block, in its only block free before the step, (1, 0). K equals
    # N_prune = 1, so H stays.
    core = reallocation.reallocate(scores, block_masks, threshold=0.01, prune_target=1,
                                   seed=0, step=1)
    result = block_views.from_blocks(core, kernels, shapes)
    np.testing.assert_array_equal(result.num_pruned, [4, 0])  # in weights
    np.testing.assert_array_equal(result.num_grown, [4, 0])
    np.testing.assert_array_equal(result.masks[0],
                                  np.array([[1, 0], [1, 1]], np.float32).repeat(4, axis=0))
    expected_a = a.copy()
    expected_a[0:4, 1] = 0  # pruned block zeroed; the regrown block starts at 0
    np.testing.assert_array_equal(result.kernels[0], expected_a)
    np.testing.assert_array_equal(result.masks[1], mask_b)
    np.testing.assert_array_equal(result.kernels[1], b)
    assert float(core.info["threshold"]) == pytest.approx(0.01)


def _block_model(sparsity, block_shape=(4, 1), kind="dense"):
    if kind == "dense":
        layers = [
            tf_dsr.SparseDense(32, sparsity=sparsity, block_shape=block_shape, seed=1),
            tf_dsr.SparseDense(12, sparsity=sparsity, block_shape=block_shape, seed=2),
        ]
    elif kind == "einsum":  # attention-style projections: (16) -> (4 heads, 8) -> (12)
        layers = [
            tf_dsr.SparseEinsumDense("ac,cde->ade", (4, 8), sparsity=sparsity,
                                     block_shape=block_shape, seed=1),
            tf_dsr.SparseEinsumDense("acd,cde->ae", (12,), sparsity=sparsity,
                                     block_shape=block_shape, seed=2),
        ]
    else:  # a language model's tied token table: lookup, then logits
        tokens = keras.Input((2,), dtype="int32")
        table = tf_dsr.SparseReversibleEmbedding(12, 16, sparsity=sparsity,
                                                 block_shape=block_shape, seed=1)
        hidden = tf_dsr.SparseDense(16, sparsity=sparsity, block_shape=block_shape,
                                    seed=2)(table(tokens))
        model = keras.Model(tokens, keras.layers.Flatten()(table(hidden, reverse=True)))
    if kind != "tied-table":
        model = keras.Sequential([keras.Input((16,)), *layers])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


def _data(kind, rng):
    x = (rng.integers(0, 12, (96, 2)) if kind == "tied-table"
         else rng.normal(size=(96, 16)))
    return x, rng.normal(size=(96, 24 if kind == "tied-table" else 12))


METHODS = {
    "dsr": (0.75, lambda: tf_dsr.DynamicReparam(prune_target=0.2, period=1, seed=0)),
    "set": (0.75, lambda: tf_dsr.SET(prune_fraction=0.25, period=1, seed=0)),
    "gradual": (0.0, lambda: tf_dsr.GradualPruning(
        final_sparsity=0.75, begin_step=0, end_step=8, period=1, seed=0)),
}


@pytest.mark.parametrize("kind", ["dense", "einsum", "tied-table"])
@pytest.mark.parametrize("block_shape", [(4, 1), (2, 2)])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_mask_is_whole_blocks_after_every_update(method, block_shape, kind):
    sparsity, make = METHODS[method]
    model = _block_model(sparsity, block_shape, kind)
    callback = make()
    callback.set_model(model)
    pairs = [pair for _, pair in tf_dsr.layers.find_sparse_kernels(model)]
    size = block_shape[0] * block_shape[1]
    rng = np.random.default_rng(0)
    num_active = [int(p.mask.numpy().sum()) for p in pairs]
    for step in range(1, 9):
        for pair in pairs:  # training moves the active weights
            noise = rng.normal(0, 0.05, pair.kernel.shape).astype("float32")
            pair.kernel.assign(pair.masked + noise * pair.mask.numpy())
        report = callback.reallocate(step)
        for pair in pairs:
            assert bool(is_block_mask(pair.mask, pair.block_shape))
            kernel, mask = pair.kernel.numpy(), pair.mask.numpy()
            assert np.all(kernel[mask == 0] == 0)
        assert all(n % size == 0 for n in report.num_pruned.values())
        assert all(n % size == 0 for n in report.num_grown.values())
        now = [int(p.mask.numpy().sum()) for p in pairs]
        if method == "dsr":
            assert sum(now) == sum(num_active)  # conserved across tensors, in blocks
        if method == "set":
            assert now == num_active  # conserved per tensor
    if method == "gradual":
        assert sum(int(p.mask.numpy().sum()) for p in pairs) == size * sum(
            round(0.25 * p.size / size) for p in pairs)


def test_dsr_prunes_in_blocks_and_adapts_on_block_counts():
    model = _block_model(0.75)
    callback = tf_dsr.DynamicReparam(prune_target=3, period=1, seed=0,
                                     initial_threshold=10.0)  # prunes every block
    callback.set_model(model)
    report = callback.reallocate(1)
    # 32 + 24 active blocks; each layer keeps its largest block: 54 pruned,
    # far above N_prune = 3 blocks, so H halves.
    assert report.total_pruned == 4 * 54
    assert report.info["threshold"] == pytest.approx(5.0)


def test_an_int_prune_target_at_or_above_the_active_blocks_is_refused():
    model = _block_model(0.75)  # 32 + 24 = 56 active blocks
    with pytest.raises(ValueError, match="56 active"):
        tf_dsr.DynamicReparam(prune_target=56, period=1).set_model(model)


def test_mixed_block_sizes_are_refused():
    model = keras.Sequential([
        keras.Input((16,)),
        tf_dsr.SparseDense(32, sparsity=0.5, block_shape=(4, 1)),
        tf_dsr.SparseDense(12, sparsity=0.5),
    ])
    with pytest.raises(ValueError, match="same block size"):
        tf_dsr.DynamicReparam(prune_target=0.1, period=1).set_model(model)


def test_non_finite_kernel_skips_and_keeps_blocks():
    model = _block_model(0.75)
    callback = tf_dsr.DynamicReparam(prune_target=0.2, period=1, seed=0)
    callback.set_model(model)
    pair = tf_dsr.layers.find_sparse_kernels(model)[0][1]
    before = pair.mask.numpy().copy()
    kernel = pair.kernel.numpy()
    kernel[np.argmax(before.reshape(-1))] = np.nan
    pair.kernel.assign(kernel.reshape(pair.kernel.shape))
    with pytest.warns(RuntimeWarning, match="NaN or Inf"):
        report = callback.reallocate(1)
    assert report.skipped
    np.testing.assert_array_equal(pair.mask.numpy(), before)


@pytest.mark.parametrize("make", [
    lambda: tf_dsr.RigL(drop_fraction=0.5, period=2, end_step=12, seed=0),
    # H starts near the block scores (about 0.1-0.3 here), so blocks move.
    lambda: tf_dsr.DynamicReparam(prune_target=0.2, period=2, growth="gradient", seed=0,
                                  initial_threshold=0.2),
], ids=["rigl", "dsr-gradient-growth"])
@pytest.mark.parametrize("kind", ["dense", "einsum", "tied-table"])
def test_gradient_growth_moves_whole_blocks(make, kind):
    # Dense gradients per block (mean |dL/dW|) rank the blocks to grow.
    keras.utils.set_random_seed(0)
    model = _block_model(0.75, kind=kind)
    callback = make()
    x, y = _data(kind, np.random.default_rng(0))
    pairs = [pair for _, pair in tf_dsr.layers.find_sparse_kernels(model)]
    before = [int(p.mask.numpy().sum()) for p in pairs]
    initial = [p.mask.numpy().copy() for p in pairs]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert int(callback.state.num_reallocations.numpy()) >= 4
    for pair in pairs:
        assert bool(is_block_mask(pair.mask, pair.block_shape))
        assert np.all(pair.kernel.numpy()[pair.mask.numpy() == 0] == 0)
    now = [int(p.mask.numpy().sum()) for p in pairs]
    assert sum(now) == sum(before)
    if isinstance(callback, tf_dsr.RigL):
        assert now == before  # RigL keeps each layer's budget
    moved = [not np.array_equal(p.mask.numpy(), m) for p, m in zip(pairs, initial)]
    assert any(moved)
    if kind == "tied-table":  # the token table's own blocks moved
        assert moved[[p.attribute for p in pairs].index("embeddings")]
