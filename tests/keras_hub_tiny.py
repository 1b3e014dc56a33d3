"""Tiny keras-hub task models and a subclassed model, with inputs for them.

Plain Keras and keras-hub only: `tests/test_keras_hub.py` builds its
models here, and the process that loads the stripped files without
tf_dsr imports this module to register `TinyNet` (a subclassed model is
re-created from its registered class).
"""

import keras
import keras_hub
import numpy as np

VOCAB, STEPS, NUM_CLASSES = 64, 8, 4
IMAGE_SHAPE = (8, 8, 1)


def gpt2():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=STEPS)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def bert():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=STEPS)
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=NUM_CLASSES, preprocessor=None)


def llama():
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def gemma():
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8)
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


def vit():
    backbone = keras_hub.models.ViTBackbone(
        image_shape=IMAGE_SHAPE, patch_size=4, num_layers=1, num_heads=2,
        hidden_dim=32, mlp_dim=64)
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=NUM_CLASSES, preprocessor=None)


@keras.saving.register_keras_serializable(package="keras_hub_tiny")
class TinyNet(keras.Model):
    """A subclassed model creating its layers in `__init__`."""

    def __init__(self, units=32, num_classes=NUM_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.units, self.num_classes = units, num_classes
        self.hidden = keras.layers.Dense(units, activation="relu", name="hidden")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.mix = keras.layers.Dense(units, activation="relu", name="mix")
        self.head = keras.layers.Dense(num_classes, name="head")

    def call(self, x):
        return self.head(self.mix(self.norm(self.hidden(x))))

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "num_classes": self.num_classes}


def subclassed():
    model = TinyNet(name="tiny_net")
    model(np.zeros((1, 12), "float32"))
    return model


BUILDERS = {
    "gpt2": gpt2,
    "bert": bert,
    "llama": llama,
    "gemma": gemma,
    "vit": vit,
    "subclassed": subclassed,
}

CAUSAL_LMS = ("gpt2", "llama", "gemma")


def inputs(name, num, seed):
    """`(x, y)` for model `name`: int32 token dicts, images or features."""
    rng = np.random.default_rng(seed)
    if name == "vit":
        x = rng.normal(size=(num,) + IMAGE_SHAPE).astype("float32")
    elif name == "subclassed":
        x = rng.normal(size=(num, 12)).astype("float32")
    else:
        x = {"token_ids": rng.integers(1, VOCAB, (num, STEPS)).astype("int32"),
             "padding_mask": np.ones((num, STEPS), "int32")}
        if name == "bert":
            x["segment_ids"] = np.zeros((num, STEPS), "int32")
    if name in CAUSAL_LMS:
        y = rng.integers(1, VOCAB, (num, STEPS))
    else:
        y = rng.integers(0, NUM_CLASSES, num)
    return x, y
