"""Pieces shared by the model builders.

Each architecture is written once, as a private "graph" function over a
small set of operations (`conv`, `dense`, `batch_norm`, ...) of a `net`
argument. `KerasNet` turns the operations into Keras layers; `ShapeNet`
only follows shapes and counts parameters. The second gives kernel shapes
(for ERK) and parameter counts (for thin dense baselines) without
creating a single variable, so both are exact and instant even for
ResNet-50.
"""

import inspect
import itertools
import math
import numbers
from typing import NamedTuple

import keras

from tf_dsr.distribution import erk_sparsities
from tf_dsr.distribution import validate_distribution
from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseDense
from tf_dsr.validation import num_active_at_init
from tf_dsr.validation import validate_layer_block_shape
from tf_dsr.validation import validate_seed
from tf_dsr.validation import validate_sparsity


def batch_norm(name=None):
    """BatchNorm with PyTorch's defaults, which the authors' code uses.

    Running-average momentum 0.1 (0.9 in Keras terms) and epsilon 1e-5;
    Keras' 0.99 momentum lags far behind on short runs.
    """
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def validate_width_multiplier(width_multiplier):
    """Returns `width_multiplier` as a float, or raises if it is not > 0."""
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, numbers.Real):
        raise TypeError(
            "`width_multiplier` must be a positive float. Received: "
            f"width_multiplier={width_multiplier!r} of type "
            f"{type(width_multiplier).__name__}."
        )
    if not (math.isfinite(width_multiplier) and width_multiplier > 0):
        raise ValueError(
            "`width_multiplier` scales every hidden width and must be a finite "
            f"float > 0. Received: width_multiplier={width_multiplier}. Use 1.0 "
            "for the paper's widths, e.g. 0.5 for half as many channels."
        )
    return float(width_multiplier)


def scaled_width(width, width_multiplier):
    """`round(width * width_multiplier)`, at least 1."""
    return max(1, int(round(width * width_multiplier)))


def _pair(value):
    return (value, value) if isinstance(value, numbers.Integral) else tuple(value)


def _validate_padding(padding):
    if padding not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: {padding!r}.")
    return padding


class ModelPlan(NamedTuple):
    """What a builder builds, counted without building it.

    Attributes:
        sparse_kernel_shapes: tuple of the shapes of the kernels in sparse
            positions, in layer order (they are plain Keras kernels when
            the model is built with `sparsity=None`).
        num_other_params: int, every other trainable parameter: dense
            kernels, biases, BatchNorm gamma and beta.
    """

    sparse_kernel_shapes: tuple
    num_other_params: int

    @property
    def num_params(self):
        """Trainable parameters of the fully dense model."""
        return sum(math.prod(s) for s in self.sparse_kernel_shapes) + self.num_other_params

    def sparsities(self, sparsity, distribution="uniform"):
        """Per-tensor initial sparsities for an overall `sparsity`."""
        if validate_distribution(distribution) == "erk":
            return erk_sparsities(self.sparse_kernel_shapes, sparsity)
        return [validate_sparsity(sparsity)] * len(self.sparse_kernel_shapes)

    def num_nonzero_params(self, sparsity, distribution="uniform"):
        """Active kernel weights at initialisation plus every other parameter."""
        sparsities = self.sparsities(sparsity, distribution)
        return self.num_other_params + sum(
            num_active_at_init(math.prod(shape), s)
            for shape, s in zip(self.sparse_kernel_shapes, sparsities)
        )


