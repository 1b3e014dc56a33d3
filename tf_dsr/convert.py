"""Moving models between plain Keras layers and tf_dsr sparse layers.

`sparsify` turns the weight layers of an existing model (Dense,
EinsumDense, Embedding, convolutions, recurrent layers) into their
tf_dsr sparse counterparts, so any model a user already has can be
trained with DSR. `strip` is its inverse for shipping: every sparse layer
becomes the plain Keras layer holding its masked kernels, with the zeros
really in the weights and nothing from tf_dsr left in the model.

Both rebuild the model from its graph (`keras.models.clone_model` for
Functional models, a new `keras.Sequential` for Sequential ones), so they
work for nested models and shared layers and never modify their input.
`sparsify` needs a model whose structure Keras knows: subclassed models
are refused with a `TypeError` explaining what to do instead. `strip`
re-creates a subclassed model, or a custom layer holding sparse layers,
from its config with every sparse constructor giving the Keras layer
(`tf_dsr.layers.base.constructs_plain_layers`). A layer that wraps
others (`Bidirectional`, `TimeDistributed`, a generic `RNN`) is rebuilt
from its config with the configs of the wrapped layers swapped, and
weights are copied in the order Keras creates them, masks left out.
"""

import warnings

import keras

from tf_dsr import counting
from tf_dsr.layers import SPARSE_CLASSES
from tf_dsr.layers import SparseDense
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.base import constructs_plain_layers
from tf_dsr.layers.base import validate_layer_block_shape
from tf_dsr.layers.base import validate_seed
from tf_dsr.layers.base import validate_sparsity
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_dense_kernels
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import find_sparse_layers
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.find import walk_named_layers

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


