"""Shipping a plain copy of a sparse model (`strip`).

`strip` copies a model through Keras' own saving (a sparse layer saves
`kernel * mask` in its Keras layer's layout, `tf_dsr/layers/base.py`) and
turns the sparse layers the copy's config re-creates back into their
Keras layers, in place (`tf_dsr.layers.swap.make_plain`): no constructor
is asked to return another class.
"""

import os
import tempfile
import warnings

import keras

from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.swap import make_plain
from tf_dsr.validation import check_built_model

_SHIP_DIRECTLY = (
    "    tf_dsr.export(model, \"artifact/\")         # SavedModel: plain variables, no masks\n"
    "    tf_dsr.to_tflite(model, \"model.tflite\")"
)


def _own_classes(model):
    """`{registered name: class}` for the model's and layers' classes that
    are not Keras' or tf_dsr's (a user's unregistered subclassed model or
    layer): `strip` has them at hand, so its copy loads without the user
    registering them."""
    found = {}
    for layer in walk_layers(model):
        classes = [type(layer)]
        if isinstance(layer, SparseLayer):
            classes.append(layer.keras_class())
        for cls in classes:
            if cls is None or cls.__module__.split(".")[0] in ("keras", "tf_dsr"):
                continue
            found.setdefault(keras.saving.get_registered_name(cls), cls)
    return found


def strip(model):
    """Returns a plain Keras copy of `model`: same class, masks folded in.

    The copy is made by Keras' own saving: `model` is saved to a temporary
    `.keras` file (each sparse layer saves `kernel * mask` in its Keras
    layer's layout) and loaded back, so it is a model of `model`'s class
    (a `GPT2CausalLM` stays a `GPT2CausalLM`, a subclassed model stays the
    user's class) with every weight, whose masked weights are exact zeros.
    Sparse layers that the model's config itself re-creates (those of a
    Functional or Sequential graph) are then turned back into their Keras
    layers; nothing from tf_dsr remains, so the copy saves, exports and
    loads without tf_dsr installed. `model` itself is not changed. The
    copy is not compiled.

    A model whose config cannot re-create it (a subclassed model without
    `get_config`) raises a `TypeError`; `tf_dsr.export` and
    `tf_dsr.to_tflite` ship such a model directly.

    Args:
        model: a built `keras.Model` of any kind.

    Returns:
        A new model of `model`'s class.

    Example:

    >>> plain = tf_dsr.strip(model)
    >>> type(plain.get_layer("dense_300")).__name__
    'Dense'
    >>> int(np.count_nonzero(plain.get_layer("dense_300").kernel))  # the mask's ones
    1920
    >>> plain.save("plain.keras")  # loads with keras.models.load_model, no tf_dsr
    """
    check_built_model(model, "strip")
    check_masks(find_sparse_kernels(model), "`tf_dsr.strip`")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        try:
            model.save(path)
            with warnings.catch_warnings():
                # The copy is not compiled: the optimizer's saved variables
                # have nothing to load into, as intended.
                warnings.filterwarnings(
                    "ignore", message="Skipping variable loading for optimizer")
                plain = keras.saving.load_model(
                    path, custom_objects=_own_classes(model), compile=False)
        except (NotImplementedError, TypeError, ValueError) as error:
            raise TypeError(
                f"`tf_dsr.strip` copies model '{model.name}' (a "
                f"`{type(model).__name__}`) by saving and loading it, which "
                f"failed: {str(error).splitlines()[0]} Give "
                f"`{type(model).__name__}` a `get_config` that returns its "
                "constructor arguments, or ship the model without stripping:\n"
                + _SHIP_DIRECTLY
            ) from error
    for layer in walk_layers(plain):
        if isinstance(layer, SparseLayer):
            make_plain(layer)
    return plain
