"""Moving models between plain Keras layers and tf_dsr sparse layers.

`sparsify` turns the `Dense`/`Conv2D` layers of an existing model into
`SparseDense`/`SparseConv2D`, so any model a user already has can be
trained with DSR. `strip` is its inverse for shipping: every sparse layer
becomes the plain Keras layer holding `masked_kernel`, with the zeros
really in the weights and nothing from tf_dsr left in the model.

Both rebuild the model from its graph (`keras.models.clone_model` for
Functional models, a new `keras.Sequential` for Sequential ones), so they
work for nested models and shared layers, never modify their input, and
need a model whose structure Keras knows: subclassed models are refused
with a `TypeError` explaining what to do instead.
"""

import warnings

import keras

from tf_dsr.callbacks.base import find_sparse_layers
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.base import validate_seed
from tf_dsr.layers.base import validate_sparsity
from tf_dsr.layers.conv import SparseConv2D
from tf_dsr.layers.dense import SparseDense

# Plain Keras layer class -> sparse class. Exact types only: a user's
# subclass of Dense may compute something else with its kernel.
_SPARSE_CLASS = {
    keras.layers.Dense: SparseDense,
    keras.layers.Conv2D: SparseConv2D,
}
_DENSE_CLASS = {sparse: dense for dense, sparse in _SPARSE_CLASS.items()}

# Constructor arguments the sparse layers share with their Keras
# counterparts. Anything else in a Keras config (LoRA, quantization) has no
# sparse equivalent and is dropped or refused.
_COMMON_KEYS = (
    "name",
    "trainable",
    "dtype",
    "activation",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
)
_LAYER_KEYS = {
    SparseDense: _COMMON_KEYS + ("units",),
    SparseConv2D: _COMMON_KEYS
    + (
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "data_format",
        "dilation_rate",
        "groups",
    ),
}


def is_graph_model(model):
    """True for Sequential and Functional models (their layer graph is known)."""
    if isinstance(model, keras.Sequential):
        return True
    # `Functional` is not public API; match it by name in the class hierarchy.
    return any(
        cls.__name__ == "Functional" and cls.__module__.startswith("keras")
        for cls in type(model).__mro__
    )


