"""keras-hub task models and a subclassed model, converted in place (issue 20).

GPT2CausalLM, BertTextClassifier, LlamaCausalLM, GemmaCausalLM,
ViTImageClassifier (tiny configs, no preprocessor) and a registered
subclassed `keras.Model` each go through what a user does:
`tf_dsr.sparsify(model, 0.9)` with default arguments (the same object,
its class kept, >= 85 % of its trainable parameters masked) -> `fit` with
DynamicReparam, then another `fit` with RigL (the active count kept
exactly, masks moved) -> `generate()` on the language models -> `.keras`
round trip with `tf_dsr.load_model` (class, outputs, masks and method
states) -> plain `keras.saving.load_model` of the same file -> `strip`
(a plain model of the same class; its file loads in a process where
tf_dsr cannot be imported) -> `export` (a SavedModel serving the same
outputs).

Each model runs its chain once per module, step by step on first use
(`Chain`): a test asks for the steps it checks, so each test also runs
alone, and a step that fails fails every test that needs it with the
same error.
"""

import functools
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_hub_tiny as tiny  # noqa: E402
import tf_dsr  # noqa: E402
from tf_dsr.saving.state import existing_state  # noqa: E402
from tf_dsr.layers import find_sparse_kernels  # noqa: E402
from tf_dsr.layers import find_sparse_layers  # noqa: E402
from tf_dsr.layers.find import walk_layers  # noqa: E402

# Keras' notices on loading a compiled keras-hub model's file: its optimizer
# is not built yet, and keras-hub's tasks have their own `compile`.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer"),
    pytest.mark.filterwarnings("ignore:`compile\\(\\)` was not called as part of model loading"),
]

SPARSITY = 0.9
NUM_TRAIN, BATCH, EPOCHS, PERIOD = 16, 8, 2, 2  # 4 steps: updates at steps 2 and 4
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

CLASSES = {
    "gpt2": keras_hub.models.GPT2CausalLM,
    "bert": keras_hub.models.BertTextClassifier,
    "llama": keras_hub.models.LlamaCausalLM,
    "gemma": keras_hub.models.GemmaCausalLM,
    "vit": keras_hub.models.ViTImageClassifier,
    "subclassed": tiny.TinyNet,
}
MODELS = list(CLASSES)


def once(step):
    """A `Chain` step that runs once: later calls return its result, or
    raise the error it raised."""
    @functools.wraps(step)
    def run(self):
        if step.__name__ not in self._done:
            try:
                self._done[step.__name__] = (True, step(self))
            except Exception as error:
                self._done[step.__name__] = (False, error)
        ok, value = self._done[step.__name__]
        if not ok:
            raise AssertionError(f"{self.name}: step {step.__name__!r} failed") from value
        return value
    return run


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def masks_of(model):
    return {name: pair.mask.numpy().copy() for name, pair in find_sparse_kernels(model)}


def num_active(masks):
    return sum(int(mask.sum()) for mask in masks.values())


def num_moved(before, after):
    assert sorted(before) == sorted(after)
    return sum(int((before[k] != after[k]).sum()) for k in before)


def states_of(model):
    """`{method: {variable name: value}}` of the model's tf_dsr method states."""
    container = existing_state(model)
    if container is None:
        return {}
    return {
        method: {v.name: np.asarray(v.numpy()) for v in state.variables}
        for method, state in container.method_states().items()
    }


def tf_dsr_layers(model):
    return [layer.name for layer in walk_layers(model)
            if type(layer).__module__.startswith("tf_dsr")]


def class_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


class Chain:
    """One model's chain; each step runs on first use (`once`)."""

    def __init__(self, name, root):
        self.name, self.root, self._done = name, root, {}
        self.x, self.y = tiny.inputs(name, NUM_TRAIN, seed=0)
        self.x_eval, _ = tiny.inputs(name, 4, seed=1)

    @once
    def converted(self):
        keras.utils.set_random_seed(0)
        self.model = tiny.BUILDERS[self.name]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dense-layer report
            returned = tf_dsr.sparsify(self.model, SPARSITY)
        return {"returned": returned, "summary": tf_dsr.sparsity_summary(self.model),
                "masks": masks_of(self.model)}

    @once
    def trained(self):
        """A fit with DSR, then another with RigL."""
        masks = {"initial": self.converted()["masks"]}
        model = self.model
        compile_args = {}
        if self.name in tiny.CAUSAL_LMS:
            compile_args["sampler"] = "greedy"  # `generate` is then deterministic
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **compile_args)
        callbacks = {
            "dsr": tf_dsr.DynamicReparam(prune_target=0.05, period=PERIOD,
                                         initial_threshold=0.05, seed=0),
            "rigl": tf_dsr.RigL(period=PERIOD, end_step=4 * PERIOD, seed=0),
        }
        for method, callback in callbacks.items():
            model.fit(self.x, self.y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                      shuffle=False, callbacks=[callback])
            masks[method] = masks_of(model)
        self.callbacks = callbacks
        self.expected = outputs(model, self.x_eval)
        return masks

    @once
    def saved(self):
        self.trained()
        path = self.root / f"{self.name}.keras"
        self.model.save(path)
        return path

    @once
    def stripped(self):
        """The plain copy, and the sparse model's weights before and after."""
        self.trained()
        before = [w.numpy().copy() for w in self.model.weights]
        plain = tf_dsr.strip(self.model)
        after = [w.numpy().copy() for w in self.model.weights]
        # For the process without tf_dsr.
        plain.save(self.root / f"{self.name}_stripped.keras")
        x = self.x_eval if isinstance(self.x_eval, dict) else {"x": self.x_eval}
        np.savez(self.root / f"{self.name}_x.npz", **x)
        np.save(self.root / f"{self.name}_expected.npy", self.expected)
        return plain, before, after


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras_hub")
    return {name: Chain(name, root) for name in MODELS}


