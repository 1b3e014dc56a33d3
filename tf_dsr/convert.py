"""Making any model sparse in place (`sparsify`).

`sparsify` changes the weight layers of a model where they are, as Keras'
`Model.quantize()` does: it walks every layer the model holds (graph
layers, nested models, wrappers, recurrent cells, the sublayers keras-hub
blocks and subclassed models create in code) and turns each one into its
tf_dsr sparse class (`tf_dsr.layers.swap.make_sparse`). The model keeps its
class, its methods (`generate()`, a task's preprocessor and defaults) and
every weight. `tf_dsr.strip` (`tf_dsr/stripping.py`) gives the plain
Keras copy to ship.
"""

import warnings

import keras

from tf_dsr._keras_internals import reset_compiled_functions
from tf_dsr.counting import num_weights
from tf_dsr.counting import parameter_counts
from tf_dsr.layers.classes import SPARSE_CLASSES
from tf_dsr.layers.classes import sparse_class_for
from tf_dsr.layers.dense import SparseDense
from tf_dsr.layers.find import find_dense_kernels
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import find_sparse_layers
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.find import walk_named_layers
from tf_dsr.saving.record import attach_record
from tf_dsr.layers.swap import check_sparsifiable
from tf_dsr.layers.swap import make_sparse
from tf_dsr.validation import check_built_model
from tf_dsr.validation import validate_layer_block_shape
from tf_dsr.validation import validate_seed
from tf_dsr.validation import validate_sparsity

# Recurrent layers whose sparse class computes each masked kernel once per
# call (not once per time step): they change class with their cell.
_RECURRENT = (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)
_EMBEDDINGS = (keras.layers.Embedding,)
_DENSE_OUTPUTS = (keras.layers.Dense, keras.layers.EinsumDense)


def _is_convolution(layer):
    return "Conv" in type(layer).__name__


def _is_transformer(layers):
    """A model holding an attention layer (any class named `...Attention`:
    Keras' `MultiHeadAttention` and its subclasses, keras-hub's Llama,
    Gemma and Mistral attention, a user's own)."""
    return any(
        cls.__name__.endswith("Attention")
        for layer in layers for cls in type(layer).__mro__
    )


class _Candidate:
    """A layer `sparsify` can convert, where it sits and its sparse class."""

    def __init__(self, path, layer, sparse_class, ancestors):
        self.path = path
        self.layer = layer
        self.sparse_class = sparse_class
        self.ancestors = ancestors  # Layers above it, outermost first.


def _kernels_argument(kernels):
    """`kernels` as `{class or name: tuple of attribute names}`."""
    if kernels is None:
        return {}
    if not isinstance(kernels, dict):
        raise TypeError(
            "`kernels` must be None or a dict mapping a layer class (or a "
            "layer name) to the attribute names of its kernels, e.g. "
            f"`{{MyLayer: ['w']}}`. Received: {kernels!r} of type "
            f"{type(kernels).__name__}."
        )
    parsed = {}
    for key, names in kernels.items():
        if isinstance(names, str):
            names = (names,)
        if not (isinstance(key, str) or (
            isinstance(key, type) and issubclass(key, keras.layers.Layer)
        )):
            raise TypeError(
                "`kernels` keys must be layer classes or layer names. "
                f"Received the key {key!r}."
            )
        if not names or not all(isinstance(n, str) for n in names):
            raise TypeError(
                f"`kernels[{key!r}]` must be an attribute name or a list of "
                f"them, e.g. ['w']. Received: {names!r}."
            )
        parsed[key] = tuple(names)
    return parsed


def _sparse_class(layer, named):
    """The sparse class `sparsify` gives `layer`, or None."""
    names = named.get(layer.name, named.get(type(layer)))
    if names is not None:
        return sparse_class_for(type(layer), names)
    sparse_class = SPARSE_CLASSES.get(type(layer))
    if sparse_class is None or isinstance(layer, (keras.layers.MultiHeadAttention,)):
        # Attention's projections are layers of their own, converted one by one.
        return None
    return sparse_class


def _candidates(model, named):
    """Every layer of `model` `sparsify` can convert, in walk order."""
    found, path_to_layer = [], {}
    for path, layer in walk_named_layers(model):
        path_to_layer[path] = layer
        if layer is model:
            continue
        sparse_class = _sparse_class(layer, named)
        if sparse_class is None:
            continue
        parts = path.split("/")
        ancestors = [path_to_layer["/".join(parts[:i])] for i in range(1, len(parts))]
        found.append(_Candidate(path, layer, sparse_class, ancestors))
    return found


