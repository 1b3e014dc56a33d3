"""The contract every tf_dsr sparse layer keeps, run over each layer class.

A new sparse layer class joins by adding one `LayerCase` to `CASES`.
"""

import copy
from typing import Callable, NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import SPARSE_CLASSES
from tf_dsr.layers import find_sparse_kernels


class LayerCase(NamedTuple):
    """How to make one sparse layer and its plain Keras twin.

    Attributes:
        make: callable `(sparsity, seed, **kwargs) -> sparse layer`.
        twin: callable `(**kwargs) -> the Keras layer it masks`, same config.
        input_shape: shape of a test input, batch included.
        sizes: number of weights of each masked kernel, computed by hand
            from the layer's arguments and the input shape.
        integer_inputs: vocabulary size for integer inputs (Embedding).
    """

    make: Callable
    twin: Callable
    input_shape: tuple
    sizes: tuple
    integer_inputs: int = 0


def _case(sparse_class, keras_class, args, input_shape, sizes, integer_inputs=0, **fixed):
    return LayerCase(
        make=lambda sparsity, seed, **kw: sparse_class(
            *args, sparsity=sparsity, seed=seed, **fixed, **kw),
        twin=lambda **kw: keras_class(*args, **fixed, **kw),
        input_shape=input_shape,
        sizes=sizes,
        integer_inputs=integer_inputs,
    )


def _cell_case(sparse_cell, keras_cell, units, input_shape, sizes):
    def wrap(cell_class, name=None, dtype=None, **kw):
        # The wrapper takes the name, and the dtype policy too (or it casts
        # the output back to float32).
        cell = cell_class(units, dtype=dtype, **kw)
        return keras.layers.RNN(cell, return_sequences=True, name=name, dtype=dtype)

    return LayerCase(
        make=lambda sparsity, seed, **kw: wrap(sparse_cell, sparsity=sparsity, seed=seed, **kw),
        twin=lambda **kw: wrap(keras_cell, **kw),
        input_shape=input_shape,
        sizes=sizes,
    )


