"""SparseMultiHeadAttention: attention whose four projections are sparse."""

import keras

from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.dense import SparseEinsumDense
from tf_dsr.layers.swap import make_sparse


class SparseMultiHeadAttention(SparseLayer, keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with sparse projections.

    Keras' attention creates its query, key, value (and gate) and output
    projections as `EinsumDense` layers inside `build`; here each becomes
    a `tf_dsr.SparseEinsumDense` before it builds, so each of their kernels
    carries a 0/1 mask and is one sparse tensor of the method. Everything
    else (every argument, the attention computation, masks, dropout) is
    Keras'.

    Args:
        num_heads: int, as in `keras.layers.MultiHeadAttention`.
        key_dim: int, as in `keras.layers.MultiHeadAttention`.
        sparsity: float in [0, 1), fraction of zeros in each projection's
            kernel. Defaults to 0.9.
        seed: int or None, seeds the masks (projection i with `seed + i`)
            and, as the Keras layer's own `seed`, the attention dropout.
        **kwargs: every other argument of `keras.layers.MultiHeadAttention`.

    Example:

    >>> layer = tf_dsr.SparseMultiHeadAttention(2, 8, sparsity=0.5, seed=0)
    >>> x = keras.ops.ones((1, 5, 16))
    >>> tuple(layer(x, x).shape)
    (1, 5, 16)
    >>> [tuple(p.kernel.shape) for _, p in tf_dsr.layers.find_sparse_kernels(layer)]
    [(16, 2, 8), (16, 2, 8), (16, 2, 8), (2, 8, 16)]
    """

    def __setattr__(self, name, value):
        # `build` assigns each projection it creates, unbuilt, before
        # building it: make it sparse then.
        if type(value) is keras.layers.EinsumDense and not value.built:
            index = self.__dict__.get("_tf_dsr_num_projections", 0)
            self.__dict__["_tf_dsr_num_projections"] = index + 1
            seed = None if self.seed is None else self.seed + index
            make_sparse(value, SparseEinsumDense, self.sparsity, seed)
        super().__setattr__(name, value)
