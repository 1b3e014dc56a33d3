"""The private Keras attributes tf_dsr relies on, each in one place.

Changing a built layer in place is what Keras' own `Model.quantize()` and
`Dense.enable_lora()` do, through the same private attributes: the layer's
tracker (locked once built) and its own variable lists. Each use here is
pinned by `tests/test_keras_internals.py`, which fails with a clear
message when a Keras upgrade moves one.
"""

import contextlib


def _tracker(layer):
    tracker = getattr(layer, "_tracker", None)
    if tracker is None or not hasattr(tracker, "locked"):
        raise RuntimeError(
            f"tf_dsr cannot change layer '{layer.name}' in place: this Keras "
            "version has no `Layer._tracker` with a `locked` flag (the switch "
            "`Model.quantize()` uses to add state to built layers). Please "
            "report your Keras version."
        )
    return tracker


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built `layer` take new variables and sublayers, as
    `Dense.enable_lora` does; the lock is put back as it was."""
    tracker = _tracker(layer)
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield
    finally:
        if was_locked:
            tracker.lock()


def untrack(layer, value):
    """Removes a sublayer or variable from `layer`'s Keras tracking."""
    with unlocked(layer):
        _tracker(layer).untrack(value)


def own_variables(layer):
    """The variables `layer` holds itself (not through sublayers), in the
    order Keras' `Layer.save_own_variables` writes them."""
    try:
        return list(layer._trainable_variables) + list(layer._non_trainable_variables)
    except AttributeError:
        raise RuntimeError(
            "tf_dsr cannot list a layer's own variables: this Keras version "
            "has no `Layer._trainable_variables`/`_non_trainable_variables` "
            "(what `Layer.save_own_variables` writes). Please report your "
            "Keras version."
        ) from None


def reset_compiled_functions(model):
    """Drops a model's traced train/test/predict functions, as
    `Model.quantize()` does after changing layers, so the next `fit`
    traces the changed layers."""
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def set_keras_mask(tensor, mask):
    """Attaches a Keras padding mask to `tensor`, as Keras'
    `ReversibleEmbedding.call` does (no public API for it)."""
    try:
        from keras.src.backend import set_keras_mask as keras_set_mask
    except ImportError:
        raise RuntimeError(
            "tf_dsr cannot attach a padding mask: this Keras version has no "
            "`keras.src.backend.set_keras_mask`. Please report your Keras "
            "version."
        ) from None
    keras_set_mask(tensor, mask)
