"""ResNet-50 with the paper's dense/sparse split."""

import keras

from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseDense
from tf_dsr.models.common import batch_norm

# (bottleneck width, blocks, first stride) per stage; output width is 4x.
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def resnet50(input_shape=(224, 224, 3), num_classes=1000, sparsity=0.9, seed=None):
    """ResNet-50 with its 48 bottleneck convs and final Dense kernel sparse.

    The torchvision layout (He et al., 2016; stride on the 3x3 conv, "v1.5")
    that Mostafa & Wang (ICML 2019) train on ImageNet. As in their
    experiments (DSR_SPEC section 5), the three convs of each of the 16
    bottleneck blocks and the final Dense kernel are sparse (22,724,608
    weights for 1000 classes); the 7x7 stem conv, the 1x1 downsample
    convs, BatchNorm and the final Dense bias stay dense.

    Args:
        input_shape: tuple `(rows, cols, channels)`. Defaults to
            `(224, 224, 3)`.
        num_classes: int. Defaults to 1000.
        sparsity: float in [0, 1), initial sparsity of every sparse kernel.
        seed: int or None; the i-th sparse layer uses `seed + i`.

    Returns:
        A functional `keras.Model` producing logits.

    Example:

    >>> model = tf_dsr.models.resnet.resnet50(sparsity=0.8)
    """
    counter = iter(range(10**9))

    def next_seed():
        i = next(counter)
        return None if seed is None else seed + i

    def sparse_conv(filters, kernel_size, strides, name):
        return SparseConv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False,
            kernel_initializer="he_normal", sparsity=sparsity, seed=next_seed(),
            name=name,
        )

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = keras.layers.Activation("relu")(batch_norm("stem_bn")(x))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    channels = 64
    for stage, (width, num_blocks, stride) in enumerate(_STAGES, start=1):
        for block in range(num_blocks):
            prefix = f"stage{stage}_block{block + 1}"
            strides = stride if block == 0 else 1
            if channels != 4 * width or strides != 1:
                shortcut = keras.layers.Conv2D(
                    4 * width, 1, strides=strides, use_bias=False,
                    kernel_initializer="he_normal", name=f"{prefix}_downsample",
                )(x)
                shortcut = batch_norm(f"{prefix}_downsample_bn")(shortcut)
            else:
                shortcut = x
            y = sparse_conv(width, 1, 1, f"{prefix}_conv1")(x)
            y = keras.layers.Activation("relu")(batch_norm(f"{prefix}_bn1")(y))
            y = sparse_conv(width, 3, strides, f"{prefix}_conv2")(y)
            y = keras.layers.Activation("relu")(batch_norm(f"{prefix}_bn2")(y))
            y = sparse_conv(4 * width, 1, 1, f"{prefix}_conv3")(y)
            y = batch_norm(f"{prefix}_bn3")(y)
            x = keras.layers.Activation("relu")(keras.layers.Add()([shortcut, y]))
            channels = 4 * width
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = SparseDense(num_classes, sparsity=sparsity, seed=next_seed(), name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet50")