L = keras.layers
CASES = {
    # kernel 40x50.
    "SparseDense": _case(tf_dsr.SparseDense, L.Dense, (50,), (3, 40), (2000,)),
    # kernel 16x12, output (batch, 5, 12) with the middle axis inferred.
    "SparseEinsumDense": _case(
        tf_dsr.SparseEinsumDense, L.EinsumDense, ("abc,cd->abd", (None, 12)),
        (2, 5, 16), (192,), bias_axes="d"),
    # kernel 16x4x6 (a multi-head projection), bias over both output axes.
    "SparseEinsumDense-heads": _case(
        tf_dsr.SparseEinsumDense, L.EinsumDense, ("abc,cde->abde", (None, 4, 6)),
        (2, 5, 16), (384,), bias_axes="de"),
    # table 50x8.
    "SparseEmbedding": _case(
        tf_dsr.SparseEmbedding, L.Embedding, (50, 8), (2, 6), (400,), integer_inputs=50,
        mask_zero=True),
    # table 50x8, tied: the same table maps tokens in and vectors out.
    "SparseReversibleEmbedding": _case(
        tf_dsr.SparseReversibleEmbedding, L.ReversibleEmbedding, (50, 8), (2, 6), (400,),
        integer_inputs=50, mask_zero=True),
    # 3 x 6 in x 8 out.
    "SparseConv1D": _case(tf_dsr.SparseConv1D, L.Conv1D, (8, 3), (2, 10, 6), (144,)),
    # 3x3 x 6 x 8.
    "SparseConv2D": _case(
        tf_dsr.SparseConv2D, L.Conv2D, (8, 3), (2, 7, 7, 6), (432,), padding="same"),
    # 2x2x2 x 3 x 4.
    "SparseConv3D": _case(tf_dsr.SparseConv3D, L.Conv3D, (4, 2), (1, 5, 5, 5, 3), (96,)),
    # 3 x 8 out x 6 in.
    "SparseConv1DTranspose": _case(
        tf_dsr.SparseConv1DTranspose, L.Conv1DTranspose, (8, 3), (2, 10, 6), (144,)),
    # 3x3 x 8 x 6.
    "SparseConv2DTranspose": _case(
        tf_dsr.SparseConv2DTranspose, L.Conv2DTranspose, (8, 3), (2, 5, 5, 6), (432,),
        strides=2),
    # 2x2x2 x 4 x 3.
    "SparseConv3DTranspose": _case(
        tf_dsr.SparseConv3DTranspose, L.Conv3DTranspose, (4, 2), (1, 4, 4, 4, 3), (96,)),
    # 3 x 6 x 2.
    "SparseDepthwiseConv1D": _case(
        tf_dsr.SparseDepthwiseConv1D, L.DepthwiseConv1D, (3,), (2, 10, 6), (36,),
        depth_multiplier=2),
    # 3x3 x 6 x 2.
    "SparseDepthwiseConv2D": _case(
        tf_dsr.SparseDepthwiseConv2D, L.DepthwiseConv2D, (3,), (2, 7, 7, 6), (108,),
        depth_multiplier=2),
    # depthwise 3 x 6 x 1, pointwise 1 x 6 x 8.
    "SparseSeparableConv1D": _case(
        tf_dsr.SparseSeparableConv1D, L.SeparableConv1D, (8, 3), (2, 10, 6), (18, 48)),
    # depthwise 3x3 x 6 x 1, pointwise 1x1 x 6 x 8.
    "SparseSeparableConv2D": _case(
        tf_dsr.SparseSeparableConv2D, L.SeparableConv2D, (8, 3), (2, 7, 7, 6), (54, 48)),
    # kernel 3 x 5, recurrent 5 x 5.
    "SparseSimpleRNN": _case(
        tf_dsr.SparseSimpleRNN, L.SimpleRNN, (5,), (2, 4, 3), (15, 25), return_sequences=True),
    # kernel 3 x 15, recurrent 5 x 15.
    "SparseGRU": _case(tf_dsr.SparseGRU, L.GRU, (5,), (2, 4, 3), (45, 75)),
    # kernel 3 x 20, recurrent 5 x 20.
    "SparseLSTM": _case(tf_dsr.SparseLSTM, L.LSTM, (5,), (2, 4, 3), (60, 100)),
    "SparseSimpleRNNCell": _cell_case(
        tf_dsr.SparseSimpleRNNCell, L.SimpleRNNCell, 5, (2, 4, 3), (15, 25)),
    "SparseGRUCell": _cell_case(tf_dsr.SparseGRUCell, L.GRUCell, 5, (2, 4, 3), (45, 75)),
    "SparseLSTMCell": _cell_case(tf_dsr.SparseLSTMCell, L.LSTMCell, 5, (2, 4, 3), (60, 100)),
}


def test_every_sparse_class_has_a_case():
    # Sparse classes are named like their Keras class (`SparseDense.__name__
    # == "Dense"`); `sparse_name` is tf_dsr's name.
    covered = {getattr(CASES[name].make(0.5, 0), "sparse_name", None) for name in CASES}
    covered |= {CASES[name].make(0.5, 0).cell.sparse_name for name in CASES
                if isinstance(CASES[name].make(0.5, 0), keras.layers.RNN)}
    # Attention takes two inputs: its contract is tests/layers/test_attention.py.
    elsewhere = {"SparseMultiHeadAttention"}
    assert {cls.sparse_name for cls in SPARSE_CLASSES.values()} - elsewhere <= covered


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def inputs_for(case, seed=0):
    rng = np.random.default_rng(seed)
    if case.integer_inputs:
        ids = rng.integers(1, case.integer_inputs, size=case.input_shape)
        ids[:, -2:] = 0  # padding, masked by mask_zero
        return ids.astype("int32")
    return rng.normal(size=case.input_shape).astype("float32")


