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
    assert lines.index(total[0]) == len(lines) - 1


def test_model_without_sparse_layers_gives_empty_summary():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    summary = tf_dsr.sparsity_summary(model)

    assert summary.layers == []
    assert summary.num_weights == 0
    assert summary.sparsity == 0.0


@pytest.mark.parametrize("value", [3, "model", None, np.zeros(3)])
def test_non_keras_argument_raises_type_error(value):
    with pytest.raises(TypeError, match="expects a Keras model or layer"):
        tf_dsr.sparsity_summary(value)
