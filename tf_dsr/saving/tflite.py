"""TFLite flatbuffers of sparse models, and which of their weights run sparse.

`to_tflite` converts the SavedModel `tf_dsr.saving.savedmodel` writes (the
masked kernels as plain variables, no tf_dsr inside) with TensorFlow's
TFLite converter, optionally in TFLite's sparse weight encoding and in
int8, and warns about each layer TFLite stores sparse but runs behind a
DENSIFY op (at dense speed). `tflite_ops` lists the ops of a flatbuffer.
"""

import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from tf_dsr._keras_internals import tflite_ops_details
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.saving.savedmodel import write_saved_model
from tf_dsr.validation import check_built_model

# TFLite's converter (its DenseToSparse pass, tensorflow/compiler/mlir/lite/
# transforms/dense_to_sparse_pass.cc) leaves a constant weight dense below
# this fraction of zeros...
_TFLITE_MIN_SPARSITY = 0.3
# ...and encodes it in one of the op's supported blocks (FULLY_CONNECTED:
# 1x4 in its [output, input] layout; convolutions: none) when more than
# this share of the zeros lie in whole blocks. Otherwise it stores the
# weight sparse and inserts a DENSIFY op: dense speed.
_TFLITE_BLOCK_OVER_RANDOM = 0.9
# The block of TFLite's sparse FULLY_CONNECTED kernels, consecutive inputs
# of one output: float weights 1x4; int8 weights (hybrid or full integer)
# 1x16.
_TFLITE_BLOCK = {None: 4, "dynamic": 16, "int8": 16}
QUANTIZE_MODES = (None, "dynamic", "int8")


def _unstructured_sparsity(block):
    """Random zeros fill whole 1xb blocks often enough (s^b / s > 0.9)
    above this sparsity."""
    return _TFLITE_BLOCK_OVER_RANDOM ** (1 / (block - 1))


def _check_converter_options(supported_ops, converter_options):
    if supported_ops is not None:
        if isinstance(supported_ops, (str, tf.lite.OpsSet)) or not isinstance(
            supported_ops, (list, tuple, set, frozenset)
        ):
            raise TypeError(
                "`supported_ops` must be a list of `tf.lite.OpsSet`, e.g. "
                "[tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]. "
                f"Received: {supported_ops!r}."
            )
        wrong = [op for op in supported_ops if not isinstance(op, tf.lite.OpsSet)]
        if wrong:
            raise TypeError(
                f"`supported_ops` must hold `tf.lite.OpsSet` values; received {wrong}."
            )
    if converter_options is not None and (
        not isinstance(converter_options, dict)
        or not all(isinstance(key, str) for key in converter_options)
    ):
        raise TypeError(
            "`converter_options` must be a dict from `tf.lite.TFLiteConverter` "
            "attribute names to values, e.g. "
            "{'_experimental_lower_tensor_list_ops': False}. "
            f"Received: {converter_options!r}."
        )


def _check_quantize(quantize, representative_dataset):
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"`quantize` must be one of {QUANTIZE_MODES}. Received: {quantize!r}."
        )
    if quantize == "int8" and representative_dataset is None:
        raise ValueError(
            "`quantize=\"int8\"` quantizes activations too and needs "
            "`representative_dataset`, a callable yielding lists of sample "
            "inputs (a hundred or so batches of 1). Or use quantize=\"dynamic\" "
            "(int8 weights, float activations), which needs none."
        )
    if representative_dataset is not None and quantize != "int8":
        raise ValueError(
            "`representative_dataset` calibrates int8 activations and is only "
            f"used with quantize=\"int8\". Received: quantize={quantize!r}."
        )