# ----- sparsify -------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_sparsify_converts_in_place_keeps_the_class_and_masks_most_parameters(
        chains, name):
    chain = chains[name]
    result = chain.converted()
    assert result["returned"] is chain.model
    assert type(chain.model) is CLASSES[name]
    summary = result["summary"]
    assert summary.sparse_share >= 0.85, str(summary)
    assert summary.sparsity == pytest.approx(SPARSITY, abs=0.01)
    assert find_sparse_layers(chain.model)


# ----- training ---------------------------------------------------------------


def check_training(chain, method):
    masks = chain.trained()
    before = masks["initial" if method == "dsr" else "dsr"]
    after = masks[method]
    callback = chain.callbacks[method]
    assert int(callback.state.num_reallocations.numpy()) == 2
    assert num_active(after) == num_active(before)
    assert num_moved(before, after) > 0


@pytest.mark.parametrize("name", MODELS)
def test_dsr_fit_keeps_the_active_count_and_moves_masks(chains, name):
    check_training(chains[name], "dsr")


@pytest.mark.parametrize("name", MODELS)
def test_rigl_fit_keeps_the_active_count_and_moves_masks(chains, name):
    check_training(chains[name], "rigl")
    chain = chains[name]
    for _, pair in find_sparse_kernels(chain.model):  # no weight grew outside a mask
        assert not np.any(pair.kernel.numpy()[pair.mask.numpy() == 0])
    summary = tf_dsr.sparsity_summary(chain.model)
    assert summary.num_active == num_active(chain.trained()["rigl"])
    assert summary.sparse_share >= 0.85


# ----- generate ---------------------------------------------------------------


@pytest.mark.parametrize("name", tiny.CAUSAL_LMS)
def test_generate_runs_on_the_sparse_trained_model(chains, name):
    chain = chains[name]
    chain.trained()
    model = chain.model
    prompt_length = 3
    prompt = {
        "token_ids": np.zeros((2, tiny.STEPS), "int32"),
        "padding_mask": np.zeros((2, tiny.STEPS), "int32"),
    }
    prompt["token_ids"][:, :prompt_length] = [[5, 6, 7], [9, 10, 11]]
    prompt["padding_mask"][:, :prompt_length] = 1
    # Without a preprocessor, `generate` takes the backbone's inputs padded
    # to the length wanted, and needs explicit stop tokens (None: none).
    generated = model.generate(prompt, stop_token_ids=None)

    tokens = np.asarray(generated["token_ids"])
    assert tokens.shape == (2, tiny.STEPS)
    assert tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens[:, :prompt_length], prompt["token_ids"][:, :prompt_length])
    assert np.all((tokens >= 0) & (tokens < tiny.VOCAB))
    assert np.all(np.asarray(generated["padding_mask"]))  # every step filled
    # Greedy sampling: the first new token is the sparse model's argmax.
    logits = outputs(model, prompt)
    np.testing.assert_array_equal(tokens[:, prompt_length],
                                  logits[:, prompt_length - 1].argmax(axis=-1))


# ----- saving -----------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_tf_dsr_load_model_restores_class_outputs_masks_and_method_states(
        chains, name):
    chain = chains[name]
    loaded = tf_dsr.load_model(chain.saved())

    assert type(loaded) is CLASSES[name]
    np.testing.assert_array_equal(outputs(loaded, chain.x_eval), chain.expected)
    saved_masks, loaded_masks = masks_of(chain.model), masks_of(loaded)
    assert sorted(loaded_masks) == sorted(saved_masks)
    for key, mask in saved_masks.items():
        np.testing.assert_array_equal(loaded_masks[key], mask, err_msg=key)
    states, loaded_states = states_of(chain.model), states_of(loaded)
    assert sorted(states) == ["dsr", "rigl"]
    assert sorted(loaded_states) == sorted(states)
    for method, values in states.items():
        for variable, value in values.items():
            np.testing.assert_array_equal(loaded_states[method][variable], value,
                                          err_msg=f"{method}/{variable}")
    assert int(states["dsr"]["num_reallocations"]) == 2  # not a fresh state
    threshold = float(chain.callbacks["dsr"].state.threshold.numpy())
    assert float(existing_state(loaded).method_states()["dsr"].threshold.numpy()) == threshold