def _selects(candidate, selector, names):
    """True when `selector` picks the candidate.

    Names pick a layer and every candidate inside it. A predicate is asked
    about the candidate itself and, for a recurrent cell, about the
    recurrent layer holding it (`isinstance(layer, keras.layers.LSTM)`
    selects the LSTM's cell).
    """
    if callable(selector):
        parent = candidate.ancestors[-1] if candidate.ancestors else None
        return bool(selector(candidate.layer)) or (
            isinstance(parent, keras.layers.RNN) and bool(selector(parent)))
    layers = candidate.ancestors + [candidate.layer]
    return any(layer.name in names for layer in layers) or candidate.path in names


def _selector_names(model, candidates, selector, argument):
    """Checks a `keep_dense`/`include` value; returns its names (or None)."""
    if selector is None or callable(selector):
        return None
    if isinstance(selector, str) or not isinstance(selector, (list, tuple, set, frozenset)):
        hint = f" For one layer use ['{selector}']." if isinstance(selector, str) else ""
        raise TypeError(
            f"`{argument}` must be None, a list of layer names or a predicate "
            f"`fn(layer) -> bool`. Received: {selector!r} of type "
            f"{type(selector).__name__}.{hint}"
        )
    holding = {c.layer.name for c in candidates} | {c.path for c in candidates}
    holding |= {a.name for c in candidates for a in c.ancestors}
    unknown = [name for name in selector if name not in holding]
    if unknown:
        raise ValueError(
            f"`{argument}` names {unknown}, which are neither convertible layers "
            f"of model '{model.name}' nor layers holding one. Convertible layers: "
            f"{sorted({c.path for c in candidates})}."
        )
    return set(selector)


def _paper_default(candidates, transformer):
    """`{id(layer): why}` for the layers the default rule keeps dense."""
    def why(candidate, rule):
        return f"{rule} (include=['{candidate.layer.name}'] converts it)"

    kept = {}
    if not transformer:
        for c in candidates:
            if isinstance(c.layer, _EMBEDDINGS):
                kept[id(c.layer)] = why(c, "default: embedding tables stay dense "
                                           "outside transformers")
    convs = [c for c in candidates if _is_convolution(c.layer)]
    if convs:
        kept[id(convs[0].layer)] = why(
            convs[0], "paper's rule: the first convolution stays dense")
        denses = [c for c in candidates if type(c.layer) in _DENSE_OUTPUTS]
        if denses:
            kept[id(denses[-1].layer)] = why(
                denses[-1], "paper's rule: the last Dense of a conv net stays dense")
    return kept


def _layers_to_keep_dense(model, candidates, keep_dense, include):
    """`{id(layer): why}` for the candidates that stay dense."""
    keep_names = _selector_names(model, candidates, keep_dense, "keep_dense")
    include_names = _selector_names(model, candidates, include, "include")
    if keep_dense is None:
        kept = _paper_default(candidates, _is_transformer(walk_layers(model)))
    else:
        kept = {
            id(c.layer): "named by keep_dense"
            for c in candidates if _selects(c, keep_dense, keep_names)
        }
    if include is not None:
        included = [c for c in candidates if _selects(c, include, include_names)]
        if keep_dense is not None:
            both = [c.layer.name for c in included if id(c.layer) in kept]
            if both:
                raise ValueError(
                    f"Layers {both} are selected by both `keep_dense` (stay dense) "
                    "and `include` (become sparse). Remove them from one of the two."
                )
        for c in included:
            kept.pop(id(c.layer), None)
    return kept


def _block_problem(candidate, block_shape):
    """Why `block_shape` cannot apply to a candidate, or None."""
    layer, sparse_class = candidate.layer, candidate.sparse_class
    kind = type(layer).__name__
    if not sparse_class.supports_block_shape:
        return f"  {candidate.path} ({kind}): no block shape for this layer type"
    for name in sparse_class.sparse_kernel_names:
        kernel = getattr(layer, name, None)
        if kernel is None:
            continue
        shape = tuple(int(d) for d in kernel.shape)
        try:
            # The one home of block geometry (and of its messages).
            sparse_class.full_block_shape(layer, name, shape, block_shape)
        except ValueError as error:
            return f"  {candidate.path} ({kind}, {name} {shape}): {error}"
    return None


