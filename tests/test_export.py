"""Tests for tf_dsr/export.py: SavedModel export and TFLite conversion."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import find_sparse_layers

MAX_ABS_DIFF = 1e-5


def sparse_mlp():
    return keras.Sequential(
        [
            keras.Input((20,), name="features"),
            tf_dsr.SparseDense(32, sparsity=0.9, seed=1, activation="relu", name="fc1"),
            keras.layers.BatchNormalization(name="bn"),
            tf_dsr.SparseDense(16, sparsity=0.8, seed=2, activation="relu", name="fc2"),
            tf_dsr.SparseDense(5, sparsity=0.5, seed=3, name="logits"),
        ],
        name="mlp",
    )


def sparse_convnet():
    """Conv net with BatchNorm and a residual connection."""
    image = keras.Input((8, 8, 1), name="image")
    a = tf_dsr.SparseConv2D(8, 3, padding="same", sparsity=0.5, seed=1, name="conv1")(image)
    a = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(a))
    b = tf_dsr.SparseConv2D(8, 3, padding="same", sparsity=0.8, seed=2, name="conv2")(a)
    b = keras.layers.BatchNormalization(name="bn2")(b)
    y = keras.layers.ReLU()(keras.layers.Add(name="residual")([a, b]))
    y = keras.layers.GlobalAveragePooling2D()(y)
    logits = tf_dsr.SparseDense(10, sparsity=0.7, seed=3, name="logits")(y)
    return keras.Model(image, logits, name="convnet")


def data(model, n, seed):
    rng = np.random.RandomState(seed)
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    x = rng.randn(*shape).astype("float32")
    y = rng.randint(0, model.outputs[0].shape[-1], size=n)
    return x, y


def train(model, callback=None):
    """Four SGD steps (with `callback`, e.g. DSR): BatchNorm statistics move."""
    if not model.compiled:
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    x, y = data(model, 64, seed=0)
    callbacks = [callback] if callback is not None else []
    model.fit(x, y, batch_size=16, epochs=1, callbacks=callbacks, verbose=0)


def fill_masked_positions(model):
    """Makes raw kernels non-zero where masks are 0 (outputs do not change),
    so that exported zeros can only come from the masks."""
    for layer in find_sparse_layers(model):
        mask = layer.mask.numpy()
        layer.kernel_variable.assign(layer.kernel_variable.numpy() + 0.5 * (1.0 - mask))


def serve(path, x):
    # The loaded object owns the variables: keep it alive while serving.
    loaded = tf.saved_model.load(path)
    return loaded.serve(x).numpy()


def kernel_zeros(model):
    """Kernel variable path -> number of zeros its mask has."""
    return {
        layer.kernel_variable.path: int((layer.mask.numpy() == 0).sum())
        for layer in find_sparse_layers(model)
    }


LOADER = r"""
import json, sys
sys.modules["tf_dsr"] = None  # `import tf_dsr` now raises ImportError
try:
    import tf_dsr
    blocked = False
except ImportError:
    blocked = True
import numpy as np
import tensorflow as tf

root = sys.argv[1]
result = {"blocked": blocked, "models": {}}
for name in sys.argv[2:]:
    loaded = tf.saved_model.load(f"{root}/{name}")
    x = np.load(f"{root}/{name}_x.npy")
    np.save(f"{root}/{name}_served.npy", loaded.serve(tf.constant(x)).numpy())
    signature = loaded.signatures["serving_default"]
    (signature_output,) = signature(tf.constant(x)).values()
    np.save(f"{root}/{name}_signature.npy", signature_output.numpy())
    result["models"][name] = {
        v.name.split(":")[0]: int(np.sum(v.numpy() == 0)) for v in loaded.variables
    }
