"""Moving models between plain Keras layers and tf_dsr sparse layers.

`sparsify` turns the weight layers of an existing model (Dense,
EinsumDense, Embedding, convolutions, recurrent layers) into their
tf_dsr sparse counterparts, so any model a user already has can be
trained with DSR. `strip` is its inverse for shipping: every sparse layer
becomes the plain Keras layer holding its masked kernels, with the zeros
really in the weights and nothing from tf_dsr left in the model.

Both rebuild the model from its graph (`keras.models.clone_model` for
Functional models, a new `keras.Sequential` for Sequential ones), so they
work for nested models and shared layers, never modify their input, and
need a model whose structure Keras knows: subclassed models are refused
with a `TypeError` explaining what to do instead. A layer that wraps
others (`Bidirectional`, `TimeDistributed`, a generic `RNN`) is rebuilt
from its config with the configs of the wrapped layers swapped, and
weights are copied in the order Keras creates them, masks left out.
"""

import warnings

import keras

from tf_dsr.layers import SPARSE_CLASSES
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.base import validate_seed
from tf_dsr.layers.base import validate_sparsity
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import find_sparse_layers
from tf_dsr.layers.find import walk_layers

_RECURRENT = tuple(
    keras_class for keras_class in SPARSE_CLASSES
    if issubclass(keras_class, keras.layers.RNN)
)
# Convolutions the paper's rule keeps dense when first (any rank or kind).
_CONVOLUTIONS = tuple(
    keras_class for keras_class in SPARSE_CLASSES if "Conv" in keras_class.__name__
)
_DENSE_OUTPUTS = (keras.layers.Dense, keras.layers.EinsumDense)


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


def _graph_leaves(model):
    """Layers of a graph model, nested graph models expanded, each once."""
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


def _owned_cells(layers):
    """Ids of the cells that recurrent layers among `layers` own: such a
    layer is converted (or stripped) as a whole, its cell with it."""
    return {id(layer.cell) for layer in layers if isinstance(layer, _RECURRENT)}


def _convertible(leaves):
    """Layers `sparsify` can convert, at any depth inside `leaves`.

    A bare cell counts where a generic `keras.layers.RNN` holds it.
    """
    found, seen = [], set()
    for leaf in leaves:
        layers = walk_layers(leaf)
        owned = _owned_cells(layers)
        for layer in layers:
            if id(layer) in seen or id(layer) in owned:
                continue
            seen.add(id(layer))
            if type(layer) in SPARSE_CLASSES:
                found.append(layer)
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


def _replace_in_config(config, replacements):
    """`config` with every nested layer config named in `replacements`
    replaced by `replacements[name](layer_config)` (a serialized layer)."""
    if isinstance(config, dict):
        inner = config.get("config")
        if "class_name" in config and isinstance(inner, dict):
            name = inner.get("name")
            if name in replacements:
                return replacements[name](inner)
        return {key: _replace_in_config(value, replacements) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(_replace_in_config(value, replacements) for value in config)
    return config


def _rebuilt(layer, make):
    """A new layer from `layer`'s config; `make` maps some of the layers
    inside it (itself included), by identity, to their new config's class.

    Args:
        layer: a leaf layer of a graph model (wrappers included).
        make: dict `id(old layer) -> fn(config) -> new layer`.
    """
    if id(layer) in make:
        return make[id(layer)](layer.get_config())
    # A wrapper's config names its inner layers; configs carry no identity.
    # Inner layers that share a name (the two cells of a
    # `Bidirectional(RNN(cell))`, copies of one config) must therefore be
    # treated alike; the first one's function serves all.
    replacements, kept = {}, set()
    for inner in walk_layers(layer)[1:]:
        if id(inner) in make:
            replacements.setdefault(
                inner.name,
                lambda config, fn=make[id(inner)]:
                    keras.saving.serialize_keras_object(fn(config)),
            )
        else:
            kept.add(inner.name)
    clash = sorted(kept & set(replacements))
    if clash:
        raise ValueError(
            f"Layer '{layer.name}' holds several layers named {clash}, and "
            "only some of them are to be converted; their configs cannot be "
            "told apart. Select all or none of them (`keep_dense`)."
        )
    config = _replace_in_config(layer.get_config(), replacements)
    return layer.__class__.from_config(config)


def _rebuild_model(model, make):
    """Clones graph `model`, each layer rebuilt by `_rebuilt(layer, make)`.

    Returns:
        The clone and the `(old, new)` pairs of rebuilt layers.
    """
    pairs = []

    def clone_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            # A Keras op between layers (`h + x`, `keras.ops.relu(h)`, the
            # mask an Embedding computes): stateless, so it is reused.
            return layer
        new = _rebuilt(layer, make)
        pairs.append((layer, new))
        return new

    return _clone(model, clone_layer, {}), pairs


def _copy_weights(old, new, sparse_values):
    """Assigns `old`'s weights to `new` in order, skipping masks.

    `sparse_values(old_variable, new_variable)` returns the value to
    assign; masks (of either side) are neither read nor written here.
    """
    def unmasked(layer):
        masks = {id(pair.mask) for _, pair in find_sparse_kernels(layer)}
        return [w for w in layer.weights if id(w) not in masks]

    old_weights, new_weights = unmasked(old), unmasked(new)
    if len(old_weights) != len(new_weights) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(old_weights, new_weights)
    ):
        raise ValueError(
            f"Layer '{old.name}' ({type(old).__name__}) and its converted "
            f"copy ({type(new).__name__}) hold different weights: "
            f"{[tuple(w.shape) for w in old_weights]} vs "
            f"{[tuple(w.shape) for w in new_weights]}. Please report this."
        )
    for old_weight, new_weight in zip(old_weights, new_weights):
        new_weight.assign(keras.ops.cast(sparse_values(old_weight, new_weight), new_weight.dtype))


