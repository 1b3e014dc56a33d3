"""The shared base of sparse layers: a kernel, its 0/1 mask, the product."""

import numbers
import random

import keras
import tensorflow as tf

from tf_dsr.core.selection import random_subset


def num_active_at_init(size, sparsity):
    """Active weights a tensor of `size` starts with: round((1 - s) * size)."""
    return int(round((1.0 - sparsity) * size))


def validate_sparsity(sparsity, name="sparsity"):
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(
            f"`{name}` must be a float in [0, 1). Received: {name}={sparsity!r} "
            f"of type {type(sparsity).__name__}."
        )
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(
            f"`{name}` is the fraction of zeros and must be in [0, 1). "
            f"Received: {name}={sparsity}. Use e.g. 0.9 for 10% non-zeros."
        )
    return float(sparsity)


MAX_SEED = 2**63 - 1


def validate_seed(seed):
    """Returns `seed` as an int (or None) if it can seed TF's int64 streams."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
    ):
        raise TypeError(
            f"`seed` must be an int or None. Received: seed={seed!r} of type "
            f"{type(seed).__name__}."
        )
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"`seed` must be in [0, 2**63 - 1] (it seeds TensorFlow's int64 "
            f"random streams). Received: seed={seed}. Use e.g. seed % 2**32."
        )
    return None if seed is None else int(seed)


class SparseLayer(keras.layers.Layer):
    """Base class of layers whose kernel is multiplied by a 0/1 mask.

    Holds the arguments every sparse layer shares with its Keras
    counterpart (activation, bias, initializers, regularizers, constraints).
    Subclasses create their kernel with `add_sparse_kernel` in `build` and
    use `masked_kernel` in `call`. The mask is a non-trainable variable, so
    it is saved with the weights and mirrored by distribution strategies;
    gradients of the masked product vanish wherever the mask is 0.

    The product does not hide a NaN or Inf in the kernel: `nan * 0` is
    NaN, so a non-finite value at an inactive position (written there by
    hand, by `set_weights`, or by a load) reaches the output like one at an
    active position. Training keeps inactive kernel entries at 0; a
    reallocation skips, with a warning, while a kernel holds one.

    Args:
        sparsity: float in [0, 1), fraction of the kernel that is zero at
            initialisation. Defaults to 0.9.
        seed: int or None. Seeds the initial mask; None draws one from
            Python's `random` (seeded by `keras.utils.set_random_seed`).
        activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as in `keras.layers.Dense`.
    """

    def __init__(
        self,
        sparsity=0.9,
        seed=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.sparsity = validate_sparsity(sparsity)
        self.seed = validate_seed(seed)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def add_sparse_kernel(self, shape, num_outputs):
        """Creates `self.mask`, `self.kernel` (zero where masked) and `self.bias`."""
        size = 1
        for dim in shape:
            size *= int(dim)
        num_active = num_active_at_init(size, self.sparsity)
        if num_active < 1:
            raise ValueError(
                f"Layer '{self.name}': sparsity={self.sparsity} leaves no "
                f"active weight in a kernel of shape {tuple(shape)} "
                f"({size} weights). Use a sparsity below {1 - 0.5 / size:.6f}."
            )
        seed = self.seed if self.seed is not None else random.randint(0, 2**31 - 1)

        def mask_initializer(shape, dtype=None):
            chosen = random_subset(
                tf.ones(shape, tf.bool), num_active, tf.constant([seed, 0], tf.int64)
            )
            return tf.cast(chosen, dtype or "float32")

        self.mask = self.add_weight(
            name="mask",
            shape=shape,
            initializer=mask_initializer,
            trainable=False,
            dtype=self.variable_dtype,
        )
        def kernel_initializer(shape, dtype=None):
            # Read the mask when the initializer runs (Keras lifts it out of
            # any function graph), not when `build` runs: a subclassed model
            # builds its layers inside a scratch graph on first call.
            values = self.kernel_initializer(shape, dtype)
            return values * tf.cast(self.mask.value, values.dtype)

        self.kernel = self.add_weight(
            name="kernel",
            shape=shape,
            initializer=kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            trainable=True,
            dtype=self.variable_dtype,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(num_outputs,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
                dtype=self.variable_dtype,
            )

    def finish_call(self, outputs):
        """Adds the bias along the last axis (or `bias_axis`) and activates."""
        if self.bias is not None:
            outputs = keras.ops.add(outputs, self.bias_for(outputs))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def bias_for(self, outputs):
        return self.bias

    @property
    def masked_kernel(self):
        """The kernel the layer computes with: `kernel * mask`.

        A NaN or Inf in `kernel` stays NaN where the mask is 0 (`nan * 0`).
        """
        return self.kernel * keras.ops.cast(self.mask, self.kernel.dtype)

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        config.update(
            {
                "sparsity": self.sparsity,
                "seed": self.seed,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": ser(self.kernel_initializer),
                "bias_initializer": ser(self.bias_initializer),
                "kernel_regularizer": ser(self.kernel_regularizer),
                "bias_regularizer": ser(self.bias_regularizer),
                "activity_regularizer": ser(self.activity_regularizer),
                "kernel_constraint": ser(self.kernel_constraint),
                "bias_constraint": ser(self.bias_constraint),
            }
        )
        return config
