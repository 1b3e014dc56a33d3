"""Sparse counterparts of Keras' Dense, EinsumDense, Embedding and ReversibleEmbedding."""

import keras

from tf_dsr._keras_internals import set_keras_mask
from tf_dsr.gradient_hooks import computed_rows
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.base import masked_value
from tf_dsr.layers.reading import given_lookup_table
from tf_dsr.layers.reading import reads_given_kernels


class SparseDense(SparseLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is sparse from the first step.

    Computes `activation(inputs @ (kernel * mask) + bias)`. The mask starts
    with exactly `round((1 - sparsity) * kernel.size)` ones at uniformly
    random positions; `tf_dsr.DynamicReparam` then moves them during
    training (Mostafa & Wang, ICML 2019). With `sparsity=0` the layer
    computes exactly what `keras.layers.Dense` computes with the same kernel.

    Args:
        units: positive int, dimensionality of the output space.
        sparsity: float in [0, 1), fraction of zeros in the kernel.
            Defaults to 0.9.
        seed: int or None, seeds the initial mask.
        block_shape: None, or `(b_in, b_out)`: the mask is made of whole
            blocks of `b_in` consecutive inputs by `b_out` consecutive
            units of the `(input_dim, units)` kernel, with exactly
            `round((1 - sparsity) * num_blocks)` active blocks.
            `(4, 1)` is TFLite's 1x4 block (its weights are `(units,
            input_dim)`), the one its sparse FULLY_CONNECTED kernel runs.
            Both dimensions must be multiples of the block. Defaults to
            None (unstructured).
        **kwargs: every other argument of `keras.layers.Dense` (LoRA and
            quantization excepted: apply them after `tf_dsr.strip`).

    Input shape:
        N-D tensor `(batch_size, ..., input_dim)`.

    Output shape:
        N-D tensor `(batch_size, ..., units)`.

    Example:

    >>> layer = tf_dsr.SparseDense(300, sparsity=0.99, activation="relu")
    >>> y = layer(keras.ops.ones((2, 784)))
    >>> int(keras.ops.sum(layer.mask))  # round(0.01 * 784 * 300)
    2352
    >>> blocked = tf_dsr.SparseDense(300, sparsity=0.9, block_shape=(4, 1))
    >>> y = blocked(keras.ops.ones((2, 784)))
    >>> int(keras.ops.sum(blocked.mask)) // 4  # round(0.1 * 196 * 300) blocks
    5880
    """

    sparse_kernel_names = ("kernel",)
    supports_block_shape = True


class SparseEinsumDense(SparseLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` whose kernel is sparse from the first step.

    Any equation, `bias_axes` and partial `output_shape` of EinsumDense;
    the kernel (of whatever rank the equation gives it) carries a 0/1
    mask. It is the projection `keras.layers.MultiHeadAttention` and
    keras-hub transformer blocks are made of.

    Args:
        equation: str, the einsum equation, as in `keras.layers.EinsumDense`.
        output_shape: int or tuple, the output shape without the batch
            axis (None for dimensions to infer).
        sparsity: float in [0, 1), fraction of zeros in the kernel.
            Defaults to 0.9.
        seed: int or None, seeds the initial mask.
        block_shape: None, or `(b_in, b_out)`: the mask is made of whole
            blocks of `b_in` consecutive entries along the kernel's
            innermost input axis (the kernel axis of the equation's input
            term that comes last there) by `b_out` along its innermost
            output axis. TFLite runs an EinsumDense as a FULLY_CONNECTED
            whose `[output, input]` weight flattens those axes, so `(4, 1)`
            gives its sparse kernel's 1x4 blocks. A kernel without input
            or output axes, or with an axis in both terms (a batched
            matmul, which TFLite has no sparse kernel for), refuses blocks.
            Defaults to None (unstructured).
        **kwargs: every other argument of `keras.layers.EinsumDense`.

    Example:

    >>> layer = tf_dsr.SparseEinsumDense("abc,cde->abde", (None, 4, 16), sparsity=0.5)
    >>> y = layer(keras.ops.ones((2, 3, 32)))
    >>> tuple(y.shape), int(keras.ops.sum(layer.mask))  # kernel 32x4x16
    ((2, 3, 4, 16), 1024)
    >>> blocked = tf_dsr.SparseEinsumDense(
    ...     "abc,cde->abde", (None, 4, 16), sparsity=0.5, block_shape=(4, 1))
    >>> y = blocked(keras.ops.ones((2, 3, 32)))
    >>> mask = keras.ops.convert_to_numpy(blocked.mask).reshape(8, 4, 4, 16)
    >>> bool((mask == mask[:, :1]).all())  # 4 consecutive inputs share a mask entry
    True
    """

    sparse_kernel_names = ("kernel",)
    supports_block_shape = True

    @classmethod
    def block_axes(cls, layer, attribute, rank):
        return einsum_block_axes(layer.equation, layer.name)


def einsum_block_axes(equation, layer_name="einsum_dense"):
    """`(input axis, output axis)` of an EinsumDense kernel for blocks.

    The kernel axis whose letter comes last in the input term, and the
    one whose letter comes last in the output term: the innermost input
    and output of TFLite's `[output, input]` FULLY_CONNECTED weight.

    Raises:
        ValueError: the kernel has no input or no output axis, or an axis
            in both terms (TFLite runs that as a batched matmul).
    """
    left, output = equation.replace("...", "").split("->")
    inputs, kernel = left.split(",")
    inputs_axes = [i for i, c in enumerate(kernel) if c in inputs]
    output_axes = [i for i, c in enumerate(kernel) if c in output]
    both = [kernel[i] for i in inputs_axes if i in output_axes]
    if both or not inputs_axes or not output_axes:
        why = (f"its axis '{both[0]}' is in both the input and the output (a "
               "batched matmul, which TFLite has no sparse kernel for)" if both
               else "its kernel lacks an input or an output axis")
        raise ValueError(
            f"Layer '{layer_name}' (EinsumDense, equation '{equation}') takes no "
            f"`block_shape`: {why}, so no TFLite FULLY_CONNECTED block maps onto "
            "it. Keep it unstructured (keep it out of the block-sparse layers)."
        )
    return (max(inputs_axes, key=lambda i: inputs.index(kernel[i])),
            max(output_axes, key=lambda i: output.index(kernel[i])))


class SparseEmbedding(SparseLayer, keras.layers.Embedding):
    """`keras.layers.Embedding` whose table is sparse from the first step.

    The table `embeddings` (vocabulary x output_dim) carries a 0/1 mask:
    a token's vector has zeros wherever its row of the mask is 0.
    `mask_zero` and every other Embedding argument work as in Keras.

    Args:
        input_dim: int, vocabulary size.
        output_dim: int, dimension of the embedding vectors.
        sparsity: float in [0, 1), fraction of zeros in the table.
            Defaults to 0.9.
        seed: int or None, seeds the initial mask.
        **kwargs: every other argument of `keras.layers.Embedding`.

    Input shape:
        Integer tensor `(batch_size, ...)`.

    Output shape:
        `(batch_size, ..., output_dim)`.

    Example:

    >>> layer = tf_dsr.SparseEmbedding(1000, 64, sparsity=0.9, mask_zero=True)
    >>> y = layer(keras.ops.array([[3, 7, 0]]))
    >>> int(keras.ops.sum(layer.mask))  # round(0.1 * 1000 * 64)
    6400
    """

    sparse_kernel_names = ("embeddings",)

    def call(self, inputs):
        if reads_given_kernels(self):
            # A whole table given from outside (`tf_dsr.export`): Keras'
            # own call gathers its rows.
            return super().call(inputs)
        return gathered_rows(self, inputs)


def gathered_rows(layer, inputs):
    """Rows `inputs` of a sparse table layer's `embeddings * mask`.

    Computed from the gathered rows of the table and of its mask: the
    product over the whole table would cost a pass over every row per
    step (vocabulary x width) and make the table's gradient dense.
    """
    if inputs.dtype not in ("int32", "int64"):
        inputs = keras.ops.cast(inputs, "int32")
    pair = layer.sparse_kernels()[0]
    outputs = computed_rows(
        pair,
        masked_value(
            keras.ops.take(pair.kernel, inputs, axis=0),
            keras.ops.take(pair.mask, inputs, axis=0),
        ),
        inputs,
    )
    return keras.ops.cast(outputs, layer.compute_dtype)


class SparseReversibleEmbedding(SparseLayer, keras.layers.ReversibleEmbedding):
    """`keras.layers.ReversibleEmbedding` with a sparse table.

    The token table of keras-hub's language models: the same table maps
    tokens to vectors and (with `reverse=True`) vectors to logits. The
    table carries a 0/1 mask, and so does the separate reverse table of an
    untied layer (`tie_weights=False`). Looking tokens up gathers rows of
    the table and of its mask; the reverse projection multiplies by the
    whole masked table, as the logits need every row anyway.

    Args:
        input_dim: int, vocabulary size.
        output_dim: int, dimension of the embedding vectors.
        sparsity: float in [0, 1), fraction of zeros in each table.
            Defaults to 0.9.
        seed: int or None, seeds the masks.
        block_shape: None, or `(b_in, b_out)`, blocks of the reverse
            projection (the logits matmul, the table's only use TFLite
            runs as a FULLY_CONNECTED): `b_in` consecutive entries of one
            vector (`output_dim` axis) by `b_out` consecutive tokens. The
            tied table `(input_dim, output_dim)` is TFLite's `[output,
            input]` weight as it is, so `(16, 1)` gives its sparse int8
            kernel's 1x16 blocks and `(4, 1)` its float 1x4 blocks; an
            untied layer's `reverse_embeddings` `(output_dim, input_dim)`
            takes the same blocks transposed. Defaults to None
            (unstructured).
        **kwargs: every other argument of `keras.layers.ReversibleEmbedding`.

    Example:

    >>> layer = tf_dsr.SparseReversibleEmbedding(100, 8, sparsity=0.5)
    >>> vectors = layer(keras.ops.array([[3, 7]]))
    >>> tuple(layer(vectors, reverse=True).shape), int(keras.ops.sum(layer.embeddings_mask))
    ((1, 2, 100), 400)
    >>> blocked = tf_dsr.SparseReversibleEmbedding(100, 8, sparsity=0.5, block_shape=(4, 1))
    >>> _ = blocked(keras.ops.array([[3, 7]]))
    >>> rows = keras.ops.convert_to_numpy(blocked.embeddings_mask).reshape(100, 2, 4)
    >>> bool((rows == rows[..., :1]).all())  # 4 consecutive entries of a vector
    True
    """

    sparse_kernel_names = ("embeddings", "reverse_embeddings")
    supports_block_shape = True

    @classmethod
    def block_axes(cls, layer, attribute, rank):
        # The reverse projection's input is the vector axis: axis 1 of the
        # (tokens, vector) table, axis 0 of the (vector, tokens) reverse table.
        return (1, 0) if attribute == "embeddings" else (0, 1)

    @classmethod
    def full_block_shape(cls, layer, attribute, shape, block_shape):
        vector_axis, tokens_axis = cls.block_axes(layer, attribute, len(shape))
        b_in, b_out = block_shape
        for name, block, axis, what in (("b_in", b_in, vector_axis, "output_dim, the vector"),
                                        ("b_out", b_out, tokens_axis, "input_dim, the vocabulary")):
            if shape[axis] % block:
                raise ValueError(
                    f"block_shape={tuple(block_shape)} does not tile {attribute} "
                    f"{tuple(shape)} of layer '{layer.name}': {name}={block} must divide "
                    f"{what} ({shape[axis]}). Choose a block that divides it, or "
                    "keep the layer unstructured."
                )
        return super().full_block_shape(layer, attribute, shape, block_shape)

    def call(self, inputs, reverse=False):
        table = None if reverse else given_lookup_table(self)
        if table is not None:
            # An export's own lookup table (`tf_dsr.to_tflite`), which may
            # have more rows than the vocabulary: wrap negative ids as
            # Keras' `take` does on the table itself.
            if inputs.dtype not in ("int32", "int64"):
                inputs = keras.ops.cast(inputs, "int32")
            inputs = keras.ops.where(inputs < 0, inputs + self.input_dim, inputs)
            outputs = keras.ops.cast(keras.ops.take(table, inputs, axis=0),
                                     self.compute_dtype)
        elif reverse or reads_given_kernels(self):
            return super().call(inputs, reverse=reverse)
        else:
            outputs = gathered_rows(self, inputs)
        # Keras' Embedding masks token 0 when `mask_zero`.
        mask = keras.layers.Embedding.compute_mask(self, inputs)
        if mask is not None:
            set_keras_mask(outputs, mask)
        return outputs