def _check_block_shape(candidates, block_shape):
    problems = [p for p in (_block_problem(c, block_shape) for c in candidates) if p]
    if problems:
        raise ValueError(
            f"`tf_dsr.sparsify`: block_shape={tuple(block_shape)} cannot apply to "
            f"{len(problems)} layer(s) it would convert:\n" + "\n".join(problems)
            + "\nKeep them dense (`keep_dense=[...]` or a predicate), or choose "
            "a block that divides their kernels."
        )


def _why_dense(layer, kept_at, path):
    """`(path, why)`: where a layer holding a dense kernel is reported (the
    kept layer holding it, or itself) and why it is dense."""
    parts = path.split("/")
    for i in range(len(parts), 0, -1):
        prefix = "/".join(parts[:i])
        if prefix in kept_at:
            return prefix, kept_at[prefix]
    kind = type(layer).__name__
    why = f"unsupported layer type: tf_dsr has no sparse layer for {kind}"
    base = next((c for c in SPARSE_CLASSES if isinstance(layer, c)), None)
    if base is not None:
        why += (f" (a subclass of {base.__name__}: it may use its kernel "
                "differently, so it is left alone)")
    why += f"; to mask it, name its kernel: `kernels={{{kind}: ['<attribute>']}}`"
    return path, why


