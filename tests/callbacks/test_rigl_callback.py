"""tf_dsr.RigL and DynamicReparam(growth="gradient") through model.fit."""

import warnings

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.app.data import load_digits
from tf_dsr.models import lenet_300_100
from tf_dsr.optimizer_slots import kernel_slots

from small_models import compile_small, record_steps, small_data, small_model


def _digits_model(sparsity=0.95, seed=0):
    keras.utils.set_random_seed(seed)
    model = lenet_300_100((64,), 10, sparsity=sparsity, seed=seed)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _masks(model):
    return [pair.mask.numpy().copy() for _, pair in tf_dsr.layers.find_sparse_kernels(model)]


@pytest.fixture(scope="module")
def digits_runs():
    """RigL and static sparse at s=0.95 on the digits (static: twice the epochs)."""
    (x, y), (x_test, y_test) = load_digits(seed=0)
    runs = {}
    for name, callback, epochs in (
        ("rigl", tf_dsr.RigL(drop_fraction=0.3, period=25, seed=0), 8),
        ("static", None, 16),
    ):
        model = _digits_model()
        before = _masks(model)
        model.fit(x, y, batch_size=50, epochs=epochs, verbose=0,
                  callbacks=[callback] if callback else [])
        runs[name] = {
            "callback": callback,
            "before": before,
            "after": _masks(model),
            "accuracy": model.evaluate(x_test, y_test, verbose=0)[1],
            "model": model,
        }
    return runs


def test_rigl_moves_masks_and_keeps_every_layers_count(digits_runs):
    run = digits_runs["rigl"]
    callback = run["callback"]
    assert int(callback.state.num_reallocations.numpy()) == 8 * 29 // 25
    moved = [int((a != b).sum()) for a, b in zip(run["before"], run["after"])]
    assert sum(moved) > 100
    for before, after in zip(run["before"], run["after"]):
        assert after.sum() == before.sum()
    # Disarmed after fit, hooks kept for the next fit; detaching removes them.
    assert not callback._capture.requested()
    assert callback._capture.attached
    callback.detach_gradients()
    assert not callback._capture.attached


def test_rigl_beats_static_sparse_at_095(digits_runs):
    assert digits_runs["rigl"]["accuracy"] > digits_runs["static"]["accuracy"]


def test_rigl_t_end_is_the_whole_run_or_stop_epoch():
    model = compile_small(small_model())
    x, y = small_data(200)
    rigl = tf_dsr.RigL(period=5, seed=0)
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[rigl])
    assert rigl.t_end == 40
    stopped = tf_dsr.RigL(period=5, stop_epoch=1, seed=0)
    model = compile_small(small_model())
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[stopped])
    assert stopped.t_end == 20
    # Updates at 5, 10, 15 (f(20) = 0 and epoch 1 is past stop_epoch).
    assert int(stopped.state.num_reallocations.numpy()) == 3
    assert stopped.last_report.info["drop_fraction"] == pytest.approx(
        0.15 * (1 + np.cos(np.pi * 15 / 20)), rel=1e-6)


def test_new_weights_and_their_slots_start_at_zero():
    model = compile_small(small_model(), keras.optimizers.Adam(0.05))
    x, y = small_data(40)
    model.fit(x, y, batch_size=10, verbose=0)  # momentum everywhere active
    rigl = tf_dsr.RigL(drop_fraction=0.5, period=1, end_step=100, seed=0)
    rigl.set_model(model)
    rigl.request_gradients()
    model.train_on_batch(x[:10], y[:10])
    before = _masks(model)
    report = rigl.reallocate(step=1)

    assert report.total_pruned > 0
    for (_, pair), mask_before in zip(tf_dsr.layers.find_sparse_kernels(model), before):
        mask = pair.mask.numpy()
        new = (mask == 1) & (mask_before == 0)
        assert new.any()
        assert (pair.kernel.numpy()[new] == 0).all()
        for slot in kernel_slots(model.optimizer, pair.kernel):
            assert (slot.variable.numpy()[new] == 0).all()
            assert (slot.variable.numpy()[mask == 0] == 0).all()


