"""Per-layer and global sparsity of a model's sparse kernels."""

from typing import NamedTuple

import keras

import tf_dsr.counting as counting
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels

# One row of the summary: a kernel's name, shape and counts.
LayerSparsity = counting.KernelCount


class SparsitySummary(NamedTuple):
    """Per-kernel rows plus global totals; `str()` renders a table.

    Attributes:
        layers: list of `LayerSparsity` rows (name, shape, num_weights,
            num_active, sparsity), one per sparse kernel.
        num_dense_trainable: trainable parameters outside the sparse
            kernels (dense kernels, biases, normalization, embeddings kept
            dense). Defaults to 0.
    """

    layers: list
    num_dense_trainable: int = 0

    @property
    def num_weights(self):
        return sum(row.num_weights for row in self.layers)

    @property
    def num_active(self):
        return sum(row.num_active for row in self.layers)

    @property
    def sparsity(self):
        return 1.0 - self.num_active / self.num_weights if self.num_weights else 0.0

    @property
    def num_trainable(self):
        """Trainable parameters of the model, sparse kernels at full size."""
        return self.num_weights + self.num_dense_trainable

    @property
    def sparse_share(self):
        """Fraction of the trainable parameters that sit in sparse kernels.

        The sparsity above is over the sparse kernels only; with a low
        share, most of the model is dense whatever that sparsity is.
        """
        return self.num_weights / self.num_trainable if self.num_trainable else 0.0

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
        share = (
            f"sparse kernels hold {self.sparse_share:.1%} of the {self.num_trainable:,} "
            f"trainable parameters; {self.num_dense_trainable:,} are dense"
        )
        return "\n".join(
            [line(header), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1]), share]
        )


def sparsity_summary(model):
    """Counts total and active weights of every sparse kernel in `model`.

    One row per kernel: a layer with several masked kernels (a recurrent
    cell's `kernel` and `recurrent_kernel`, a separable convolution's two)
    has one row for each, named by the kernel's path. Next to the
    sparsity of the sparse kernels, the summary gives the share of the
    model's trainable parameters that sit in them (`sparse_share`) and
    the number that do not (`num_dense_trainable`).

    Args:
        model: a built Keras model (or layer) containing tf_dsr sparse layers.

    Returns:
        A `SparsitySummary`: `.layers` rows (name, shape, num_weights,
        num_active, sparsity), global `.num_weights`, `.num_active`,
        `.sparsity`, and `.num_dense_trainable`, `.num_trainable`,
        `.sparse_share`; `print()` it for a table.

    Raises:
        TypeError: if `model` is not a Keras model or layer.

    Example:

    >>> print(tf_dsr.sparsity_summary(model))
    layer      shape    weights  active  sparsity
    ---------------------------------------------
    dense_300  64x300     19200    1920    0.9000
    dense_100  300x100    30000    3000    0.9000
    logits     100x10      1000     100    0.9000
    ---------------------------------------------
    total                 50200    5020    0.9000
    sparse kernels hold 97.6% of the 51,410 trainable parameters; 1,210 are dense
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "`tf_dsr.sparsity_summary` expects a Keras model or layer. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    check_masks(find_sparse_kernels(model), "`tf_dsr.sparsity_summary`")
    counts = counting.parameter_counts(model)
    return SparsitySummary(counting.kernel_counts(model), counts.num_dense_trainable)