def tflite_ops(flatbuffer):
    """The ops of a TFLite flatbuffer: `[(op name, [input shapes], [output shapes])]`.

    The op list is private TFLite API (`tf_dsr._keras_internals.tflite_ops_details`).
    """
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to ai_edge_litert.
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        shapes = {t["index"]: tuple(int(d) for d in t["shape"])
                  for t in interpreter.get_tensor_details()}
        return [
            (op["op_name"], [shapes.get(i) for i in op["inputs"] if i >= 0],
             [shapes.get(i) for i in op["outputs"] if i >= 0])
            for op in tflite_ops_details(interpreter)
        ]


def _fully_connected_axes(pair):
    """For a Dense or EinsumDense kernel or a table a ReversibleEmbedding
    projects logits with: its output axes and input axes in the order
    TFLite's `[output, input]` FULLY_CONNECTED weight flattens them; None
    for other kernels (or an einsum TFLite cannot run as one)."""
    keras_class = pair.layer.keras_class()
    rank = len(pair.kernel.shape)
    if keras_class is keras.layers.Dense and rank == 2:
        return [1], [0]
    if issubclass(keras_class, keras.layers.ReversibleEmbedding):
        # The logits matmul: a tied (tokens, vector) table is already
        # [output, input]; an untied layer's lookup table is no matmul.
        if pair.attribute == "reverse_embeddings":
            return [1], [0]
        return ([0], [1]) if pair.layer.tie_weights else None
    if keras_class is not keras.layers.EinsumDense:
        return None
    left, output = pair.layer.equation.replace("...", "").split("->")
    inputs, kernel = left.split(",")
    ins = sorted((i for i, c in enumerate(kernel) if c in inputs and c not in output),
                 key=lambda i: inputs.index(kernel[i]))
    outs = sorted((i for i, c in enumerate(kernel) if c in output and c not in inputs),
                  key=lambda i: output.index(kernel[i]))
    if not ins or not outs or len(ins) + len(outs) != rank:
        return None
    return outs, ins


def _fully_connected_weight(value, axes):
    """`value` (a kernel) as TFLite's 2-D `[output, input]` weight."""
    outs, ins = axes
    value = np.transpose(value, outs + ins)
    num_out = int(np.prod([value.shape[i] for i in range(len(outs))]))
    return value.reshape(num_out, -1)


def _tflite_weight_shape(pair):
    """The shape TFLite gives a sparse kernel, or None if not a matmul/conv weight."""
    shape = tuple(int(d) for d in pair.kernel.shape)
    keras_class = pair.layer.keras_class()
    axes = _fully_connected_axes(pair)
    if axes is not None:
        outs, ins = axes
        return (int(np.prod([shape[i] for i in outs])), int(np.prod([shape[i] for i in ins])))
    if keras_class in (keras.layers.Conv2D,) or (
        keras_class is keras.layers.SeparableConv2D and pair.attribute == "pointwise_kernel"
    ):
        return (shape[3], shape[0], shape[1], shape[2])  # [out, h, w, in]
    if keras_class is keras.layers.Conv1D:
        return (shape[2], 1, shape[0], shape[1])
    if keras_class is keras.layers.DepthwiseConv2D or (
        keras_class is keras.layers.SeparableConv2D and pair.attribute == "depthwise_kernel"
    ):
        return (1, shape[0], shape[1], shape[2] * shape[3])
    if keras_class is keras.layers.Conv2DTranspose:
        return (shape[2], shape[0], shape[1], shape[3])
    return None