def built(case, sparsity=0.9, seed=1, **kwargs):
    layer = case.make(sparsity, seed, **kwargs)
    layer(inputs_for(case))
    return layer


def kernels(layer):
    return [pair for _, pair in find_sparse_kernels(layer)]


def unmasked_weights(layer):
    masks = {id(pair.mask) for pair in kernels(layer)}
    return [w for w in layer.weights if id(w) not in masks]


def twin_of(case, layer, masked=True):
    """The Keras twin holding `layer`'s weights (masked kernels if `masked`)."""
    twin = case.twin()
    twin(inputs_for(case))
    values = {id(p.kernel): (p.masked if masked else p.kernel) for p in kernels(layer)}
    sparse_weights = unmasked_weights(layer)
    assert [tuple(w.shape) for w in twin.weights] == [tuple(w.shape) for w in sparse_weights]
    for target, source in zip(twin.weights, sparse_weights):
        target.assign(values.get(id(source), source))
    return twin


def densify(layer, seed=0):
    """Gives every kernel random values everywhere (inactive entries too)."""
    rng = np.random.default_rng(seed)
    for pair in kernels(layer):
        pair.kernel.assign(rng.normal(size=pair.kernel.shape).astype("float32"))


def outputs_and_input_gradient(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        if x.dtype.is_floating:
            tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))
    grad = tape.gradient(loss, x) if x.dtype.is_floating else None
    return y.numpy(), None if grad is None else grad.numpy()


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_masks_are_binary_non_trainable_with_exact_counts(case, sparsity):
    if min(round((1 - sparsity) * size) for size in case.sizes) < 1:
        with pytest.raises(ValueError, match="no active weight"):
            built(case, sparsity=sparsity)
        return
    layer = built(case, sparsity=sparsity)
    pairs = kernels(layer)

    assert [pair.size for pair in pairs] == list(case.sizes)
    for pair, size in zip(pairs, case.sizes):
        mask = pair.mask.numpy()
        assert mask.shape == tuple(pair.kernel.shape)
        assert not pair.mask.trainable and pair.kernel.trainable
        assert any(w is pair.mask for w in layer.non_trainable_weights)
        assert all(w is not pair.mask for w in layer.trainable_weights)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert int(mask.sum()) == round((1 - sparsity) * size)


def test_kernels_are_zero_where_masks_are_zero_after_build(case):
    for pair in kernels(built(case, sparsity=0.5)):
        kernel, mask = pair.kernel.numpy(), pair.mask.numpy()
        assert np.all(kernel[mask == 0] == 0.0)
        assert np.count_nonzero(kernel[mask == 1]) > 0.9 * mask.sum()


def test_same_seed_same_masks_other_seed_other_masks(case):
    masks = lambda seed: [p.mask.numpy() for p in kernels(built(case, seed=seed))]
    first, again, other = masks(7), masks(7), masks(8)

    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert a.sum() == c.sum()


def test_kernels_of_one_layer_get_different_masks(case):
    pairs = kernels(built(case, sparsity=0.5))
    if len(pairs) == 2 and pairs[0].mask.shape == pairs[1].mask.shape:
        assert not np.array_equal(pairs[0].mask.numpy(), pairs[1].mask.numpy())


def test_sparsity_zero_computes_what_the_keras_layer_computes(case):
    layer = built(case, sparsity=0.0)
    densify(layer)
    twin = twin_of(case, layer, masked=False)
    x = inputs_for(case, seed=3)

    y, grad = outputs_and_input_gradient(layer, x)
    y_twin, grad_twin = outputs_and_input_gradient(twin, x)

    np.testing.assert_array_equal(y, y_twin)
    if grad is not None:
        np.testing.assert_array_equal(grad, grad_twin)


