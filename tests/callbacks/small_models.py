"""A tiny model and data set shared by the callback tests."""

import keras
import numpy as np

import tf_dsr


def small_model():
    """Two sparse layers, 8 -> 16 -> 4, half their kernels active."""
    return keras.Sequential(
        [
            keras.Input((8,)),
            tf_dsr.SparseDense(16, sparsity=0.5, seed=1, activation="relu", name="a"),
            tf_dsr.SparseDense(4, sparsity=0.5, seed=2, name="b"),
        ]
    )


def small_data(num_samples=200):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_samples, 8)).astype("float32")
    y = rng.integers(0, 4, size=num_samples)
    return x, y


def compile_small(model, optimizer=None, **kwargs):
    model.compile(
        optimizer or keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kwargs,
    )
    return model


def masks_of(model):
    return [layer.mask.numpy().copy() for layer in tf_dsr.layers.find_sparse_layers(model)]


def record_steps(callback):
    """Makes `callback` record the step of every `reallocate` call; returns
    the list it appends to."""
    steps = []
    original = callback.reallocate

    def recording(step=None, mark=None):
        steps.append(step)
        return original(step, mark)

    callback.reallocate = recording
    return steps