def _to_sparse(layer, sparsity, seed):
    if layer.quantization_mode is not None or getattr(layer, "lora_enabled", False):
        raise ValueError(
            f"Layer '{layer.name}' is quantized or has LoRA enabled; sparse "
            "layers hold plain float kernels. Sparsify the float model "
            "first, and quantize or add LoRA after `tf_dsr.strip`."
        )
    sparse_class = SPARSE_CLASSES[type(layer)]

    def make(config):
        config = {**config, "sparsity": sparsity}
        if seed is not None or "seed" not in config:
            config["seed"] = seed
        return sparse_class.from_config(config)

    return make


def _to_plain(layer):
    keras_class = layer.keras_class()

    def make(config):
        config = {key: value for key, value in config.items() if key != "sparsity"}
        if not layer._keras_takes_seed:
            config.pop("seed", None)
        return keras_class.from_config(config)

    return make


def _layers_to_keep_dense(candidates, keep_dense):
    """Ids of the convertible layers `keep_dense` selects (see `sparsify`)."""
    if keep_dense is None:
        keep = {id(l) for l in candidates if isinstance(l, keras.layers.Embedding)}
        convs = [l for l in candidates if isinstance(l, _CONVOLUTIONS)]
        if not convs:
            return keep
        denses = [l for l in candidates if isinstance(l, _DENSE_OUTPUTS)]
        return keep | {id(convs[0])} | ({id(denses[-1])} if denses else set())
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
            f"`keep_dense` names {unknown} that are not convertible layers "
            f"of the model. Convertible layers: {sorted(names)}."
        )
    return {id(names[name]) for name in keep_dense}