def test_layer_computes_with_kernel_times_mask(case):
    layer = built(case, sparsity=0.5)
    densify(layer)  # inactive entries non-zero: only the mask removes them
    twin = twin_of(case, layer, masked=True)
    x = inputs_for(case, seed=4)

    np.testing.assert_allclose(
        outputs_and_input_gradient(layer, x)[0], outputs_and_input_gradient(twin, x)[0],
        rtol=1e-6, atol=1e-6)
    for pair in kernels(layer):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(pair.masked), pair.kernel.numpy() * pair.mask.numpy())
        # Keras' own attribute reads the masked kernel.
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(pair.layer, pair.attribute)),
            pair.kernel.numpy() * pair.mask.numpy())


def test_gradients_are_zero_at_inactive_positions(case):
    layer = built(case, sparsity=0.5)
    x = inputs_for(case)
    pairs = kernels(layer)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    grads = tape.gradient(loss, [pair.kernel for pair in pairs])

    for pair, grad in zip(pairs, grads):
        grad = tf.convert_to_tensor(grad).numpy()
        mask = pair.mask.numpy()
        assert np.all(grad[mask == 0] == 0.0)
        assert np.count_nonzero(grad[mask == 1]) > 0


def test_config_is_complete_and_round_trips(case):
    layer = case.make(0.8, 3, name="probe")
    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))  # RNN pops "cell"
    twin_config = case.twin(name="probe").get_config()

    assert clone.get_config() == config
    if not isinstance(layer, keras.layers.RNN) or isinstance(layer, tf_dsr.SparseLayer):
        assert config["sparsity"] == 0.8 and config["seed"] == 3
        # Every argument of the Keras layer is in the config.
        assert set(twin_config) <= set(config)


def test_keras_file_round_trip_restores_masks(case, tmp_path):
    x = inputs_for(case)
    model = keras.Sequential([
        keras.Input(case.input_shape[1:], dtype="int32" if case.integer_inputs else "float32"),
        case.make(0.5, None, name="sparse"),
    ])
    # Masks the seed could not reproduce: only the file can restore them.
    rng = np.random.default_rng(0)
    for pair in kernels(model):
        new_mask = rng.permutation(pair.mask.numpy().ravel()).reshape(pair.mask.shape)
        pair.mask.assign(new_mask)
        pair.kernel.assign(rng.normal(size=pair.kernel.shape) * new_mask)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    assert len(kernels(loaded)) == len(kernels(model)) == len(case.sizes)
    for pair, loaded_pair in zip(kernels(model), kernels(loaded)):
        assert type(loaded_pair.layer) is type(pair.layer)
        np.testing.assert_array_equal(loaded_pair.mask.numpy(), pair.mask.numpy())
        np.testing.assert_array_equal(loaded_pair.kernel.numpy(), pair.kernel.numpy())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


def test_mixed_precision(case):
    layer = case.make(0.5, 2, dtype="mixed_float16")
    x = inputs_for(case)
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, "float32"))
    pairs = kernels(layer)
    grads = tape.gradient(loss, [pair.kernel for pair in pairs])

    assert y.dtype == "float16"
    for pair, grad in zip(pairs, grads):
        assert pair.kernel.dtype == "float32" and pair.mask.dtype == "float32"
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(grad[pair.mask.numpy() == 0] == 0.0)


def test_strip_gives_the_keras_layer_with_identical_outputs(case):
    x = inputs_for(case)
    model = keras.Sequential([
        keras.Input(case.input_shape[1:], dtype="int32" if case.integer_inputs else "float32"),
        case.make(0.5, 5, name="sparse"),
    ])
    densify(model)
    plain = tf_dsr.strip(model)
    stripped = plain.get_layer("sparse")

    assert type(stripped) is type(case.twin())
    assert not tf_dsr.layers.find_sparse_layers(plain)
    assert not any("mask" in w.path for w in plain.weights)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(model(x)))


class Holder(keras.Model):
    """A subclassed model: Keras builds its layer inside a scratch graph."""

    def __init__(self, layer):
        super().__init__()
        self.inner = layer

    def call(self, x):
        return self.inner(x)


