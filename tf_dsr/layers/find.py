"""Finding the sparse kernels of a model, at any depth: the one traversal.

Callbacks, reporting, export and conversion all ask this module. It walks
layers the way Keras' own saving does, through attributes, so it reaches
sparse layers inside nested models, wrappers (`TimeDistributed`,
`Bidirectional`), recurrent cells, attention blocks, subclassed models
and custom layers alike, each once however often it is shared.
"""

import keras
import numpy as np

from tf_dsr.layers.base import SparseLayer


def _children(layer):
    """Layers held by `layer`'s attributes (in lists and dicts too), in order."""
    if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
        yield from layer.layers
    stack = [value for name, value in vars(layer).items() if not name.startswith("__")]
    stack.reverse()
    while stack:
        value = stack.pop()
        if isinstance(value, keras.layers.Layer):
            # tf_dsr's own layers (a sparse layer's masks, the method state)
            # are not layers of the user's model.
            if not getattr(type(value), "_tf_dsr_internal", False):
                yield value
        elif isinstance(value, (list, tuple)):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))


def walk_named_layers(model):
    """`(path, layer)` for every layer of `model`, depth first, each once.

    The path joins layer names from below `model` down to the layer
    (`"inner/dense_1"`); `model` itself has the path `""`. A layer shared
    between places is listed once, at the first place reached.
    """
    seen = set()
    order = []

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        order.append((path, layer))
        for child in _children(layer):
            visit(child, f"{path}/{child.name}" if path else child.name)

    visit(model, "")
    return order


def walk_layers(model):
    """Every layer of `model` (itself included), depth first, each once."""
    return [layer for _, layer in walk_named_layers(model)]


def find_sparse_layers(model):
    """The `SparseLayer`s of a model or layer that own masked kernels.

    Depth first through nested models, wrappers, cells and custom layers;
    a shared layer appears once.
    """
    return [
        layer for layer in walk_layers(model)
        if isinstance(layer, SparseLayer) and layer.sparse_kernels()
    ]


def find_sparse_kernels(model):
    """Every masked kernel of `model`, in a stable order, with unique names.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of `(name, SparseKernel)` pairs. The name is the path of
        layer names from the model down to the layer, then the kernel's
        attribute (`"bidirectional/forward_lstm/lstm_cell/recurrent_kernel"`);
        for a layer whose only sparse kernel is `kernel` or `embeddings`
        the attribute is left out (`"dense_1"`, `"inner/conv"`).
    """
    found = []
    for path, layer in walk_named_layers(model):
        if not isinstance(layer, SparseLayer):
            continue
        pairs = layer.sparse_kernels()
        path = path or layer.name
        for pair in pairs:
            name = path if len(pairs) == 1 else f"{path}/{pair.attribute}"
            found.append((name, pair))
    return found


def find_dense_kernels(model):
    """Every trainable weight of rank >= 2 without a mask: the dense kernels.

    These are the weights a sparse method could move but does not: kernels
    of plain Keras layers (`Dense`, `Conv2D`, the projections inside
    `MultiHeadAttention`, ...), embedding tables, and the weights of a
    user's own layers. Biases (of any rank: EinsumDense's may span several
    axes, a GRU's has shape (2, 3 * units)), normalization parameters and
    the weights of a sparse layer other than its declared kernels are not
    kernels; frozen weights are not trainable.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of `(name, layer, variable)`, in the order of the layer walk
        and, within a layer, of its weights. `layer` holds the variable
        itself, not through a sublayer, and `name` follows `find_sparse_kernels`: the
        layer's path, and for a layer with several kernels the variable's
        name after it (`"lstm/lstm_cell/recurrent_kernel"`).
    """
    # Masked kernels, then each variable once (weights tied between layers).
    skip = {id(pair.kernel) for _, pair in find_sparse_kernels(model)}
    found = []
    for path, layer in walk_named_layers(model):
        if isinstance(layer, SparseLayer):
            # A sparse layer declares its kernels; its other weights are
            # biases, whatever their rank (GRU's is (2, 3 * units)).
            continue
        # A layer's own weights are those none of its sublayers holds (a
        # Sequential holds its layers twice: directly and in its inner
        # Functional graph).
        held = {id(v) for child in _children(layer) for v in child.trainable_weights}
        own = [
            variable for variable in layer.trainable_weights
            if id(variable) not in held
            and id(variable) not in skip
            and len(variable.shape) >= 2
            # EinsumDense's bias spans several output axes (`bias_axes="de"`).
            and variable.name != "bias"
        ]
        skip.update(id(variable) for variable in own)
        path = path or layer.name
        for variable in own:
            name = path if len(own) == 1 else f"{path}/{variable.name}"
            found.append((name, layer, variable))
    return found


def check_masks(found, where):
    """Raises unless every mask in `found` holds only 0 and 1.

    A mask of 0.5, 2 or -1 (assigned by hand or loaded from a bad file)
    would be baked into exported weights or moved by a method as if it
    were binary.

    Args:
        found: `(name, SparseKernel)` pairs, as `find_sparse_kernels` gives.
        where: what is about to use them, for the message.

    Raises:
        ValueError: naming the first kernel whose mask is not 0/1.
    """
    for name, pair in found:
        mask = np.asarray(keras.ops.convert_to_numpy(pair.mask))
        bad = mask[(mask != 0) & (mask != 1)]
        if bad.size:
            raise ValueError(
                f"{where}: the mask of '{name}' (layer '{pair.layer.name}') "
                f"holds {bad.size} values other than 0 and 1, e.g. "
                f"{sorted(set(bad.ravel().tolist()))[:3]}. Masks must be 0/1; "
                "assign `mask.assign(tf.cast(mask != 0, mask.dtype))` to "
                "binarize it, or reload a good file."
            )