def test_reallocate_without_a_captured_gradient_is_refused():
    model = compile_small(small_model())
    rigl = tf_dsr.RigL(period=1, end_step=10, seed=0)
    rigl.set_model(model)
    before = _masks(model)
    train_function = model.train_function
    with pytest.raises(ValueError, match="no dense gradient was captured"):
        rigl.reallocate(step=1)
    for a, b in zip(before, _masks(model)):
        np.testing.assert_array_equal(a, b)
    # A refused call leaves nothing behind: no hooks, no gradient user, no
    # retraced train function.
    assert not rigl._capture.attached
    assert rigl.model_state.gradient_user is None
    assert not any(pair.layer.__dict__.get("_tf_dsr_gradient_hooks")
                   for _, pair in tf_dsr.layers.find_sparse_kernels(model))
    assert model.train_function is train_function


@pytest.mark.parametrize("kwargs, error", [
    ({"drop_fraction": 0}, ValueError),
    ({"drop_fraction": "0.3"}, TypeError),
    ({"period": 0}, ValueError),
    ({"end_step": 0}, ValueError),
    ({"stop_epoch": -1}, ValueError),
])
def test_bad_arguments_are_refused(kwargs, error):
    with pytest.raises(error):
        tf_dsr.RigL(**kwargs)


def test_dsr_gradient_growth_conserves_the_total_and_moves_weights_between_layers():
    (x, y), _ = load_digits(seed=0)
    model = _digits_model(sparsity=0.9)
    before = [row.num_active for row in tf_dsr.sparsity_summary(model).layers]
    dsr = tf_dsr.DynamicReparam(prune_target=0.05, period=25, seed=0, growth="gradient")
    model.fit(x[:1000], y[:1000], batch_size=50, epochs=3, verbose=0, callbacks=[dsr])
    after = [row.num_active for row in tf_dsr.sparsity_summary(model).layers]

    assert int(dsr.state.num_reallocations.numpy()) == 2
    assert sum(after) == sum(before)
    assert after != before


def test_bad_growth_is_refused():
    with pytest.raises(ValueError, match="growth"):
        tf_dsr.DynamicReparam(prune_target=5, period=2, growth="momentum")


class _ArmedSpy(keras.callbacks.Callback):
    """Records after every batch end whether `watched` left its dense
    gradient capture armed."""

    def __init__(self, watched):
        super().__init__()
        self.watched = watched
        self.armed = ""

    def on_train_batch_end(self, batch, logs=None):
        self.armed += str(int(self.watched._capture.requested()))


@pytest.mark.parametrize("make, expected", [
    # The only due step (8) is T_end: never armed, nothing runs.
    (lambda: tf_dsr.RigL(period=8, stop_epoch=1, seed=0), "0" * 24),
    # Armed after step 7 for the update at step 8, released by it.
    (lambda: tf_dsr.RigL(period=8, end_step=12, seed=0), "0" * 6 + "1" + "0" * 17),
    # Armed at the end of epoch 0 for step 9, which falls in the stopped
    # epoch 1: released when that epoch begins.
    (lambda: tf_dsr.DynamicReparam(0.05, period=9, stop_epoch=1, seed=0, growth="gradient"),
     "0" * 7 + "1" + "0" * 16),
])
def test_capture_is_not_left_armed_once_updates_stop(make, expected):
    model = compile_small(small_model())
    x, y = small_data(80)
    callback = make()
    spy = _ArmedSpy(callback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=[callback, spy])
    assert spy.armed == expected


def _fraction(alpha, t, length):
    return alpha / 2 * (1 + np.cos(np.pi * t / length))


def test_a_second_fit_starts_a_new_schedule_over_itself(tmp_path):
    # 8 steps per epoch, period 4: updates at 4, 8, 12 of each 16-step fit.
    model = compile_small(small_model())
    x, y = small_data(80)
    rigl = tf_dsr.RigL(drop_fraction=0.3, period=4, seed=0)
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[rigl])
    assert (rigl.t_begin, rigl.t_end) == (0, 16)
    assert int(rigl.state.num_reallocations.numpy()) == 3

    steps = record_steps(rigl)
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[rigl])
    assert (rigl.t_begin, rigl.t_end) == (16, 32)
    assert steps == [20, 24, 28]
    assert rigl.last_report.info["drop_fraction"] == pytest.approx(
        _fraction(0.3, 12, 16), rel=1e-6)

    # A new callback on the same model, and the model saved and loaded.
    fresh = tf_dsr.RigL(drop_fraction=0.3, period=4, seed=0)
    model.fit(x, y, batch_size=10, epochs=4, verbose=0, callbacks=[fresh])
    assert (fresh.t_begin, fresh.t_end) == (32, 64)
    assert int(fresh.state.num_reallocations.numpy()) == 6 + 7
    model.save(tmp_path / "rigl.keras")
    loaded = tf_dsr.load_model(tmp_path / "rigl.keras")
    again = tf_dsr.RigL(drop_fraction=0.3, period=4, seed=0)
    loaded.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[again])
    assert (again.t_begin, again.t_end) == (64, 80)
    assert int(again.state.num_reallocations.numpy()) == 13 + 3