def test_builds_inside_a_subclassed_models_first_call(case):
    model = Holder(case.make(0.5, 3))
    model(inputs_for(case))
    alone = built(case, sparsity=0.5, seed=3)

    assert len(kernels(model)) == len(case.sizes)
    for pair, alone_pair in zip(kernels(model), kernels(alone)):
        mask = pair.mask.numpy()
        np.testing.assert_array_equal(mask, alone_pair.mask.numpy())
        assert np.all(pair.kernel.numpy()[mask == 0] == 0.0)


def test_export_of_a_subclassed_model_saves_masked_kernels_and_no_mask(case, tmp_path):
    x = inputs_for(case)
    model = Holder(case.make(0.5, 5))
    model(x)
    densify(model)  # inactive entries non-zero: only the mask removes them
    signature = [tf.TensorSpec((None,) + x.shape[1:], x.dtype)]
    tf_dsr.export(model, tmp_path / "saved", verbose=False, input_signature=signature)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    saved = {v.name.split(":")[0]: v.numpy() for v in loaded.variables}

    assert not any("mask" in name for name in saved)
    assert len(loaded.variables) == len(unmasked_weights(model))
    for pair in kernels(model):
        np.testing.assert_array_equal(
            saved[pair.kernel.path], pair.kernel.numpy() * pair.mask.numpy())
    np.testing.assert_allclose(
        loaded.serve(x).numpy(), keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "sparsity, error",
    [(1.0, ValueError), (-0.1, ValueError), (True, TypeError), ("0.9", TypeError)],
)
def test_bad_sparsity_raises(case, sparsity, error):
    with pytest.raises(error, match="sparsity"):
        case.make(sparsity, 0)


def test_sparsity_leaving_no_active_weight_raises(case):
    # 0.9999 of at most a few thousand weights rounds to zero active.
    layer = case.make(0.9999, 0)
    with pytest.raises(ValueError, match="no active weight"):
        layer(inputs_for(case))


def test_lora_and_quantization_are_refused():
    with pytest.raises(ValueError, match="lora_rank"):
        tf_dsr.SparseDense(4, lora_rank=2)
    layer = tf_dsr.SparseDense(4, sparsity=0.5)
    layer.build((None, 3))
    with pytest.raises(ValueError, match="strip"):
        layer.enable_lora(2)
    with pytest.raises(ValueError, match="strip"):
        layer.quantize("int8")


def test_several_kernels_name_their_masks_after_their_kernels():
    cell = built(CASES["SparseLSTMCell"]).cell
    assert [p.attribute for p in cell.sparse_kernels()] == ["kernel", "recurrent_kernel"]
    assert cell.kernel_mask is cell.sparse_kernels()[0].mask
    assert cell.recurrent_kernel_mask is cell.sparse_kernels()[1].mask
    with pytest.raises(AttributeError, match="2 sparse kernels"):
        cell.masked_kernel


def test_a_subclassed_model_builds_its_sparse_layers_on_first_call():
    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.recurrent = tf_dsr.SparseLSTM(4, sparsity=0.5, seed=0)
            self.dense = tf_dsr.SparseDense(3, sparsity=0.5, seed=1)

        def call(self, x):
            return self.dense(self.recurrent(x))

    x = np.ones((2, 5, 3), "float32")
    eager = Model()
    eager(x)
    symbolic = Model()
    symbolic(keras.Input((5, 3)))

    for model in (eager, symbolic):
        counts = [int(p.mask.numpy().sum()) for _, p in find_sparse_kernels(model)]
        assert counts == [24, 32, 6]  # half of 3x16, 4x16 and 4x3


def test_weights_argument_and_quantized_policies_are_refused():
    with pytest.raises(ValueError, match="`weights`"):
        tf_dsr.SparseEmbedding(5, 2, weights=[np.ones((5, 2))])
    with pytest.raises(ValueError, match="quantized dtype policy"):
        tf_dsr.SparseDense(3, dtype="int8_from_float32")