_SUBCLASSED_RECIPE = (
    "Create tf_dsr's sparse layers directly in your subclass, for example\n"
    "    self.dense = tf_dsr.SparseDense(128, sparsity=0.9)   # not keras.layers.Dense(128)\n"
    "    self.conv = tf_dsr.SparseConv2D(32, 3, sparsity=0.9)  # not keras.layers.Conv2D(32, 3)\n"
    "then train with the tf_dsr callbacks, and ship with `tf_dsr.strip(model)`, "
    "`tf_dsr.export(model, path)` or `tf_dsr.to_tflite`. Or build the same "
    "network as a Functional model (`keras.Model(inputs, outputs)`) and "
    "sparsify that."
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
            f"`tf_dsr.{function_name}` rebuilds Sequential and Functional "
            f"models; model '{model.name}' is a subclassed "
            f"`{type(model).__name__}`, whose layer graph Keras cannot rebuild. "
            + _SUBCLASSED_RECIPE
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


def _owned_sublayers(layers):
    """Ids of the sublayers that layers among `layers` create in their own
    code from their own arguments: a recurrent layer's cell, attention's
    projections. Such a layer is converted (or stripped) as a whole, its
    sublayers with it."""
    owned = set()
    for layer in layers:
        if isinstance(layer, _RECURRENT):
            owned.add(id(layer.cell))
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            owned.update(id(sub) for sub in walk_layers(layer)[1:])
    return owned


def _nested_layer_names(config):
    """Names of the layer configs nested in `config`: the layers inside a
    wrapper that `_rebuilt` can swap (see `_replace_in_config`)."""
    names = set()
    if isinstance(config, dict):
        inner = config.get("config")
        if "class_name" in config and isinstance(inner, dict) and "name" in inner:
            names.add(inner["name"])
        for value in config.values():
            names |= _nested_layer_names(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            names |= _nested_layer_names(value)
    return names


def _convertible(leaves):
    """Layers `sparsify` can convert, at any depth inside `leaves`.

    A recurrent layer (LSTM, GRU, SimpleRNN) is converted as a whole, its
    cell with it; a bare cell counts where a generic `keras.layers.RNN`
    holds it. A layer inside a leaf counts only if the leaf's config holds
    its config (`Bidirectional`, `TimeDistributed`, `RNN`): the leaf is
    rebuilt from that config. `MultiHeadAttention` is converted as a whole
    (its projections with it); most custom layers create their sublayers
    in code, so those stay as they are (and `sparsify`'s report says so).

    Returns:
        The convertible layers, and `{name: leaf name}` of the layers of a
        convertible type that sit out of reach inside a leaf.
    """
    found, unreachable, seen = [], {}, set()
    for leaf in leaves:
        layers = walk_layers(leaf)
        reachable = _nested_layer_names(leaf.get_config()) if len(layers) > 1 else set()
        owned = _owned_sublayers(layers)
        for layer in layers:
            if id(layer) in seen or id(layer) in owned:
                continue
            seen.add(id(layer))
            if layer is not leaf and layer.name not in reachable:
                if type(layer) in SPARSE_CLASSES:
                    unreachable.setdefault(layer.name, leaf.name)
                continue
            if type(layer) in SPARSE_CLASSES:
                found.append(layer)
    return found, unreachable


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


def _check_block_shape(layers, block_shape):
    """Raises before anything is built unless every layer takes `block_shape`."""
    problems = []
    for layer in layers:
        sparse_class = SPARSE_CLASSES[type(layer)]
        if not sparse_class.supports_block_shape:
            problems.append(f"  {layer.name} ({type(layer).__name__}): no block shape "
                            "for this layer type")
            continue
        kernel = layer.kernel
        full = (1,) * (len(kernel.shape) - 2) + tuple(block_shape)
        bad = [i for i, (d, b) in enumerate(zip(kernel.shape, full)) if int(d) % b]
        if bad:
            problems.append(f"  {layer.name} ({type(layer).__name__}, kernel "
                            f"{tuple(kernel.shape)}): not a multiple of the block "
                            f"{full} along axis {bad[0]}")
    if problems:
        names = [line.split(" (")[0].strip() for line in problems]
        raise ValueError(
            f"`tf_dsr.sparsify`: block_shape={tuple(block_shape)} cannot apply to "
            f"{len(problems)} layer(s) it would convert:\n" + "\n".join(problems)
            + f"\nKeep them dense (`keep_dense=...` or a predicate), e.g. add "
            f"{names} to keep_dense, or choose a block that divides their kernels."
        )


def _to_sparse(layer, sparsity, seed, block_shape=None):
    if layer.quantization_mode is not None or getattr(layer, "lora_enabled", False):
        raise ValueError(
            f"Layer '{layer.name}' is quantized or has LoRA enabled; sparse "
            "layers hold plain float kernels. Sparsify the float model "
            "first, and quantize or add LoRA after `tf_dsr.strip`."
        )
    sparse_class = SPARSE_CLASSES[type(layer)]

    def make(config):
        config = {**config, "sparsity": sparsity}
        if block_shape is not None:
            config["block_shape"] = list(block_shape)
        if seed is not None or "seed" not in config:
            config["seed"] = seed
        return sparse_class.from_config(config)

    return make


def _to_plain(layer):
    keras_class = layer.keras_class()

    def make(config):
        config = {key: value for key, value in config.items()
                  if key not in ("sparsity", "block_shape")}
        if not layer._keras_takes_seed:
            config.pop("seed", None)
        return keras_class.from_config(config)

    return make


def _paper_default(candidates):
    """`{id(layer): why}` for the layers the paper's rule keeps dense."""
    def why(layer, rule):
        return f"{rule} (include=['{layer.name}'] converts it)"

    kept = {
        id(layer): why(layer, "default: embedding tables stay dense")
        for layer in candidates if isinstance(layer, keras.layers.Embedding)
    }
    convs = [layer for layer in candidates if isinstance(layer, _CONVOLUTIONS)]
    if convs:
        kept[id(convs[0])] = why(convs[0], "paper's rule: the first convolution stays dense")
        denses = [layer for layer in candidates if isinstance(layer, _DENSE_OUTPUTS)]
        if denses:
            kept[id(denses[-1])] = why(
                denses[-1], "paper's rule: the last Dense of a conv net stays dense")
    return kept


def _selected(candidates, selector, argument, unreachable):
    """Ids of the candidates that `selector` (names or predicate) picks."""
    if callable(selector):
        return {id(layer) for layer in candidates if selector(layer)}
    if isinstance(selector, str) or not isinstance(
        selector, (list, tuple, set, frozenset)
    ):
        hint = f" For one layer use ['{selector}']." if isinstance(selector, str) else ""
        raise TypeError(
            f"`{argument}` must be None, a list of layer names or a predicate "
            f"`fn(layer) -> bool`. Received: {selector!r} of type "
            f"{type(selector).__name__}.{hint}"
        )
    names = {layer.name: layer for layer in candidates}
    unknown = [name for name in selector if name not in names]
    if unknown:
        inside = [name for name in unknown if name in unreachable]
        why = (
            f" {inside} sit inside layers that sparsify cannot rebuild "
            f"({sorted(set(unreachable[n] for n in inside))}): their configs do "
            "not hold their sublayers." if inside else ""
        )
        raise ValueError(
            f"`{argument}` names {unknown} that are not convertible layers "
            f"of the model.{why} Convertible layers: {sorted(names)}."
        )
    return {id(names[name]) for name in selector}


def _layers_to_keep_dense(candidates, keep_dense, include, unreachable):
    """`{id(layer): why}` for the convertible layers that stay dense.

    `keep_dense` (names or predicate) replaces the paper's rule; `include`
    converts layers the paper's rule keeps. A layer selected by both is
    an error: neither silently wins.
    """
    if keep_dense is None:
        kept = _paper_default(candidates)
    else:
        kept = {
            i: "named by keep_dense"
            for i in _selected(candidates, keep_dense, "keep_dense", unreachable)
        }
    if include is not None:
        included = _selected(candidates, include, "include", unreachable)
        if keep_dense is not None:
            both = [layer.name for layer in candidates
                    if id(layer) in included and id(layer) in kept]
            if both:
                raise ValueError(
                    f"Layers {both} are selected by both `keep_dense` (stay dense) "
                    "and `include` (become sparse). Remove them from one of the two."
                )
        for i in included:
            kept.pop(i, None)
    return kept


def _dense_report(model, sparse_model, kept, original_paths):
    """The text of `sparsify`'s warning, or None when nothing stays dense.

    Lists every layer of `sparse_model` that holds dense kernels (trainable
    weights of rank >= 2 without a mask, `find_dense_kernels`), why it is
    dense, and the share of trainable parameters in sparse kernels.
    """
    kept_at = {original_paths[i]: why for i, why in kept.items() if i in original_paths}
    named = walk_named_layers(sparse_model)
    path_of = {id(layer): path or layer.name for path, layer in named}
    layer_at = {path or layer.name: layer for path, layer in named}
    entries = {}
    for _, layer, variable in find_dense_kernels(sparse_model):
        parts = path_of[id(layer)].split("/")
        prefixes = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
        kept_prefix = next((p for p in prefixes if p in kept_at), None)
        if kept_prefix is not None:
            path, why = kept_prefix, kept_at[kept_prefix]
        elif type(layer) in SPARSE_CLASSES:
            # Climb to the outermost convertible layer (a cell's LSTM) and
            # name the layer holding it, which sparsify does not rebuild.
            i = len(parts)
            while i > 1 and type(layer_at["/".join(parts[:i - 1])]) in SPARSE_CLASSES:
                i -= 1
            path = "/".join(parts[:i])
            container = layer_at.get("/".join(parts[:i - 1]))
            why = (
                f"unsupported: {type(container).__name__} '{container.name}' creates "
                "it in code, not from its config, so sparsify cannot make it sparse"
                if container is not None else "unsupported: sparsify cannot reach it"
            )
        else:
            path = path_of[id(layer)]
            kind = type(layer).__name__
            why = f"unsupported layer type: tf_dsr has no sparse layer for {kind}"
            base = next((c for c in SPARSE_CLASSES if isinstance(layer, c)), None)
            if base is not None:
                why += (f" (a subclass of {base.__name__}: it may use its kernel "
                        "differently, so it is left alone)")
        entry = entries.setdefault(path, [type(layer_at[path]).__name__, 0, why])
        entry[1] += counting.num_weights(variable)
    has_sparse = bool(find_sparse_kernels(sparse_model))
    if not entries and has_sparse:
        return None
    counts = counting.parameter_counts(sparse_model)
    if has_sparse:
        head = (
            f"`tf_dsr.sparsify`: {len(entries)} weight layer(s) of model "
            f"'{model.name}' stay dense. Sparse kernels now hold "
            f"{counts.sparse_share:.1%} of its {counts.num_trainable:,} trainable "
            f"parameters; {counts.num_dense_trainable:,} are dense."
        )
    else:
        head = (
            f"`tf_dsr.sparsify` left model '{model.name}' without sparse layers: "
            f"{len(entries)} weight layer(s) stay dense, all "
            f"{counts.num_trainable:,} trainable parameters are dense."
        )
    lines = [
        f"  {path} ({kind}, {num:,} weights): {why}"
        for path, (kind, num, why) in entries.items()
    ]
    return "\n".join([head] + lines)


def sparsify(model, sparsity, keep_dense=None, include=None, seed=None,
             block_shape=None):
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
    stay dense. "First" and "last" follow `model.layers` order, nested
    models and wrappers expanded in place. `include` converts some of
    these anyway; `keep_dense` replaces the rule. The paper's exact splits
    differ in details (it also keeps WRN-28-2's 1x1 shortcut convs and
    ResNet-50's downsample convs dense, and makes ResNet-50's final Dense
    kernel sparse): `tf_dsr.models.wide_resnet` and `resnet50` build those.

    What stays dense is never silent: when any layer still holds a dense
    kernel (a trainable weight of rank >= 2 without a mask), `sparsify`
    issues one `UserWarning` listing each such layer with its number of
    dense kernel weights and why it is dense (the paper's rule,
    `keep_dense`, or a layer tf_dsr cannot make sparse: a type without a
    sparse class, such as a custom layer with its own kernel, or a layer
    inside one that is rebuilt from a config not holding it), and the
    share of the
    trainable parameters now in sparse kernels
    (`tf_dsr.sparsity_summary(model).sparse_share`).

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
            Subclassed models raise a `TypeError` showing how to create
            sparse layers in the subclass instead.
        sparsity: float in [0, 1), fraction of zeros in each new kernel.
        keep_dense: None (the paper's choice above), a list of layer names,
            or a predicate `fn(layer) -> bool` called with each original
            convertible layer; selected layers stay dense, all others
            (embeddings included) become sparse. Defaults to None.
        include: None, a list of layer names, or a predicate `fn(layer) ->
            bool`; selected layers become sparse although the paper's rule
            would keep them dense (an embedding, the first convolution).
            A layer selected by both `keep_dense` and `include` raises a
            `ValueError`. Defaults to None.
        seed: int or None. Layer i (in conversion order) draws its masks
            with `seed + i` (for recurrent layers, which take a `seed` of
            their own for dropout, that seed too); None draws seeds from
            Python's `random` (seeded by `keras.utils.set_random_seed`).
            Defaults to None.
        block_shape: None, or `(b_in, b_out)`: every converted layer's
            masks are made of whole blocks (see `tf_dsr.SparseDense`;
            `(4, 1)` is TFLite's 1x4 block of a Dense kernel). Only `Dense`
            and `Conv1D/2D/3D` take it, and their kernels' input and output
            axes must be multiples of the block: any other converted layer
            raises a `ValueError` listing them all, before anything is
            built (keep them dense with `keep_dense`). Defaults to None.

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
            "layers, and sparsify only converts plain Keras layers, so "
            f"sparsity={sparsity!r} would not apply to them. To sparsify it "
            "again, call `tf_dsr.sparsify(tf_dsr.strip(model), ...)`."
        )
    sparsity = validate_sparsity(sparsity)
    seed = validate_seed(seed)
    if block_shape is not None:
        block_shape = validate_layer_block_shape(block_shape, SparseDense)
    candidates, unreachable = _convertible(_graph_leaves(model))
    keep = _layers_to_keep_dense(candidates, keep_dense, include, unreachable)
    to_convert = [layer for layer in candidates if id(layer) not in keep]
    if block_shape is not None:
        _check_block_shape(to_convert, block_shape)
    make = {
        id(layer): _to_sparse(layer, sparsity, None if seed is None else seed + i,
                              block_shape)
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
    paths = {id(layer): path for path, layer in walk_named_layers(model)}
    report = _dense_report(model, sparse_model, keep, paths)
    if report is not None:
        warnings.warn(report, UserWarning, stacklevel=2)
    return sparse_model


_SHIP_DIRECTLY = (
    "    tf_dsr.export(model, \"artifact/\")         # SavedModel: plain variables, no masks\n"
    "    tf_dsr.to_tflite(model, \"model.tflite\")"
)


def _recreated_plain(layer):
    """`layer` (a subclassed model or custom layer) re-created from its
    constructor arguments, every sparse layer its code constructs made the
    Keras layer (`constructs_plain_layers`). Unbuilt, no weights copied."""
    try:
        config = layer.get_config()
    except NotImplementedError as error:
        raise TypeError(
            f"`tf_dsr.strip` re-creates '{layer.name}' (a "
            f"`{type(layer).__name__}`, whose layer graph Keras does not know) "
            "from its constructor arguments, but it has no config: "
            f"{error} Give `{type(layer).__name__}` a `get_config`, or ship "
            "the model without stripping:\n" + _SHIP_DIRECTLY
        ) from None
    with constructs_plain_layers():
        try:
            plain = type(layer).from_config(config)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`tf_dsr.strip` re-creates '{layer.name}' (a "
                f"`{type(layer).__name__}`, whose layer graph Keras does not "
                "know) from its config, which failed: "
                f"{str(error).splitlines()[0]} Make `get_config` return the "
                f"arguments of `{type(layer).__name__}.__init__`, or ship the "
                "model without stripping:\n" + _SHIP_DIRECTLY
            ) from error
    left = find_sparse_layers(plain)
    if left:
        raise TypeError(
            f"`tf_dsr.strip`: re-creating '{layer.name}' from its config still "
            f"gives sparse layers {[sub.name for sub in left]}: its code "
            "creates them without calling their constructor (e.g. by "
            "copying). Ship it with `tf_dsr.export` or `tf_dsr.to_tflite`."
        )
    return plain


def _holds_unreachable_sparse_layers(leaf):
    """True for a leaf (custom layer) whose config does not hold the
    configs of the sparse layers inside it: they are created in code."""
    layers = walk_layers(leaf)
    owned = _owned_sublayers(layers)
    inner = [
        layer for layer in layers[1:]
        if isinstance(layer, SparseLayer) and id(layer) not in owned
    ]
    if not inner:
        return False
    reachable = _nested_layer_names(leaf.get_config())
    return any(layer.name not in reachable for layer in inner)


def _without_method_state(model):
    """`model`'s weights minus those of tf_dsr's method state, which the
    callbacks attach to it and a re-created model does not have."""
    state = {
        id(weight)
        for layer in walk_layers(model) if getattr(layer, "_tf_dsr_method_state", False)
        for weight in layer.weights
    }
    return [weight for weight in model.weights if id(weight) not in state]


def _strip_recreated(model):
    """`strip` for a model whose graph Keras does not know (subclassed)."""
    build_config = model.get_build_config()
    if build_config is None:
        raise ValueError(
            f"`tf_dsr.strip` needs a built model; model '{model.name}' is not "
            "built. Call it once on data, or call `model.build(input_shape)`."
        )
    plain = _recreated_plain(model)
    plain.build_from_config(build_config)
    masks = {id(pair.mask) for _, pair in find_sparse_kernels(model)}
    masked = {id(pair.kernel): pair.masked for _, pair in find_sparse_kernels(model)}
    old = [w for w in _without_method_state(model) if id(w) not in masks]
    new = plain.weights
    if [tuple(w.shape) for w in old] != [tuple(w.shape) for w in new]:
        raise ValueError(
            f"`tf_dsr.strip`: model '{model.name}' re-created from its config "
            f"holds other weights than the model: {[tuple(w.shape) for w in new]} "
            f"vs {[tuple(w.shape) for w in old]}. Its `get_config` must give "
            "back the arguments that build the same layers. Or ship the model "
            "with `tf_dsr.export` or `tf_dsr.to_tflite`, which need no copy."
        )
    for old_weight, new_weight in zip(old, new):
        value = masked.get(id(old_weight), old_weight)
        new_weight.assign(keras.ops.cast(value, new_weight.dtype))
    return plain


def strip(model):
    """Returns a plain Keras copy of `model` with every sparse layer made dense.

    Each tf_dsr sparse layer (at the top level, in nested models, inside
    wrappers and custom layers) becomes the Keras layer it masks, with the
    same configuration and name, whose kernels are the sparse layer's
    masked kernels: masked weights are exact zeros in the copy. Every
    other layer, nested models, shared layers and the topology are kept;
    nothing from tf_dsr remains, so the copy saves, exports and converts
    to TFLite without tf_dsr installed. `strip(sparsify(m))` has the
    structure and config of `m`. `model` itself is not modified.

    Sequential and Functional models are rebuilt from their graph. A
    subclassed model, and a custom layer holding sparse layers, is
    re-created from its config (its constructor arguments) with every
    `tf_dsr.Sparse*` constructor giving the Keras layer instead
    (`tf_dsr.SparseDense(64, sparsity=0.9)` gives `keras.layers.Dense(64)`),
    then built and given the weights. That needs a `get_config` that
    re-creates the same layers (Keras derives it from the constructor's
    arguments when they are plain values); without one, strip raises a
    `TypeError` and `tf_dsr.export` / `tf_dsr.to_tflite` ship the model
    directly.

    Args:
        model: a built `keras.Model`: Sequential, Functional or subclassed.

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
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`tf_dsr.strip` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    check_masks(find_sparse_kernels(model), "`tf_dsr.strip`")
    if not is_graph_model(model):
        return _strip_recreated(model)
    check_graph_model(model, "strip")
    make = {}
    for leaf in _graph_leaves(model):
        if _holds_unreachable_sparse_layers(leaf):
            make[id(leaf)] = lambda config, leaf=leaf: _recreated_plain(leaf)
            continue
        layers = walk_layers(leaf)
        owned = _owned_sublayers(layers)
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
            f"{[layer.name for layer in left]} of model '{model.name}'. Please "
            "report this; to ship the model without tf_dsr meanwhile, export "
            "it directly (no stripping needed):\n" + _SHIP_DIRECTLY
        )
    return plain