def sparsify(model, sparsity, keep_dense=None, seed=None):
    """Returns a copy of `model` whose weight layers are sparse.

    Every layer of a Sequential or Functional model that has a tf_dsr
    sparse counterpart (`Dense`, `EinsumDense`, `Embedding`, the
    convolutions of every rank and kind, `SimpleRNN`/`GRU`/`LSTM` and
    their cells; exact types) becomes that sparse layer, with the same
    configuration and name, wherever it sits: at the top level, in nested
    models, inside wrappers such as `TimeDistributed` and
    `Bidirectional`, shared between places (sharing is kept). All other
    layers, the topology and all weights are kept. Each new mask has
    `round((1 - sparsity) * kernel.size)` ones at random positions, and
    the kernel is the original kernel times the mask. With `sparsity=0`
    the copy computes exactly what `model` computes. `model` itself is
    not modified. Compile the copy before training; the original's
    optimizer state does not carry over.

    By default the layers left dense follow the rule of Mostafa & Wang
    (ICML 2019) and of `tf_dsr.models.small_convnet`: in a network with
    convolutions, the first convolution (any rank or kind) and the last
    `Dense`/`EinsumDense` stay dense; in a network without convolutions
    (their LeNet-300-100), every `Dense` becomes sparse. Embedding tables
    stay dense unless `keep_dense` says otherwise. "First" and "last"
    follow `model.layers` order, nested models and wrappers expanded in
    place. The paper's exact splits differ in details (it also keeps
    WRN-28-2's 1x1 shortcut convs and ResNet-50's downsample convs dense,
    and makes ResNet-50's final Dense kernel sparse):
    `tf_dsr.models.wide_resnet` and `resnet50` build those, or pass
    `keep_dense`.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
            Subclassed models raise a `TypeError`.
        sparsity: float in [0, 1), fraction of zeros in each new kernel.
        keep_dense: None (the paper's choice above), a list of layer names,
            or a predicate `fn(layer) -> bool` called with each original
            convertible layer; selected layers stay dense, all others
            (embeddings included) become sparse. Defaults to None.
        seed: int or None. Layer i (in conversion order) draws its masks
            with `seed + i` (for recurrent layers, which take a `seed` of
            their own for dropout, that seed too); None draws seeds from
            Python's `random` (seeded by `keras.utils.set_random_seed`).
            Defaults to None.

    Returns:
        A new model of the same class and structure as `model`.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(16, 3, activation="relu"),
    ...     keras.layers.Conv2D(32, 3, activation="relu"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(64, activation="relu"),
    ...     keras.layers.Dense(10),
    ... ])
    >>> sparse = tf_dsr.sparsify(model, sparsity=0.9, seed=0)
    >>> [type(layer).__name__ for layer in sparse.layers]
    ['Conv2D', 'SparseConv2D', 'Flatten', 'SparseDense', 'Dense']
    >>> sparse.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> images = x.reshape(-1, 8, 8, 1)
    >>> history = sparse.fit(images, y, epochs=2, verbose=0, callbacks=[
    ...     tf_dsr.DynamicReparam(prune_target=0.05, period=30)])
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
    candidates = _convertible(_graph_leaves(model))
    keep = _layers_to_keep_dense(candidates, keep_dense)
    to_convert = [layer for layer in candidates if id(layer) not in keep]
    if not to_convert:
        warnings.warn(
            f"`tf_dsr.sparsify` left model '{model.name}' without sparse "
            f"layers: it has {len(candidates)} convertible layers and "
            f"`keep_dense` keeps {len(keep)} of them dense.",
            UserWarning,
            stacklevel=2,
        )
    make = {
        id(layer): _to_sparse(layer, sparsity, None if seed is None else seed + i)
        for i, layer in enumerate(to_convert)
    }
    sparse_model, pairs = _rebuild_model(model, make)
    for old, new in pairs:
        masks = {id(pair.kernel): pair.mask for _, pair in find_sparse_kernels(new)}

        def value(old_weight, new_weight):
            mask = masks.get(id(new_weight))
            if mask is None:
                return old_weight
            return keras.ops.cast(old_weight, new_weight.dtype) * keras.ops.cast(
                mask, new_weight.dtype
            )

        _copy_weights(old, new, value)
    return sparse_model


def strip(model):
    """Returns a plain Keras copy of `model` with every sparse layer made dense.

    Each tf_dsr sparse layer (at the top level, in nested models, inside
    wrappers) becomes the Keras layer it masks, with the same
    configuration and name, whose kernels are the sparse layer's masked
    kernels: masked weights are exact zeros in the copy. Every other
    layer, nested models, shared layers and the topology are kept;
    nothing from tf_dsr remains, so the copy saves, exports and converts
    to TFLite without tf_dsr installed. `strip(sparsify(m))` has the
    structure and config of `m`. `model` itself is not modified.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
            Subclassed models raise a `TypeError` that says what to do.

    Returns:
        A new model of the same class and structure as `model`.

    Example:

    >>> plain = tf_dsr.strip(model)
    >>> type(plain.get_layer("dense_300")).__name__
    'Dense'
    >>> int(np.count_nonzero(plain.get_layer("dense_300").kernel))  # the mask's ones
    1920
    >>> plain.save("plain.keras")  # loads with keras.models.load_model, no tf_dsr
    """
    check_graph_model(model, "strip")
    check_masks(find_sparse_kernels(model), "`tf_dsr.strip`")
    make = {}
    for leaf in _graph_leaves(model):
        layers = walk_layers(leaf)
        owned = _owned_cells(layers)
        for layer in layers:
            if isinstance(layer, SparseLayer) and id(layer) not in owned:
                make[id(layer)] = _to_plain(layer)
    plain, pairs = _rebuild_model(model, make)
    for old, new in pairs:
        masked = {id(pair.kernel): pair.masked for _, pair in find_sparse_kernels(old)}
        _copy_weights(old, new, lambda w, _: masked.get(id(w), w))
    left = find_sparse_layers(plain)
    if left:
        raise TypeError(
            f"`tf_dsr.strip` cannot reach sparse layers "
            f"{[layer.name for layer in left]}: they sit inside a layer or "
            "subclassed model that is neither Sequential nor Functional. "
            "Build that part as a Functional model, or give the custom "
            "layer plain Keras sublayers holding each sparse kernel's "
            "masked value (`layer.sparse_kernels()`)."
        )
    return plain
