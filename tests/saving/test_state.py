"""Method states: loads apply whole or not at all, refuse unusable state,
and a file without state starts the method fresh."""

import hashlib
import os
import sys

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.saving.state import STATE_ATTRIBUTE

# The small models the callback tests train, shared from tests/callbacks.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "callbacks"))
from small_models import compile_small, small_data, small_model  # noqa: E402


def _model(seed_offset=0):
    model = keras.Sequential([
        keras.Input((8,)),
        tf_dsr.SparseDense(16, sparsity=0.5, seed=1 + seed_offset, activation="relu"),
        tf_dsr.SparseDense(4, sparsity=0.5, seed=2 + seed_offset),
    ])
    return compile_small(model, keras.optimizers.SGD(0.05, momentum=0.9))


def _trained(model, callback=None, steps=3):
    x, y = small_data(10 * steps)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0,
              callbacks=[callback] if callback else [])
    return model


def _snapshot(model):
    """Every value a load may change: model, optimizer and tf_dsr state."""
    state = getattr(model, STATE_ATTRIBUTE, None)
    return {
        "model": [v.numpy().copy() for v in model.variables],
        "optimizer": [v.numpy().copy() for v in model.optimizer.variables],
        "state": None if state is None else [v.numpy().copy() for v in state.variables],
    }


def _assert_same(before, after):
    assert before.keys() == after.keys()
    for key in before:
        if before[key] is None:
            assert after[key] is None, key
            continue
        assert len(before[key]) == len(after[key]), key
        for a, b in zip(before[key], after[key]):
            np.testing.assert_array_equal(b, a, err_msg=key)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def target():
    """A trained model with a DSR callback attached and its state moved on."""
    model = _trained(_model(seed_offset=10))
    callback = tf_dsr.DynamicReparam(prune_target=3, period=5, seed=0, initial_threshold=0.02)
    callback.set_model(model)
    callback.state.threshold.assign(0.5)
    callback.state.last_step.assign(40)
    callback.state.num_reallocations.assign(3)
    return model, callback


def test_file_without_state_loads_weights_and_starts_the_state_fresh(tmp_path, target):
    source = _trained(_model())  # never had a callback: no state in its file
    path = tmp_path / "plain.weights.h5"
    source.save_weights(path)
    model, callback = target

    with pytest.warns(UserWarning, match="holds no tf_dsr state.*starts fresh"):
        model.load_weights(path)

    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert float(callback.state.threshold.numpy()) == pytest.approx(0.02)
    assert int(callback.state.last_step.numpy()) == 0
    assert int(callback.state.num_reallocations.numpy()) == 0


@pytest.mark.parametrize("name, value, match", [
    ("threshold", float("nan"), "threshold nan"),
    ("threshold", float("inf"), "threshold inf"),
    ("threshold", 0.0, "threshold 0.0"),
    ("last_step", -5, "last_step -5"),
])
@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_unusable_state_in_a_file_is_refused_and_nothing_changes(
        tmp_path, target, name, value, match, suffix):
    source = _model()
    saver = tf_dsr.DynamicReparam(prune_target=3, period=5, seed=0)
    _trained(source, saver)
    getattr(saver.state, name).assign(value)
    path = tmp_path / f"bad{suffix}"
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    digest = _digest(path)
    model, _ = target
    before = _snapshot(model)

    with pytest.raises(ValueError, match=match):
        model.load_weights(path)

    _assert_same(before, _snapshot(model))
    assert _digest(path) == digest


def test_any_failed_load_leaves_the_model_as_it_was(tmp_path, target):
    # Keras' own failure (a layer of another shape), found after it loaded
    # the layers before it.
    other = keras.Sequential([
        keras.Input((8,)),
        tf_dsr.SparseDense(16, sparsity=0.5, seed=1),
        tf_dsr.SparseDense(5, sparsity=0.5, seed=2),
    ])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    model, _ = target
    before = _snapshot(model)

    with pytest.raises(ValueError):
        model.load_weights(path)

    _assert_same(before, _snapshot(model))


def test_good_file_loads_everything(tmp_path, target):
    source = _model()
    saver = tf_dsr.DynamicReparam(prune_target=3, period=2, seed=0)
    _trained(source, saver, steps=5)
    path = tmp_path / "good.weights.h5"
    source.save_weights(path)
    model, callback = target

    model.load_weights(path)

    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(callback.state.variables, saver.state.variables):
        assert a.numpy() == b.numpy()


def test_set_state_round_trips_and_has_no_threshold(tmp_path):
    source = compile_small(small_model())
    saver = tf_dsr.SET(prune_fraction=0.2, period=2)
    _trained(source, saver)
    path = tmp_path / "set.weights.h5"
    source.save_weights(path)
    model = compile_small(small_model())
    loader = tf_dsr.SET(prune_fraction=0.2, period=2)
    loader.set_model(model)

    model.load_weights(path)

    assert not hasattr(loader.state, "threshold")
    assert int(loader.state.num_reallocations.numpy()) == 1
    # seed=None: the seed drawn by the saver is saved and used by the loader.
    assert loader.seed == saver.seed == int(loader.state.seed.numpy())


@pytest.mark.parametrize("attach_before_restore", [True, False])
def test_tf_train_checkpoint_of_the_model_carries_every_method_state(
        tmp_path, attach_before_restore):
    import tensorflow as tf

    x, y = small_data(80)
    model = compile_small(small_model())
    dsr = tf_dsr.DynamicReparam(prune_target=3, period=4, seed=None)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[dsr])
    rigl = tf_dsr.RigL(period=4, seed=None)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[rigl])
    saved = {
        method: {v.name: v.numpy() for v in state.variables}
        for method, state in (("dsr", dsr.state), ("rigl", rigl.state))
    }
    # A checkpoint dependency only: no Keras sublayer, no model weight.
    assert all(layer.name != "tf_dsr_state" for layer in model.layers)
    assert len(model.weights) == len(compile_small(small_model()).weights)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

    fresh = compile_small(small_model())
    fresh(x[:1])
    again_dsr = tf_dsr.DynamicReparam(prune_target=3, period=4)
    again_rigl = tf_dsr.RigL(period=4)
    if attach_before_restore:
        again_dsr.set_model(fresh)
        again_rigl.set_model(fresh)
    tf.train.Checkpoint(model=fresh).restore(path).expect_partial()
    if not attach_before_restore:  # restored when the states are created
        again_dsr.set_model(fresh)
        again_rigl.set_model(fresh)
    for method, state in (("dsr", again_dsr.state), ("rigl", again_rigl.state)):
        restored = {v.name: v.numpy() for v in state.variables}
        assert restored.keys() == saved[method].keys()
        for name, value in saved[method].items():
            np.testing.assert_array_equal(restored[name], value, err_msg=f"{method} {name}")
    assert saved["dsr"]["seed"] >= 0 and saved["dsr"]["num_reallocations"] > 0
