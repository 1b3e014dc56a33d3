"""Per-layer and global sparsity of a model's sparse kernels."""

from typing import NamedTuple

import keras
import numpy as np

from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels


class LayerSparsity(NamedTuple):
    name: str
    shape: tuple
    num_weights: int
    num_active: int

    @property
    def sparsity(self):
        return 1.0 - self.num_active / self.num_weights


class SparsitySummary(NamedTuple):
    """Per-layer rows plus global totals; `str()` renders a table."""

    layers: list

    @property
    def num_weights(self):
        return sum(row.num_weights for row in self.layers)

    @property
    def num_active(self):
        return sum(row.num_active for row in self.layers)

    @property
    def sparsity(self):
        return 1.0 - self.num_active / self.num_weights if self.num_weights else 0.0

    def __str__(self):
        header = ("layer", "shape", "weights", "active", "sparsity")
        rows = [
            (r.name, "x".join(map(str, r.shape)), str(r.num_weights),
             str(r.num_active), f"{r.sparsity:.4f}")
            for r in self.layers
        ]
        rows.append(("total", "", str(self.num_weights), str(self.num_active),
                     f"{self.sparsity:.4f}"))
        widths = [max(len(row[i]) for row in [header] + rows) for i in range(5)]
        line = lambda row: "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )
        rule = "-" * len(line(header))
        return "\n".join([line(header), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1])])


def sparsity_summary(model):
    """Counts total and active weights of every sparse kernel in `model`.

    One row per kernel: a layer with several masked kernels (a recurrent
    cell's `kernel` and `recurrent_kernel`, a separable convolution's two)
    has one row for each, named by the kernel's path.

    Args:
        model: a built Keras model (or layer) containing tf_dsr sparse layers.

    Returns:
        A `SparsitySummary`: `.layers` rows (name, shape, num_weights,
        num_active, sparsity) and global `.num_weights`, `.num_active`,
        `.sparsity`; `print()` it for a table.

    Example:

    >>> print(tf_dsr.sparsity_summary(model))
    layer      shape    weights  active  sparsity
    ---------------------------------------------
    dense_300  64x300     19200    1920    0.9000
    dense_100  300x100    30000    3000    0.9000
    logits     100x10      1000     100    0.9000
    ---------------------------------------------
    total                 50200    5020    0.9000
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "`tf_dsr.sparsity_summary` expects a Keras model or layer. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    found = find_sparse_kernels(model)
    check_masks(found, "`tf_dsr.sparsity_summary`")
    rows = []
    for name, pair in found:
        mask = np.asarray(pair.mask.numpy())
        rows.append(LayerSparsity(name, tuple(mask.shape), int(mask.size),
                                  int(np.count_nonzero(mask))))
    return SparsitySummary(rows)
