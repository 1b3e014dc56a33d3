"""tf_dsr.load_model restores the reallocation state a .keras file carries."""

import keras
import numpy as np
import pytest

import tf_dsr


def _trained(tmp_path):
    model = keras.Sequential([keras.Input((8,)), tf_dsr.SparseDense(16, sparsity=0.5, seed=1),
                              tf_dsr.SparseDense(4, sparsity=0.5, seed=2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    reparam = tf_dsr.DynamicReparam(prune_target=3, period=2, seed=0, initial_threshold=0.05)
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 8)), rng.random((64, 4)), batch_size=8, verbose=0,
              callbacks=[reparam])
    path = tmp_path / "run.keras"
    model.save(path)
    return model, reparam, path


def test_load_model_restores_state_and_training_continues(tmp_path):
    model, reparam, path = _trained(tmp_path)
    assert int(reparam.state.num_reallocations.numpy()) == 4

    plain = keras.models.load_model(path)
    assert getattr(plain, "_tf_dsr_state", None) is None

    loaded = tf_dsr.load_model(path)
    resumed = tf_dsr.DynamicReparam(prune_target=3, period=2, seed=0, initial_threshold=0.05)
    resumed.set_model(loaded)
    for name in ("threshold", "last_step", "num_reallocations"):
        assert getattr(resumed.state, name).numpy() == getattr(reparam.state, name).numpy()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)

    rng = np.random.default_rng(1)
    loaded.fit(rng.random((32, 8)), rng.random((32, 4)), batch_size=8, verbose=0,
               callbacks=[resumed])
    assert int(resumed.state.num_reallocations.numpy()) == 6
    assert tf_dsr.sparsity_summary(loaded).num_active == tf_dsr.sparsity_summary(model).num_active


def test_load_model_without_state_is_plain_keras(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "plain.keras"
    model.save(path)
    loaded = tf_dsr.load_model(path)
    assert getattr(loaded, "_tf_dsr_state", None) is None
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_load_model_missing_file_raises(tmp_path):
    with pytest.raises(ValueError):
        tf_dsr.load_model(tmp_path / "missing.keras")


# ----- corrupt files and unusable state ----------------------------------------
def _saved(tmp_path, threshold=None):
    model, reparam, path = _trained(tmp_path)
    if threshold is not None:
        reparam.state.threshold.assign(threshold)
        model.save(path)
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "text"])
def test_corrupt_keras_file_is_reported_as_corrupt(tmp_path, damage):
    path = _saved(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data = bytearray(data)
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        data = bytes(data)
    else:
        data = b"not a model"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="corrupt") as error:
        tf_dsr.load_model(path)
    assert "not found" not in str(error.value)
    assert path.read_bytes() == data


@pytest.mark.parametrize("threshold", [float("inf"), 0.0, -1.0, 1e-40])
def test_unusable_saved_threshold_is_refused_before_building(tmp_path, threshold):
    path = _saved(tmp_path, threshold)
    with pytest.raises(ValueError, match="threshold"):
        tf_dsr.load_model(path)


@pytest.mark.parametrize("method", ["dsr", "set", "gradual", "rigl"])
def test_load_model_restores_each_methods_state(tmp_path, method):
    model = keras.Sequential([keras.Input((8,)), tf_dsr.SparseDense(16, sparsity=0.5, seed=1),
                              tf_dsr.SparseDense(4, sparsity=0.5, seed=2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    callback = {
        "dsr": lambda: tf_dsr.DynamicReparam(prune_target=3, period=2, initial_threshold=0.05),
        "set": lambda: tf_dsr.SET(prune_fraction=0.2, period=2),
        "gradual": lambda: tf_dsr.GradualPruning(0.8, begin_step=0, end_step=6, period=2),
        "rigl": lambda: tf_dsr.RigL(drop_fraction=0.3, period=2),
    }[method]()
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 8)), rng.random((64, 4)), batch_size=8, verbose=0,
              callbacks=[callback])
    path = tmp_path / f"{method}.keras"
    model.save(path)
    saved = [v.numpy() for v in callback.state.variables]
    assert int(callback.state.num_reallocations.numpy()) > 0
    assert int(callback.state.seed.numpy()) >= 0  # drawn (seed=None) and kept

    loaded = tf_dsr.load_model(path)

    state = loaded._tf_dsr_state.method_states()[method]
    assert type(state) is type(callback.state)
    for a, b in zip(state.variables, saved):
        np.testing.assert_array_equal(a.numpy(), b)

