"""A user's own layer made sparse with `sparsify(..., kernels={Layer: [...]})`.

`Scale` reads its kernel as `self.w`, a variable created under another
name (`add_weight(name="weight")`). Inside a Functional model and inside
a subclassed model it becomes sparse in place, trains with DSR (the
active count kept, masks moved, masked entries exactly 0 in both what
`call` reads and the raw variable), and survives a `.keras` round trip
with `tf_dsr.load_model`. Arguments naming something that cannot be
masked are refused with an error saying why, and leave the model as it
was.
"""

import warnings

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.saving.state import existing_state
from tf_dsr.layers import find_sparse_kernels
from tf_dsr.layers import find_sparse_layers
from tf_dsr.layers.find import walk_layers

SPARSITY, NUM_FEATURES, NUM_CLASSES = 0.8, 12, 4
register = keras.saving.register_keras_serializable(package="test_custom_layers")


@register
class Scale(keras.layers.Layer):
    """`x @ w + b`; the kernel's attribute (`w`) is not its name (`weight`)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="weight")
        self.b = self.add_weight(shape=(self.units,), name="b", initializer="zeros")
        self.frozen = self.add_weight(shape=(2, 2), name="frozen", trainable=False)

    def call(self, x):
        return x @ self.w + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register
class Net(keras.Model):
    """A subclassed model holding a `Scale` between two Dense layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(32, activation="relu", name="hidden")
        self.scale = Scale(16, name="scale")
        self.head = keras.layers.Dense(NUM_CLASSES, name="head")

    def call(self, x):
        return self.head(keras.ops.relu(self.scale(self.hidden(x))))


def functional():
    features = keras.Input((NUM_FEATURES,), name="features")
    h = keras.layers.Dense(32, activation="relu", name="hidden")(features)
    h = keras.ops.relu(Scale(16, name="scale")(h))
    return keras.Model(features, keras.layers.Dense(NUM_CLASSES, name="head")(h))


def subclassed():
    model = Net(name="net")
    model(np.zeros((1, NUM_FEATURES), "float32"))
    return model


BUILDERS = {"functional": functional, "subclassed": subclassed}
KINDS = list(BUILDERS)
KERNELS = {Scale: ["w"]}


def data(num, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, NUM_FEATURES)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, num)


def scale_of(model):
    (layer,) = [layer for layer in walk_layers(model) if isinstance(layer, Scale)]
    return layer


def masks_of(model):
    return {name: pair.mask.numpy().copy() for name, pair in find_sparse_kernels(model)}


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


