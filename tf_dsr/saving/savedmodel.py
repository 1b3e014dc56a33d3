"""Shipping sparse models as a SavedModel, no tf_dsr inside.

Any model the methods can train is exported the same way: Sequential,
Functional and subclassed models, and custom layers holding sparse
layers. The model's forward pass is traced in inference mode while every
sparse kernel reads a plain variable holding `kernel * mask` (exact zeros
where the mask is 0; `tf_dsr.layers.reading.kernels_read_from`), and a
`keras.export.ExportArchive` saves exactly the variables that trace
reads. Masks, raw kernels, the optimizer and tf_dsr's state are never
read, so they are not in the artifact, which loads with plain TensorFlow
and converts to TFLite (`tf_dsr.saving.tflite`). Exporting never touches
the variables of the model being trained.
"""

import contextlib
import numbers
import os

import keras
import numpy as np
import tensorflow as tf

from tf_dsr._keras_internals import build_shapes
from tf_dsr.layers.dense import SparseReversibleEmbedding
from tf_dsr.layers.reading import kernels_read_from
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.validation import check_built_model

_ENDPOINT = "serve"


def is_graph_model(model):
    """True for Sequential and Functional models (their inputs are known)."""
    if isinstance(model, keras.Sequential):
        return True
    # `Functional` is not public API; match it by name in the class hierarchy.
    return any(
        cls.__name__ == "Functional" and cls.__module__.startswith("keras")
        for cls in type(model).__mro__
    )


def _tensor_spec(tensor):
    return tf.TensorSpec(
        (None,) + tuple(tensor.shape[1:]), tensor.dtype, name=getattr(tensor, "name", None)
    )


def _input_signature(model):
    """The `serve` endpoint's signature as `keras.Model.export` makes it.

    Batch size left free. Graph models: from their inputs (names kept, so
    that the serving signature's arguments are named as the model's
    inputs). Subclassed models: from the shapes Keras recorded when the
    model was first called (`tf_dsr._keras_internals.build_shapes`).
    """
    if isinstance(model, keras.Sequential):
        return [_tensor_spec(tensor) for tensor in model.inputs]
    if is_graph_model(model):
        return [keras.tree.map_structure(_tensor_spec, model.input)]
    shapes = build_shapes(model)
    if shapes is None:
        raise ValueError(
            f"Cannot tell the input shapes of subclassed model '{model.name}': "
            "Keras records them when the model is first called on data, and "
            "this Keras version or model did not. Pass them yourself, e.g. "
            "`input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32)]`."
        )

    def spec(structure):
        if isinstance(structure, dict):
            return {key: spec(value) for key, value in structure.items()}
        if isinstance(structure, (list, tuple)) and all(
            d is None or isinstance(d, numbers.Integral) for d in structure
        ):
            return tf.TensorSpec((None,) + tuple(structure[1:]), model.input_dtype)
        return type(structure)(spec(value) for value in structure)

    return [spec(value) for value in shapes.values()]


@contextlib.contextmanager
def _plain_kernels(model, separate_lookups=False):
    """Plain variables holding each sparse kernel's `kernel * mask`.

    Yields `(variables, masked_out)`: the new variables, named like the
    kernels they stand for, read by every sparse layer while the context
    is active; and the ids of the variables an export must not contain
    (masks and raw kernels).

    With `separate_lookups`, a tied `SparseReversibleEmbedding` looks
    tokens up in a table of its own, `<name>_lookup`: the masked table
    and one row of zeros no token reads. TFLite's sparsifier fails
    ("operand #0 does not dominate this use") on a sparse constant that
    feeds both a GATHER and the logits FULLY_CONNECTED, and a plain copy
    would not help (the converter merges equal constants); with the extra
    row the two constants differ, the logits run on the sparse kernel and
    the lookup reads a dense table.
    """
    found = find_sparse_kernels(model)
    check_masks(found, "`tf_dsr.export`")
    values, lookups = [], []
    for _, pair in found:
        *scopes, name = pair.kernel.path.split("/")
        masked = keras.ops.convert_to_numpy(pair.masked)
        with contextlib.ExitStack() as stack:
            for scope in scopes:
                stack.enter_context(keras.name_scope(scope))
            variable = keras.Variable(
                masked, dtype=pair.kernel.dtype, trainable=pair.kernel.trainable, name=name)
            if separate_lookups and _is_tied_table(pair):
                lookups.append((pair.layer, keras.Variable(
                    np.concatenate([masked, np.zeros_like(masked[:1])]),
                    dtype=pair.kernel.dtype, trainable=False, name=f"{name}_lookup")))
        values.append((pair, variable))
    masked_out = set()
    for _, pair in found:
        for variable in (pair.kernel, pair.mask):
            masked_out.update({id(variable), id(variable.value)})
    with kernels_read_from(values, lookups):
        yield [variable for _, variable in values], masked_out