def _zero_fractions(pair, block=4):
    """Fraction of zeros of the masked kernel, and of entries in whole all-zero
    1x`block` blocks of TFLite's [out, in] layout (kernels run as a
    FULLY_CONNECTED, `_fully_connected_axes`; else None)."""
    value = np.asarray(keras.ops.convert_to_numpy(pair.masked))
    zeros = float(np.mean(value == 0))
    axes = _fully_connected_axes(pair)
    if axes is None:
        return zeros, None
    weight = _fully_connected_weight(value, axes)
    if weight.shape[1] % block:
        return zeros, None
    # `block` consecutive inputs of one output are TFLite's 1xblock block.
    grouped = weight.reshape(weight.shape[0], weight.shape[1] // block, block)
    in_zero_blocks = float(np.mean(np.all(grouped == 0, axis=2)))
    return zeros, in_zero_blocks


def _densify_advice(name, pair, block=4):
    zeros, in_blocks = _zero_fractions(pair, block)
    layer = pair.layer
    where = f"`tf_dsr.to_tflite`: layer '{layer.name}'" + (
        f" ({name})" if name != layer.name else "")
    if _fully_connected_axes(pair) is not None:
        blocks_text = (
            f"{in_blocks / zeros:.0%} of them in whole 1x{block} blocks"
            if in_blocks is not None and zeros > 0
            else f"its input dimension is not a multiple of {block}, so no "
                 f"1x{block} block fits"
        )
        return (
            f"{where} will be densified: its kernel {tuple(pair.kernel.shape)} has "
            f"{zeros:.1%} zeros, {blocks_text} of TFLite's [output, input] layout. "
            "TFLite stores it sparse but inserts a DENSIFY op, and the layer runs "
            "at dense speed: its sparse FULLY_CONNECTED kernel runs only when more "
            f"than {_TFLITE_BLOCK_OVER_RANDOM:.0%} of the zeros lie in whole "
            f"1x{block} blocks{' (its int8 kernel)' if block == 16 else ''}. "
            f"Train the layer with block_shape=({block}, 1) ({block} consecutive "
            f"inputs of one output unit, an input dimension that is a multiple of "
            f"{block}), or with unstructured sparsity above about "
            f"{_unstructured_sparsity(block):.3f}."
        )
    return (
        f"{where} will be densified: TFLite has no sparse kernel for "
        f"{layer.keras_class().__name__}, so the converter stores its "
        f"{zeros:.1%}-zero weight sparse and inserts a DENSIFY op, whatever the "
        "block shape; the built-in kernels run it dense. Only XNNPack's sparse "
        "inference can use it (1x1 convolutions of MobileNet-style graphs, "
        "mostly on ARM CPUs; see BUILD_NOTES.md for what it gives on x86). "
        "No sparsity or block shape avoids the DENSIFY op; sparse_weights=False "
        "gives the same speed with a larger file."
    )


def _warn_densified(model, flatbuffer, block=4):
    """Warns, per sparse layer, where the flatbuffer densifies its weight.

    DENSIFY ops are found in the flatbuffer and matched to sparse kernels
    by TFLite's weight shape; a shape shared by several kernels goes to
    the ones with the fewest zeros in whole 1x4 blocks first. A DENSIFY op
    no sparse kernel explains (a plain layer's zeros) gets its own warning.

    Returns:
        The names of the kernels warned about.
    """
    densified = [outputs[0] for op, _, outputs in tflite_ops(flatbuffer)
                 if op == "DENSIFY" and outputs]
    if not densified:
        return []
    by_shape = {}
    for name, pair in find_sparse_kernels(model):
        shape = _tflite_weight_shape(pair)
        if shape is not None:
            by_shape.setdefault(shape, []).append((name, pair))
    warned = []
    unexplained = []
    for shape in sorted(set(densified), key=densified.index):
        count = densified.count(shape)
        candidates = by_shape.get(shape, [])

        def blockiness(item):
            zeros, in_blocks = _zero_fractions(item[1], block)
            return 0.0 if not zeros or in_blocks is None else in_blocks / zeros

        chosen = sorted(candidates, key=blockiness)[:count]
        for name, pair in chosen:
            warnings.warn(_densify_advice(name, pair, block), UserWarning, stacklevel=3)
            warned.append(name)
        unexplained += [shape] * (count - len(chosen))
    if unexplained:
        warnings.warn(
            f"`tf_dsr.to_tflite`: {len(unexplained)} weight(s) of TFLite shape(s) "
            f"{unexplained} will be densified (a DENSIFY op in front of the op "
            "using them); they belong to no tf_dsr sparse layer (a plain layer "
            "with at least 30% zeros). They run at dense speed.",
            UserWarning,
            stacklevel=3,
        )
    return warned


def _has_sparse_tensor(flatbuffer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    return any(t.get("sparsity_parameters") for t in interpreter.get_tensor_details())


def _warn_xnnpack_hybrid(flatbuffer):
    """Warns that XNNPack miscomputes sparse int8 weights with float
    activations (TensorFlow 2.21: silently wrong outputs, no error)."""
    if not _has_sparse_tensor(flatbuffer):
        return
    warnings.warn(
        "`tf_dsr.to_tflite`: this file holds sparse int8 weights with float "
        "activations (quantize='dynamic'). TFLite's default XNNPack delegate "
        "takes those FULLY_CONNECTED ops but reads the sparse weights as if "
        "they were dense, and returns wrong outputs without an error (measured "
        "with TensorFlow 2.21; see docs/tflite_and_speed.md). Run the file on "
        "TFLite's built-in kernels: tf.lite.Interpreter(..., "
        "experimental_op_resolver_type=tf.lite.experimental.OpResolverType."
        "BUILTIN_WITHOUT_DEFAULT_DELEGATES), or convert with quantize='int8' "
        "(which XNNPack leaves to the built-in kernels) or sparse_weights=False.",
        UserWarning,
        stacklevel=3,
    )


def to_tflite(
    model,
    path=None,
    sparse_weights=False,
    input_signature=None,
    supported_ops=None,
    converter_options=None,
    quantize=None,
    representative_dataset=None,
):
    """Converts `model` to a TFLite flatbuffer, without tf_dsr in it.

    Writes the SavedModel of `tf_dsr.export` (any model tf_dsr trains,
    subclassed models included) to a temporary directory and converts it
    with `tf.lite.TFLiteConverter.from_saved_model`. The flatbuffer stores
    the masked kernels, exact zeros included, as dense float tensors
    unless `sparse_weights=True`, which sets `converter.optimizations =
    [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`: TFLite then stores
    sufficiently sparse constant tensors in its compressed sparse
    encoding (smaller files; outputs unchanged). See BUILD_NOTES.md for
    measured sizes.

    Speed: TFLite runs a sparse weight on its sparse kernels only in the
    shapes they take. A Dense kernel trained with `block_shape=(4, 1)`
    (TFLite's 1x4 block) becomes a sparse FULLY_CONNECTED; an unstructured
    one below about 97% sparsity, and every convolution, is stored sparse
    behind a DENSIFY op and runs at dense speed. With `sparse_weights=True`
    the flatbuffer is inspected and each layer behind a DENSIFY op gets a
    `UserWarning` saying which block shape or sparsity would avoid it.

    A language model's tied token table (`SparseReversibleEmbedding`,
    e.g. keras-hub's GPT-2) feeds the token lookup and the logits
    projection. With `sparse_weights=True` the lookup reads a dense table
    of its own (one more table in the file), so the logits run on the
    sparse FULLY_CONNECTED kernel when the table was trained with
    `block_shape=(4, 1)` (float) or `(16, 1)` (int8); TFLite's
    sparsifier cannot convert one sparse table feeding both (so a model
    whose own code reads the table, `layer.embeddings`, besides the
    layer's lookup and logits, still fails to convert with sparse
    weights; keep that table dense).

    Sparse and int8: `quantize="dynamic"` stores the weights in int8
    (activations stay float; TFLite's "hybrid" kernels), `quantize="int8"`
    quantizes weights and activations with `representative_dataset`. With
    `sparse_weights=True` too, TFLite's sparse int8 FULLY_CONNECTED kernels
    run Dense and EinsumDense layers trained with `block_shape=(16, 1)`
    (their block is 1x16, not 1x4: a 1x4-block layer is densified, and
    named in a warning). Run a `"dynamic"` file with sparse weights on
    the built-in kernels (`experimental_op_resolver_type=
    OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`): the default XNNPack
    delegate returns wrong outputs from its sparse int8 weights, without
    an error, and `to_tflite` warns so.

    Attention on TFLite's built-in kernels: their BATCH_MATMUL, which runs
    the matmuls of two computed operands (attention scores and values),
    is 8-11x slower on x86 than their FULLY_CONNECTED, so a transformer
    run without XNNPack (e.g. for the sparse int8 kernels:
    `OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`) runs 1.6-2.8x faster
    with `converter_options={"unfold_batchmatmul": True}` (one
    FULLY_CONNECTED per head). XNNPack, the default delegate, runs the
    BATCH_MATMULs faster as they are (TFLite's default, kept here). See
    docs/tflite_and_speed.md for measured figures.

    Recurrent layers: with a fixed batch size in `input_signature`
    (`tf.TensorSpec((1, steps, features))`), TFLite's built-in ops run
    `LSTM`/`GRU`/`SimpleRNN` as they are. With a free batch size, the
    converter needs TensorFlow ops too:
    `supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS,
    tf.lite.OpsSet.SELECT_TF_OPS]` and `converter_options=
    {"_experimental_lower_tensor_list_ops": False}`; the interpreter then
    needs TFLite's Flex delegate (the select-TF-ops runtime, e.g.
    `tensorflow-lite-select-tf-ops` on Android; the `tf.lite.Interpreter`
    of the `tensorflow` 2.21 pip package does not link it).

    Args:
        model: a built `keras.Model` (as for `tf_dsr.export`).
        path: optional str or `os.PathLike`; where to write the flatbuffer.
            Defaults to None (only returned).
        sparse_weights: bool, use TFLite's sparse weight encoding.
            Defaults to False.
        input_signature: as in `tf_dsr.export`.
        supported_ops: optional list of `tf.lite.OpsSet`, set as
            `converter.target_spec.supported_ops`. Defaults to None
            (TFLite's default, built-in ops only).
        converter_options: optional dict of other `TFLiteConverter`
            attributes to set before converting, e.g.
            `{"_experimental_lower_tensor_list_ops": False}` or
            `{"inference_input_type": tf.int8}`; an unknown attribute
            raises a `ValueError`. Defaults to None.
        quantize: None (float weights), `"dynamic"` (int8 weights) or
            `"int8"` (int8 weights and activations; needs
            `representative_dataset`). Defaults to None.
        representative_dataset: with `quantize="int8"`, a callable
            returning an iterable of input lists (TFLite's
            `representative_dataset`) to calibrate activations. Defaults
            to None.

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
    check_built_model(model, "to_tflite")
    _check_converter_options(supported_ops, converter_options)
    _check_quantize(quantize, representative_dataset)
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        write_saved_model(model, saved, False, input_signature,
                          separate_lookups=sparse_weights)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        optimizations = [tf.lite.Optimize.DEFAULT] if quantize else []
        if sparse_weights:
            optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
        converter.optimizations = optimizations
        if quantize == "int8":
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = {tf.lite.OpsSet.TFLITE_BUILTINS_INT8}
        if supported_ops is not None:
            converter.target_spec.supported_ops = set(supported_ops)
        for name, value in (converter_options or {}).items():
            if not hasattr(converter, name):
                raise ValueError(
                    f"`converter_options` names {name!r}, which "
                    "`tf.lite.TFLiteConverter` does not have. Check the spelling "
                    "against the converter's attributes (e.g. "
                    "'_experimental_lower_tensor_list_ops', 'allow_custom_ops')."
                )
            setattr(converter, name, value)
        flatbuffer = converter.convert()
    if sparse_weights:
        _warn_densified(model, flatbuffer, _TFLITE_BLOCK[quantize])
        if quantize == "dynamic":
            _warn_xnnpack_hybrid(flatbuffer)
    if path is not None:
        with open(os.fspath(path), "wb") as f:
            f.write(flatbuffer)
    return flatbuffer
