"""Tests for tf_dsr/saving/savedmodel.py: SavedModel export, and TFLite
conversion of the same exported models (tf_dsr/saving/tflite.py)."""

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
from tf_dsr.layers.reading import reads_given_kernels

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from without_tf_dsr import loader  # noqa: E402

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


class Block(keras.layers.Layer):
    """A user's layer holding a sparse layer and a weight of its own."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.inner = tf_dsr.SparseDense(
            units, sparsity=0.75, seed=4, activation="relu", name="inner")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     name="scale")

    def call(self, x):
        return self.inner(x * self.scale)


class SubclassedNet(keras.Model):
    """A subclassed model: a sparse conv, BatchNorm, a custom block, a head."""

    example_shape, num_classes = (8, 8, 1), 5

    def __init__(self):
        super().__init__(name="subclassed_net")
        self.conv = tf_dsr.SparseConv2D(4, 3, sparsity=0.5, seed=1, name="conv")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.block = Block(8, name="block")
        self.head = tf_dsr.SparseDense(5, sparsity=0.7, seed=3, name="head")

    def call(self, x, training=False):
        h = keras.ops.relu(self.bn(self.conv(x), training=training))
        return self.head(self.block(keras.ops.mean(h, axis=(1, 2))))


def subclassed_net():
    model = SubclassedNet()
    model(np.zeros((1,) + model.example_shape, "float32"))
    return model


def functional_with_block():
    """A Functional model with a custom layer holding a sparse layer,
    which `strip` re-creates from the custom layer's config."""
    inputs = keras.Input((6,), name="features")
    h = tf_dsr.SparseDense(8, sparsity=0.5, seed=1, name="fc")(inputs)
    h = Block(8, name="block")(h)
    return keras.Model(inputs, tf_dsr.SparseDense(3, sparsity=0.5, seed=2, name="logits")(h))


def data(model, n, seed):
    rng = np.random.RandomState(seed)
    shape = getattr(model, "example_shape", None) or tuple(model.inputs[0].shape[1:])
    x = rng.randn(n, *shape).astype("float32")
    num_classes = getattr(model, "num_classes", None) or model.outputs[0].shape[-1]
    y = rng.randint(0, num_classes, size=n)
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
    so that exported zeros can only be those of `kernel * mask`."""
    for layer in find_sparse_layers(model):
        mask = layer.mask.numpy()
        layer.kernel_variable.assign(layer.kernel_variable.numpy() + 0.5 * (1.0 - mask))


def serve(path, x):
    # The loaded object owns the variables: keep it alive while serving.
    loaded = tf.saved_model.load(path)
    return loaded.serve(x).numpy()


def kernel_zeros(model):
    """Kernel variable path -> number of zeros of `kernel * mask`: those of
    the mask, and active weights that are exactly zero (a weight DSR
    regrew at the last step starts at zero)."""
    return {
        layer.kernel_variable.path: int(
            (layer.kernel_variable.numpy() * layer.mask.numpy() == 0).sum())
        for layer in find_sparse_layers(model)
    }


LOADER = loader(r"""
    x = np.load(f"{root}/{name}_x.npy")
    np.save(f"{root}/{name}_served.npy", loaded.serve(tf.constant(x)).numpy())
    signature = loaded.signatures["serving_default"]
    (signature_output,) = signature(tf.constant(x)).values()
    np.save(f"{root}/{name}_signature.npy", signature_output.numpy())
    result["models"][name] = [
        [v.name.split(":")[0], list(v.shape), int(np.sum(v.numpy() == 0))]
        for v in loaded.variables
    ]
