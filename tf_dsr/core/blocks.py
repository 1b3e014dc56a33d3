"""Block sparsity: masks made of whole blocks, and scores per block.

A block shape `b` of the same rank as a kernel of shape `d` (every `b_i`
dividing `d_i`) tiles the kernel into a grid of `d_i / b_i` blocks per
axis. A block mask is a 0/1 tensor of the grid's shape; the elementwise
mask it stands for repeats each entry over its block. The methods run
their one algorithm on the grid: a block's score plays the part of a
weight's magnitude, a block mask the part of a mask, and counts are
counted in blocks. Pure TensorFlow, static shapes.

| here             | meaning                                              |
| ---------------- | ---------------------------------------------------- |
| `block_shape`    | extent of one block along each kernel axis           |
| grid             | the tensor of blocks, shape `d_i / b_i`              |
| `block_scores`   | mean magnitude of a block's entries, `mean |W|`       |
| `reduce_mask`    | elementwise mask -> block mask (a block is active if  |
|                  | any of its entries is)                               |
| `expand_mask`    | block mask -> elementwise mask                       |

The score is the mean, not the sum, of the magnitudes so that a block of
one entry scores `|w|` and a threshold keeps its per-weight scale: DSR's
`H` means the same with or without blocks, and its initial value 1e-3
needs no rescaling with the block size.
"""

import math
import numbers

import tensorflow as tf


def validate_block_shape(block_shape, shape, what="kernel"):
    """Returns `block_shape` as a tuple of ints tiling `shape` exactly.

    Args:
        block_shape: sequence of positive ints, one per axis of `shape`.
        shape: the kernel's static shape (sequence of ints).
        what: how to name the tensor in messages.

    Returns:
        A tuple of Python ints.

    Raises:
        TypeError: `block_shape` is not a sequence of ints.
        ValueError: its rank differs from `shape`'s, an entry is below 1,
            or an entry does not divide its axis.
    """
    shape = tuple(int(d) for d in shape)
    if isinstance(block_shape, (str, bytes)) or not hasattr(block_shape, "__iter__"):
        raise TypeError(
            f"`block_shape` must be a tuple of positive ints, one per axis of the "
            f"{what} of shape {shape}. Received: {block_shape!r}."
        )
    block_shape = tuple(block_shape)
    if any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in block_shape):
        raise TypeError(
            f"`block_shape` must hold ints. Received: {block_shape!r}."
        )
    block_shape = tuple(int(b) for b in block_shape)
    if len(block_shape) != len(shape):
        raise ValueError(
            f"`block_shape` {block_shape} has {len(block_shape)} axes but the "
            f"{what} has shape {shape} ({len(shape)} axes). Give one block "
            "extent per axis (1 where blocks do not extend)."
        )
    if any(b < 1 for b in block_shape):
        raise ValueError(
            f"`block_shape` entries must be >= 1. Received: {block_shape}."
        )
    bad = [i for i, (d, b) in enumerate(zip(shape, block_shape)) if d % b]
    if bad:
        raise ValueError(
            f"`block_shape` {block_shape} does not tile the {what} of shape "
            f"{shape}: axis {bad[0]} has {shape[bad[0]]} entries, not a "
            f"multiple of {block_shape[bad[0]]}. Blocks must cover the {what} "
            "exactly: change the layer's width to a multiple of the block, "
            "or use a block that divides it."
        )
    return block_shape


def grid_shape(shape, block_shape):
    """Shape of the grid of blocks: `shape[i] // block_shape[i]`."""
    return tuple(int(d) // int(b) for d, b in zip(shape, block_shape))


def block_size(block_shape):
    """Entries per block."""
    return math.prod(int(b) for b in block_shape)


def is_trivial(block_shape):
    """True when every block is one entry (plain unstructured sparsity)."""
    return block_shape is None or all(int(b) == 1 for b in block_shape)


def _split(x, block_shape):
    """`x` reshaped to `[g0, b0, g1, b1, ...]` (grid and block axes interleaved)."""
    interleaved = []
    for d, b in zip(x.shape, block_shape):
        interleaved += [int(d) // b, b]
    return tf.reshape(x, interleaved)


def _block_axes(block_shape):
    return list(range(1, 2 * len(block_shape), 2))


def block_scores(kernel, block_shape):
    """Mean magnitude of each block of `kernel`, float32, grid-shaped.

    Inactive entries of a trained kernel are 0, so a block's score over
    its active entries is its mean magnitude; a block of one entry scores
    `|w|`.

    Args:
        kernel: float tensor of static shape `d`.
        block_shape: tuple tiling `d` (see `validate_block_shape`).

    Returns:
        float32 tensor of shape `grid_shape(d, block_shape)`.
    """
    magnitude = tf.abs(tf.cast(kernel, tf.float32))
    if is_trivial(block_shape):
        return magnitude
    return tf.reduce_mean(_split(magnitude, block_shape), axis=_block_axes(block_shape))


def reduce_mask(mask, block_shape):
    """The block mask of an elementwise mask: 1 where any entry is non-zero.

    Args:
        mask: 0/1 tensor (any numeric or bool dtype) of static shape `d`.
        block_shape: tuple tiling `d`.

    Returns:
        Tensor of `mask`'s dtype and shape `grid_shape(d, block_shape)`.
    """
    mask = tf.convert_to_tensor(mask)
    if is_trivial(block_shape):
        return mask
    active = tf.reduce_any(
        tf.not_equal(_split(mask, block_shape), tf.zeros([], mask.dtype)),
        axis=_block_axes(block_shape),
    )
    return tf.cast(active, mask.dtype)


def expand_mask(block_mask, block_shape):
    """The elementwise mask of a block mask: each entry repeated over its block.

    Args:
        block_mask: tensor of grid shape `g`.
        block_shape: tuple of the same rank.

    Returns:
        Tensor of `block_mask`'s dtype and shape `g * block_shape`.
    """
    block_mask = tf.convert_to_tensor(block_mask)
    if is_trivial(block_shape):
        return block_mask
    grid = [int(g) for g in block_mask.shape]
    ones_between = []
    tiled = []
    for g, b in zip(grid, block_shape):
        ones_between += [g, 1]
        tiled += [g, b]
    spread = tf.broadcast_to(tf.reshape(block_mask, ones_between), tiled)
    return tf.reshape(spread, [g * b for g, b in zip(grid, block_shape)])


def is_block_mask(mask, block_shape):
    """Bool scalar: every block of `mask` is all zero or all non-zero.

    Args:
        mask: 0/1 tensor of static shape `d`.
        block_shape: tuple tiling `d`.
    """
    mask = tf.convert_to_tensor(mask)
    if is_trivial(block_shape):
        return tf.constant(True)
    active = tf.not_equal(_split(mask, block_shape), tf.zeros([], mask.dtype))
    axes = _block_axes(block_shape)
    return tf.reduce_all(
        tf.equal(tf.reduce_any(active, axis=axes), tf.reduce_all(active, axis=axes))
    )