def _dense_report(model, kept):
    """The text of `sparsify`'s warning, or None when nothing stays dense."""
    named = walk_named_layers(model)
    path_of = {id(layer): path or layer.name for path, layer in named}
    kept_at = {path_of[i]: why for i, why in kept.items() if i in path_of}
    entries = {}
    for _, layer, variable in find_dense_kernels(model):
        path, why = _why_dense(layer, kept_at, path_of[id(layer)])
        holder = next((l for p, l in named if (p or l.name) == path), layer)
        entry = entries.setdefault(path, [type(holder).__name__, 0, why])
        entry[1] += num_weights(variable)
    has_sparse = bool(find_sparse_kernels(model))
    if not entries and has_sparse:
        return None
    counts = parameter_counts(model)
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
             block_shape=None, kernels=None):
    """Makes the weight layers of `model` sparse, in place, and returns it.

    Like Keras' `Model.quantize()`, `sparsify` changes the layers of any
    model where they are: Sequential, Functional, subclassed and nested
    models, keras-hub backbones and task models (`GPT2CausalLM`,
    `BertTextClassifier`, `LlamaCausalLM`, ...), at any depth: graph
    layers, wrappers (`Bidirectional`, `TimeDistributed`), recurrent
    cells, attention projections and every sublayer a block creates in
    its own code. Each `Dense`, `EinsumDense`, `Embedding`,
    `ReversibleEmbedding` (both tables when untied), convolution (every
    rank and kind) and recurrent cell becomes its tf_dsr sparse class
    (exact types: a user's subclass of `Dense` is left alone and
    reported). Each new mask has `round((1 - sparsity) * size)` ones at
    random positions and the kernel is zeroed elsewhere; every other
    weight, the model's class and its whole API are kept, so
    `model = tf_dsr.sparsify(model, 0.9)` and `tf_dsr.sparsify(model, 0.9)`
    do the same. With `sparsity=0` the model computes what it computed.
    To keep a dense copy, copy the model first (for example
    `keras.models.clone_model` plus `set_weights`, or save and load it). A
    compiled model keeps its optimizer; its traced functions are dropped.

    The default rule: in a network with convolutions, the first
    convolution and the last `Dense`/`EinsumDense` stay dense (Mostafa &
    Wang, ICML 2019); embedding tables stay dense, except in transformers
    (models holding an attention layer: any class named `...Attention`),
    whose token tables (`Embedding`, `ReversibleEmbedding`) become sparse
    like every projection. Weights without a sparse class stay dense and
    are reported: norms, biases, keras-hub's `PositionEmbedding`, a ViT's
    class token. `include` converts some of the kept layers anyway;
    `keep_dense` replaces the rule.

    What stays dense is never silent: when any layer still holds a dense
    kernel (a trainable weight of rank >= 2 without a mask), `sparsify`
    issues one `UserWarning` listing each such layer with its number of
    dense weights and why (the rule, `keep_dense`, or a layer tf_dsr has
    no sparse class for, with how to name its kernel), and the share of
    trainable parameters now in sparse kernels.

    Args:
        model: a built `keras.Model` of any kind.
        sparsity: float in [0, 1), fraction of zeros in each new kernel.
        keep_dense: None (the default rule above), a list of layer names
            (or paths, `"block/dense"`), or a predicate `fn(layer) -> bool`
            asked about each convertible layer (and about the recurrent
            layer holding a cell). A named layer stays dense with every
            layer inside it (naming a transformer block keeps the whole
            block dense); all others become sparse. Defaults to None.
        include: None, names or a predicate, as `keep_dense`: selected
            layers become sparse although the default rule keeps them
            dense. A layer selected by both raises a `ValueError`.
            Defaults to None.
        seed: int or None. Layer i (in walk order) draws its masks with
            `seed + i`; None draws seeds from Python's `random` (seeded by
            `keras.utils.set_random_seed`). Defaults to None.
        block_shape: None, or `(b_in, b_out)`: masks are made of whole
            blocks (see `tf_dsr.SparseDense`). Only `Dense`, `EinsumDense`,
            `Conv1D/2D/3D` and `ReversibleEmbedding` (its logits
            projection) take it, with input and output axes multiples of
            the block: any other converted layer raises a `ValueError`
            listing them all, before anything changes. Defaults to None.
        kernels: None, or a dict mapping a layer class (exact type) or a
            layer name to the attribute names of the kernels its `call`
            reads as `self.<name>`: how a user's own layer (or a Keras
            layer tf_dsr has no class for) becomes sparse, e.g.
            `{MyLayer: ["w"]}`. A named attribute that is not a trainable
            variable raises a `ValueError`. Defaults to None.

    Returns:
        `model` itself, now sparse.

    Raises:
        TypeError: `model` is not a `keras.Model`, or an argument has the
            wrong type.
        ValueError: the model is unbuilt or already sparse, or an argument
            cannot apply (nothing has changed then).

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
    >>> sparse is model, [getattr(layer, "sparse_name", type(layer).__name__)
    ...                   for layer in model.layers]
    (True, ['Conv2D', 'SparseConv2D', 'Flatten', 'SparseDense', 'Dense'])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> images = x.reshape(-1, 8, 8, 1)
    >>> history = model.fit(images, y, epochs=2, verbose=0, callbacks=[
    ...     tf_dsr.DynamicReparam(prune_target=0.05, period=30)])
    """
    check_built_model(model, "sparsify")
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
    named = _kernels_argument(kernels)
    candidates = _candidates(model, named)
    _check_named_kernels(model, named, candidates)
    kept = _layers_to_keep_dense(model, candidates, keep_dense, include)
    to_convert = [c for c in candidates if id(c.layer) not in kept]
    if block_shape is not None:
        _check_block_shape(to_convert, block_shape)
    # Every check before the first change: a refused call changes nothing.
    for c in to_convert:
        check_sparsifiable(c.layer, c.sparse_class, sparsity, block_shape)
    converted = {id(c.layer) for c in to_convert}
    with model.distribute_strategy.scope():
        for i, c in enumerate(to_convert):
            make_sparse(c.layer, c.sparse_class, sparsity,
                        None if seed is None else seed + i, block_shape)
            parent = c.ancestors[-1] if c.ancestors else None
            if type(parent) in _RECURRENT and id(parent) not in converted:
                converted.add(id(parent))
                make_sparse(parent, SPARSE_CLASSES[type(parent)], sparsity, None)
        attach_record(model)
    reset_compiled_functions(model)
    report = _dense_report(model, kept)
    if report is not None:
        warnings.warn(report, UserWarning, stacklevel=2)
    return model


def _check_named_kernels(model, named, candidates):
    """Every key of `kernels` must name something in the model."""
    found = {c.layer.name for c in candidates} | {type(c.layer) for c in candidates}
    missing = [key for key in named if key not in found]
    if missing:
        shown = [k.__name__ if isinstance(k, type) else k for k in missing]
        raise ValueError(
            f"`kernels` names {shown}, which model '{model.name}' holds no "
            "layer of. Keys are layer classes (exact types) or layer names."
        )
