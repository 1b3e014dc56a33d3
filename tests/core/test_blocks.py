"""Block helpers: hand-computed tables, round trips, refusals."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core import blocks

KERNEL = np.array([
    [1.0, -2.0, 0.0, 0.0],
    [3.0, 0.0, 0.0, 0.5],
    [0.0, 0.0, -4.0, 4.0],
    [0.0, 0.0, 0.0, 0.0],
], np.float32)


def test_block_scores_are_mean_magnitudes_by_hand():
    # 2x2 blocks: [[1,-2],[3,0]] -> 6/4; [[0,0],[0,.5]] -> .125;
    # [[0,0],[0,0]] -> 0; [[-4,4],[0,0]] -> 2.
    scores = blocks.block_scores(KERNEL, (2, 2)).numpy()
    np.testing.assert_allclose(scores, [[1.5, 0.125], [0.0, 2.0]])
    # 1x2 blocks (rows of two): means of |pairs|.
    np.testing.assert_allclose(
        blocks.block_scores(KERNEL, (1, 2)).numpy(),
        [[1.5, 0.0], [1.5, 0.25], [0.0, 4.0], [0.0, 0.0]])


def test_one_entry_blocks_score_the_magnitude():
    np.testing.assert_array_equal(blocks.block_scores(KERNEL, (1, 1)), np.abs(KERNEL))


def test_reduce_and_expand_by_hand():
    mask = (KERNEL != 0).astype(np.float32)
    np.testing.assert_array_equal(blocks.reduce_mask(mask, (2, 2)), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(blocks.reduce_mask(mask, (4, 1)), [[1, 1, 1, 1]])
    expanded = blocks.expand_mask(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), (2, 2))
    np.testing.assert_array_equal(expanded, [[1, 1, 0, 0], [1, 1, 0, 0],
                                             [0, 0, 1, 1], [0, 0, 1, 1]])
    assert expanded.dtype == tf.float32


@pytest.mark.parametrize("shape,block", [((8, 6), (4, 1)), ((1, 1, 8, 12), (1, 1, 1, 4)),
                                         ((3, 3, 4, 8), (1, 1, 2, 2)), ((6,), (3,))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expand_then_reduce_round_trips_and_is_whole_blocks(shape, block, seed):
    grid = blocks.grid_shape(shape, block)
    block_mask = (np.random.default_rng(seed).random(grid) < 0.4).astype(np.float32)
    block_mask.reshape(-1)[seed % block_mask.size] = 1.0  # at least one active block
    mask = blocks.expand_mask(block_mask, block)
    assert tuple(mask.shape) == shape
    assert float(tf.reduce_sum(mask)) == block_mask.sum() * blocks.block_size(block)
    np.testing.assert_array_equal(blocks.reduce_mask(mask, block), block_mask)
    assert bool(blocks.is_block_mask(mask, block))
    broken = mask.numpy().reshape(-1)
    broken[np.argmax(broken)] = 0.0  # an active block loses one entry
    if blocks.block_size(block) > 1:
        assert not bool(blocks.is_block_mask(broken.reshape(shape), block))


def test_not_whole_blocks_is_detected_by_hand():
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    assert not bool(blocks.is_block_mask(mask, (2, 1)))
    assert bool(blocks.is_block_mask(mask, (1, 1)))
    assert bool(blocks.is_block_mask(mask[:1], (1, 2)))


def test_helpers_compile_in_a_graph():
    f = tf.function(lambda k: blocks.expand_mask(blocks.reduce_mask(
        tf.cast(k != 0, tf.float32), (2, 2)), (2, 2)))
    np.testing.assert_array_equal(f(KERNEL), blocks.expand_mask([[1., 1.], [0., 1.]], (2, 2)))


@pytest.mark.parametrize("block,error,match", [
    ((3, 1), ValueError, "not a multiple of 3"),
    ((4,), ValueError, "1 axes"),
    ((0, 1), ValueError, ">= 1"),
    ("4x1", TypeError, "tuple of positive ints"),
    ((4.0, 1), TypeError, "ints"),
])
def test_bad_block_shapes_are_refused(block, error, match):
    with pytest.raises(error, match=match):
        blocks.validate_block_shape(block, (8, 4))
