"""Any Keras model, end to end (issue 11).

Each model goes through the whole chain a user runs: `sparsify`, in place
(at sparsity 0 the model computes what it computed; on a fresh model with
the same weights, exactly the expected layers stay dense and the report
lists exactly them) -> `fit` with DSR
(masks move, the total active count is conserved exactly) ->
`sparsity_summary` -> `export` -> load in a process where tf_dsr cannot
be imported (same outputs, no mask variable) -> `.keras` round trip with
`tf_dsr.load_model` (same outputs, same masks).

The default run covers small versions of every structure (a transformer
block, EinsumDense with `keras.ops` between layers, a Conv1D text
classifier, Bidirectional and TimeDistributed RNNs, a subclassed model,
custom layers, a siamese model with shared layers, a MobileNet-like conv
net), all loaded by one subprocess. The keras.applications models
(ResNet50, MobileNetV2, EfficientNetB0, DenseNet121 at 32x32) run the
same chain under `-m slow`.

The chain runs once per model in a module fixture; each test checks one
step of one model, so a model that fails at a step fails that step's
test and the later ones, with the error of that step.
"""

import json
import os
import subprocess
import sys
import time
import warnings
from typing import Callable
from typing import NamedTuple

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.counting import num_weights
from tf_dsr.layers.find import find_dense_kernels
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.find import walk_named_layers
from without_tf_dsr import loader

SPARSITY = 0.8
NUM_CLASSES = 3
VOCAB = 50
register = keras.saving.register_keras_serializable(package="test_any_model")


# ----- the models ---------------------------------------------------------


def transformer_encoder():
    """Embedding, self-attention, `+` residuals, LayerNorm, feed-forward."""
    tokens = keras.Input((8,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 16, name="emb")(tokens)
    a = keras.layers.MultiHeadAttention(2, 8, name="mha")(h, h)
    h = keras.layers.LayerNormalization(name="ln1")(h + a)
    f = keras.layers.Dense(32, activation="relu", name="ffn1")(h)
    h = keras.layers.LayerNormalization(name="ln2")(h + keras.layers.Dense(16, name="ffn2")(f))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def einsum_feed_forward():
    """EinsumDense layers with `keras.ops` (gelu, `+`, mean) between them."""
    x = keras.Input((6, 16), name="features")
    h = keras.layers.EinsumDense("abc,cd->abd", (None, 32), bias_axes="d", name="up")(x)
    h = keras.ops.gelu(h)
    h = keras.layers.EinsumDense("abc,cd->abd", (None, 16), bias_axes="d", name="down")(h)
    h = keras.layers.LayerNormalization(name="ln")(x + h)
    h = keras.ops.mean(h, axis=1)
    return keras.Model(x, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def conv1d_text():
    """Embedding, three Conv1D, Dense: a conv net, so the paper's rule applies."""
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 8, name="emb")(tokens)
    h = keras.layers.Conv1D(16, 3, padding="same", activation="relu", name="conv1")(h)
    h = keras.layers.Conv1D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.Conv1D(16, 3, padding="same", activation="relu", name="conv3")(h)
    h = keras.layers.GlobalMaxPooling1D(name="pool")(h)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def recurrent():
    """Masked embedding, Bidirectional LSTM, TimeDistributed Dense, GRU."""
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=True, name="emb")(tokens)
    h = keras.layers.Bidirectional(
        keras.layers.LSTM(8, return_sequences=True, name="lstm"), name="bi")(h)
    h = keras.layers.TimeDistributed(
        keras.layers.Dense(8, activation="tanh", name="step"), name="td")(h)
    h = keras.layers.GRU(8, name="gru")(h)
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


