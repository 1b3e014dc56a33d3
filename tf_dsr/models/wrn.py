"""Wide residual networks (WRN-d-k) with the paper's dense/sparse split."""

import numbers

import keras

from tf_dsr.layers import SparseConv2D
from tf_dsr.models.common import batch_norm


def wide_resnet(depth=28, width=2, input_shape=(32, 32, 3), num_classes=10,
                sparsity=0.9, seed=None):
    """WRN-`depth`-`width` with the 3x3 convs of its residual blocks sparse.

    Pre-activation wide residual network (Zagoruyko & Komodakis, 2016):
    a 3x3 stem conv with 16 filters, three groups of `(depth - 4) / 6`
    blocks (BN-ReLU-conv3x3, BN-ReLU-conv3x3) with `16k`, `32k`, `64k`
    filters, strides 1, 2, 2, then BN-ReLU, global average pooling and a
    Dense classifier. As in Mostafa & Wang (ICML 2019, DSR_SPEC section 5),
    the `2 (depth - 4) / 3` convs in residual blocks are sparse (1,451,520
    weights for WRN-28-2); the stem conv, the 1x1 shortcut convs, the final
    Dense layer and BatchNorm stay dense.

    Args:
        depth: int, `6n + 4` for n >= 1. Defaults to 28.
        width: int >= 1, k. Defaults to 2.
        input_shape: tuple `(rows, cols, channels)`. Defaults to
            `(32, 32, 3)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), initial sparsity of every sparse conv.
        seed: int or None; the i-th sparse conv uses `seed + i`.

    Returns:
        A functional `keras.Model` producing logits.

    Raises:
        ValueError: `depth` is not `6n + 4` or `width` is not a positive int.

    Example:

    >>> model = tf_dsr.models.wrn.wide_resnet(28, 2, sparsity=0.9)
    """
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {value!r}.")
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(
            f"`depth` must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...). Received: {depth}."
        )
    blocks_per_group = (depth - 4) // 6
    counter = iter(range(10**9))

    def sparse_conv(filters, strides, name):
        i = next(counter)
        return SparseConv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            kernel_initializer="he_normal", sparsity=sparsity,
            seed=None if seed is None else seed + i, name=name,
        )

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name="stem_conv")(inputs)
    channels = 16
    for group, (filters, strides) in enumerate(
        zip((16 * width, 32 * width, 64 * width), (1, 2, 2)), start=1
    ):
        for block in range(blocks_per_group):
            prefix = f"group{group}_block{block + 1}"
            block_strides = strides if block == 0 else 1
            pre = keras.layers.Activation("relu")(batch_norm(f"{prefix}_bn1")(x))
            if channels != filters or block_strides != 1:
                shortcut = keras.layers.Conv2D(
                    filters, 1, strides=block_strides, use_bias=False,
                    kernel_initializer="he_normal", name=f"{prefix}_shortcut",
                )(pre)
            else:
                shortcut = x
            y = sparse_conv(filters, block_strides, f"{prefix}_conv1")(pre)
            y = keras.layers.Activation("relu")(batch_norm(f"{prefix}_bn2")(y))
            y = sparse_conv(filters, 1, f"{prefix}_conv2")(y)
            x = keras.layers.Add()([shortcut, y])
            channels = filters
    x = keras.layers.Activation("relu")(batch_norm("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}")
