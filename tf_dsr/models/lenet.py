"""LeNet-300-100, LeNet-5 and a small convolutional net."""

from tf_dsr.models import common


def _lenet_300_100_graph(net, input_shape, num_classes, batch_norm, width_multiplier):
    width_multiplier = common.validate_width_multiplier(width_multiplier)
    x = inputs = net.input(input_shape)
    for width in (300, 100):
        # Names keep the nominal width so that they match across widths.
        x = net.dense(x, common.scaled_width(width, width_multiplier), sparse=True,
                      name=f"dense_{width}")
        if batch_norm:
            x = net.batch_norm(x)
        x = net.relu(x)
    outputs = net.dense(x, num_classes, sparse=True, name="logits")
    return net.model(inputs, outputs, "lenet_300_100")


def lenet_300_100(input_shape=(784,), num_classes=10, sparsity=0.9,
                  batch_norm=True, seed=None, width_multiplier=1.0,
                  distribution="uniform", block_shape=None):
    """LeNet-300-100 with every Dense kernel sparse, as in the paper.

    Mostafa & Wang (ICML 2019) train it on MNIST with all three kernels
    sparse (266,200 weights for 784 inputs) and biases and BatchNorm dense.
    With `sparsity=None` the same network is built from plain
    `keras.layers.Dense` layers (same names and initializers): the full
    dense baseline, or with `width_multiplier < 1` a thin dense one (see
    `tf_dsr.models.thin_dense_width`).

    Args:
        input_shape: tuple, flat input shape. Defaults to `(784,)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), overall initial sparsity of the
            kernels, or None for a dense network. Defaults to 0.9.
        batch_norm: bool, BatchNorm after each hidden layer. Defaults to True.
        seed: int or None; seeds the masks, sparse layer i uses `seed + i`.
            Defaults to None.
        width_multiplier: float > 0; the hidden layers have
            `round(300 w)` and `round(100 w)` units (at least 1). Layer
            names keep the nominal widths (`dense_300`, `dense_100`).
            Defaults to 1.0.
        distribution: `"uniform"` (every kernel at `sparsity`, the paper)
            or `"erk"` (see `tf_dsr.erk_sparsities`). Defaults to
            `"uniform"`.
        block_shape: None, or `(b_in, b_out)` for masks made of whole
            blocks in every sparse layer (see `tf_dsr.SparseDense`; `(4, 1)`
            is TFLite's 1x4 block). Defaults to None (unstructured).

    Returns:
        A `keras.Sequential` producing logits.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:

    >>> sparse = tf_dsr.models.lenet_300_100(sparsity=0.95)
    >>> tf_dsr.sparsity_summary(sparse).num_weights  # 784*300 + 300*100 + 100*10
    266200
    >>> dense = tf_dsr.models.lenet_300_100(sparsity=None)
    """
    return common.build(
        _lenet_300_100_graph, sparsity, seed, distribution, sequential=True,
        block_shape=block_shape,
        input_shape=input_shape, num_classes=num_classes, batch_norm=batch_norm,
        width_multiplier=width_multiplier,
    )


def _small_convnet_graph(net, input_shape, num_classes, width_multiplier):
    width_multiplier = common.validate_width_multiplier(width_multiplier)
    width = lambda n: common.scaled_width(n, width_multiplier)
    x = inputs = net.input(input_shape)
    # As in the paper's convolutional networks (and `tf_dsr.sparsify`), the
    # first conv and the classifier stay dense: both are small, and every
    # input pixel and every class keeps its connections.
    x = net.conv(x, width(32), 3, padding="same", activation="relu", sparse=False,
                 name="conv1")
    x = net.conv(x, width(64), 3, strides=2, padding="same", activation="relu",
                 sparse=True, name="conv2")
    x = net.flatten(x)
    x = net.dense(x, width(128), activation="relu", sparse=True, name="dense")
    outputs = net.dense(x, num_classes, sparse=False, name="logits")
    return net.model(inputs, outputs, "small_convnet")


def small_convnet(input_shape=(8, 8, 1), num_classes=10, sparsity=0.9, seed=None,
                  width_multiplier=1.0, distribution="uniform", block_shape=None):
    """A two-conv net for small images (the digits' 8x8), middle kernels sparse.

    Conv 32 3x3 ReLU, conv 64 3x3 stride 2 ReLU (both "same" padding),
    flatten, Dense 128 ReLU, Dense `num_classes`. Not from the paper: a
    quick convolutional test bed. Its dense/sparse split follows the
    paper's convolutional networks and `tf_dsr.sparsify`'s default: the
    first conv (`conv1`) and the classifier (`logits`) stay dense, and
    `conv2` and `dense` (8x8 inputs: 18,432 + 131,072 = 149,504 weights)
    are sparse. `sparsity=None` builds it from plain Keras layers with the
    same names.

    Args:
        input_shape: tuple `(rows, cols, channels)`. Defaults to `(8, 8, 1)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), overall initial sparsity of the
            kernels, or None for a dense network. Defaults to 0.9.
        seed: int or None; seeds the masks, sparse layer i uses `seed + i`.
            Defaults to None.
        width_multiplier: float > 0 scaling the 32, 64 and 128 widths
            (rounded, at least 1). Defaults to 1.0.
        distribution: `"uniform"` or `"erk"` (see `tf_dsr.erk_sparsities`).
            Defaults to `"uniform"`.
        block_shape: None, or `(b_in, b_out)` for masks made of whole
            blocks in every sparse layer (see `tf_dsr.SparseDense`; `(4, 1)`
            is TFLite's 1x4 block). Defaults to None (unstructured).

    Returns:
        A `keras.Sequential` producing logits.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:

    >>> model = tf_dsr.models.small_convnet(sparsity=0.8, distribution="erk")
    >>> [layer.name for layer in model.layers if isinstance(layer, tf_dsr.SparseLayer)]
    ['conv2', 'dense']
    >>> tf_dsr.sparsity_summary(model).num_weights
    149504
    """
    return common.build(
        _small_convnet_graph, sparsity, seed, distribution, sequential=True,
        block_shape=block_shape,
        input_shape=input_shape, num_classes=num_classes,
        width_multiplier=width_multiplier,
    )


