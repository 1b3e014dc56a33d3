"""SparseDense: `keras.layers.Dense` with a 0/1 mask on its kernel."""

import numbers

import keras

from tf_dsr.layers.base import SparseLayer


@keras.saving.register_keras_serializable(package="tf_dsr")
class SparseDense(SparseLayer):
    """Densely-connected layer whose kernel is sparse from the first step.

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
        activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as in `keras.layers.Dense`.

    Input shape:
        N-D tensor `(batch_size, ..., input_dim)`.

    Output shape:
        N-D tensor `(batch_size, ..., units)`.

    Example:

    >>> layer = tf_dsr.SparseDense(300, sparsity=0.99, activation="relu")
    >>> y = layer(keras.ops.ones((2, 784)))
    >>> int(keras.ops.sum(layer.mask))  # round(0.01 * 784 * 300)
    2352
    """

    def __init__(self, units, sparsity=0.9, seed=None, **kwargs):
        super().__init__(sparsity=sparsity, seed=seed, **kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError(
                f"`units` must be a positive int. Received: units={units!r}."
            )
        self.units = int(units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.add_sparse_kernel((input_dim, self.units), self.units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        return self.finish_call(keras.ops.matmul(inputs, self.masked_kernel))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
