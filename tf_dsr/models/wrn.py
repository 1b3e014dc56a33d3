"""Wide residual networks (WRN-d-k) with the paper's dense/sparse split."""

import numbers

from tf_dsr.models import common


def _validate_depth_width(depth, width):
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {value!r}.")
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(
            f"`depth` must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...). Received: {depth}."
        )


def _wrn_graph(net, depth, width, input_shape, num_classes, width_multiplier):
    _validate_depth_width(depth, width)
    width_multiplier = common.validate_width_multiplier(width_multiplier)
    blocks_per_group = (depth - 4) // 6

    def conv(x, filters, kernel_size, strides, name, sparse):
        return net.conv(x, filters, kernel_size, strides=strides, padding="same",
                        use_bias=False, kernel_initializer="he_normal", sparse=sparse,
                        name=name)

    x = inputs = net.input(input_shape)
    channels = common.scaled_width(16, width_multiplier)
    x = conv(x, channels, 3, 1, "stem_conv", sparse=False)
    for group, (nominal, strides) in enumerate(
        zip((16 * width, 32 * width, 64 * width), (1, 2, 2)), start=1
    ):
        filters = common.scaled_width(nominal, width_multiplier)
        for block in range(blocks_per_group):
            prefix = f"group{group}_block{block + 1}"
            block_strides = strides if block == 0 else 1
            pre = net.relu(net.batch_norm(x, f"{prefix}_bn1"))
            if channels != filters or block_strides != 1:
                shortcut = conv(pre, filters, 1, block_strides, f"{prefix}_shortcut",
                                sparse=False)
            else:
                shortcut = x
            y = conv(pre, filters, 3, block_strides, f"{prefix}_conv1", sparse=True)
            y = net.relu(net.batch_norm(y, f"{prefix}_bn2"))
            y = conv(y, filters, 3, 1, f"{prefix}_conv2", sparse=True)
            x = net.add(shortcut, y)
            channels = filters
    x = net.relu(net.batch_norm(x, "final_bn"))
    x = net.global_average_pool(x)
    outputs = net.dense(x, num_classes, name="logits")
    return net.model(inputs, outputs, f"wrn_{depth}_{width}")


def wide_resnet(depth=28, width=2, input_shape=(32, 32, 3), num_classes=10,
                sparsity=0.9, seed=None, width_multiplier=1.0, distribution="uniform",
                block_shape=None):
    """WRN-`depth`-`width` with the 3x3 convs of its residual blocks sparse.

    Pre-activation wide residual network (Zagoruyko & Komodakis, 2016):
    a 3x3 stem conv with 16 filters, three groups of `(depth - 4) / 6`
    blocks (BN-ReLU-conv3x3, BN-ReLU-conv3x3) with `16k`, `32k`, `64k`
    filters, strides 1, 2, 2, then BN-ReLU, global average pooling and a
    Dense classifier. As in Mostafa & Wang (ICML 2019),
    the `2 (depth - 4) / 3` convs in residual blocks are sparse (1,451,520
    weights for WRN-28-2); the stem conv, the 1x1 shortcut convs, the final
    Dense layer and BatchNorm stay dense. With `sparsity=None` the sparse
    positions hold plain `keras.layers.Conv2D` layers (same names and
    initializers): the full dense baseline, or with `width_multiplier < 1`
    a thin dense one (see `tf_dsr.models.thin_dense_width`).

    Args:
        depth: int, `6n + 4` for n >= 1. Defaults to 28.
        width: int >= 1, k. Defaults to 2.
        input_shape: tuple `(rows, cols, channels)`. Defaults to
            `(32, 32, 3)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), overall initial sparsity of the sparse
            convs, or None for a dense network. Defaults to 0.9.
        seed: int or None; seeds the masks, the i-th sparse conv uses
            `seed + i`. Defaults to None.
        width_multiplier: float > 0 scaling every conv width: the stem
            has `round(16 w)` filters and the groups (shortcuts included)
            `round(16 k w)`, `round(32 k w)`, `round(64 k w)`, at least 1.
            The model name keeps `depth` and `width`. Defaults to 1.0.
        distribution: `"uniform"` (every sparse conv at `sparsity`, the
            paper) or `"erk"` (see `tf_dsr.erk_sparsities`). Defaults to
            `"uniform"`.
        block_shape: None, or `(b_in, b_out)` for masks made of whole
            blocks in every sparse layer (see `tf_dsr.SparseDense`; `(4, 1)`
            is TFLite's 1x4 block). Defaults to None (unstructured).

    Returns:
        A functional `keras.Model` producing logits.

    Raises:
        ValueError: `depth` is not `6n + 4`, `width` is not a positive
            int, or another argument is out of range.
        TypeError: an argument has the wrong type.

    Example:

    >>> model = tf_dsr.models.wide_resnet(28, 2, sparsity=0.9)
    >>> tf_dsr.sparsity_summary(model).num_weights  # the 24 sparse 3x3 convs
    1451520
    >>> dense = tf_dsr.models.wide_resnet(28, 2, sparsity=None)
    """
    return common.build(
        _wrn_graph, sparsity, seed, distribution, block_shape=block_shape,
        depth=depth, width=width,
        input_shape=input_shape, num_classes=num_classes,
        width_multiplier=width_multiplier,
    )


common.register(wide_resnet, _wrn_graph)
