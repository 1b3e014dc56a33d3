"""Where a sparse layer's masks live, what they are called, how they start.

A mask is a non-trainable 0/1 variable of its kernel's shape. The masks of
one layer sit in a `MaskSet`, a child of that layer; the mask of kernel
`k` is also the layer attribute `mask_attribute(k, ...)`. A new mask
holds exactly `round((1 - sparsity) * size)` ones at uniformly random
positions (counted in whole blocks for a block-sparse kernel), drawn
from a seed, as in the DSR paper (Mostafa & Wang, ICML 2019), whose
layers start at a uniform sparsity.
"""

import math

import keras
import tensorflow as tf

from tf_dsr._keras_internals import unlocked
from tf_dsr.core import blocks
from tf_dsr.core.selection import random_subset
from tf_dsr.validation import check_leaves_active
from tf_dsr.validation import num_active_at_init


class MaskSet(keras.layers.Layer):
    """The 0/1 masks of one sparse layer, a child of that layer.

    A child, not the layer's own variables, so that the layer's own entry
    in a weights file keeps the Keras layer's layout (a plain Keras layer
    loads it) and the masks sit in an entry of their own
    (`<layer>/_tf_dsr_mask_set`), which a plain layer has no attribute for
    and skips. Each mask is also an attribute, which makes it a
    `tf.train.Checkpoint` dependency.
    """

    # Not a layer of the user's model: the layer walk skips it.
    _tf_dsr_internal = True

    def __init__(self, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.built = True

    def add_mask(self, name, shape, initializer, dtype):
        with unlocked(self):
            mask = self.add_weight(
                name=name, shape=shape, initializer=initializer,
                trainable=False, dtype=dtype,
            )
            setattr(self, name, mask)
        return mask


def mask_attribute(kernel_attribute, kernel_names):
    """The attribute name of the mask of `kernel_attribute`.

    `mask` for the one kernel of a layer that has one (`SparseDense`,
    `SparseConv2D`, ...), `<kernel>_mask` otherwise.
    """
    if tuple(kernel_names) == (kernel_attribute,):
        return "mask"
    return f"{kernel_attribute}_mask"


def initial_mask(shape, block_shape, sparsity, seed, where):
    """The initializer of a new mask, after checking it keeps a weight.

    Args:
        shape: the kernel's shape.
        block_shape: None, or the kernel's full-rank block shape.
        sparsity: float in [0, 1).
        seed: a pair of ints, the stateless seed of this mask.
        where: the kernel, for the message of the check.

    Returns:
        `initializer(shape, dtype=None)` giving the 0/1 mask.

    Raises:
        ValueError: `sparsity` leaves no active weight (or block).
    """
    grid = shape if block_shape is None else blocks.grid_shape(shape, block_shape)
    check_leaves_active(sparsity, math.prod(grid), where, block_shape)
    num_active = num_active_at_init(math.prod(grid), sparsity)

    def initializer(shape, dtype=None):
        # Tensors are made here, when the initializer runs: a subclassed
        # model builds its layers in a scratch graph that is gone by then.
        # Whole blocks: the exact count is drawn on the grid of blocks.
        chosen = random_subset(
            tf.ones(grid, tf.bool), num_active, tf.constant(seed, tf.int64)
        )
        if block_shape is not None:
            chosen = blocks.expand_mask(chosen, block_shape)
        return tf.cast(chosen, dtype or "float32")

    return initializer