@register
class Block(keras.layers.Layer):
    """A user's layer creating a sparse layer in code, with a weight of its own."""

    def __init__(self, units, sparsity=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.sparsity = units, sparsity
        self.inner = dense_layer(units, sparsity, seed=4, activation="relu", name="inner")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return self.inner(x * self.scale)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sparsity": self.sparsity}


def dense_layer(units, sparsity, seed, **kwargs):
    """`keras.layers.Dense`, or `tf_dsr.SparseDense` when `sparsity` is given."""
    if sparsity is None:
        return keras.layers.Dense(units, **kwargs)
    return tf_dsr.SparseDense(units, sparsity=sparsity, seed=seed, **kwargs)


@register
class SubclassedNet(keras.Model):
    """A subclassed model: sparse conv, BatchNorm, a `Block`, a sparse head.

    With `sparsity=None` the same network from plain Keras layers.
    """

    def __init__(self, sparsity=None, **kwargs):
        super().__init__(**kwargs)
        self.sparsity = sparsity
        if sparsity is None:
            self.conv = keras.layers.Conv2D(8, 3, padding="same", name="conv")
        else:
            self.conv = tf_dsr.SparseConv2D(8, 3, padding="same", sparsity=sparsity,
                                            seed=1, name="conv")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.block = Block(16, sparsity, name="block")
        self.head = dense_layer(NUM_CLASSES, sparsity, seed=3, name="head")

    def call(self, x, training=False):
        h = keras.ops.relu(self.bn(self.conv(x), training=training))
        return self.head(self.block(keras.ops.mean(h, axis=(1, 2))))

    def get_config(self):
        return {**super().get_config(), "sparsity": self.sparsity}


def subclassed():
    model = SubclassedNet(name="subclassed")
    model(inputs(model, 2, seed=0))
    return model


@register
class Residual(keras.layers.Layer):
    """`x + gate * layers(x)`, its layers given in (and rebuilt from) its
    config, the way Keras' wrappers hold theirs: sparsify reaches them."""

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        self.inner = [
            keras.layers.deserialize(layer) if isinstance(layer, dict) else layer
            for layer in layers
        ]

    def build(self, input_shape):
        shape = input_shape
        for layer in self.inner:
            if not layer.built:  # a loaded config builds its layers
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.gate = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gate")

    def call(self, x):
        h = x
        for layer in self.inner:
            h = layer(h)
        return x + self.gate * h

    def get_config(self):
        return {**super().get_config(),
                "layers": [keras.layers.serialize(layer) for layer in self.inner]}


@register
class Gated(keras.layers.Layer):
    """A user's layer creating its Dense in code (not in its config):
    sparsify converts it where it is, and `tf_dsr.load_model` makes it
    sparse again from the record saved with the weights."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = keras.layers.Dense(units, activation="sigmoid", name="gate_proj")

    def build(self, input_shape):
        self.proj.build(input_shape)

    def call(self, x):
        return x * self.proj(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def custom_layers():
    features = keras.Input((12,), name="features")
    h = keras.layers.Dense(16, name="fc_in")(features)
    h = Residual([keras.layers.Dense(32, activation="relu", name="ff1"),
                  keras.layers.Dense(16, name="ff2")], name="residual")(h)
    h = Gated(16, name="gated")(h)
    return keras.Model(features, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def siamese():
    """Two inputs through one shared encoder, compared by |a - b|."""
    left, right = keras.Input((10,), name="left"), keras.Input((10,), name="right")
    enc1 = keras.layers.Dense(16, activation="relu", name="enc1")
    enc2 = keras.layers.Dense(8, name="enc2")
    a, b = enc2(enc1(left)), enc2(enc1(right))
    h = keras.ops.abs(a - b)
    return keras.Model([left, right], keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def tiny_mobilenet():
    """Stem conv, depthwise and pointwise convs, a residual Add, a separable conv."""
    image = keras.Input((16, 16, 3), name="image")
    stem = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(image)
    stem = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name="stem_bn")(stem))
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(stem)
    h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name="dw_bn")(h))
    h = keras.layers.Conv2D(8, 1, name="pw")(h)
    h = keras.layers.BatchNormalization(name="pw_bn")(h)
    h = keras.layers.Add(name="residual")([stem, h])
    h = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(image, keras.layers.Dense(NUM_CLASSES, name="logits")(h))


def application(name):
    def build():
        return getattr(keras.applications, name)(
            weights=None, input_shape=(32, 32, 3), classes=NUM_CLASSES,
            classifier_activation=None)
    return build


class Case(NamedTuple):
    """A model of the chain.

    Attributes:
        build: `() -> keras.Model`, the plain Keras model.
        dense: layer paths that stay dense in the sparse copy.
        options: keyword arguments for `tf_dsr.sparsify`.
    """

    build: Callable
    dense: frozenset = frozenset()
    options: dict = {}


FAST = {
    # A transformer: the embedding table becomes sparse too, and the four
    # projections of the attention are converted one by one, so nothing
    # stays dense.
    "transformer": Case(transformer_encoder),
    "einsum_ops": Case(einsum_feed_forward),
    "conv1d_text": Case(conv1d_text, frozenset({"emb", "conv1", "logits"})),
    "rnn_wrappers": Case(recurrent, frozenset({"emb"})),
    # Converted in place like any model; it has convolutions, so the
    # paper's rule keeps its first conv and its last Dense dense.
    "subclassed": Case(subclassed, frozenset({"conv", "head"})),
    # Gated's Dense, created in its code, becomes sparse too.
    "custom_layers": Case(custom_layers),
    "siamese": Case(siamese),
    "tiny_mobilenet": Case(tiny_mobilenet, frozenset({"stem", "logits"})),
}

SLOW = {
    "ResNet50": Case(application("ResNet50"), frozenset({"conv1_conv", "predictions"})),
    "MobileNetV2": Case(application("MobileNetV2"), frozenset({"Conv1", "predictions"})),
    "EfficientNetB0": Case(application("EfficientNetB0"),
                           frozenset({"stem_conv", "predictions"})),
    "DenseNet121": Case(application("DenseNet121"), frozenset({"conv1_conv", "predictions"})),
}

# (model, step) -> why it fails; those tests are xfail(strict=True).
KNOWN_FAILURES = {}


# ----- the chain ----------------------------------------------------------


def inputs(model, n, seed):
    """Random inputs for `model`: tokens (with padding) or floats."""
    rng = np.random.default_rng(seed)
    if isinstance(model, SubclassedNet):
        return rng.normal(size=(n, 8, 8, 2)).astype("float32")
    arrays = []
    for spec in model.inputs:
        shape = (n,) + tuple(spec.shape[1:])
        if "int" in str(spec.dtype):
            tokens = rng.integers(1, VOCAB, size=shape)
            tokens[:, -2:] = 0  # padded steps
            arrays.append(tokens.astype("int32"))
        else:
            arrays.append(rng.normal(size=shape).astype("float32"))
    return arrays if len(arrays) > 1 else arrays[0]


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def sparsified(case, model, sparsity):
    """`model`, made sparse in place, and the dense-layer paths sparsify's
    report lists."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparse = tf_dsr.sparsify(model, sparsity, seed=0, **case.options)
    assert sparse is model
    reports = [str(w.message) for w in caught if "tf_dsr.sparsify" in str(w.message)]
    assert len(reports) <= 1, reports
    lines = reports[0].splitlines()[1:] if reports else []
    return sparse, {line.strip().split(" (")[0] for line in lines}


def dense_kernel_holders(model):
    """Paths of the layers holding dense kernels (`find_dense_kernels`)."""
    paths = {id(layer): path or layer.name for path, layer in walk_named_layers(model)}
    return {paths[id(layer)] for _, layer, _ in find_dense_kernels(model)}


def eligible_sparse_share(model, dense):
    """Share of the kernels outside the `dense` layers that are sparse."""
    paths = {id(layer): path or layer.name for path, layer in walk_named_layers(model)}
    sparse = sum(num_weights(pair.kernel) for _, pair in find_sparse_kernels(model))
    other = sum(num_weights(variable) for _, layer, variable in find_dense_kernels(model)
                if paths[id(layer)] not in dense)
    return sparse / (sparse + other)


def masks_of(model):
    return {name: keras.ops.convert_to_numpy(pair.mask).copy()
            for name, pair in find_sparse_kernels(model)}


def run_chain(name, case, root):
    """Runs every in-process step for one model; returns what each found.

    A failing step stores its exception under `"error"` with its name
    under `"failed_step"`; the steps after it do not run.
    """
    record = {"seconds": {}}
    step, started = None, time.perf_counter()

    def begin(what):
        """Starts step `what` (None: the end), timing the one before."""
        nonlocal step, started
        now = time.perf_counter()
        if step is not None:  # done
            record["seconds"][step] = now - started
        step, started = what, now

    try:
        begin("build")
        keras.utils.set_random_seed(0)
        model = case.build()
        x = inputs(model, 6, seed=1)

        begin("zero")
        dense_outputs = outputs(model, x)
        model_class = type(model)
        same, _ = sparsified(case, model, 0.0)
        assert find_sparse_kernels(same), "the model at sparsity 0 has no sparse kernel"
        assert type(same) is model_class
        record["zero"] = float(np.max(np.abs(outputs(same, x) - dense_outputs)))
        del same, model

        begin("report")
        # sparsify changes its model: a fresh one, with the same weights.
        keras.utils.set_random_seed(0)
        sparse, reported = sparsified(case, case.build(), SPARSITY)
        record["report"] = reported
        record["holders"] = dense_kernel_holders(sparse)
        record["eligible_share"] = eligible_sparse_share(sparse, case.dense)

        begin("dsr")
        before = masks_of(sparse)
        sparse.compile(keras.optimizers.SGD(0.02, momentum=0.9),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       jit_compile=False)
        dsr = tf_dsr.DynamicReparam(prune_target=0.1, period=1, initial_threshold=0.05, seed=0)
        train_x = inputs(sparse, 24, seed=2)
        train_y = np.random.default_rng(3).integers(0, NUM_CLASSES, size=24)
        sparse.fit(train_x, train_y, batch_size=8, epochs=1, verbose=0, callbacks=[dsr])
        after = masks_of(sparse)
        record["dsr"] = {
            "num_reallocations": int(dsr.state.num_reallocations.numpy()),
            "active_before": sum(int(m.sum()) for m in before.values()),
            "active_after": sum(int(m.sum()) for m in after.values()),
            "moved": sum(int((before[k] != after[k]).sum()) for k in before) // 2,
            "kernels": sorted(before),
        }

        begin("summary")
        summary = tf_dsr.sparsity_summary(sparse)
        record["summary"] = summary

        begin("export")
        expected = outputs(sparse, x)
        record["expected"] = expected
        record["num_inactive"] = sum(int((m == 0).sum()) for m in after.values())
        record["as_list"] = isinstance(x, list)
        np.savez(root / f"{name}_x.npz", *(x if isinstance(x, list) else [x]))
        tf_dsr.export(sparse, root / name, verbose=False)
        record["exported"] = True

        begin("strip")
        plain = tf_dsr.strip(sparse)
        record["strip"] = {
            "max_abs_diff": float(np.max(np.abs(outputs(plain, x) - expected))),
            "sparse_layers": [layer.name for layer in walk_layers(plain)
                              if type(layer).__module__.startswith("tf_dsr")],
            "mask_variables": [w.path for w in plain.weights if "mask" in w.path],
            "num_zeros": sum(int(np.sum(keras.ops.convert_to_numpy(w) == 0))
                             for w in plain.weights),
            "same_class": type(plain) is type(sparse),
        }
        del plain

        begin("keras_round_trip")
        sparse.save(root / f"{name}.keras")
        loaded = tf_dsr.load_model(root / f"{name}.keras")
        record["keras"] = {
            "max_abs_diff": float(np.max(np.abs(outputs(loaded, x) - expected))),
            "masks_equal": sorted(masks_of(loaded)) == sorted(after) and all(
                np.array_equal(mask, after[k]) for k, mask in masks_of(loaded).items()),
        }
        if name == "siamese":
            left, right = x
            record["siamese_swapped"] = float(np.max(np.abs(
                outputs(loaded, [right, left]) - outputs(loaded, [left, right]))))
        begin(None)
    except Exception as error:  # reported by the tests of this step and later
        record["error"], record["failed_step"] = error, step
    return record


LOADER = loader(r"""
    with np.load(f"{root}/{name}_x.npz") as arrays:
        xs = [tf.constant(arrays[key]) for key in sorted(arrays.files)]
    served = loaded.serve(xs if len(xs) > 1 else xs[0])
    np.save(f"{root}/{name}_served.npy", served.numpy())
    result["models"][name] = [
        [v.name, int(np.sum(v.numpy() == 0))] for v in loaded.variables]
""")


def run_chains(cases, root):
    """The chain for every case, then one process without tf_dsr loading
    every export."""
    records = {name: run_chain(name, case, root) for name, case in cases.items()}
    exported = [name for name, record in records.items() if record.get("exported")]
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", LOADER, str(root), *exported],
        capture_output=True, text=True, timeout=600, cwd=root,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    for name in exported:
        records[name]["loaded"] = {
            "blocked": result["blocked"],
            "tf_dsr_modules": result["tf_dsr_modules"],
            "variables": result["models"][name],
            "served": np.load(root / f"{name}_served.npy"),
        }
    print(f"\nloader process: {time.perf_counter() - started:.1f} s for {len(exported)} models")
    for name, record in records.items():
        seconds = ", ".join(f"{k} {v:.1f}" for k, v in record["seconds"].items())
        summary = record.get("summary")
        share = f"sparse share {summary.sparse_share:.1%}, " if summary else ""
        print(f"{name}: {share}dense {sorted(record.get('holders', []))}; s: {seconds}")
    return records


@pytest.fixture(scope="module")
def fast_records(tmp_path_factory):
    return run_chains(FAST, tmp_path_factory.mktemp("fast"))


@pytest.fixture(scope="module")
def slow_records(tmp_path_factory):
    return run_chains(SLOW, tmp_path_factory.mktemp("slow"))


def models_for(step):
    """Every model as a test parameter for `step`: keras.applications ones
    marked slow, known failures xfail(strict=True)."""
    params = []
    for name in list(FAST) + list(SLOW):
        marks = [pytest.mark.slow] if name in SLOW else []
        if (name, step) in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[name, step], strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def result_of(request, name, step):
    """What `step` found for model `name`; raises the chain's error if the
    chain stopped at or before it."""
    cases = FAST if name in FAST else SLOW
    record = request.getfixturevalue("fast_records" if name in FAST else "slow_records")[name]
    if step not in record["seconds"]:
        if "error" in record:
            raise AssertionError(
                f"{name}: the chain failed at step {record['failed_step']!r}"
            ) from record["error"]
        raise AssertionError(f"{name}: step {step!r} did not run")
    return record, cases[name]


# ----- the checks, one step each ------------------------------------------


@pytest.mark.parametrize("name", models_for("zero"))
def test_sparsify_at_sparsity_0_keeps_what_the_model_computes(request, name):
    record, _ = result_of(request, name, "zero")
    assert record["zero"] <= 1e-6


@pytest.mark.parametrize("name", models_for("report"))
def test_exactly_the_expected_layers_stay_dense_and_are_reported(request, name):
    record, case = result_of(request, name, "report")
    assert record["holders"] == set(case.dense)
    assert record["eligible_share"] == 1.0
    assert record["report"] == set(case.dense)


@pytest.mark.parametrize("name", models_for("dsr"))
def test_dsr_moves_masks_and_conserves_the_active_count(request, name):
    record, _ = result_of(request, name, "dsr")
    dsr = record["dsr"]
    assert dsr["num_reallocations"] == 3  # period 1, three steps
    assert dsr["active_after"] == dsr["active_before"]
    assert dsr["moved"] > 0


@pytest.mark.parametrize("name", models_for("summary"))
def test_summary_lists_every_sparse_kernel_and_the_share(request, name):
    record, _ = result_of(request, name, "summary")
    summary = record["summary"]
    assert sorted(row.name for row in summary.layers) == record["dsr"]["kernels"]
    assert summary.num_active == record["dsr"]["active_after"]
    assert 0.0 < summary.sparse_share <= 1.0
    assert summary.sparsity == pytest.approx(SPARSITY, abs=0.01)


@pytest.mark.parametrize("name", models_for("export"))
def test_export_loads_without_tf_dsr_and_serves_the_same_outputs(request, name):
    record, _ = result_of(request, name, "export")
    loaded = record["loaded"]
    assert loaded["blocked"] is True
    assert loaded["tf_dsr_modules"] == []
    np.testing.assert_allclose(loaded["served"], record["expected"], rtol=1e-5, atol=1e-5)
    names = [variable_name for variable_name, _ in loaded["variables"]]
    assert names and not any("mask" in variable_name for variable_name in names)
    # The masked positions are exact zeros in the exported kernels.
    assert sum(zeros for _, zeros in loaded["variables"]) >= record["num_inactive"]


@pytest.mark.parametrize("name", models_for("strip"))
def test_strip_gives_a_plain_keras_model_computing_the_same(request, name):
    record, _ = result_of(request, name, "strip")
    stripped = record["strip"]
    assert stripped["max_abs_diff"] <= 1e-5
    assert stripped["sparse_layers"] == []
    assert stripped["mask_variables"] == []
    assert stripped["num_zeros"] >= record["num_inactive"]
    assert stripped["same_class"]


@pytest.mark.parametrize("name", models_for("keras_round_trip"))
def test_keras_file_round_trip_gives_the_same_outputs_and_masks(request, name):
    record, _ = result_of(request, name, "keras_round_trip")
    assert record["keras"]["max_abs_diff"] <= 1e-6
    assert record["keras"]["masks_equal"]


def test_siamese_sharing_is_kept_through_sparsify_training_and_loading(fast_records):
    record = fast_records["siamese"]
    assert "error" not in record, record.get("error")
    # One encoder for both inputs: swapping them changes nothing, after
    # DSR moved the masks and after a `.keras` round trip. Two copies would
    # have drawn different masks.
    assert record["siamese_swapped"] == 0.0
    assert record["dsr"]["kernels"] == ["enc1", "enc2", "logits"]
