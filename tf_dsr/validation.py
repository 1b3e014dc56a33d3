"""Checks of arguments that several public functions share, each in one place."""

import keras


def check_built_model(model, function_name):
    """Raises unless `model` is a built `keras.Model`.

    Args:
        model: what the user passed.
        function_name: the public function's name, for the message
            (`"sparsify"` gives `tf_dsr.sparsify`).

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: it is not built.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`tf_dsr.{function_name}` expects a `keras.Model`. Received: "
            f"{model!r} of type {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"`tf_dsr.{function_name}` needs a built model; model "
            f"'{model.name}' is not built. Start it with `keras.Input(...)`, "
            "call it once on data, or call `model.build(input_shape)`."
        )
