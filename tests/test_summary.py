"""sparsity_summary: per-layer and global counts of active kernel weights."""

import keras
import numpy as np
import pytest

import tf_dsr


@pytest.fixture
def model():
    """Two sparse layers with hand-set masks and one ordinary Dense layer.

    "first":  kernel (4, 5) = 20 weights, 7 active.
    "second": kernel (3, 3, 2, 2) = 36 weights, 9 active.
    """
    inputs = keras.Input((6, 6, 2))
    x = tf_dsr.SparseConv2D(2, 3, sparsity=0.5, seed=0, name="second")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4, name="plain")(x)
    outputs = tf_dsr.SparseDense(5, sparsity=0.5, seed=0, name="first")(x)
    model = keras.Model(inputs, outputs)

    dense_mask = np.zeros((4, 5), "float32")
    dense_mask.flat[[0, 3, 4, 9, 12, 17, 19]] = 1.0
    model.get_layer("first").mask.assign(dense_mask)
    conv_mask = np.zeros((3, 3, 2, 2), "float32")
    conv_mask.flat[::4] = 1.0  # 36 / 4 = 9 ones
    model.get_layer("second").mask.assign(conv_mask)
    return model


def test_counts_per_layer(model):
    summary = tf_dsr.sparsity_summary(model)
    rows = {row.name: row for row in summary.layers}

    assert set(rows) == {"first", "second"}  # the plain Dense is not counted
    assert rows["first"].shape == (4, 5)
    assert rows["first"].num_weights == 20
    assert rows["first"].num_active == 7
    assert rows["first"].sparsity == pytest.approx(13 / 20)
    assert rows["second"].shape == (3, 3, 2, 2)
    assert rows["second"].num_weights == 36
    assert rows["second"].num_active == 9
    assert rows["second"].sparsity == pytest.approx(27 / 36)


def test_global_sparsity_is_one_minus_active_over_total(model):
    summary = tf_dsr.sparsity_summary(model)

    assert summary.num_weights == 56
    assert summary.num_active == 16
    assert summary.sparsity == pytest.approx(1 - 16 / 56)


def test_summary_follows_mask_changes(model):
    model.get_layer("first").mask.assign(np.ones((4, 5), "float32"))
    summary = tf_dsr.sparsity_summary(model)

    assert summary.num_active == 20 + 9
    assert summary.sparsity == pytest.approx(1 - 29 / 56)


def test_str_renders_header_layers_and_total(model):
    text = str(tf_dsr.sparsity_summary(model))
    lines = text.splitlines()

    for column in ("layer", "shape", "weights", "active", "sparsity"):
        assert column in lines[0]
    body = "\n".join(lines[1:])
    assert any(line.split()[:1] == ["first"] and "4x5" in line for line in lines)
    assert any(line.split()[:1] == ["second"] and "3x3x2x2" in line for line in lines)
    assert "plain" not in body
    total = [line for line in lines if line.split()[:1] == ["total"]]
    assert len(total) == 1
    assert total[0].split()[1:] == ["56", "16", f"{1 - 16 / 56:.4f}"]
    # The share line follows the total: 56 sparse of 56 + 139 (see below).
    assert lines.index(total[0]) == len(lines) - 2
    assert lines[-1] == (
        "sparse kernels hold 28.7% of the 195 trainable parameters; 139 are dense")


def test_model_without_sparse_layers_gives_empty_summary():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    summary = tf_dsr.sparsity_summary(model)

    assert summary.layers == []
    assert summary.num_weights == 0
    assert summary.sparsity == 0.0


def test_sparse_share_of_a_model_that_is_mostly_dense():
    # Dense 100x50 + 50 and a sparse 50x4 + 4 at sparsity 0.5.
    model = keras.Sequential([
        keras.Input((100,)),
        keras.layers.Dense(50, name="wide"),
        tf_dsr.SparseDense(4, sparsity=0.5, seed=0, name="head"),
    ])
    summary = tf_dsr.sparsity_summary(model)

    assert summary.sparsity == pytest.approx(0.5)
    assert summary.num_dense_trainable == 5050 + 4
    assert summary.num_trainable == 5054 + 200
    assert summary.sparse_share == pytest.approx(200 / 5254)
    assert "sparse kernels hold 3.8% of the 5,254 trainable parameters; 5,054 are dense" in str(
        summary)


def test_counts_of_the_fixture_by_hand(model):
    summary = tf_dsr.sparsity_summary(model)
    # Dense "plain": 32x4 kernel (4x4x2 flattened) + 4 bias; biases of
    # "second" (2) and "first" (5).
    assert summary.num_dense_trainable == 128 + 4 + 2 + 5
    assert summary.sparse_share == pytest.approx(56 / (56 + 139))


@pytest.mark.parametrize("value", [3, "model", None, np.zeros(3)])
def test_non_keras_input_raises_type_error(value):
    with pytest.raises(TypeError, match="expects a Keras model or layer"):
        tf_dsr.sparsity_summary(value)
