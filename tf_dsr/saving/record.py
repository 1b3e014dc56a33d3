"""Which layers of a model are sparse, saved with its weights.

A sparse layer's config names its sparse class only where the model's
config holds layer configs (a Functional or Sequential graph). Layers a
model creates in its own code (keras-hub blocks, a subclassed model's
`__init__`) come back from the config as plain Keras layers. Like
keras-hub, which records the layers `quantize()` changed so that a
quantized model reloads, tf_dsr records every sparse layer of a model
(its place in the layer walk, its class and settings) in an entry of the
model's weights file, `_tf_dsr_layers`. `tf_dsr.load_model` reads it and
makes those layers sparse again before loading the weights.
"""

import json
import weakref

import keras
import numpy as np

from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.classes import SPARSE_CLASSES
from tf_dsr.layers.classes import sparse_class_for
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.swap import make_sparse

RECORD_ATTRIBUTE = "_tf_dsr_layers"
RECORD_KEY = "record"


def record_entries(model):
    """One dict per sparse layer of `model`: where it is and what it is."""
    entries = []
    for index, layer in enumerate(walk_layers(model)):
        if not isinstance(layer, SparseLayer):
            continue
        keras_class = layer.keras_class()
        made = SPARSE_CLASSES.get(keras_class) is not type(layer)
        entries.append({
            "index": index,
            "name": layer.name,
            "class": keras_class.__name__,
            "registered": keras.saving.get_registered_name(keras_class),
            "kernels": list(layer.sparse_kernel_names) if made else None,
            "sparsity": float(layer.sparsity),
            "seed": layer.seed,
            "block_shape": None if layer.block_shape is None else list(layer.block_shape),
        })
    return entries


class SparseRecord(keras.layers.Layer):
    """Saves the record of a model's sparse layers in its weights file."""

    _tf_dsr_internal = True

    def __init__(self, model, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.built = True
        # A weak reference: Keras' saving walks attributes and must not
        # reach the model a second time through its record.
        self._model = weakref.ref(model)

    def save_own_variables(self, store):
        text = json.dumps(record_entries(self._model()))
        store[RECORD_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def load_own_variables(self, store):
        # The record serves `tf_dsr.load_model`, which reads it before
        # the model exists; loading weights into a model needs nothing.
        pass


def attach_record(model):
    """Attaches the record to `model` (once)."""
    if getattr(model, RECORD_ATTRIBUTE, None) is None:
        # Not a Keras sublayer (the model's tracker is locked once built):
        # Keras' saving finds it by walking the model's attributes.
        object.__setattr__(model, RECORD_ATTRIBUTE, SparseRecord(model, name="tf_dsr_layers"))


def parse_record(data):
    """The entries of a record read from a weights file (uint8 array)."""
    return json.loads(np.asarray(data, dtype=np.uint8).tobytes().decode("utf-8"))


def register_made_classes(entries, custom_objects=None):
    """Makes the sparse classes of users' layers a record names, so that a
    model config naming them deserializes."""
    for entry in entries:
        if entry["kernels"] is None:
            continue
        layer_class = keras.saving.get_registered_object(
            entry["registered"], custom_objects=custom_objects)
        if layer_class is None:
            raise ValueError(
                f"The file's sparse layer '{entry['name']}' is a "
                f"{entry['class']} ('{entry['registered']}'), which Keras "
                "cannot find: register it with "
                "`@keras.saving.register_keras_serializable()` or pass "
                f"`custom_objects={{'{entry['registered']}': {entry['class']}}}`."
            )
        sparse_class_for(layer_class, entry["kernels"])


def make_recorded_layers_sparse(model, entries):
    """Turns the layers of a freshly loaded `model` that `entries` names
    sparse, where its config made them plain. Their masks are drawn anew;
    load the weights after this to restore them."""
    layers = walk_layers(model)
    for entry in entries:
        index = entry["index"]
        layer = layers[index] if index < len(layers) else None
        if isinstance(layer, SparseLayer):
            continue
        if layer is None or type(layer).__name__ != entry["class"]:
            found = "nothing" if layer is None else (
                f"a {type(layer).__name__} named '{layer.name}'")
            raise ValueError(
                f"The file records sparse layer '{entry['name']}' (a "
                f"{entry['class']}) at place {index} of the model's layers, but "
                f"the model built from its config has {found} there. The file "
                "was saved from a model of another structure, or the model's "
                "code changed since."
            )
        if entry["kernels"] is None:
            sparse_class = SPARSE_CLASSES[type(layer)]
        else:
            sparse_class = sparse_class_for(type(layer), entry["kernels"])
        block_shape = entry["block_shape"]
        make_sparse(layer, sparse_class, entry["sparsity"], entry["seed"],
                    None if block_shape is None else tuple(block_shape))
