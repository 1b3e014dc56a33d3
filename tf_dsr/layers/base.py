"""One masked-kernel mechanism shared by every sparse layer.

A sparse layer is its Keras layer plus a 0/1 mask on each of the kernels
it declares in `sparse_kernel_names`. Nothing else of the Keras layer is
rewritten: its constructor arguments, `build`, `call`, shapes and config
are inherited, so with `sparsity=0` it computes exactly what the Keras
layer computes. Two hooks make a Keras layer sparse, the way Keras' own
LoRA hooks change a kernel in one place for many layer types:

- `add_weight`: when `build` creates a declared kernel, a non-trainable
  mask of the same shape is created next to it, and the kernel's
  initial values are multiplied by it.
- A data descriptor on each declared attribute (`kernel`, `embeddings`,
  `recurrent_kernel`, ...): reading it, as Keras' `call` does, returns
  `kernel * mask`. Keras stores some kernels in a private attribute
  behind a property (`Dense._kernel` behind `Dense.kernel`) and others as
  plain attributes (`LSTMCell.kernel`); the descriptor reads whichever
  the Keras class uses.

`masked_value` is the one place the product is computed; `call`,
`strip`, export and reporting all go through it. The descriptor also
honours two things defined elsewhere: kernels given for a block of code
(`tf_dsr/layers/reading.py`, used by recurrent layers and export) and a
kernel's gradient hook (`tf_dsr/gradient_hooks.py`, used by
`tf_dsr.dense_gradients`).
"""

import inspect
import math
import numbers
import random
from typing import NamedTuple

import keras
import tensorflow as tf

from tf_dsr._keras_internals import own_variables
from tf_dsr._keras_internals import unlocked
from tf_dsr.core import blocks
from tf_dsr.gradient_hooks import hooked
from tf_dsr.layers.masks import MaskSet
from tf_dsr.layers.masks import initial_mask
from tf_dsr.layers.masks import mask_attribute
from tf_dsr.layers.reading import given_kernel
from tf_dsr.validation import validate_layer_block_shape
from tf_dsr.validation import validate_seed
from tf_dsr.validation import validate_sparsity


