"""Sparse counterparts of Keras' convolutions, every rank and kind.

Each class is its Keras convolution plus the masked-kernel mechanism of
`SparseLayer`; Keras' own rank-generic base classes (`BaseConv`,
`BaseConvTranspose`, ...) supply everything else, so no rank is
special-cased here.
"""

import keras

from tf_dsr.layers.base import SparseLayer

_DOC = """`keras.layers.{keras}` whose {what} sparse from the first step.

    Computes what `keras.layers.{keras}` computes, with `{kernels}`
    multiplied by {masks} that start with exactly
    `round((1 - sparsity) * size)` ones at uniformly random positions;
    `tf_dsr.DynamicReparam` moves them during training (Mostafa & Wang,
    ICML 2019). With `sparsity=0` the output equals the Keras layer's.

    Args:
        sparsity: float in [0, 1), fraction of zeros in each masked
            kernel. Defaults to 0.9.
        seed: int or None, seeds the initial masks.{block_doc}
        *args, **kwargs: every argument of `keras.layers.{keras}`.

    Example:

    >>> layer = tf_dsr.Sparse{keras}({example_args}, sparsity=0.9)
    >>> y = layer(keras.ops.ones({example_input}))
    >>> [int(keras.ops.sum(k.mask)) for k in layer.sparse_kernels()]
    {example_counts}
    """


_BLOCK_DOC = """
        block_shape: None, or `(b_in, b_out)`: the mask is made of whole
            blocks of `b_in` consecutive input channels by `b_out`
            consecutive filters at one spatial tap of the `(..., in, out)`
            kernel. For a 1x1 convolution `(1, 4)` groups 4 output
            channels of one input channel, the blocks XNNPack's sparse
            1x1-convolution kernels take. Channels must be multiples of
            the block. Defaults to None (unstructured)."""


def _sparse_conv(keras_class, kernels, example_args, example_input, example_counts,
                 blocks=False):
    what = "kernel is" if len(kernels) == 1 else "kernels are"
    masks = "a 0/1 mask" if len(kernels) == 1 else "0/1 masks"
    cls = type(
        f"Sparse{keras_class.__name__}",
        (SparseLayer, keras_class),
        {
            "sparse_kernel_names": kernels,
            "supports_block_shape": blocks,
            "__doc__": _DOC.format(
                keras=keras_class.__name__, what=what,
                kernels="`, `".join(kernels), masks=masks,
                example_args=example_args, example_input=example_input,
                example_counts=example_counts,
                block_doc=_BLOCK_DOC if blocks else "",
            ),
            "__module__": __name__,
        },
    )
    return cls


# Example counts: round(0.1 * kernel size), computed by hand.
# Convolutions whose kernels end in (input, output) channel axes take
# `block_shape`; transposed convolutions (kernels end in (output, input))
# and depthwise ones (no input/output pair) do not.
SparseConv1D = _sparse_conv(
    keras.layers.Conv1D, ("kernel",), "16, 3", "(2, 10, 8)", "[38]",  # 3*8*16=384
    blocks=True)
SparseConv2D = _sparse_conv(
    keras.layers.Conv2D, ("kernel",), "32, 3", "(1, 28, 28, 16)", "[461]",  # 4608
    blocks=True)
SparseConv3D = _sparse_conv(
    keras.layers.Conv3D, ("kernel",), "8, 3", "(1, 6, 6, 6, 4)", "[86]",  # 864
    blocks=True)
SparseConv1DTranspose = _sparse_conv(
    keras.layers.Conv1DTranspose, ("kernel",), "16, 3", "(2, 10, 8)", "[38]")
SparseConv2DTranspose = _sparse_conv(
    keras.layers.Conv2DTranspose, ("kernel",), "16, 3", "(1, 8, 8, 8)", "[115]")  # 1152
SparseConv3DTranspose = _sparse_conv(
    keras.layers.Conv3DTranspose, ("kernel",), "8, 3", "(1, 6, 6, 6, 4)", "[86]")
SparseDepthwiseConv1D = _sparse_conv(
    keras.layers.DepthwiseConv1D, ("kernel",), "5, depth_multiplier=2",
    "(2, 10, 16)", "[16]")  # 5*16*2=160
SparseDepthwiseConv2D = _sparse_conv(
    keras.layers.DepthwiseConv2D, ("kernel",), "3, depth_multiplier=2",
    "(1, 8, 8, 16)", "[29]")  # 3*3*16*2=288
SparseSeparableConv1D = _sparse_conv(
    keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel"),
    "32, 5", "(2, 10, 16)", "[8, 51]")  # 5*16=80, 16*32=512
SparseSeparableConv2D = _sparse_conv(
    keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel"),
    "32, 3", "(1, 8, 8, 16)", "[14, 51]")  # 3*3*16=144, 512
