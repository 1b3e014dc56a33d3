"""Shipping sparse models: a SavedModel and a TFLite flatbuffer, no tf_dsr.

Both artifacts are made from `tf_dsr.strip(model)`, a plain Keras copy
whose kernels hold `masked_kernel` (exact zeros where the mask is 0), so
they load with plain TensorFlow or the TFLite interpreter, and exporting
never touches the variables of the model being trained.
"""

import os
import tempfile

import keras
import tensorflow as tf

from tf_dsr.layers.find import find_sparse_layers
from tf_dsr.convert import is_graph_model
from tf_dsr.convert import strip


def _plain_model(model, function_name):
    """The model to export: a stripped copy, or `model` if nothing is sparse."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`tf_dsr.{function_name}` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    if not find_sparse_layers(model) and not is_graph_model(model):
        # A subclassed model without sparse layers is already plain Keras
        # and cannot be cloned; export it as Keras would.
        return model
    return strip(model)


def export(model, path, verbose=None, input_signature=None):
    """Writes a SavedModel of `model` for inference, without tf_dsr in it.

    Exports `tf_dsr.strip(model)` with `keras.Model.export(path,
    format="tf_saved_model")`: the artifact has a `serve` endpoint (also
    the `serving_default` signature) running the model in inference mode,
    and its kernel variables hold the masked kernels, with exact zeros
    where the masks are 0. It loads with `tf.saved_model.load(path)` in a
    process where tf_dsr is not installed, and serves with TF Serving.

    The model being trained is not modified (export works on a copy), so
    training can continue afterwards. A model without sparse layers is
    exported as `keras.Model.export` would. As with `keras.Model.export`,
    an existing directory at `path` is written into, its SavedModel files
    replaced; a path naming an existing file raises a `ValueError`.

    Args:
        model: a built `keras.Model`. Sequential and Functional models with
            sparse layers are stripped; a subclassed model must have no
            sparse layers (see `tf_dsr.strip`).
        path: str or `os.PathLike`, the SavedModel directory.
        verbose: bool or None, print what was saved, as in
            `keras.Model.export`. Defaults to None (Keras' default: True).
        input_signature: optional structure of `keras.InputSpec` or
            `tf.TensorSpec` for the `serve` endpoint. Defaults to None
            (taken from the model's inputs, batch size left free).

    Example:

    >>> tf_dsr.export(model, "lenet_saved_model", verbose=False)
    >>> loaded = tf.saved_model.load("lenet_saved_model")
    >>> logits = loaded.serve(x[:4])  # keep `loaded`: `serve` uses its variables
    >>> logits.shape
    TensorShape([4, 10])
    >>> np.allclose(logits, model(x[:4]), atol=1e-5)
    True
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a directory for the SavedModel; {path!r} is an "
            "existing file. Remove it or choose another path."
        )
    plain = _plain_model(model, "export")
    plain.export(
        path,
        format="tf_saved_model",
        verbose=verbose,
        input_signature=input_signature,
    )


def to_tflite(model, path=None, sparse_weights=False, input_signature=None):
    """Converts `model` to a TFLite flatbuffer, without tf_dsr in it.

    Exports `tf_dsr.strip(model)` as a SavedModel (see `tf_dsr.export`)
    to a temporary directory and converts it with
    `tf.lite.TFLiteConverter.from_saved_model`. The flatbuffer stores the
    masked kernels, exact zeros included, as dense float tensors unless
    `sparse_weights=True`, which sets `converter.optimizations =
    [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`: TFLite then stores
    sufficiently sparse constant tensors in its compressed sparse
    encoding (smaller files; outputs unchanged). See BUILD_NOTES.md for
    measured sizes.

    Args:
        model: a built `keras.Model` (as for `tf_dsr.export`).
        path: optional str or `os.PathLike`; where to write the flatbuffer.
            Defaults to None (only returned).
        sparse_weights: bool, use TFLite's sparse weight encoding.
            Defaults to False.
        input_signature: as in `tf_dsr.export`.

    Returns:
        The TFLite flatbuffer, `bytes`.

    Example:

    >>> flatbuffer = tf_dsr.to_tflite(model, "lenet.tflite", sparse_weights=True)
    >>> interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    >>> serve = interpreter.get_signature_runner("serving_default")
    >>> outputs = serve(**{name: x[:1] for name in serve.get_input_details()})
    >>> [value.shape for value in outputs.values()]
    [(1, 10)]
    """
    plain = _plain_model(model, "to_tflite")
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        plain.export(
            saved,
            format="tf_saved_model",
            verbose=False,
            input_signature=input_signature,
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if sparse_weights:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        flatbuffer = converter.convert()
    if path is not None:
        with open(os.fspath(path), "wb") as f:
            f.write(flatbuffer)
    return flatbuffer