class Trained:
    """A model of one kind: built, converted, trained with DSR, saved."""

    def __init__(self, kind, root):
        keras.utils.set_random_seed(0)
        self.model = BUILDERS[kind]()
        self.built_class = type(self.model)
        self.scale = scale_of(self.model)
        self.kernel_variable = self.scale.w
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.returned = tf_dsr.sparsify(self.model, SPARSITY, seed=1, kernels=KERNELS)
        self.initial_kernel = self.scale.sparse_kernels()[0].kernel.numpy().copy()
        self.initial_masks = masks_of(self.model)
        self.model.compile(keras.optimizers.Adam(1e-2),
                           keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.dsr = tf_dsr.DynamicReparam(prune_target=0.1, period=2,
                                         initial_threshold=0.05, seed=0)
        x, y = data(32, seed=0)
        self.model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[self.dsr])
        self.masks = masks_of(self.model)
        self.x_eval, _ = data(8, seed=1)
        self.expected = outputs(self.model, self.x_eval)
        self.path = root / f"{kind}.keras"
        self.model.save(self.path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_layers")
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = Trained(kind, root)
        return cache[kind]
    return get


@pytest.mark.parametrize("kind", KINDS)
def test_the_named_kernel_becomes_sparse_in_place(trained, kind):
    run = trained(kind)
    assert run.returned is run.model
    assert type(run.model) is run.built_class
    assert (run.built_class is Net) == (kind == "subclassed")
    assert scale_of(run.model) is run.scale  # the same layer object, now sparse
    assert isinstance(run.scale, tf_dsr.SparseLayer)
    (pair,) = run.scale.sparse_kernels()
    assert pair.attribute == "w"
    assert pair.kernel is run.kernel_variable  # the variable named "weight"
    assert pair.kernel.name == "weight"
    mask = run.initial_masks[next(k for k in run.initial_masks if "scale" in k)]
    assert int(mask.sum()) == round((1 - SPARSITY) * mask.size)
    # The bias and the non-trainable weight are not masked.
    assert {p.attribute for p in run.scale.sparse_kernels()} == {"w"}
    assert sorted(layer.name for layer in find_sparse_layers(run.model)) == [
        "head", "hidden", "scale"]


@pytest.mark.parametrize("kind", KINDS)
def test_dsr_trains_the_custom_kernel_sparse(trained, kind):
    run = trained(kind)
    assert int(run.dsr.state.num_reallocations.numpy()) == 4  # 8 steps, period 2
    before, after = run.initial_masks, run.masks
    assert sum(int(m.sum()) for m in after.values()) == sum(
        int(m.sum()) for m in before.values())
    assert sum(int((after[k] != before[k]).sum()) for k in before) > 0
    (scale_key,) = [k for k in before if "scale" in k]
    assert (after[scale_key] != before[scale_key]).any()  # the custom kernel's mask moved

    mask = after[scale_key]
    read = keras.ops.convert_to_numpy(run.scale.w)  # what `call` reads: w * mask
    raw = run.scale.sparse_kernels()[0].kernel.numpy()
    assert np.all(read[mask == 0] == 0)
    assert np.all(raw[mask == 0] == 0)
    np.testing.assert_array_equal(read, raw * mask)
    kept = (mask == 1) & (before[scale_key] == 1)
    assert kept.any() and not np.array_equal(raw[kept], run.initial_kernel[kept])  # trained


@pytest.mark.parametrize("kind", KINDS)
def test_keras_round_trip_with_tf_dsr_load_model(trained, kind):
    run = trained(kind)
    loaded = tf_dsr.load_model(run.path)

    assert type(loaded) is type(run.model)
    scale = scale_of(loaded)
    assert isinstance(scale, tf_dsr.SparseLayer)
    assert [p.attribute for p in scale.sparse_kernels()] == ["w"]
    loaded_masks = masks_of(loaded)
    assert sorted(loaded_masks) == sorted(run.masks)
    for key, mask in run.masks.items():
        np.testing.assert_array_equal(loaded_masks[key], mask, err_msg=key)
    np.testing.assert_array_equal(outputs(loaded, run.x_eval), run.expected)
    threshold = existing_state(loaded).method_states()["dsr"].threshold.numpy()
    assert float(threshold) == float(run.dsr.state.threshold.numpy())


# ----- refusals -------------------------------------------------------------------


REFUSED = {
    "non_trainable": ({Scale: ["frozen"]}, ValueError, "non-trainable"),
    "missing": ({Scale: ["nope"]}, ValueError, "no attribute `nope`"),
    "unknown_name": ({"no_such_layer": ["w"]}, ValueError, "holds no layer"),
    "not_a_layer_class": ({np.ndarray: ["w"]}, TypeError, "layer classes or layer names"),
    "layer_instance": (None, TypeError, "layer classes or layer names"),
    "not_a_dict": ([Scale, "w"], TypeError, "must be None or a dict"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_kernels_leave_the_model_unchanged(kind, case):
    model = BUILDERS[kind]()
    kernels, error, message = REFUSED[case]
    if case == "layer_instance":
        kernels = {scale_of(model): ["w"]}  # an instance, not its class
    classes = [type(layer) for layer in walk_layers(model)]
    weights = [w.numpy().copy() for w in model.weights]

    with pytest.raises(error, match=message):
        tf_dsr.sparsify(model, SPARSITY, seed=0, kernels=kernels)

    assert find_sparse_layers(model) == []
    assert [type(layer) for layer in walk_layers(model)] == classes
    assert len(model.weights) == len(weights)
    for variable, value in zip(model.weights, weights):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


class ReadsByIndex(keras.layers.Layer):
    """Reads its kernel as `self.weights[0]`: a mask on `self.w` would not
    reach the computation."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), name="weight")

    def call(self, x):
        return x @ self.weights[0]


def test_a_kernel_call_never_reads_by_name_is_refused_and_nothing_changes():
    model = keras.Sequential([keras.Input((8,)), ReadsByIndex(name="by_index")])
    before = model.weights[0].numpy().copy()
    with pytest.raises(ValueError, match=r"never reads `self\.w`"):
        tf_dsr.sparsify(model, SPARSITY, seed=0, kernels={ReadsByIndex: ["w"]})
    assert find_sparse_layers(model) == []
    assert type(model.get_layer("by_index")) is ReadsByIndex
    np.testing.assert_array_equal(model.weights[0].numpy(), before)


# ----- two users' classes of one name -----------------------------------------------


def scale_in_package(package, factor):
    """A class named `Scale`, registered in `package`, scaling by `factor`."""

    @keras.saving.register_keras_serializable(package=package)
    class Scale(keras.layers.Layer):  # noqa: F811 (the same name, on purpose)
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 3), name="weight")

        def call(self, x):
            return factor * (x @ self.w)

    return Scale


def test_two_classes_of_one_name_in_two_packages_each_load_as_themselves(tmp_path):
    x = np.ones((2, 5), "float32")
    files = {}
    for package, factor in (("test_custom_layers_a", 1.0), ("test_custom_layers_b", -2.0)):
        cls = scale_in_package(package, factor)
        features = keras.Input((5,))
        model = keras.Model(features, cls(name="scale")(features))
        tf_dsr.sparsify(model, 0.5, seed=0, kernels={cls: ["w"]})
        files[package] = (tmp_path / f"{package}.keras", cls, outputs(model, x))
        model.save(files[package][0])
    for package, (path, cls, expected) in files.items():
        loaded = tf_dsr.load_model(path)
        layer = loaded.get_layer("scale")
        assert isinstance(layer, cls) and isinstance(layer, tf_dsr.SparseLayer), package
        np.testing.assert_array_equal(outputs(loaded, x), expected, err_msg=package)
