"""Giving sparse layers the kernels they compute with, for one block of code.

Inside `kernels_read_from(values)`, reading a sparse kernel attribute
(`layer.kernel`, as Keras' `call` does) returns the given value instead
of `kernel * mask`. Two users:

- recurrent layers (`tf_dsr/layers/rnn.py`) compute each masked kernel
  once per call, not once per time step, and let the cell read that;
- `tf_dsr.export` traces a model whose kernels are plain variables
  holding `kernel * mask`, so that neither masks nor raw kernels are
  captured in the artifact (and `tf_dsr.to_tflite` gives a tied token
  table's lookups a table of their own, `lookup_tables`).

The given values are per thread (two threads may trace the same layer at
once), keyed by `(id(layer), attribute)`; blocks nest, and leaving one
restores the values of the enclosing block.
"""

import contextlib
import threading

_GIVEN = threading.local()
# The key under which a layer's lookup table is given (no kernel has this name).
_LOOKUP = "<lookup table>"


def _given():
    return getattr(_GIVEN, "values", {})


@contextlib.contextmanager
def kernels_read_from(values, lookup_tables=()):
    """While active, sparse layers compute with the given kernels.

    Args:
        values: iterable of `(SparseKernel, value)` pairs; `value` is a
            tensor or variable of the kernel's shape.
        lookup_tables: iterable of `(layer, table)` pairs: a tied
            `SparseReversibleEmbedding` looks tokens up in `table` (rows
            of its table, maybe more) and projects to logits with the
            kernel in `values` (`tf_dsr.to_tflite`, see
            `tf_dsr.saving.savedmodel`). Defaults to none.

    Example:

    >>> from tf_dsr.layers.reading import kernels_read_from
    >>> layer = tf_dsr.SparseDense(2, sparsity=0.5, seed=0)
    >>> inputs = np.ones((1, 3), "float32")
    >>> _ = layer(inputs)
    >>> pair = layer.sparse_kernels()[0]
    >>> with kernels_read_from([(pair, keras.ops.zeros(pair.kernel.shape))]):
    ...     outputs = layer(inputs)  # computed with a zero kernel
    >>> keras.ops.convert_to_numpy(outputs).tolist()
    [[0.0, 0.0]]
    """
    previous = _given()
    _GIVEN.values = {
        **previous,
        **{(id(pair.layer), pair.attribute): value for pair, value in values},
        **{(id(layer), _LOOKUP): table for layer, table in lookup_tables},
    }
    try:
        yield
    finally:
        _GIVEN.values = previous


def given_kernel(layer, attribute):
    """The value `kernels_read_from` gives `layer.<attribute>`, or None."""
    return _given().get((id(layer), attribute))


def reads_given_kernels(layer):
    """True while `kernels_read_from` gives `layer` its kernels."""
    return any(key[0] == id(layer) for key in _given())


def given_lookup_table(layer):
    """The table `kernels_read_from` gives `layer`'s lookups, or None."""
    return _given().get((id(layer), _LOOKUP))
