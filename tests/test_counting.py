"""tf_dsr/counting.py and find_dense_kernels: one count of weights, by hand."""

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr import counting
from tf_dsr.layers import find_dense_kernels


class Scale(keras.layers.Layer):
    """A user's layer with a kernel of its own and a Dense sublayer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(3, name="proj")

    def build(self, input_shape):
        self.table = self.add_weight(shape=(4, 3), name="table")
        self.offset = self.add_weight(shape=(3,), name="offset")

    def call(self, x):
        return self.proj(x) + keras.ops.matmul(x, self.table) + self.offset


def model_with_every_kind_of_weight():
    """Hand counts (trainable entries):

    sparse "a" 6x8 = 48 (mask set to 10 ones) + bias 8
    dense "b" 8x4 = 32 + bias 4
    "scale": table 4x3 = 12, offset 3; "scale/proj" 4x3 = 12 + bias 3
    "bn": gamma 3 + beta 3 (non-trainable: 2 x 3 statistics)
    "lstm": cell kernel 3x8 = 24, recurrent 2x8 = 16, bias 8
    frozen Dense "frozen" 2x2 + 2: non-trainable
    """
    inputs = keras.Input((5, 6))
    h = tf_dsr.SparseDense(8, sparsity=0.5, seed=0, name="a")(inputs)
    h = keras.layers.Dense(4, name="b")(h)
    h = Scale(name="scale")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.LSTM(2, name="lstm")(h)
    frozen = keras.layers.Dense(2, name="frozen")
    frozen.trainable = False
    model = keras.Model(inputs, frozen(h))
    mask = np.zeros((6, 8), "float32")
    mask.flat[[0, 5, 9, 13, 20, 21, 30, 33, 40, 47]] = 1.0
    model.get_layer("a").mask.assign(mask)
    return model


def test_find_dense_kernels_names_each_by_its_deepest_layer():
    found = find_dense_kernels(model_with_every_kind_of_weight())

    assert [(name, tuple(v.shape)) for name, _, v in found] == [
        ("b", (8, 4)),
        ("scale", (4, 3)),
        ("scale/proj", (4, 3)),
        ("lstm/lstm_cell/kernel", (3, 8)),
        ("lstm/lstm_cell/recurrent_kernel", (2, 8)),
    ]
    assert [type(layer).__name__ for _, layer, _ in found] == [
        "Dense", "Scale", "Dense", "LSTMCell", "LSTMCell"]


def test_biases_of_rank_2_in_sparse_layers_are_not_dense_kernels():
    # GRU's bias is (2, 3 * units); an EinsumDense bias can have rank 2.
    # Before, both were reported as dense kernels of an "unsupported"
    # SparseGRUCell / SparseEinsumDense.
    inputs = keras.Input((5, 6))
    h = tf_dsr.SparseGRU(4, sparsity=0.5, seed=0, name="gru")(inputs)
    h = tf_dsr.SparseEinsumDense("ab,bcd->acd", (2, 3), bias_axes="cd", sparsity=0.5,
                                 seed=1, name="einsum")(h)
    model = keras.Model(inputs, h)
    assert [tuple(model.get_layer("gru").cell.bias.shape),
            tuple(model.get_layer("einsum").bias.shape)] == [(2, 12), (2, 3)]

    assert find_dense_kernels(model) == []


def test_parameter_counts_by_hand():
    counts = counting.parameter_counts(model_with_every_kind_of_weight())
    dense = 8 + 32 + 4 + 12 + 3 + 12 + 3 + 6 + 24 + 16 + 8

    assert counts.num_sparse_weights == 48
    assert counts.num_active == 10
    assert counts.num_dense_trainable == dense
    assert counts.num_trainable == 48 + dense
    assert counts.num_params == 10 + dense
    assert counts.sparse_share == pytest.approx(48 / (48 + dense))
    # Mask 48, BatchNorm statistics 6, frozen Dense 4 + 2.
    assert counts.num_non_trainable == 48 + 6 + 6
    assert tf_dsr.models.num_nonzero_params(model_with_every_kind_of_weight()) == 10 + dense


def test_kernel_counts_sparse_then_dense():
    model = model_with_every_kind_of_weight()
    rows = counting.kernel_counts(model)
    assert rows == [counting.KernelCount("a", (6, 8), 48, 10)]
    assert rows[0].sparsity == pytest.approx(38 / 48)

    rows = counting.kernel_counts(model, dense=True)
    assert [(r.name, r.num_weights, r.num_active) for r in rows] == [
        ("a", 48, 10), ("b", 32, 32), ("scale", 12, 12), ("scale/proj", 12, 12),
        ("lstm/lstm_cell/kernel", 24, 24), ("lstm/lstm_cell/recurrent_kernel", 16, 16),
    ]


def test_num_active_is_exact_beyond_float32_integers():
    # 2**24 + 1 ones: a float32 sum would round to 2**24.
    mask = np.ones(2**24 + 1, "float32")
    assert counting.num_active(mask) == 2**24 + 1


def test_callback_counts_active_weights_through_counting():
    model = model_with_every_kind_of_weight()
    callback = tf_dsr.DynamicReparam(prune_target=2, period=10, seed=0)
    callback.set_model(model)
    assert callback._initial_active == 10