# LeNet-5 needs 16x16 inputs for "valid" padding: 16 -> 12 -> 6 -> 2 -> 1.
_LENET5_MIN_VALID_SIZE = 16


def _lenet5_graph(net, input_shape, num_classes, width_multiplier, padding):
    width_multiplier = common.validate_width_multiplier(width_multiplier)
    width = lambda n: common.scaled_width(n, width_multiplier)
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            "`input_shape` must be (rows, cols, channels). Received: "
            f"input_shape={input_shape!r}."
        )
    smallest = min(tuple(input_shape)[:2])
    if padding is None:
        padding = "valid" if smallest >= _LENET5_MIN_VALID_SIZE else "same"
    if padding not in ("valid", "same"):
        raise ValueError(
            f"`padding` must be 'valid', 'same' or None (automatic). Received: "
            f"padding={padding!r}."
        )
    if padding == "valid" and smallest < _LENET5_MIN_VALID_SIZE:
        raise ValueError(
            f"LeNet-5 with padding='valid' needs inputs of at least "
            f"{_LENET5_MIN_VALID_SIZE}x{_LENET5_MIN_VALID_SIZE}. Received: "
            f"input_shape={tuple(input_shape)}. Use padding='same' (or None)."
        )
    x = inputs = net.input(input_shape)
    x = net.conv(x, width(20), 5, padding=padding, sparse=True, name="conv1")
    x = net.max_pool(x, 2, padding=padding, name="pool1")
    x = net.conv(x, width(50), 5, padding=padding, sparse=True, name="conv2")
    x = net.max_pool(x, 2, padding=padding, name="pool2")
    x = net.flatten(x)
    x = net.dense(x, width(500), activation="relu", sparse=True, name="dense_500")
    outputs = net.dense(x, num_classes, sparse=True, name="logits")
    return net.model(inputs, outputs, "lenet5")


def lenet5(input_shape=(28, 28, 1), num_classes=10, sparsity=0.9, width_multiplier=1.0,
           seed=None, distribution="uniform", padding=None, block_shape=None):
    """Caffe's LeNet-5 with all four kernels sparse.

    Conv 20 5x5, max-pool 2, conv 50 5x5, max-pool 2, flatten, Dense 500
    ReLU, Dense `num_classes` (the Caffe MNIST example, which has no ReLU
    after the convs). For 28x28x1 inputs with "valid" padding the four
    kernels hold 20*25 + 50*20*25 + 800*500 + 500*10 = 430,500 weights.
    A common benchmark of the pruning literature; Mostafa & Wang (ICML
    2019) use LeNet-300-100 instead. Unlike `small_convnet` and
    `tf_dsr.sparsify`'s default, which keep the first conv and the
    classifier dense as the paper does for its convolutional networks,
    all four kernels are sparse here, as in the pruning literature that
    reports LeNet-5's 430,500 weights (Han et al., 2015, prune every
    layer). `tf_dsr.sparsify(lenet5(sparsity=None), s, keep_dense=[])`
    gives the same split. `sparsity=None` builds it from plain
    Keras layers with the same names.

    Args:
        input_shape: tuple `(rows, cols, channels)`. Defaults to
            `(28, 28, 1)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), overall initial sparsity of the
            kernels, or None for a dense network. Defaults to 0.9.
        width_multiplier: float > 0 scaling the 20 and 50 filters and the
            500 hidden units (rounded, at least 1). Defaults to 1.0.
        seed: int or None; seeds the masks, sparse layer i uses `seed + i`.
            Defaults to None.
        distribution: `"uniform"` or `"erk"` (see `tf_dsr.erk_sparsities`).
            Defaults to `"uniform"`.
        block_shape: None, or `(b_in, b_out)` for masks made of whole
            blocks in every sparse layer (see `tf_dsr.SparseDense`; `(4, 1)`
            is TFLite's 1x4 block). Defaults to None (unstructured).
        padding: `"valid"` (Caffe's), `"same"`, or None: "valid" when rows
            and cols are at least 16, "same" otherwise (so the 8x8 digits
            work). Applies to convs and pools. Defaults to None.

    Returns:
        A `keras.Sequential` producing logits.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range,
            or the input is smaller than 16x16 with `padding="valid"`.

    Example:

    >>> model = tf_dsr.models.lenet5(sparsity=0.9)
    >>> tf_dsr.sparsity_summary(model).num_weights
    430500
    >>> digits = tf_dsr.models.lenet5((8, 8, 1), 10, sparsity=0.9)
    >>> tf_dsr.sparsity_summary(digits).num_weights  # "same" padding on 8x8
    130500
    """
    return common.build(
        _lenet5_graph, sparsity, seed, distribution, sequential=True,
        block_shape=block_shape,
        input_shape=input_shape, num_classes=num_classes,
        width_multiplier=width_multiplier, padding=padding,
    )


common.register(lenet_300_100, _lenet_300_100_graph, sequential=True)
common.register(small_convnet, _small_convnet_graph, sequential=True)
common.register(lenet5, _lenet5_graph, sequential=True)
