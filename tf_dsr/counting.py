"""Counting weights: how many a model has, how many are active. One home.

Reporting (`sparsity_summary`, `SparsityHistory`), the callbacks, the
model builders (`num_nonzero_params`, thin dense widths), `tf-dsr
compare`, `sparsify`'s report and the reproduction scripts all count
here, so that "active", "sparse share" and "parameters" mean one thing
everywhere. An *active* weight is a position whose mask is 1; counts are exact integers read from the masks, never sums of
floats. The in-graph count of the reallocation core
(`tf_dsr.core.counts.count_active`) is the same fact on tensors.
"""

from typing import NamedTuple

import keras
import numpy as np

from tf_dsr.layers.find import find_dense_kernels
from tf_dsr.layers.find import find_sparse_kernels


def num_active(mask):
    """Exact number of ones in a 0/1 mask (variable or tensor), as an int."""
    return int(np.count_nonzero(keras.ops.convert_to_numpy(mask)))


def num_weights(variable):
    """Number of entries of a variable or tensor, as an int."""
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size


class KernelCount(NamedTuple):
    """Counts of one kernel.

    Attributes:
        name: the kernel's name (`tf_dsr.layers.find_sparse_kernels`).
        shape: tuple, the kernel's shape.
        num_weights: int, its number of entries.
        num_active: int, entries whose mask is 1 (all of a dense kernel).
    """

    name: str
    shape: tuple
    num_weights: int
    num_active: int

    @property
    def sparsity(self):
        return 1.0 - self.num_active / self.num_weights


def kernel_counts(model, dense=False):
    """Per-kernel counts of `model`'s sparse kernels (and dense ones).

    Args:
        model: a built Keras model or layer.
        dense: bool, also list the dense kernels (trainable weights of
            rank >= 2 without a mask; `find_dense_kernels`), with every
            entry active. Defaults to False.

    Returns:
        A list of `KernelCount`: the sparse kernels in the order of
        `find_sparse_kernels`, then (with `dense=True`) the dense kernels.
    """
    counts = [
        KernelCount(name, tuple(int(d) for d in pair.mask.shape), num_weights(pair.mask),
                    num_active(pair.mask))
        for name, pair in find_sparse_kernels(model)
    ]
    if dense:
        for name, _, variable in find_dense_kernels(model):
            size = num_weights(variable)
            counts.append(
                KernelCount(name, tuple(int(d) for d in variable.shape), size, size))
    return counts


class ParameterCounts(NamedTuple):
    """How a model's parameters split between sparse kernels and the rest.

    Attributes:
        num_sparse_weights: entries of the trainable sparse kernels.
        num_active: their active entries (mask 1).
        num_dense_trainable: every other trainable entry (dense kernels,
            biases, normalization parameters, embeddings kept dense).
        num_non_trainable: non-trainable entries (masks, BatchNorm
            statistics, tf_dsr's state).
    """

    num_sparse_weights: int
    num_active: int
    num_dense_trainable: int
    num_non_trainable: int

    @property
    def num_trainable(self):
        """All trainable entries, sparse kernels at full size."""
        return self.num_sparse_weights + self.num_dense_trainable

    @property
    def num_params(self):
        """Trainable parameters not masked to zero: the paper's count."""
        return self.num_active + self.num_dense_trainable

    @property
    def sparse_share(self):
        """Fraction of the trainable entries that sit in sparse kernels."""
        return self.num_sparse_weights / self.num_trainable if self.num_trainable else 0.0


def parameter_counts(model):
    """Counts the trainable parameters of `model` in and out of sparse kernels.

    Args:
        model: a built Keras model or layer.

    Returns:
        A `ParameterCounts`.

    Example:

    >>> counts = tf_dsr.counting.parameter_counts(tf_dsr.models.lenet_300_100())
    >>> counts.num_params, round(counts.sparse_share, 3)
    (27830, 0.995)
    """
    masks = {id(pair.kernel): pair.mask for _, pair in find_sparse_kernels(model)}
    sparse = active = dense = 0
    for variable in model.trainable_weights:
        mask = masks.get(id(variable))
        if mask is None:
            dense += num_weights(variable)
        else:
            sparse += num_weights(variable)
            active += num_active(mask)
    non_trainable = sum(num_weights(v) for v in model.non_trainable_weights)
    return ParameterCounts(sparse, active, dense, non_trainable)


def num_nonzero_params(model):
    """Trainable parameters of `model` that are not masked to zero.

    Counts the active (mask 1) positions of every sparse kernel plus the
    full size of every other trainable weight (dense kernels, biases,
    BatchNorm gamma and beta), whatever their current values. For a dense
    model it equals the trainable parameter count.

    Args:
        model: a built Keras model or layer.

    Returns:
        An int.

    Example:

    >>> tf_dsr.models.num_nonzero_params(tf_dsr.models.lenet_300_100())
    27830
    """
    return parameter_counts(model).num_params