@pytest.mark.parametrize("name", MODELS)
def test_plain_keras_load_of_the_sparse_file_gives_the_sparse_outputs(chains, name):
    chain = chains[name]
    loaded = keras.saving.load_model(chain.saved())
    # Layers created in code come back as Keras layers holding kernel * mask.
    assert type(loaded) is CLASSES[name]
    assert tf_dsr_layers(loaded) == []
    np.testing.assert_array_equal(outputs(loaded, chain.x_eval), chain.expected)


# ----- strip --------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_strip_gives_a_plain_model_of_the_same_class_and_leaves_the_sparse_one(
        chains, name):
    chain = chains[name]
    plain, before, after = chain.stripped()

    assert type(plain) is CLASSES[name]
    assert plain is not chain.model
    assert tf_dsr_layers(plain) == [] and find_sparse_kernels(plain) == []
    assert not [w.path for w in plain.weights if "mask" in w.path]
    np.testing.assert_array_equal(outputs(plain, chain.x_eval), chain.expected)
    # The sparse model is unchanged: its layers, masks and every weight.
    masks = masks_of(chain.model)
    assert sorted(masks) == sorted(chain.trained()["rigl"])
    for key, mask in chain.trained()["rigl"].items():
        np.testing.assert_array_equal(masks[key], mask, err_msg=key)
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(new, old)
    np.testing.assert_array_equal(outputs(chain.model, chain.x_eval), chain.expected)


LOADER = r"""
import importlib.abc, json, sys


class NoTfDsr(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tf_dsr" or name.startswith("tf_dsr."):
            raise ImportError(f"{name} is not importable in this process")
        return None


sys.meta_path.insert(0, NoTfDsr())
try:
    import tf_dsr
    blocked = False
except ImportError:
    blocked = True
import keras
import numpy as np

tests_dir, root, names = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, tests_dir)
import keras_hub_tiny  # keras-hub's classes and the registered TinyNet

result = {"blocked": blocked, "models": {}}
for name in names:
    model = keras.saving.load_model(f"{root}/{name}_stripped.keras")
    with np.load(f"{root}/{name}_x.npz") as arrays:
        x = {key: arrays[key] for key in arrays.files}
    if list(x) == ["x"]:
        x = x["x"]
    out = keras.ops.convert_to_numpy(model(x, training=False))
    expected = np.load(f"{root}/{name}_expected.npy")
    result["models"][name] = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "shape": list(out.shape),
        "expected_shape": list(expected.shape),
        "max_abs_diff": float(np.max(np.abs(out - expected))),
        "weights": [w.path for w in model.weights],
    }
result["tf_dsr_modules"] = sorted(m for m in sys.modules if m.startswith("tf_dsr"))
print(json.dumps(result))
"""


def test_stripped_files_load_without_tf_dsr_and_compute_the_sparse_outputs(chains):
    for chain in chains.values():
        chain.stripped()
    root = next(iter(chains.values())).root
    process = subprocess.run(
        [sys.executable, "-c", LOADER, TESTS_DIR, str(root), *MODELS],
        capture_output=True, text=True, timeout=300, cwd=root,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["blocked"] is True
    assert result["tf_dsr_modules"] == []
    for name in MODELS:
        loaded = result["models"][name]
        assert loaded["class"] == class_path(CLASSES[name]), name
        assert loaded["shape"] == loaded["expected_shape"], name
        # Another process: the same kernels, maybe another summation order.
        assert loaded["max_abs_diff"] <= 1e-6, (name, loaded["max_abs_diff"])
        assert not [path for path in loaded["weights"] if "mask" in path], name


# ----- export -------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_export_serves_the_keras_outputs(chains, name, tmp_path):
    chain = chains[name]
    chain.trained()
    tf_dsr.export(chain.model, tmp_path / "artifact", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "artifact"))
    x = chain.x_eval
    _, named = served.signatures["serving_default"].structured_input_signature
    if isinstance(x, dict):  # a dict model serves under its input names
        assert sorted(named) == sorted(x)
    x = {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)
    result = served.serve(x).numpy()
    np.testing.assert_allclose(result, chain.expected, rtol=0, atol=1e-5)
    assert not [v.name for v in served.variables if "mask" in v.name]
