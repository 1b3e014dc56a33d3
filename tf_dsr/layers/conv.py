"""SparseConv2D: `keras.layers.Conv2D` with a 0/1 mask on its kernel."""

import numbers

import keras

from tf_dsr.layers.base import SparseLayer


def _pair(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a pair of positive ints. "
            f"Received: {name}={value!r}."
        )
    return tuple(int(v) for v in value)


def _output_length(length, kernel, stride, dilation, padding):
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return (length - dilation * (kernel - 1) - 1) // stride + 1


@keras.saving.register_keras_serializable(package="tf_dsr")
class SparseConv2D(SparseLayer):
    """2D convolution whose kernel is sparse from the first step.

    Computes `activation(conv2d(inputs, kernel * mask) + bias)`. The mask
    starts with exactly `round((1 - sparsity) * kernel.size)` ones at
    uniformly random positions; `tf_dsr.DynamicReparam` then moves them
    during training (Mostafa & Wang, ICML 2019). With `sparsity=0` the layer
    computes exactly what `keras.layers.Conv2D` computes with the same
    kernel.

    Args:
        filters: positive int, number of output channels.
        kernel_size: int or pair of ints.
        strides: int or pair of ints. Defaults to 1.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.
        data_format: `"channels_last"`, `"channels_first"` or None (the
            Keras default).
        dilation_rate: int or pair of ints. Defaults to 1.
        groups: positive int dividing `filters` and the input channels.
        sparsity: float in [0, 1), fraction of zeros in the kernel.
            Defaults to 0.9.
        seed: int or None, seeds the initial mask.
        activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as in `keras.layers.Conv2D`.

    Input shape:
        4D tensor `(batch, rows, cols, channels)` (channels_last) or
        `(batch, channels, rows, cols)` (channels_first).

    Output shape:
        4D tensor with `filters` channels.

    Example:

    >>> layer = tf_dsr.SparseConv2D(32, 3, padding="same", sparsity=0.9)
    >>> y = layer(keras.ops.ones((1, 28, 28, 16)))
    >>> y.shape
    TensorShape([1, 28, 28, 32])
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        sparsity=0.9,
        seed=None,
        **kwargs,
    ):
        super().__init__(sparsity=sparsity, seed=seed, **kwargs)
        for name, value in (("filters", filters), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}."
                )
        if filters % groups:
            raise ValueError(
                "`filters` must be divisible by `groups`. Received: "
                f"filters={filters}, groups={groups}."
            )
        self.filters = int(filters)
        self.groups = int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` is not supported together with "
                f"`dilation_rate > 1`. Received: strides={self.strides}, "
                f"dilation_rate={self.dilation_rate}."
            )
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(
                f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}."
            )
        self.padding = padding
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "`data_format` must be 'channels_last' or 'channels_first'. "
                f"Received: data_format={data_format!r}."
            )
        self.data_format = data_format
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        channels = input_shape[self._channel_axis]
        if channels % self.groups:
            raise ValueError(
                f"The input's {channels} channels are not divisible by "
                f"groups={self.groups} (input shape {tuple(input_shape)})."
            )
        shape = self.kernel_size + (channels // self.groups, self.filters)
        self.add_sparse_kernel(shape, self.filters)
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={self._channel_axis: channels}
        )

    def call(self, inputs):
        outputs = keras.ops.conv(
            inputs,
            self.masked_kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return self.finish_call(outputs)

    def bias_for(self, outputs):
        if self.data_format == "channels_last":
            return self.bias
        return keras.ops.reshape(self.bias, (1, self.filters, 1, 1))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        spatial = input_shape[1:3] if self.data_format == "channels_last" else input_shape[2:4]
        out = tuple(
            _output_length(n, k, s, d, self.padding)
            for n, k, s, d in zip(
                spatial, self.kernel_size, self.strides, self.dilation_rate
            )
        )
        if self.data_format == "channels_last":
            return (input_shape[0],) + out + (self.filters,)
        return (input_shape[0], self.filters) + out

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
        }
