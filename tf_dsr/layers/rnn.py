"""Sparse recurrent cells and layers: masks on `kernel` and `recurrent_kernel`.

The cells are their Keras cells plus the masked-kernel mechanism of
`SparseLayer`. A Keras recurrent layer (`keras.layers.LSTM`, ...) creates
its own cell inside its constructor from its arguments, so the sparse
layer lets Keras do exactly that and then turns the new, still unbuilt
cell into the sparse cell class. The two kernels of a cell are two
sparse tensors of the method's pool: DSR moves weights between a layer's
input and recurrent kernels as between any two layers.
"""

import keras

from tf_dsr.gradient_hooks import computed_value
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.reading import kernels_read_from
from tf_dsr.layers.reading import reads_given_kernels
from tf_dsr.layers.swap import make_sparse

_KERNELS = ("kernel", "recurrent_kernel")


_CELL_DOC = """`keras.layers.{keras}` with masks on both of its kernels.

    Args:
        units: int, as in `keras.layers.{keras}`.
        sparsity: float in [0, 1), fraction of zeros in `kernel` and in
            `recurrent_kernel`. Defaults to 0.9.
        seed: int or None, seeds the masks and the cell's dropout.
        **kwargs: every other argument of `keras.layers.{keras}`.

    Example:

    >>> layer = keras.layers.RNN(tf_dsr.Sparse{keras}(8, sparsity=0.5))
    >>> y = layer(keras.ops.ones((2, 5, 4)))
    >>> [int(keras.ops.sum(k.mask)) for k in layer.cell.sparse_kernels()]
    {example_counts}
    """


def _sparse_cell(keras_class, example_counts):
    cls = type(
        f"Sparse{keras_class.__name__}",
        (SparseLayer, keras_class),
        {
            "sparse_kernel_names": _KERNELS,
            "__doc__": _CELL_DOC.format(
                keras=keras_class.__name__, example_counts=example_counts),
            "__module__": __name__,
        },
    )
    return cls


# Example counts: half of 4 x (g * 8) and of 8 x (g * 8), g gates.
SparseSimpleRNNCell = _sparse_cell(keras.layers.SimpleRNNCell, "[16, 32]")
SparseGRUCell = _sparse_cell(keras.layers.GRUCell, "[48, 96]")
SparseLSTMCell = _sparse_cell(keras.layers.LSTMCell, "[64, 128]")


class _SparseRecurrent(SparseLayer):
    """A Keras recurrent layer whose cell is the sparse cell `cell_class`."""

    cell_class = None

    def __init__(self, *args, sparsity=0.9, seed=None, **kwargs):
        super().__init__(*args, sparsity=sparsity, seed=seed, **kwargs)
        # The cell took the layer's `seed` (dropout) from Keras; it seeds the
        # cell's masks too.
        make_sparse(self.cell, self.cell_class, self.sparsity, None)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        cell = self.cell
        if reads_given_kernels(cell):
            # Kernels given from outside (`tf_dsr.export`): use them.
            masked = ()
        else:
            # Keras' cell reads its kernels at every time step: compute each
            # `kernel * mask` once per call and let the cell read that.
            masked = [(pair, computed_value(pair)) for pair in cell.sparse_kernels()]
        with kernels_read_from(masked):
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )


_LAYER_DOC = """`keras.layers.{keras}` whose cell is a `tf_dsr.Sparse{keras}Cell`.

    Every argument of `keras.layers.{keras}` works as in Keras
    (`return_sequences`, `return_state`, `go_backwards`, `stateful`,
    masking of padded steps, inside `keras.layers.Bidirectional`); the
    cell's `kernel` and `recurrent_kernel` carry 0/1 masks.

    Args:
        units: int, as in `keras.layers.{keras}`.
        sparsity: float in [0, 1), fraction of zeros in each kernel.
            Defaults to 0.9.
        seed: int or None, seeds the masks and the dropout (the Keras
            layer's own `seed`).
        **kwargs: every other argument of `keras.layers.{keras}`.

    Example:

    >>> layer = keras.layers.Bidirectional(
    ...     tf_dsr.Sparse{keras}(8, sparsity=0.5, return_sequences=True))
    >>> y = layer(keras.ops.ones((2, 5, 4)))
    >>> tuple(y.shape)
    (2, 5, 16)
    """


def _sparse_recurrent(keras_class, cell_class):
    cls = type(
        f"Sparse{keras_class.__name__}",
        (_SparseRecurrent, keras_class),
        {
            "cell_class": cell_class,
            "__doc__": _LAYER_DOC.format(keras=keras_class.__name__),
            "__module__": __name__,
        },
    )
    return cls


SparseSimpleRNN = _sparse_recurrent(keras.layers.SimpleRNN, SparseSimpleRNNCell)
SparseGRU = _sparse_recurrent(keras.layers.GRU, SparseGRUCell)
SparseLSTM = _sparse_recurrent(keras.layers.LSTM, SparseLSTMCell)