def _is_tied_table(pair):
    # Only `SparseReversibleEmbedding.call` reads the lookup table.
    return (pair.attribute == "embeddings"
            and isinstance(pair.layer, SparseReversibleEmbedding)
            and pair.layer.tie_weights)


def write_saved_model(model, path, verbose, input_signature, separate_lookups=False):
    """Traces `model` with plain kernels and writes the SavedModel (what
    `export` and `tf_dsr.saving.tflite.to_tflite` write; `separate_lookups`
    as in `_plain_kernels`)."""
    if input_signature is None:
        input_signature = _input_signature(model)
    archive = keras.export.ExportArchive()
    # Saving may trace the endpoint again: keep the plain kernels in place
    # until the artifact is written.
    with _plain_kernels(model, separate_lookups) as (_, masked_out):

        def serve(*inputs):
            return model(*inputs, training=False)

        endpoint = archive.add_endpoint(_ENDPOINT, serve, input_signature)
        traced = endpoint.get_concrete_function()
        leaked = [v.name for v in traced.variables if id(v) in masked_out]
        if leaked:
            raise RuntimeError(
                f"Exporting model '{model.name}' would save masks or raw kernels "
                f"{leaked}: a layer reads them directly instead of through its "
                "kernel attribute. Please report this."
            )
        trainable_ids = {id(v) for v in traced.trainable_variables}
        archive.add_variable_collection("variables", list(traced.variables))
        archive.add_variable_collection(
            "trainable_variables", list(traced.trainable_variables))
        archive.add_variable_collection(
            "non_trainable_variables",
            [v for v in traced.variables if id(v) not in trainable_ids],
        )
        archive.write_out(path, verbose=True if verbose is None else verbose)


def export(model, path, verbose=None, input_signature=None):
    """Writes a SavedModel of `model` for inference, without tf_dsr in it.

    Works for every model tf_dsr trains: Sequential, Functional and
    subclassed models, and custom layers holding sparse layers at any
    depth. The model's forward pass is traced in inference mode while
    each sparse kernel reads a plain variable holding `kernel * mask`
    (exact zeros where the mask is 0), and only the variables that trace
    reads are saved: no masks, no raw kernels, no optimizer, no tf_dsr
    state. The artifact has a `serve` endpoint (also the
    `serving_default` signature), as `keras.Model.export` writes, loads
    with `tf.saved_model.load(path)` in a process where tf_dsr is not
    installed, and serves with TF Serving. Kernel variables are named
    like the kernels of `model` (`"fc1/kernel"`).

    The model being trained is not modified, so training can continue
    afterwards. As with `keras.Model.export`, an existing directory at
    `path` is written into, its SavedModel files replaced; a path naming
    an existing file raises a `ValueError`.

    Args:
        model: a built `keras.Model` (a subclassed model must have been
            called on data, or pass `input_signature`).
        path: str or `os.PathLike`, the SavedModel directory.
        verbose: bool or None, print what was saved, as in
            `keras.Model.export`. Defaults to None (Keras' default: True).
        input_signature: optional list of `tf.TensorSpec` (or
            `keras.InputSpec`), one per positional argument of the model's
            `call`. Defaults to None: taken from the model's inputs (graph
            models) or from the shapes of its first call (subclassed
            models), batch size left free.

    Example:

    >>> tf_dsr.export(model, "lenet_saved_model", verbose=False)
    >>> loaded = tf.saved_model.load("lenet_saved_model")
    >>> logits = loaded.serve(x[:4])  # keep `loaded`: `serve` uses its variables
    >>> logits.shape
    TensorShape([4, 10])
    >>> np.allclose(logits, model(x[:4]), atol=1e-5)
    True
    """
    check_built_model(model, "export")
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a directory for the SavedModel; {path!r} is an "
            "existing file. Remove it or choose another path."
        )
    write_saved_model(model, path, verbose, input_signature)
