"""Making a layer sparse, or plain again, in place.

The way Keras' `Model.quantize()` and `Dense.enable_lora()` change a
layer: the layer object stays where it is (in a Functional graph, a
keras-hub block, a subclassed model's attribute) and changes its class to
the sparse class of its Keras class, which adds the masks. A built layer
gets its masks at once, its kernels zeroed where the mask is 0; an
unbuilt one gets them when it builds. Nothing is rebuilt from a config,
so every argument, name, sharing and weight of the layer is kept.
"""

import math

import keras

from tf_dsr._keras_internals import unlocked
from tf_dsr._keras_internals import untrack
from tf_dsr.core import blocks
from tf_dsr.gradient_hooks import remove_gradient_hooks
from tf_dsr.layers.masks import mask_attribute
from tf_dsr.validation import check_leaves_active
from tf_dsr.validation import validate_layer_block_shape


def check_sparsifiable(layer, sparse_class, sparsity, block_shape=None):
    """Raises, changing nothing, unless `make_sparse` can convert `layer`.

    Checks the layer's type, quantization and LoRA, and for a built layer
    that each kernel holds a trainable variable, takes `block_shape` and
    keeps at least one active weight (or block) at `sparsity`.
    """
    if type(layer) is not sparse_class.keras_class():
        raise TypeError(
            f"Layer '{layer.name}' is a {type(layer).__name__}; "
            f"{sparse_class.__name__} masks a {sparse_class.keras_class().__name__}."
        )
    if getattr(layer, "quantization_mode", None) is not None or getattr(
        layer, "lora_enabled", False
    ):
        raise ValueError(
            f"Layer '{layer.name}' is quantized or has LoRA enabled; sparse "
            "layers hold plain float kernels. Sparsify the float model "
            "first, and quantize or add LoRA after `tf_dsr.strip`."
        )
    validate_layer_block_shape(
        block_shape, sparse_class, f"layer '{layer.name}' ({type(layer).__name__})")
    if not layer.built:
        return
    named_by_user = "registered_name" in sparse_class.__dict__
    for name in sparse_class.sparse_kernel_names:
        value = getattr(layer, name, None)
        if value is None and named_by_user:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no attribute "
                f"`{name}` to mask. `kernels` names the attributes its `call` "
                "reads its trainable kernels from (`self.<name>`); it has "
                f"{sorted(v.name for v in layer.trainable_weights)} as weights."
            )
        if value is None:
            # A kernel this layer does not have (a tied reverse table).
            continue
        if not isinstance(value, keras.Variable) or not value.trainable:
            what = ("a non-trainable variable" if isinstance(value, keras.Variable)
                    else f"a {type(value).__name__}")
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}): `{name}` is "
                f"{what}, not a trainable variable, so tf_dsr cannot mask it. "
                "Name the attribute that holds the trainable kernel variable."
            )
        shape = tuple(int(d) for d in value.shape)
        grid = _grid(layer, sparse_class, name, shape, block_shape)
        check_leaves_active(
            sparsity, math.prod(grid),
            f"Layer '{layer.name}': its {name} of shape {shape}", block_shape)
    if named_by_user:
        check_reads_kernels(layer, sparse_class.sparse_kernel_names)


def _grid(layer, sparse_class, name, shape, block_shape):
    if block_shape is None:
        return shape
    full = sparse_class.full_block_shape(layer, name, shape, block_shape)
    return blocks.grid_shape(shape, full)


def check_reads_kernels(layer, kernel_names):
    """Raises unless `layer.call` reads each named kernel as `self.<name>`.

    The mask applies where `call` reads the attribute; a kernel read
    another way (`self.weights[0]`, a copy kept elsewhere) would train
    dense under a mask that changes nothing. The call is traced once on
    symbolic inputs of the shape the layer was built with
    (`get_build_config`); a layer built another way, or whose call needs
    more than its input, is not traced and cannot be checked here.
    """
    build_config = layer.get_build_config() if layer.built else None
    if not build_config or "input_shape" not in build_config:
        return
    read = set()

    class Watched(type(layer)):
        def __getattribute__(self, name):
            if name in kernel_names:
                read.add(name)
            return super().__getattribute__(name)

    original = layer.__class__
    inputs = keras.tree.map_shape_structure(
        lambda shape: keras.KerasTensor(shape, dtype=layer.input_dtype),
        build_config["input_shape"],
    )
    layer.__class__ = Watched
    try:
        layer.compute_output_spec(inputs)
    except Exception:  # The call needs more than its input: not checkable.
        return
    finally:
        layer.__class__ = original
    unread = [name for name in kernel_names if name not in read]
    if unread:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}): its `call` never "
            f"reads `self.{unread[0]}`, so a mask on it would change nothing "
            "(the kernel is read another way, e.g. `self.weights[0]`). Name "
            "the attribute `call` reads, or read the kernel as "
            f"`self.{unread[0]}` in `call`."
        )


def make_sparse(layer, sparse_class, sparsity, seed=None, block_shape=None):
    """Turns `layer` into `sparse_class`, in place.

    A built layer gets its masks now (exactly `round((1 - sparsity) *
    size)` ones per kernel, seeded) and its kernels are zeroed where the
    mask is 0; an unbuilt one gets them when it builds. Call
    `check_sparsifiable` first: this function assumes it passed.

    Args:
        layer: a layer of exactly `sparse_class.keras_class()`.
        sparse_class: the `SparseLayer` class to turn it into.
        sparsity: float in [0, 1).
        seed: int or None, the mask seed (a layer whose Keras class takes a
            `seed` of its own, for dropout, keeps that one when it has one).
        block_shape: None or `(b_in, b_out)`.
    """
    with unlocked(layer):
        layer.__class__ = sparse_class
        layer.sparsity = sparsity
        if not sparse_class._keras_takes_seed or getattr(layer, "seed", None) is None:
            layer.seed = seed
        layer.block_shape = None if block_shape is None else tuple(block_shape)
        if layer.built:
            layer._mask_existing_kernels()


def make_plain(layer):
    """Turns sparse `layer` back into its Keras class, in place, with each
    kernel holding `kernel * mask` (exact zeros where the mask was 0)."""
    for pair in layer.sparse_kernels():
        pair.kernel.assign(pair.masked)
    keras_class = layer.keras_class()
    with unlocked(layer):
        mask_set = layer.__dict__.get("_tf_dsr_mask_set")
        if mask_set is not None:
            untrack(layer, mask_set)
            delattr(layer, "_tf_dsr_mask_set")
        for name in layer.sparse_kernel_names:
            attribute = mask_attribute(name, layer.sparse_kernel_names)
            layer.__dict__.pop(attribute, None)
        remove_gradient_hooks(layer)
        for attribute in ("_tf_dsr_masks", "_tf_dsr_kernels", "_tf_dsr_num_projections",
                          "_mask_seed", "sparsity", "block_shape"):
            layer.__dict__.pop(attribute, None)
        if not layer._keras_takes_seed:
            layer.__dict__.pop("seed", None)
        layer.__class__ = keras_class
