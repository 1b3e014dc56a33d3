"""A hook on the masked kernel a sparse layer computes with.

While a hook is attached to a kernel, the `kernel * mask` the layer's
`call` computes with is `hook(kernel * mask)` (for a table layer,
`hook(rows, indices)` on the gathered rows of the masked table). A hook
returns its input's value unchanged: it exists to see the gradient
flowing into the product, which is how `tf_dsr.dense_gradients` reads
the dense gradient RigL grows by (Evci et al., ICML 2020). Export,
`strip` and reporting read `SparseKernel.masked` and never apply it.

Hooks are not state: they live in a plain dict on the layer, outside
Keras' tracking, and are never saved.
"""

_HOOKS = "_tf_dsr_gradient_hooks"


def _hooks_of(layer):
    return layer.__dict__.get(_HOOKS, {})


def set_gradient_hook(pair, hook):
    """Attaches `hook` to a sparse kernel, where its layer computes with it.

    Args:
        pair: the `SparseKernel`.
        hook: a callable `hook(value, indices=None) -> value`.

    Raises:
        ValueError: if the kernel already has a hook (one per kernel).
    """
    hooks = pair.layer.__dict__.get(_HOOKS)
    if hooks is None:
        hooks = {}
        object.__setattr__(pair.layer, _HOOKS, hooks)
    if pair.attribute in hooks:
        raise ValueError(
            f"The {pair.attribute} of layer '{pair.layer.name}' already has a "
            "gradient hook (another `tf_dsr.dense_gradients.DenseGradients` "
            "is attached to it). Call `detach()` on that one first."
        )
    hooks[pair.attribute] = hook


def remove_gradient_hook(pair):
    """Removes the gradient hook of a sparse kernel (if any)."""
    _hooks_of(pair.layer).pop(pair.attribute, None)


def remove_gradient_hooks(layer):
    """Removes every gradient hook of `layer` (one turned plain again)."""
    layer.__dict__.pop(_HOOKS, None)


def hooked(layer, attribute, value, indices=None):
    """`value` passed through the hook of `layer.<attribute>`, if any."""
    hook = _hooks_of(layer).get(attribute)
    return value if hook is None else hook(value, indices)


def computed_value(pair):
    """`kernel * mask` as the layer's `call` computes with it: the masked
    product, passed through the kernel's gradient hook when one is
    attached."""
    return hooked(pair.layer, pair.attribute, pair.masked)


def computed_rows(pair, rows, indices):
    """Gathered rows of a masked table, as the layer's `call` uses them.

    Args:
        pair: the `SparseKernel` of a table (`SparseEmbedding.embeddings`).
        rows: `masked_value` of the gathered kernel and mask rows, shape
            `indices.shape + (dim,)`.
        indices: the integer row indices gathered.
    """
    return hooked(pair.layer, pair.attribute, rows, indices)
