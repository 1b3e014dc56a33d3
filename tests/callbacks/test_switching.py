"""Methods one after another on one model, each from its own state; two at
once refused."""

import keras
import numpy as np
import pytest

import tf_dsr

from small_models import compile_small, record_steps, small_data, small_model

X, Y = small_data(200)  # 20 steps per epoch at batch 10


def _fit(model, callback, epochs=1):
    model.fit(X, Y, batch_size=10, epochs=epochs, verbose=0, callbacks=[callback])
    return callback


def test_set_then_dsr_behaves_like_dsr_on_a_fresh_model():
    fresh = compile_small(small_model())
    reference = tf_dsr.DynamicReparam(prune_target=5, period=5, initial_threshold=0.01, seed=3)
    reference_steps = record_steps(reference)
    _fit(fresh, reference)

    model = compile_small(small_model())
    _fit(model, tf_dsr.SET(prune_fraction=0.2, period=4, seed=1))
    dsr = tf_dsr.DynamicReparam(prune_target=5, period=5, initial_threshold=0.01, seed=3)
    steps = record_steps(dsr)
    _fit(model, dsr)

    assert steps == reference_steps == [5, 10, 15, 20]
    assert int(dsr.state.num_reallocations.numpy()) == 4
    # The threshold adapted from its own start (SET left no nan behind).
    threshold = float(dsr.state.threshold.numpy())
    assert np.isfinite(threshold) and threshold != 0.01
    assert int(dsr.state.start_step.numpy()) == 20
    assert sum(dsr.last_report.num_pruned.values()) > 0


def test_dsr_then_gradual_pruning_reaches_its_target():
    model = compile_small(small_model())
    _fit(model, tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0), epochs=2)
    pruning = tf_dsr.GradualPruning(final_sparsity=0.9, begin_step=0, end_step=15, period=5)
    _fit(model, pruning)
    # Starting at 0.5, the schedule counts from the method's own start.
    assert tf_dsr.sparsity_summary(model).sparsity == pytest.approx(0.9, abs=0.01)
    assert int(pruning.state.num_reallocations.numpy()) == 3


def test_dsr_then_rigl_runs_on_its_own_schedule():
    model = compile_small(small_model())
    _fit(model, tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0), epochs=2)
    counts = [row.num_active for row in tf_dsr.sparsity_summary(model).layers]
    rigl = tf_dsr.RigL(drop_fraction=0.3, period=5, seed=0)
    steps = record_steps(rigl)
    _fit(model, rigl)
    assert rigl.t_end == 20
    assert steps == [5, 10, 15]  # f(20) = 0: T_end reached, no update
    assert rigl.last_report.info["drop_fraction"] == pytest.approx(
        0.15 * (1 + np.cos(np.pi * 15 / 20)), rel=1e-6)
    assert [row.num_active for row in tf_dsr.sparsity_summary(model).layers] == counts


def test_two_methods_in_one_fit_are_refused():
    model = compile_small(small_model())
    dsr = tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0)
    rigl = tf_dsr.SET(prune_fraction=0.2, period=5, seed=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="Two tf_dsr methods on one model.*DynamicReparam.*SET"):
        model.fit(X, Y, batch_size=10, verbose=0, callbacks=[dsr, rigl])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Each alone still works afterwards.
    _fit(model, dsr)
    _fit(model, rigl)
    assert int(rigl.state.num_reallocations.numpy()) == 4


def test_a_crashed_fit_does_not_block_the_next_method():
    model = compile_small(small_model())

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("crash")

    dsr = tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0)
    with pytest.raises(RuntimeError):
        model.fit(X, Y, batch_size=10, verbose=0, callbacks=[dsr, Crash()])
    _fit(model, tf_dsr.SET(prune_fraction=0.2, period=5, seed=0))


def test_a_fit_that_crashed_before_its_first_step_does_not_block_the_next_method():
    # Same optimizer step (0) for both fits: only the fit tells them apart.
    model = compile_small(small_model())

    class CrashAtBegin(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("crash before the first step")

    dsr = tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0)
    with pytest.raises(RuntimeError):
        model.fit(X, Y, batch_size=10, verbose=0, callbacks=[dsr, CrashAtBegin()])
    assert int(model.optimizer.iterations.numpy()) == 0
    set_ = _fit(model, tf_dsr.SET(prune_fraction=0.2, period=5, seed=0))
    assert int(set_.state.num_reallocations.numpy()) == 4


def test_gradient_methods_follow_one_another():
    # Each callback growing by gradient hooks the kernels; the next one
    # takes the hooks over instead of failing on them.
    model = compile_small(small_model())
    first = _fit(model, tf_dsr.RigL(period=5, seed=0))
    second = _fit(model, tf_dsr.DynamicReparam(prune_target=5, period=5, seed=0,
                                               growth="gradient"))
    third = _fit(model, tf_dsr.RigL(period=5, seed=0))
    assert not first._capture.attached and not second._capture.attached
    assert int(second.state.num_reallocations.numpy()) == 4
    # The third RigL continues the first's state (3 updates), which is past
    # its T_end: it starts a new schedule over its own fit (3 more).
    assert int(third.state.num_reallocations.numpy()) == 6
    assert (third.t_begin, third.t_end) == (40, 60)