def _plain_integers(value):
    """`value` with numpy integers (in tuples, lists, dicts) made `int`:
    Keras refuses `strides=np.int32(1)`, and configs must stay JSON."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain_integers(v) for v in value)
    if isinstance(value, dict):
        return {key: _plain_integers(v) for key, v in value.items()}
    return value


def masked_value(kernel, mask):
    """`kernel * mask`: the kernel a sparse layer computes with.

    The product does not hide a NaN or Inf in the kernel: `nan * 0` is
    NaN, so a non-finite value at an inactive position (written there by
    hand, by `set_weights`, or by a load) reaches the output like one at an
    active position. Training keeps inactive kernel entries at 0; a
    reallocation skips, with a warning, while a kernel holds one.

    Args:
        kernel: a variable or tensor (read in the current autocast scope,
            so under mixed precision the product is in the compute dtype).
        mask: the 0/1 mask variable of the same shape.

    Returns:
        A tensor of `kernel`'s shape, exactly zero where `mask` is 0 (for
        finite kernel values).
    """
    kernel = keras.ops.convert_to_tensor(kernel)
    return kernel * keras.ops.cast(mask, kernel.dtype)


class SparseKernel(NamedTuple):
    """One masked kernel of a sparse layer: what the methods move.

    Attributes:
        layer: the `SparseLayer` that owns it.
        attribute: the attribute Keras reads it by (`"kernel"`,
            `"recurrent_kernel"`, `"embeddings"`, ...).
        kernel: the trainable variable.
        mask: the non-trainable 0/1 variable of the same shape.
    """

    layer: object
    attribute: str
    kernel: object
    mask: object

    @property
    def masked(self):
        return masked_value(self.kernel, self.mask)

    @property
    def size(self):
        return math.prod(int(d) for d in self.mask.shape)

    @property
    def block_shape(self):
        """Full-rank block shape of the mask, or None (unstructured)."""
        return self.layer.kernel_block_shape(self.attribute)


class _MaskedAttribute:
    """Data descriptor: reading `layer.<attribute>` gives `kernel * mask`.

    Writing it (Keras' `build` does `self.kernel = self.add_weight(...)`
    in layers without a property) stores the variable in the instance
    dict, which the descriptor shadows. Before the mask exists (inside
    `build`) reads return the unmasked kernel.
    """

    def __init__(self, attribute, parent):
        self.attribute = attribute
        self.parent = parent  # The Keras class attribute we shadow, if any.

    def raw(self, layer):
        if self.parent is not None and hasattr(self.parent, "__get__"):
            return self.parent.__get__(layer, type(layer))
        try:
            return layer.__dict__[self.attribute]
        except KeyError:
            raise AttributeError(
                f"'{type(layer).__name__}' object has no attribute "
                f"'{self.attribute}' (the layer is not built)."
            ) from None

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        cached = given_kernel(layer, self.attribute)
        if cached is not None:
            return cached
        value = self.raw(layer)
        mask = layer.__dict__.get("_tf_dsr_masks", {}).get(self.attribute)
        if mask is None:
            return value
        return hooked(layer, self.attribute, masked_value(value, mask))

    def __set__(self, layer, value):
        if self.parent is not None and hasattr(self.parent, "__set__"):
            self.parent.__set__(layer, value)
        else:
            layer.__dict__[self.attribute] = value
        # A kernel a layer's code assigns to its attribute (a custom
        # layer's `self.w = self.add_weight(name="weight", ...)`) gets its
        # mask here; one made by `add_weight(name=<attribute>)` has it.
        if (
            isinstance(value, keras.Variable) and value.trainable
            and self.attribute not in layer.__dict__.get("_tf_dsr_masks", {})
        ):
            layer._mask_kernel(self.attribute, value)


def raw_kernel(layer, attribute):
    """The variable behind a sparse layer's kernel attribute, or None
    (unbuilt, or a kernel its Keras class did not create, such as the
    reverse table of a tied `ReversibleEmbedding`)."""
    try:
        value = getattr(type(layer), attribute).raw(layer)
    except AttributeError:
        return None
    return value if isinstance(value, keras.Variable) else None


_ADD_WEIGHT_SIGNATURE = inspect.signature(keras.layers.Layer.add_weight)


class SparseLayer(keras.layers.Layer):
    """Base of tf_dsr's sparse layers: a Keras layer with masked kernels.

    A sparse layer class lists its Keras layer after this base and names
    the kernels to mask:

        class SparseDense(SparseLayer, keras.layers.Dense):
            sparse_kernel_names = ("kernel",)

    Each declared kernel gets a non-trainable 0/1 mask variable, created
    in `build` right after the kernel, with exactly
    `round((1 - sparsity) * kernel.size)` ones at uniformly random
    positions (seeded), and the kernel starts at zero where the mask is 0.
    The layer computes with `kernel * mask` (Keras' `call` reads the
    masked product through the kernel attribute), so gradients vanish
    wherever the mask is 0. Biases and all other weights are the Keras
    layer's own. The mask of a layer's only kernel is the attribute
    `mask`; with several kernels, the mask of kernel `k` is `k_mask`.

    `layer.kernel` (or `embeddings`, `recurrent_kernel`, ...) therefore
    returns the masked tensor, as Keras' LoRA layers return their merged
    kernel; the trainable variables and their masks are in
    `layer.sparse_kernels()`.

    Block sparsity: classes with `supports_block_shape` (Dense,
    EinsumDense, the Conv1D/2D/3D family and ReversibleEmbedding, whose
    kernels have the `(input, output)` axes of a matmul, `block_axes`)
    take `block_shape=(b_in, b_out)`: masks are then made of whole blocks
    of `b_in` consecutive inputs by `b_out` consecutive outputs (one
    spatial tap of a convolution each), and the initial mask has exactly
    `round((1 - sparsity) * num_blocks)` active blocks. Both axes must be
    multiples of the block, else building raises a `ValueError`.

    Args:
        sparsity: float in [0, 1), fraction of each kernel that is zero
            at initialisation. Defaults to 0.9.
        block_shape: None (unstructured) or `(b_in, b_out)`, see above.
            Defaults to None.
        seed: int or None. Seeds the initial masks (kernel i of the layer
            draws with `(seed, i)`); None draws one from Python's
            `random` (seeded by `keras.utils.set_random_seed`). For
            layers whose Keras class has a `seed` argument (the recurrent
            layers, for dropout) the same seed serves both.
        **kwargs: every argument of the Keras layer.
    """

    sparse_kernel_names = ()
    # Set on classes whose Keras layer takes `seed` itself.
    _keras_takes_seed = False
    # Classes whose kernels have (input, output) axes (`block_axes`) take `block_shape`.
    supports_block_shape = False
    # Layers adopted from Keras-made sublayers never run `__init__`.
    block_shape = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attribute in cls.__dict__.get("sparse_kernel_names", ()):
            parent = None
            for base in cls.__mro__[1:]:
                if attribute in base.__dict__:
                    parent = base.__dict__[attribute]
                    break
            setattr(cls, attribute, _MaskedAttribute(attribute, parent))
        keras_class = cls.keras_class()
        if keras_class is not None:
            cls._keras_takes_seed = (
                "seed" in inspect.signature(keras_class.__init__).parameters
            )
            # Registered (and exported) as `Sparse<Name>`, but named like its
            # Keras class: Keras' saving addresses a layer in a list (a
            # Functional model's `layers`) by its class name, so a sparse
            # layer's weights sit where the Keras layer's do and a plain
            # model loads them.
            cls.sparse_name = cls.__dict__.get("sparse_name", cls.__name__)
            registered = cls.__dict__.get("registered_name", cls.sparse_name)
            cls.__name__ = keras_class.__name__
            cls.__qualname__ = keras_class.__qualname__
            keras.saving.register_keras_serializable(
                package="tf_dsr", name=registered)(cls)

    def __repr__(self):
        return (f"<{self.sparse_name} name={self.name}, built={self.built}, "
                f"sparsity={self.sparsity}>")

    @classmethod
    def keras_class(cls):
        """The plain Keras layer class this sparse class masks (or None)."""
        for base in cls.__mro__[1:]:
            if not issubclass(base, SparseLayer) and issubclass(
                base, keras.layers.Layer
            ) and base is not keras.layers.Layer:
                return base
        return None

    def __init__(self, *args, sparsity=0.9, seed=None, block_shape=None, **kwargs):
        sparsity = validate_sparsity(sparsity)
        seed = validate_seed(seed)
        block_shape = validate_layer_block_shape(block_shape, type(self))
        for option in ("lora_rank", "quantization_config"):
            if kwargs.get(option) is not None:
                raise ValueError(
                    f"`{option}` is not supported by tf_dsr's sparse layers: "
                    "LoRA and quantization change the kernel the mask "
                    f"applies to. Received: {option}={kwargs[option]!r}. "
                    "Train sparse, then `tf_dsr.strip` the model and apply "
                    "it to the plain Keras layers."
                )
        if kwargs.get("weights") is not None:
            raise ValueError(
                f"`weights` is not supported by tf_dsr's sparse layers: they "
                "need masks next to the values. Build the layer, then assign "
                "each kernel and its mask (`layer.sparse_kernels()`), or "
                "`tf_dsr.sparsify` a Keras model holding those weights."
            )
        if self._keras_takes_seed:
            kwargs["seed"] = seed
        args, kwargs = _plain_integers(args), _plain_integers(kwargs)
        super().__init__(*args, **kwargs)
        if self.quantization_mode is not None:
            raise ValueError(
                f"Layer '{self.name}' has the quantized dtype policy "
                f"{self.dtype_policy.name!r}; sparse layers hold float "
                "kernels. Use a float policy and quantize the plain model "
                "from `tf_dsr.strip(model)`."
            )
        self.sparsity = sparsity
        self.seed = seed
        self.block_shape = block_shape

    def kernel_block_shape(self, attribute, shape=None):
        """Full-rank block shape of kernel `attribute`'s mask, or None.

        `b_in` on the kernel's innermost input axis, `b_out` on its
        innermost output axis (`block_axes`), 1 elsewhere: blocks span no
        spatial axis.
        """
        if self.block_shape is None:
            return None
        if shape is None:
            shape = self.__dict__["_tf_dsr_masks"][attribute].shape
        return type(self).full_block_shape(self, attribute, shape, self.block_shape)

    @classmethod
    def block_axes(cls, layer, attribute, rank):
        """`(input axis, output axis)` of a kernel along which blocks
        extend: the axes whose entries are consecutive in the input and
        output dimensions of TFLite's `[output, input]` weight. A Dense or
        convolution kernel ends in `(..., input, output)`."""
        return rank - 2, rank - 1

    @classmethod
    def full_block_shape(cls, layer, attribute, shape, block_shape):
        """The full-rank block shape of `(b_in, b_out)` for a kernel of
        `shape` of `layer` (a layer of this class, or of its Keras class
        about to become one), checked to tile it."""
        input_axis, output_axis = cls.block_axes(layer, attribute, len(shape))
        full = [1] * len(shape)
        full[input_axis], full[output_axis] = block_shape
        return blocks.validate_block_shape(
            tuple(full), shape, f"{attribute} of layer '{layer.name}'")

    # ----- the hook into Keras' build ----------------------------------
    def add_weight(self, *args, **kwargs):
        bound = _ADD_WEIGHT_SIGNATURE.bind(self, *args, **kwargs).arguments
        name = bound.get("name")
        if name not in self.sparse_kernel_names or not bound.get("trainable", True):
            return super().add_weight(*args, **kwargs)
        shape = tuple(int(d) for d in bound["shape"])
        mask = self._add_mask(name, shape)
        initializer = keras.initializers.get(bound.get("initializer"))

        def masked_initializer(shape, dtype=None):
            # Read the mask when the initializer runs (Keras lifts it out of
            # any function graph), not when `build` runs: a subclassed
            # model builds its layers inside a scratch graph on first call.
            values = initializer(shape, dtype)
            return values * tf.cast(mask.value, values.dtype)

        kwargs = {k: v for k, v in bound.items() if k != "self"}
        kwargs["initializer"] = masked_initializer
        kernel = super().add_weight(**kwargs)
        self._tf_dsr_kernels[name] = kernel
        self._tf_dsr_masks[name] = mask
        return kernel

    def _mask_kernel(self, name, kernel):
        """Adds the mask of an existing kernel variable and zeroes the
        kernel where the mask is 0 (a layer built before it became sparse,
        or a kernel created under another name than its attribute)."""
        mask = self._add_mask(name, tuple(int(d) for d in kernel.shape))
        with tf.init_scope():
            # Eagerly, also when Keras builds the layer inside a function.
            kernel.assign(masked_value(kernel, mask))
        self._tf_dsr_kernels[name] = kernel
        self._tf_dsr_masks[name] = mask

    def _mask_existing_kernels(self):
        """Masks every declared kernel the layer already holds."""
        for name in self.sparse_kernel_names:
            if name in self.__dict__.get("_tf_dsr_masks", {}):
                continue
            kernel = raw_kernel(self, name)
            if kernel is not None:
                self._mask_kernel(name, kernel)

    def _add_mask(self, name, shape):
        block_shape = self.kernel_block_shape(name, shape)
        # One seed for all kernels of the layer (kernel i draws with
        # `(seed, i)`), drawn at the first kernel when `seed` is None.
        if getattr(self, "_mask_seed", None) is None:
            self._mask_seed = (
                self.seed if self.seed is not None else random.randint(0, 2**31 - 1)
            )
        seed = (self._mask_seed, list(self.sparse_kernel_names).index(name))
        mask_initializer = initial_mask(
            shape, block_shape, self.sparsity, seed,
            f"Layer '{self.name}': its {name} of shape {shape}")
        self._init_mask_dicts()
        mask = self._tf_dsr_mask_set.add_mask(
            mask_attribute(name, self.sparse_kernel_names), shape,
            mask_initializer, self.variable_dtype,
        )
        # Not tracked by this layer (the mask set holds it): the layer's own
        # variables stay those of its Keras class.
        object.__setattr__(self, mask_attribute(name, self.sparse_kernel_names), mask)
        return mask

    def _init_mask_dicts(self):
        if "_tf_dsr_masks" not in self.__dict__:
            # Plain dicts, not tracked by Keras: the variables are tracked
            # where they are created.
            object.__setattr__(self, "_tf_dsr_masks", {})
            object.__setattr__(self, "_tf_dsr_kernels", {})
        if "_tf_dsr_mask_set" not in self.__dict__:
            with unlocked(self):
                self._tf_dsr_mask_set = MaskSet(name=f"{self.name}_masks")

    # ----- what the methods, export and reporting read -----------------
    def sparse_kernels(self):
        """The layer's `SparseKernel`s (variable and mask), in build order.

        A method, not a property: Keras' saving walks a layer's attributes
        and would recurse through tuples that hold the layer itself.
        """
        kernels = self.__dict__.get("_tf_dsr_kernels", {})
        masks = self.__dict__.get("_tf_dsr_masks", {})
        return tuple(
            SparseKernel(self, name, kernels[name], masks[name])
            for name in self.sparse_kernel_names
            if name in kernels
        )

    def _only_kernel(self, what):
        pairs = self.sparse_kernels()
        if len(pairs) != 1:
            raise AttributeError(
                f"Layer '{self.name}' has {len(pairs)} sparse kernels "
                f"({[p.attribute for p in pairs]}); `{what}` is defined for "
                "one. Use `layer.sparse_kernels()`."
            )
        return pairs[0]

    @property
    def masked_kernel(self):
        """`kernel * mask` of a layer with one sparse kernel."""
        return self._only_kernel("masked_kernel").masked

    @property
    def kernel_variable(self):
        """The trainable kernel variable of a layer with one sparse kernel."""
        return self._only_kernel("kernel_variable").kernel

    # ----- Keras integration -------------------------------------------
    def save_own_variables(self, store):
        # The Keras layer's own layout (`Layer.save_own_variables`: its own
        # variables in order), with each kernel saved as `kernel * mask`:
        # a plain Keras layer loads the entry as the model `tf_dsr.strip`
        # gives. The masks are saved by the mask set, a child entry that a
        # plain layer does not have and skips.
        masked = {id(pair.kernel): pair for pair in self.sparse_kernels()}
        for i, variable in enumerate(own_variables(self)):
            pair = masked.get(id(variable))
            value = variable if pair is None else pair.masked
            store[str(i)] = keras.ops.convert_to_numpy(value)

    def load_own_variables(self, store):
        variables = own_variables(self)
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) holds "
                f"{len(variables)} variables "
                f"({[v.name for v in variables]}); the file has "
                f"{len(store.keys())} for it. Load a file saved from the same "
                "model."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def enable_lora(self, *args, **kwargs):
        raise ValueError(
            f"Layer '{self.name}' is sparse: LoRA would add a dense update "
            "to its masked kernel. `tf_dsr.strip` the model first."
        )

    def quantize(self, *args, **kwargs):
        raise ValueError(
            f"Layer '{self.name}' is sparse: quantize the plain model from "
            "`tf_dsr.strip(model)` instead."
        )

    def get_config(self):
        config = {**super().get_config(), "sparsity": self.sparsity, "seed": self.seed}
        if self.supports_block_shape:
            config["block_shape"] = (
                None if self.block_shape is None else list(self.block_shape))
        return config

