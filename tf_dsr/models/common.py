"""Pieces shared by the model builders."""

import keras


def batch_norm(name=None):
    """BatchNorm with PyTorch's defaults, which the authors' code uses.

    Running-average momentum 0.1 (0.9 in Keras terms) and epsilon 1e-5;
    Keras' 0.99 momentum lags far behind on short runs.
    """
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