class ShapeNet:
    """Follows shapes (without the batch axis) and counts parameters."""

    def __init__(self):
        self.sparse_kernel_shapes = []
        self.num_other_params = 0

    def input(self, shape):
        return tuple(shape)

    def _add_kernel(self, shape, sparse):
        if sparse:
            self.sparse_kernel_shapes.append(tuple(shape))
        else:
            self.num_other_params += math.prod(shape)

    def conv(self, x, filters, kernel_size, strides=1, padding="valid", use_bias=True,
             sparse=False, name=None, **unused_kwargs):
        kernel_size, strides = _pair(kernel_size), _pair(strides)
        self._add_kernel(kernel_size + (x[-1], filters), sparse)
        self.num_other_params += filters if use_bias else 0
        return self._spatial(x, kernel_size, strides, padding, name) + (filters,)

    def dense(self, x, units, use_bias=True, sparse=False, name=None, **unused_kwargs):
        self._add_kernel((x[-1], units), sparse)
        self.num_other_params += units if use_bias else 0
        return x[:-1] + (units,)

    def batch_norm(self, x, name=None):
        self.num_other_params += 2 * x[-1]  # gamma and beta
        return x

    def relu(self, x):
        return x

    def max_pool(self, x, pool_size, strides=None, padding="valid", name=None):
        pool_size = _pair(pool_size)
        strides = pool_size if strides is None else _pair(strides)
        return self._spatial(x, pool_size, strides, padding, name) + (x[-1],)

    def flatten(self, x):
        return (math.prod(x),)

    def global_average_pool(self, x):
        return (x[-1],)

    def add(self, a, b):
        return a

    def model(self, inputs, outputs, name):
        return ModelPlan(tuple(self.sparse_kernel_shapes), self.num_other_params)

    @staticmethod
    def _spatial(x, window, strides, padding, name):
        padding = _validate_padding(padding)
        sizes = []
        for n, k, s in zip(x[:-1], window, strides):
            if padding == "same":
                sizes.append(-(-n // s))
            else:
                sizes.append((n - k) // s + 1)
        if min(sizes) < 1:
            raise ValueError(
                f"Layer {name or ''} with window {window} and padding='valid' "
                f"gets an input of spatial size {x[:-1]}, which is too small. "
                "Use a larger input or padding='same'."
            )
        return tuple(sizes)


class KerasNet:
    """Creates Keras layers and applies them (functional API).

    Args:
        sparsities: iterable giving, for each sparse position in order,
            the layer's sparsity, or None for a plain Keras layer.
        seed: int or None; the i-th sparse layer uses `seed + i`.
        block_shape: None or `(b_in, b_out)`, given to every sparse layer.
    """

    def __init__(self, sparsities, seed=None, block_shape=None):
        self._sparsities = iter(sparsities)
        self._seed = seed
        self._block_shape = block_shape
        self._counter = itertools.count()

    def _sparse_args(self):
        i = next(self._counter)
        seed = None if self._seed is None else self._seed + i
        return next(self._sparsities), seed

    def _apply(self, layer, x):
        return layer(x)

    def input(self, shape):
        return keras.Input(shape)

    def conv(self, x, filters, kernel_size, sparse=False, **kwargs):
        sparsity, seed = self._sparse_args() if sparse else (None, None)
        if sparsity is None:
            layer = keras.layers.Conv2D(filters, kernel_size, **kwargs)
        else:
            layer = SparseConv2D(filters, kernel_size, sparsity=sparsity, seed=seed,
                                 block_shape=self._block_shape, **kwargs)
        return self._apply(layer, x)

    def dense(self, x, units, sparse=False, **kwargs):
        sparsity, seed = self._sparse_args() if sparse else (None, None)
        if sparsity is None:
            layer = keras.layers.Dense(units, **kwargs)
        else:
            layer = SparseDense(units, sparsity=sparsity, seed=seed,
                                block_shape=self._block_shape, **kwargs)
        return self._apply(layer, x)

    def batch_norm(self, x, name=None):
        return self._apply(batch_norm(name), x)

    def relu(self, x):
        return self._apply(keras.layers.Activation("relu"), x)

    def max_pool(self, x, pool_size, strides=None, padding="valid", name=None):
        return self._apply(
            keras.layers.MaxPooling2D(pool_size, strides=strides, padding=padding, name=name), x
        )

    def flatten(self, x):
        return self._apply(keras.layers.Flatten(), x)

    def global_average_pool(self, x):
        return self._apply(keras.layers.GlobalAveragePooling2D(), x)

    def add(self, a, b):
        return keras.layers.Add()([a, b])

    def model(self, inputs, outputs, name):
        return keras.Model(inputs, outputs, name=name)


class SequentialKerasNet(KerasNet):
    """Collects the layers of a chain into a `keras.Sequential`."""

    def __init__(self, sparsities, seed=None, block_shape=None):
        super().__init__(sparsities, seed, block_shape)
        self._layers = []

    def input(self, shape):
        self._input_shape = tuple(shape)
        return None

    def _apply(self, layer, x):
        self._layers.append(layer)
        return None

    def add(self, a, b):
        raise NotImplementedError("A sequential model has no residual additions.")

    def model(self, inputs, outputs, name):
        return keras.Sequential([keras.Input(self._input_shape)] + self._layers, name=name)


# builder -> (graph function, sequential?)
_GRAPHS = {}

# Builder arguments that do not change the architecture.
_BUILD_ARGS = ("sparsity", "seed", "distribution", "block_shape")


def register(builder, graph, sequential=False):
    """Records that `builder(...)` runs `graph(net, **architecture args)`."""
    _GRAPHS[builder] = (graph, sequential)


def build(graph, sparsity, seed, distribution, sequential=False, block_shape=None,
          **graph_kwargs):
    """Builds the Keras model of `graph` with the given sparse split.

    `sparsity=None` puts plain Keras layers in the sparse positions (and
    ignores `block_shape`); `block_shape` goes to every sparse layer.
    """
    distribution = validate_distribution(distribution)
    seed = validate_seed(seed)
    block_shape = validate_layer_block_shape(block_shape, SparseDense)
    if sparsity is None:
        sparsities = itertools.repeat(None)
    elif distribution == "uniform":
        sparsities = itertools.repeat(validate_sparsity(sparsity))
    else:
        plan = graph(ShapeNet(), **graph_kwargs)
        sparsities = erk_sparsities(plan.sparse_kernel_shapes, validate_sparsity(sparsity))
    net = (SequentialKerasNet if sequential else KerasNet)(sparsities, seed, block_shape)
    return graph(net, **graph_kwargs)


def plan(builder, **builder_kwargs):
    """The `ModelPlan` of `builder(**builder_kwargs)`, or None if unknown.

    Arguments that do not change the architecture (`sparsity`, `seed`,
    `distribution`) are ignored.
    """
    if builder not in _GRAPHS:
        return None
    graph, _ = _GRAPHS[builder]
    try:
        bound = inspect.signature(builder).bind(**builder_kwargs)
    except TypeError as e:
        raise TypeError(f"Invalid arguments for `{builder.__name__}`: {e}.") from None
    bound.apply_defaults()
    kwargs = {k: v for k, v in bound.arguments.items() if k not in _BUILD_ARGS}
    return graph(ShapeNet(), **kwargs)