def test_explicit_end_step_is_kept_across_fits():
    model = compile_small(small_model())
    x, y = small_data(80)
    rigl = tf_dsr.RigL(period=4, end_step=30, seed=0)
    for _ in range(2):
        model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[rigl])
        assert (rigl.t_begin, rigl.t_end) == (0, 30)
    # Updates at 4, 8, ..., 28: one schedule over both fits.
    assert int(rigl.state.num_reallocations.numpy()) == 7


def test_initial_epoch_counts_only_the_epochs_this_fit_runs():
    model = compile_small(small_model())
    x, y = small_data(80)
    rigl = tf_dsr.RigL(period=4, seed=0)
    model.fit(x, y, batch_size=10, epochs=3, initial_epoch=1, verbose=0, callbacks=[rigl])
    assert (rigl.t_begin, rigl.t_end) == (0, 16)
    stopped = tf_dsr.RigL(period=4, stop_epoch=2, seed=0)
    model = compile_small(small_model())
    model.fit(x, y, batch_size=10, epochs=3, initial_epoch=1, verbose=0, callbacks=[stopped])
    assert (stopped.t_begin, stopped.t_end) == (0, 8)


@pytest.mark.parametrize("make", [
    lambda: tf_dsr.RigL(period=1000, seed=0),
    lambda: tf_dsr.RigL(period=4, stop_epoch=0, seed=0),
    # The only due step (8) is T_end, where f = 0.
    lambda: tf_dsr.RigL(period=8, stop_epoch=1, seed=0),
    lambda: tf_dsr.RigL(period=4, end_step=30, seed=0),  # second fit: past T_end
    lambda: tf_dsr.DynamicReparam(0.05, period=1000, seed=0),
    lambda: tf_dsr.SET(prune_fraction=0.2, period=4, stop_epoch=0, seed=0),
])
def test_a_fit_where_no_update_can_run_warns(make):
    model = compile_small(small_model())
    x, y = small_data(80)
    callback = make()
    if getattr(callback, "end_step", None):
        model.fit(x, y, batch_size=10, epochs=4, verbose=0, callbacks=[callback])
    with pytest.warns(UserWarning, match="no update can run in this fit"):
        model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[callback])
    assert int(callback.state.num_reallocations.numpy()) in (0, 7)


def test_a_fit_where_updates_can_run_does_not_warn():
    model = compile_small(small_model())
    x, y = small_data(80)
    for callback in (tf_dsr.RigL(period=7, stop_epoch=1, seed=0),
                     tf_dsr.DynamicReparam(0.05, period=8, stop_epoch=1, seed=0)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[callback])
        assert int(callback.state.num_reallocations.numpy()) == 1


def test_an_end_step_no_update_can_precede_is_refused():
    with pytest.raises(ValueError, match="end_step=4 is at or below period=4"):
        tf_dsr.RigL(period=4, end_step=4)
    with pytest.raises(ValueError, match="end_step=1"):
        tf_dsr.RigL(period={0: 4, 3: 2}, end_step=1)


class _Overflow(keras.callbacks.Callback):
    """Writes Inf into `watched`'s captured gradient at the end of the step
    `at`, as a float16 loss-scale overflow would."""

    def __init__(self, watched, at):
        super().__init__()
        self.watched, self.at = watched, at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            variable = self.watched._capture.variables()[0]
            variable.assign(np.full(variable.shape, np.inf, np.float32))


def test_an_update_whose_gradient_overflowed_runs_after_the_next_step():
    model = compile_small(small_model())
    x, y = small_data(80)
    rigl = tf_dsr.RigL(period=4, seed=0)
    steps = record_steps(rigl)
    with pytest.warns(RuntimeWarning, match="holds NaN or Inf .* update due at step 4"):
        model.fit(x, y, batch_size=10, epochs=2, verbose=0,
                  callbacks=[_Overflow(rigl, 4), rigl])
    # Retried at step 5, on the period grid (last_step 4): none is lost.
    assert steps == [5, 8, 12]
    assert int(rigl.state.num_reallocations.numpy()) == 3
    assert not rigl.last_report.skipped
