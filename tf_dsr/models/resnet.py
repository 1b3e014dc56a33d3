"""ResNet-50 with the paper's dense/sparse split."""

from tf_dsr.models import common

# (bottleneck width, blocks, first stride) per stage; output width is 4x.
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def _resnet50_graph(net, input_shape, num_classes, width_multiplier):
    width_multiplier = common.validate_width_multiplier(width_multiplier)
    scaled = lambda n: common.scaled_width(n, width_multiplier)

    def conv(x, filters, kernel_size, strides, name, sparse):
        return net.conv(x, filters, kernel_size, strides=strides, padding="same",
                        use_bias=False, kernel_initializer="he_normal", sparse=sparse,
                        name=name)

    x = inputs = net.input(input_shape)
    channels = scaled(64)
    x = conv(x, channels, 7, 2, "stem_conv", sparse=False)
    x = net.relu(net.batch_norm(x, "stem_bn"))
    x = net.max_pool(x, 3, strides=2, padding="same")
    for stage, (nominal, num_blocks, stride) in enumerate(_STAGES, start=1):
        width, out = scaled(nominal), scaled(4 * nominal)
        for block in range(num_blocks):
            prefix = f"stage{stage}_block{block + 1}"
            strides = stride if block == 0 else 1
            if channels != out or strides != 1:
                shortcut = conv(x, out, 1, strides, f"{prefix}_downsample", sparse=False)
                shortcut = net.batch_norm(shortcut, f"{prefix}_downsample_bn")
            else:
                shortcut = x
            y = conv(x, width, 1, 1, f"{prefix}_conv1", sparse=True)
            y = net.relu(net.batch_norm(y, f"{prefix}_bn1"))
            y = conv(y, width, 3, strides, f"{prefix}_conv2", sparse=True)
            y = net.relu(net.batch_norm(y, f"{prefix}_bn2"))
            y = conv(y, out, 1, 1, f"{prefix}_conv3", sparse=True)
            y = net.batch_norm(y, f"{prefix}_bn3")
            x = net.relu(net.add(shortcut, y))
            channels = out
    x = net.global_average_pool(x)
    outputs = net.dense(x, num_classes, sparse=True, name="logits")
    return net.model(inputs, outputs, "resnet50")


def resnet50(input_shape=(224, 224, 3), num_classes=1000, sparsity=0.9, seed=None,
             width_multiplier=1.0, distribution="uniform", block_shape=None):
    """ResNet-50 with its 48 bottleneck convs and final Dense kernel sparse.

    The torchvision layout (He et al., 2016; stride on the 3x3 conv, "v1.5")
    that Mostafa & Wang (ICML 2019) train on ImageNet. As in their
    experiments, the three convs of each of the 16
    bottleneck blocks and the final Dense kernel are sparse (22,724,608
    weights for 1000 classes); the 7x7 stem conv, the 1x1 downsample
    convs, BatchNorm and the final Dense bias stay dense. With
    `sparsity=None` the sparse positions hold plain Keras `Conv2D`/`Dense`
    layers (same names and initializers).

    Args:
        input_shape: tuple `(rows, cols, channels)`. Defaults to
            `(224, 224, 3)`.
        num_classes: int. Defaults to 1000.
        sparsity: float in [0, 1), overall initial sparsity of the sparse
            kernels, or None for a dense network. Defaults to 0.9.
        seed: int or None; seeds the masks, the i-th sparse layer uses
            `seed + i`. Defaults to None.
        width_multiplier: float > 0 scaling every width: the stem's 64,
            the bottleneck widths 64..512 and the block outputs 256..2048
            (rounded, at least 1). Defaults to 1.0.
        distribution: `"uniform"` (every sparse kernel at `sparsity`, the
            paper) or `"erk"` (see `tf_dsr.erk_sparsities`). Defaults to
            `"uniform"`.
        block_shape: None, or `(b_in, b_out)` for masks made of whole
            blocks in every sparse layer (see `tf_dsr.SparseDense`; `(4, 1)`
            is TFLite's 1x4 block). Defaults to None (unstructured).

    Returns:
        A functional `keras.Model` producing logits.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:

    >>> model = tf_dsr.models.resnet50(sparsity=0.8)
    >>> tf_dsr.sparsity_summary(model).num_weights
    22724608
    """
    return common.build(
        _resnet50_graph, sparsity, seed, distribution, block_shape=block_shape,
        input_shape=input_shape,
        num_classes=num_classes, width_multiplier=width_multiplier,
    )


common.register(resnet50, _resnet50_graph)