""")


BUILDERS = {
    "mlp": sparse_mlp,
    "convnet": sparse_convnet,
    "subclassed": subclassed_net,
    "custom_layer": functional_with_block,
}


def inference_weight_shapes(model):
    """Shapes of what inference reads: every weight but masks and tf_dsr's state."""
    masks = {id(pair.mask) for _, pair in tf_dsr.layers.find_sparse_kernels(model)}
    state = getattr(model, "_tf_dsr_state", None)
    state = {id(w) for w in state.weights} if state is not None else set()
    return sorted(list(w.shape) for w in model.weights if id(w) not in masks | state)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Trains every net (the subclassed one with DSR), exports them, loads
    them in a process without tf_dsr."""
    root = tmp_path_factory.mktemp("exported")
    models, expected = {}, {}
    for name, build in BUILDERS.items():
        model = build()
        train(model, tf_dsr.DynamicReparam(prune_target=4, period=2, seed=0)
              if name == "subclassed" else None)
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


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_served_outputs_equal_training_model_outputs(exported, name):
    root, _, expected, _ = exported
    for endpoint in ("served", "signature"):
        served = np.load(root / f"{name}_{endpoint}.npy")
        diff = float(np.abs(served - expected[name]).max())
        print(f"{name} {endpoint}: max abs diff {diff:.3g}")
        assert served.shape == expected[name].shape
        assert diff <= MAX_ABS_DIFF, f"{name} {endpoint}: max abs diff {diff}"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_exported_kernel_zeros_are_those_of_the_masked_kernel(exported, name):
    _, models, _, result = exported
    saved = result["models"][name]
    masks = kernel_zeros(models[name])
    assert len(masks) == 3
    for path, num_zeros in masks.items():
        # Kernels are saved under their paths in the training model.
        (zeros,) = [zeros for saved_name, _, zeros in saved if saved_name == path]
        assert num_zeros > 0
        assert zeros == num_zeros, path
    assert not any("mask" in saved_name for saved_name, _, _ in saved)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_exported_variables_are_exactly_what_inference_reads(exported, name):
    # No mask, no raw kernel, no optimizer variable, no tf_dsr state.
    _, models, _, result = exported
    saved_shapes = sorted(shape for _, shape, _ in result["models"][name])
    assert saved_shapes == inference_weight_shapes(models[name])


@pytest.mark.parametrize("name", ["mlp", "subclassed"])
def test_export_does_not_change_the_training_model(tmp_path, name):
    model = BUILDERS[name]()
    callback = tf_dsr.DynamicReparam(prune_target=8, period=2, seed=0)
    train(model, callback)
    fill_masked_positions(model)
    before = [w.numpy().copy() for w in model.weights]
    iterations = int(model.optimizer.iterations.numpy())
    state = [v.numpy() for v in callback.state.weights]
    x, _ = data(model, 3, seed=2)
    outputs = model(x, training=False).numpy()

    tf_dsr.export(model, tmp_path / "saved", verbose=False)

    # The layers compute with their own masked kernels again.
    assert not any(reads_given_kernels(layer) for layer in find_sparse_layers(model))
    np.testing.assert_array_equal(model(x, training=False).numpy(), outputs)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(model.optimizer.iterations.numpy()) == iterations
    assert [v.numpy() for v in callback.state.weights] == state

    # Training continues: weights move, reallocations still happen and the
    # number of active weights stays what it was.
    kernel = callback.kernels[0].kernel
    before_training = kernel.numpy().copy()
    num_active = tf_dsr.sparsity_summary(model).num_active
    train(model, callback)
    assert int(model.optimizer.iterations.numpy()) == iterations + 4
    assert not np.array_equal(kernel.numpy(), before_training)
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


def test_subclassed_model_exports_before_any_training(tmp_path):
    model = subclassed_net()
    x, _ = data(model, 3, seed=2)
    tf_dsr.export(model, tmp_path / "sub", verbose=False)
    served = serve(str(tmp_path / "sub"), x)
    np.testing.assert_allclose(served, model(x).numpy(), atol=MAX_ABS_DIFF)


def test_strip_refuses_a_model_it_cannot_recreate_and_points_to_export():
    # SubclassedNet's constructor takes no arguments, so its config (Keras'
    # default: name, trainable, dtype) cannot re-create it; export can ship it.
    model = subclassed_net()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(TypeError, match=r"(?s)SubclassedNet.*tf_dsr\.export\(model"):
        tf_dsr.strip(model)
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(old, weight.numpy())


def test_strip_recreates_a_custom_layer_holding_a_sparse_layer():
    model = functional_with_block()
    x, _ = data(model, 4, seed=1)
    plain = tf_dsr.strip(model)
    block = plain.get_layer("block")
    assert type(block) is Block and type(block.inner) is keras.layers.Dense
    np.testing.assert_allclose(plain(x), model(x), atol=MAX_ABS_DIFF)
    assert find_sparse_layers(plain) == []


def test_export_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        tf_dsr.export(SubclassedNet(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


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
@pytest.mark.parametrize("name", ["mlp", "convnet", "subclassed"])
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


class ReadsItsMask(tf_dsr.SparseDense):
    """A layer computing from its mask directly, not through `kernel`."""

    def call(self, x):
        pair = self.sparse_kernels()[0]
        return keras.ops.matmul(x, pair.kernel * pair.mask)


def test_export_refuses_to_save_a_mask_a_layer_reads_directly(tmp_path):
    model = keras.Sequential([keras.Input((3,)), ReadsItsMask(2, sparsity=0.5, seed=0)])
    with pytest.raises(RuntimeError, match="would save masks or raw kernels"):
        tf_dsr.export(model, tmp_path / "saved", verbose=False)
    assert not (tmp_path / "saved").exists()