result["tf_dsr_modules"] = sorted(
    m for m, module in sys.modules.items() if m.startswith("tf_dsr") and module is not None
)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Trains both nets, exports them, loads them in a process without tf_dsr."""
    root = tmp_path_factory.mktemp("exported")
    models, expected = {}, {}
    for name, build in (("mlp", sparse_mlp), ("convnet", sparse_convnet)):
        model = build()
        train(model)
        fill_masked_positions(model)
        x, _ = data(model, 7, seed=1)
        np.save(root / f"{name}_x.npy", x)
        tf_dsr.export(model, root / name, verbose=False)
        models[name] = model
        expected[name] = model(x, training=False).numpy()
    process = subprocess.run(
        [sys.executable, "-c", LOADER, str(root), *models],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    return root, models, expected, result


def test_loader_process_could_not_import_tf_dsr(exported):
    _, _, _, result = exported
    assert result["blocked"] is True
    assert result["tf_dsr_modules"] == []


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_served_outputs_equal_training_model_outputs(exported, name):
    root, _, expected, _ = exported
    for endpoint in ("served", "signature"):
        served = np.load(root / f"{name}_{endpoint}.npy")
        diff = float(np.abs(served - expected[name]).max())
        print(f"{name} {endpoint}: max abs diff {diff:.3g}")
        assert served.shape == expected[name].shape
        assert diff <= MAX_ABS_DIFF, f"{name} {endpoint}: max abs diff {diff}"


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_exported_kernel_zeros_equal_mask_zeros(exported, name):
    _, models, _, result = exported
    zeros = result["models"][name]
    masks = kernel_zeros(models[name])
    assert len(masks) == 3
    for path, num_zeros in masks.items():
        assert num_zeros > 0
        assert zeros[path] == num_zeros, path
    assert not any("mask" in path for path in zeros)


def test_export_does_not_change_the_training_model(tmp_path):
    model = sparse_mlp()
    callback = tf_dsr.DynamicReparam(prune_target=8, period=2, seed=0)
    train(model, callback)
    fill_masked_positions(model)
    before = [w.numpy().copy() for w in model.weights]
    iterations = int(model.optimizer.iterations.numpy())
    state = [v.numpy() for v in callback.state.weights]

    tf_dsr.export(model, tmp_path / "saved", verbose=False)

    assert [type(l).__name__ for l in model.layers] == [
        "SparseDense", "BatchNormalization", "SparseDense", "SparseDense"
    ]
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(model.optimizer.iterations.numpy()) == iterations
    assert [v.numpy() for v in callback.state.weights] == state

    # Training continues: weights move, reallocations still happen and the
    # number of active weights stays what it was.
    kernel = model.get_layer("fc1").kernel_variable.numpy().copy()
    num_active = tf_dsr.sparsity_summary(model).num_active
    train(model, callback)
    assert int(model.optimizer.iterations.numpy()) == iterations + 4
    assert not np.array_equal(model.get_layer("fc1").kernel_variable.numpy(), kernel)
    assert int(callback.state.num_reallocations.numpy()) > state[2]
    assert tf_dsr.sparsity_summary(model).num_active == num_active


class PlainSubclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def plain_sequential():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    )


@pytest.mark.parametrize(
    "make_model", [plain_sequential, PlainSubclassed], ids=["sequential", "subclassed"]
)
def test_model_without_sparse_layers_exports_plainly(tmp_path, make_model):
    model = make_model()
    x = np.random.RandomState(0).randn(3, 3).astype("float32")
    model(x)
    tf_dsr.export(model, tmp_path / "plain", verbose=False)
    served = serve(str(tmp_path / "plain"), x)
    np.testing.assert_allclose(served, model(x).numpy(), atol=MAX_ABS_DIFF)


class SparseSubclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf_dsr.SparseDense(2, sparsity=0.5, seed=0)

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_with_sparse_layers_raises_type_error(tmp_path):
    model = SparseSubclassed()
    model.dense.build((None, 3))
    model(np.ones((2, 3), "float32"))
    with pytest.raises(TypeError, match="Functional model"):
        tf_dsr.export(model, tmp_path / "sub", verbose=False)
    assert not (tmp_path / "sub").exists()


def test_existing_directory_is_written_into_as_keras_does(tmp_path):
    path = tmp_path / "saved"
    first, second = sparse_mlp(), sparse_mlp()
    second.get_layer("logits").bias.assign(np.arange(5, dtype="float32"))
    x = np.random.RandomState(0).randn(3, 20).astype("float32")

    tf_dsr.export(first, path, verbose=False)
    tf_dsr.export(second, path, verbose=False)
    served = serve(str(path), x)
    np.testing.assert_allclose(served, second(x, training=False).numpy(), atol=MAX_ABS_DIFF)
    # What we mirror: Keras' own export also writes into an existing directory.
    tf_dsr.strip(first).export(str(path), verbose=False)
    served = serve(str(path), x)
    np.testing.assert_allclose(served, first(x, training=False).numpy(), atol=MAX_ABS_DIFF)


def test_existing_file_at_path_raises_value_error(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match="existing file"):
        tf_dsr.export(sparse_mlp(), path, verbose=False)
    assert path.read_text() == "not a directory"


def test_export_of_non_model_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match="expects a `keras.Model`"):
        tf_dsr.export(tf_dsr.SparseDense(3), tmp_path / "x")


# ----- TFLite -------------------------------------------------------------


def run_tflite(flatbuffer, x):
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to ai_edge_litert.
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    (inputs,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    (outputs,) = interpreter.get_output_details()
    return interpreter.get_tensor(outputs["index"])


@pytest.mark.parametrize("sparse_weights", [False, True])
@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_tflite_outputs_equal_training_model_outputs(exported, name, sparse_weights):
    root, models, expected, _ = exported
    flatbuffer = tf_dsr.to_tflite(models[name], sparse_weights=sparse_weights)
    x = np.load(root / f"{name}_x.npy")
    diff = float(np.abs(run_tflite(flatbuffer, x) - expected[name]).max())
    print(f"tflite {name} sparse_weights={sparse_weights}: max abs diff {diff:.3g}")
    assert diff <= MAX_ABS_DIFF


def test_tflite_is_written_to_path(exported, tmp_path):
    _, models, _, _ = exported
    flatbuffer = tf_dsr.to_tflite(models["mlp"], tmp_path / "mlp.tflite")
    assert isinstance(flatbuffer, bytes)
    assert (tmp_path / "mlp.tflite").read_bytes() == flatbuffer


def _tflite_outputs(flatbuffer, x):
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_tflite_of_every_convolution_kind_einsum_and_recurrent_layer():
    inputs = keras.Input((8, 8, 3))
    h = tf_dsr.SparseConv2D(4, 3, sparsity=0.5, seed=0)(inputs)
    h = tf_dsr.SparseDepthwiseConv2D(3, padding="same", sparsity=0.5, seed=1)(h)
    h = tf_dsr.SparseSeparableConv2D(4, 3, padding="same", sparsity=0.5, seed=2)(h)
    h = tf_dsr.SparseConv2DTranspose(4, 3, sparsity=0.5, seed=3)(h)
    h = keras.layers.Reshape((64, 4))(h)
    h = tf_dsr.SparseConv1D(4, 3, sparsity=0.5, seed=4)(h)
    h = tf_dsr.SparseEinsumDense("abc,cd->abd", (62, 5), sparsity=0.5, seed=5)(h)
    h = tf_dsr.SparseLSTM(6, sparsity=0.5, seed=6)(h)
    model = keras.Model(inputs, tf_dsr.SparseDense(3, sparsity=0.5, seed=7)(h))
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")

    # A fixed batch size: TFLite lowers the LSTM's loop only with static shapes.
    flatbuffer = tf_dsr.to_tflite(
        model, input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32)])

    np.testing.assert_allclose(_tflite_outputs(flatbuffer, x), model(x).numpy(), atol=1e-5)
