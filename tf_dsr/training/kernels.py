"""The sparse kernels a method updates, found once per model and checked.

`find_method_kernels` finds them (refusing unbuilt layers and models with
none), and `BinaryMaskCheck` refuses masks holding anything but 0 and 1
with one traced reduction, so the check costs one host read per call.
"""

import tensorflow as tf

from tf_dsr.counting import num_active
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import walk_layers
from tf_dsr.training import blocks as block_views


def find_method_kernels(model, owner):
    """`(names, kernels, num_active_blocks)` of `model`'s sparse kernels.

    Args:
        model: the model a method is given.
        owner: the method's class name, for messages.

    Raises:
        ValueError: a sparse layer is not built, the model has no sparse
            layer, or a kernel is not whole blocks of its block shape.
    """
    unbuilt = [layer.name for layer in walk_layers(model)
               if isinstance(layer, SparseLayer) and not layer.built]
    if unbuilt:
        raise ValueError(
            f"Model '{model.name}' has unbuilt sparse layers {unbuilt}; "
            "build the model (call it once or give it an Input) before "
            "training."
        )
    found = find_sparse_kernels(model)
    if not found:
        raise ValueError(
            f"{owner} found no tf_dsr sparse layer in model "
            f"'{model.name}'. Build the model with tf_dsr's sparse layers "
            "(tf_dsr.SparseDense, tf_dsr.SparseConv2D, ...), or convert "
            "it with tf_dsr.sparsify()."
        )
    names = [name for name, _ in found]
    kernels = [pair for _, pair in found]
    block_views.check_block_sizes(names, kernels, owner)
    # Methods count in blocks where kernels have a block shape.
    num_active_blocks = sum(
        block_views.num_active_blocks(pair, num_active(pair.mask)) for pair in kernels)
    return names, kernels, num_active_blocks


class BinaryMaskCheck:
    """Refuses masks holding a value other than 0 and 1.

    Args:
        names: the kernels' names, for messages.
        kernels: their `SparseKernel`s.
    """

    def __init__(self, names, kernels):
        self._names, self._kernels = names, kernels
        self._check = tf.function(
            lambda: tf.stack([
                tf.reduce_all((pair.mask.value == 0) | (pair.mask.value == 1))
                for pair in kernels
            ]),
            autograph=False,
        )

    def __call__(self, where):
        """Raises `ValueError` (naming `where`) before anything changes if a
        mask is not 0/1."""
        binary = self._check().numpy()
        if not binary.all():
            check_masks(
                [(name, pair) for name, pair, ok in zip(self._names, self._kernels, binary)
                 if not ok],
                where,
            )
