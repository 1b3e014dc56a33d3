"""Every method on blocks: the one place block views wrap a core call.

A kernel whose layer has a `block_shape` is handed to the method's core
as its grid of blocks: the kernel becomes its block scores (mean |W| over
each block, `tf_dsr.core.blocks.block_scores`), the mask its block mask,
a dense gradient its mean |gradient| per block. The core runs its one
algorithm unchanged on those grids, so it prunes, counts, shares out and
grows whole blocks: DSR prunes blocks whose score is below H and adapts
H on the number of blocks pruned, the total number of active blocks is
conserved exactly, SET and gradual pruning drop the lowest-scoring blocks.
Afterwards the new block masks are expanded to the kernels, and so are
the blocks the core carried over (`Update.carried`): each kernel keeps its
values, and the optimizer its state, in those blocks only; every other
active block is new, with zero weights and fresh optimizer state.

Counts a core reports (pruned, grown) are in blocks; the callbacks report
them in weights (times the block size). Every sparse kernel of a model
updated by one callback must have the same block size, so that a count
of blocks conserved across tensors is a count of weights conserved.
"""

import math

import tensorflow as tf

from tf_dsr.core import blocks


def kernel_block_shapes(pairs):
    """The full-rank block shape of each `SparseKernel` (None: unstructured)."""
    return [pair.block_shape for pair in pairs]


def check_block_sizes(names, pairs, method):
    """Raises unless every kernel has the same number of entries per block.

    Args:
        names: kernel names, for the message.
        pairs: the `SparseKernel`s a callback updates.
        method: the callback's class name.

    Returns:
        The common block size (1 without blocks).
    """
    sizes = {name: blocks.block_size(shape) if shape else 1
             for name, shape in zip(names, kernel_block_shapes(pairs))}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"{method} moves whole blocks between sparse kernels, so every kernel "
            f"needs the same block size (entries per block); received {sizes}. "
            "Give every sparse layer the same `block_shape` size (e.g. all "
            "(4, 1) or (1, 4)), or none."
        )
    return next(iter(sizes.values()))


def num_active_blocks(pair, num_active):
    """Active blocks of a kernel with `num_active` active entries."""
    shape = pair.block_shape
    return num_active if shape is None else num_active // blocks.block_size(shape)


def to_blocks(kernels, masks, gradients, block_shapes):
    """The grids a core runs on: block scores, block masks, block gradients.

    Kernels without a block shape pass through unchanged.
    """
    scores, block_masks = [], []
    for kernel, mask, shape in zip(kernels, masks, block_shapes):
        if shape is None:
            scores.append(kernel)
            block_masks.append(mask)
        else:
            scores.append(tf.cast(blocks.block_scores(kernel, shape), kernel.dtype))
            block_masks.append(blocks.reduce_mask(mask, shape))
    if gradients is not None:
        gradients = [
            g if shape is None else tf.cast(blocks.block_scores(g, shape), g.dtype)
            for g, shape in zip(gradients, block_shapes)
        ]
    return scores, block_masks, gradients


def from_blocks(update, kernels, block_shapes):
    """`update` (a core's result on the grids) expanded back to the kernels.

    Args:
        update: a `tf_dsr.core.update.Update` (the core's result on block
            grids).
        kernels: the kernels given to `to_blocks`.
        block_shapes: as given to `to_blocks`.

    Returns:
        `update` with kernel-shaped `kernels`, `masks` and `carried`, and
        counts in weights (blocks times the block size).
    """
    new_kernels, new_masks, new_carried, sizes = [], [], [], []
    for kernel, block_kernel, block_mask, block_carried, shape in zip(
        kernels, update.kernels, update.masks, update.carried, block_shapes
    ):
        if shape is None:
            new_kernels.append(block_kernel)
            new_masks.append(block_mask)
            new_carried.append(block_carried)
            sizes.append(1)
            continue
        carried = blocks.expand_mask(block_carried, shape)
        new_kernels.append(tf.where(carried, kernel, tf.zeros_like(kernel)))
        new_masks.append(blocks.expand_mask(block_mask, shape))
        new_carried.append(carried)
        sizes.append(math.prod(shape))
    sizes = tf.constant(sizes, tf.int64)
    return update._replace(
        kernels=new_kernels,
        masks=new_masks,
        carried=new_carried,
        num_pruned=update.num_pruned * sizes,
        num_grown=update.num_grown * sizes,
    )