def check_graph_model(model, function_name):
    """Raises early unless `model` is a built Sequential or Functional model."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`tf_dsr.{function_name}` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    if not is_graph_model(model):
        raise TypeError(
            f"`tf_dsr.{function_name}` supports Sequential and Functional "
            f"models; model '{model.name}' is a subclassed "
            f"`{type(model).__name__}` whose layer graph Keras cannot rebuild. "
            "Either build the same network as a Functional model "
            "(`keras.Model(inputs, outputs)`), or, in your subclass, create "
            "`tf_dsr.SparseDense`/`tf_dsr.SparseConv2D` directly and, to "
            "ship it, build a plain copy whose Dense/Conv2D kernels you set "
            "to each sparse layer's `masked_kernel`."
        )
    if not model.built:
        raise ValueError(
            f"`tf_dsr.{function_name}` needs a built model; model "
            f"'{model.name}' is not built. Start it with `keras.Input(...)` "
            "or call it once on data."
        )


def _walk_layers(model):
    """Leaf layers of a model, depth first through nested models, each once."""
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            for child in layer.layers:
                visit(child)
        elif not isinstance(layer, keras.layers.InputLayer):
            found.append(layer)

    for layer in model.layers:
        visit(layer)
    return found


def _input_name(model, tensor):
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) and layer.output is tensor:
            return layer.name
    return None


def _clone(model, clone_layer, cache):
    """Rebuilds a graph model with `clone_layer(layer)` for every leaf layer.

    `cache` maps `id(original)` to its clone for layers and nested models
    alike, so a layer shared between places (or nested models) is cloned
    once and stays shared.
    """

    def clone_any(layer):
        if id(layer) not in cache:
            if isinstance(layer, keras.Model) and is_graph_model(layer):
                cache[id(layer)] = _clone(layer, clone_layer, cache)
            else:
                cache[id(layer)] = clone_layer(layer)
        return cache[id(layer)]

    if isinstance(model, keras.Sequential):
        # Not `clone_model`: for Sequential it also recompiles the copy,
        # which fails on models compiled with e.g. a lambda loss.
        config = model.get_config()["layers"]
        first = config[0] if config else {}
        name = (
            first["config"]["name"] if first.get("class_name") == "InputLayer" else None
        )
        spec = model.inputs[0]
        inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype, name=name)
        return keras.Sequential(
            [inputs] + [clone_any(layer) for layer in model.layers],
            name=model.name,
            trainable=model.trainable,
        )
    # New inputs named like the originals, so that serving signatures keep
    # the input names (clone_model would name them after symbolic tensors).
    input_tensors = keras.tree.map_structure(
        lambda spec: keras.Input(
            batch_shape=spec.shape, dtype=spec.dtype, name=_input_name(model, spec)
        ),
        model.input,
    )
    return keras.models.clone_model(
        model, input_tensors=input_tensors, clone_function=clone_any
    )


def _copy_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _sparse_counterpart(layer, sparsity, seed):
    if layer.quantization_mode is not None:
        raise ValueError(
            f"Layer '{layer.name}' is quantized ({layer.quantization_mode}); "
            "sparse layers hold float kernels. Sparsify the float model "
            "first and quantize after `tf_dsr.strip`."
        )
    sparse_class = _SPARSE_CLASS[type(layer)]
    config = layer.get_config()
    kwargs = {key: config[key] for key in _LAYER_KEYS[sparse_class] if key in config}
    # Dense leaves `activity_regularizer` out of its config.
    kwargs["activity_regularizer"] = keras.saving.serialize_keras_object(
        layer.activity_regularizer
    )
    return sparse_class.from_config({**kwargs, "sparsity": sparsity, "seed": seed})


def _dense_counterpart(layer):
    dense_class = _DENSE_CLASS.get(type(layer))
    if dense_class is None:
        raise TypeError(
            f"`tf_dsr.strip` does not know the plain Keras layer for "
            f"'{layer.name}' of type {type(layer).__name__}; it handles "
            f"{', '.join(c.__name__ for c in _DENSE_CLASS)}."
        )
    config = layer.get_config()
    return dense_class.from_config(
        {key: config[key] for key in _LAYER_KEYS[type(layer)] if key in config}
    )


def _layers_to_keep_dense(candidates, keep_dense):
    """Ids of the convertible layers `keep_dense` selects (see `sparsify`)."""
    if keep_dense is None:
        convs = [l for l in candidates if isinstance(l, keras.layers.Conv2D)]
        denses = [l for l in candidates if isinstance(l, keras.layers.Dense)]
        if not convs:
            return set()
        return {id(convs[0])} | ({id(denses[-1])} if denses else set())
    if callable(keep_dense):
        return {id(layer) for layer in candidates if keep_dense(layer)}
    if isinstance(keep_dense, str) or not isinstance(
        keep_dense, (list, tuple, set, frozenset)
    ):
        hint = f" For one layer use ['{keep_dense}']." if isinstance(keep_dense, str) else ""
        raise TypeError(
            "`keep_dense` must be None, a list of layer names or a predicate "
            f"`fn(layer) -> bool`. Received: {keep_dense!r} of type "
            f"{type(keep_dense).__name__}.{hint}"
        )
    names = {layer.name: layer for layer in candidates}
    unknown = [name for name in keep_dense if name not in names]
    if unknown:
        raise ValueError(
            f"`keep_dense` names {unknown} that are not Dense/Conv2D layers "
            f"of the model. Convertible layers: {sorted(names)}."
        )
    return {id(names[name]) for name in keep_dense}


def sparsify(model, sparsity, keep_dense=None, seed=None):
    """Returns a copy of `model` whose Dense/Conv2D layers are sparse.

    Every `keras.layers.Dense` and `keras.layers.Conv2D` (exact types) of a
    Sequential or Functional model, including those in nested models and
    shared layers, becomes a `tf_dsr.SparseDense` / `tf_dsr.SparseConv2D`
    with the same configuration and name; all other layers, the topology
    and all weights are kept. Each new mask has
    `round((1 - sparsity) * kernel.size)` ones at random positions, and
    the kernel is the original kernel times the mask, so raw and masked
    kernels agree. With `sparsity=0` the copy computes exactly what
    `model` computes. `model` itself is not modified. Compile the copy
    before training; the original's optimizer state does not carry over.

    By default the layers left dense follow Mostafa & Wang (ICML 2019):
    in a network with convolutions (their WRN-28-2 and ResNet-50), the
    first `Conv2D` and the last `Dense` stay dense; in a network without
    convolutions (their LeNet-300-100), every `Dense` becomes sparse.
    "First" and "last" follow `model.layers` order, nested models expanded
    in place.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
            Subclassed models raise a `TypeError`.
        sparsity: float in [0, 1), fraction of zeros in each new kernel.
        keep_dense: None (the paper's choice above), a list of layer names,
            or a predicate `fn(layer) -> bool` called with each original
            Dense/Conv2D layer; selected layers stay dense. Defaults to None.
        seed: int or None. Layer i (in conversion order) draws its mask
            with `seed + i`; None draws seeds from Python's `random`
            (seeded by `keras.utils.set_random_seed`). Defaults to None.

    Returns:
        A new model of the same class and structure as `model`.

    Example:

    >>> model = keras.applications.ResNet50(weights=None)
    >>> sparse = tf_dsr.sparsify(model, sparsity=0.9, seed=0)
    >>> sparse.compile("sgd", "sparse_categorical_crossentropy")
    >>> sparse.fit(x, y, callbacks=[tf_dsr.DynamicReparam(...)])
    """
    check_graph_model(model, "sparsify")
    if find_sparse_layers(model):
        raise ValueError(
            f"`tf_dsr.sparsify`: model '{model.name}' already has tf_dsr sparse "
            "layers, and sparsify only converts plain Dense/Conv2D layers, so "
            f"sparsity={sparsity!r} would not apply to them. To sparsify it "
            "again, call `tf_dsr.sparsify(tf_dsr.strip(model), ...)`."
        )
    sparsity = validate_sparsity(sparsity)
    seed = validate_seed(seed)
    candidates = [
        layer for layer in _walk_layers(model) if type(layer) in _SPARSE_CLASS
    ]
    keep = _layers_to_keep_dense(candidates, keep_dense)
    to_convert = [layer for layer in candidates if id(layer) not in keep]
    if not to_convert:
        warnings.warn(
            f"`tf_dsr.sparsify` left model '{model.name}' without sparse "
            f"layers: it has {len(candidates)} Dense/Conv2D layers and "
            f"`keep_dense` keeps {len(keep)} of them dense.",
            UserWarning,
            stacklevel=2,
        )
    seeds = {
        id(layer): None if seed is None else seed + i
        for i, layer in enumerate(to_convert)
    }
    pairs = []

    def clone_layer(layer):
        if id(layer) in seeds:
            new = _sparse_counterpart(layer, sparsity, seeds[id(layer)])
        else:
            new = _copy_layer(layer)
        pairs.append((layer, new))
        return new

    sparse_model = _clone(model, clone_layer, {})
    for old, new in pairs:
        if id(old) in seeds:
            new.kernel.assign(
                keras.ops.cast(old.kernel, new.kernel.dtype)
                * keras.ops.cast(new.mask, new.kernel.dtype)
            )
            if new.use_bias:
                new.bias.assign(old.bias)
        else:
            new.set_weights(old.get_weights())
    return sparse_model


def strip(model):
    """Returns a plain Keras copy of `model` with every sparse layer made dense.

    Each `tf_dsr.SparseDense` / `tf_dsr.SparseConv2D` becomes the
    `keras.layers.Dense` / `keras.layers.Conv2D` with the same
    configuration and name whose kernel is the sparse layer's
    `masked_kernel`: masked weights are exact zeros in the copy. Every
    other layer, nested models, shared layers and the topology are kept;
    nothing from tf_dsr remains, so the copy saves, exports and converts
    to TFLite without tf_dsr installed. `strip(sparsify(m))` has the
    structure and config of `m`. `model` itself is not modified.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
            Subclassed models raise a `TypeError` that says what to do.

    Returns:
        A new model of the same class and structure as `model`.

    Example:

    >>> plain = tf_dsr.strip(sparse_model)
    >>> plain.save("model.keras")  # loads without tf_dsr
    """
    check_graph_model(model, "strip")
    pairs = []

    def clone_layer(layer):
        new = _dense_counterpart(layer) if isinstance(layer, SparseLayer) else _copy_layer(layer)
        pairs.append((layer, new))
        return new

    plain = _clone(model, clone_layer, {})
    for old, new in pairs:
        if isinstance(old, SparseLayer):
            new.kernel.assign(keras.ops.cast(old.masked_kernel, new.kernel.dtype))
            if old.use_bias:
                new.bias.assign(old.bias)
        else:
            new.set_weights(old.get_weights())
    left = find_sparse_layers(plain)
    if left:
        raise TypeError(
            f"`tf_dsr.strip` cannot reach sparse layers "
            f"{[layer.name for layer in left]}: they sit inside a layer or "
            "subclassed model that is neither Sequential nor Functional. "
            "Build that part as a Functional model, or give the custom "
            "layer plain Dense/Conv2D sublayers holding `masked_kernel`."
        )
    return plain
