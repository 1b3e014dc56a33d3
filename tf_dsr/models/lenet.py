"""LeNet-300-100 and a small convolutional net built from sparse layers."""

import keras

from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseDense
from tf_dsr.models import common


def lenet_300_100(input_shape=(784,), num_classes=10, sparsity=0.9,
                  batch_norm=True, seed=None):
    """LeNet-300-100 with every Dense kernel sparse, as in the paper.

    Mostafa & Wang (ICML 2019) train it on MNIST with all three kernels
    sparse (266,200 weights for 784 inputs) and biases and BatchNorm dense.

    Args:
        input_shape: tuple, flat input shape. Defaults to `(784,)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), initial sparsity of every kernel.
        batch_norm: bool, BatchNorm after each hidden layer. Defaults to True.
        seed: int or None; layer i uses `seed + i`.

    Returns:
        A `keras.Sequential` producing logits.
    """
    def layer_seed(i):
        return None if seed is None else seed + i

    layers = [keras.Input(input_shape)]
    for i, units in enumerate((300, 100)):
        layers.append(SparseDense(units, sparsity=sparsity, seed=layer_seed(i),
                                  name=f"dense_{units}"))
        if batch_norm:
            layers.append(common.batch_norm())
        layers.append(keras.layers.Activation("relu"))
    layers.append(SparseDense(num_classes, sparsity=sparsity, seed=layer_seed(2),
                              name="logits"))
    return keras.Sequential(layers, name="lenet_300_100")


def small_convnet(input_shape=(8, 8, 1), num_classes=10, sparsity=0.9, seed=None):
    """A two-conv net for small images (the digits' 8x8), all kernels sparse.

    Args:
        input_shape: tuple `(rows, cols, channels)`. Defaults to `(8, 8, 1)`.
        num_classes: int. Defaults to 10.
        sparsity: float in [0, 1), initial sparsity of every kernel.
        seed: int or None; layer i uses `seed + i`.

    Returns:
        A `keras.Sequential` producing logits.
    """
    def layer_seed(i):
        return None if seed is None else seed + i

    return keras.Sequential(
        [
            keras.Input(input_shape),
            SparseConv2D(32, 3, padding="same", activation="relu",
                         sparsity=sparsity, seed=layer_seed(0)),
            SparseConv2D(64, 3, padding="same", strides=2, activation="relu",
                         sparsity=sparsity, seed=layer_seed(1)),
            keras.layers.Flatten(),
            SparseDense(128, activation="relu", sparsity=sparsity, seed=layer_seed(2)),
            SparseDense(num_classes, sparsity=sparsity, seed=layer_seed(3), name="logits"),
        ],
        name="small_convnet",
    )
