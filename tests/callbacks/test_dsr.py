"""DynamicReparam: training integration, reports, period logic, arguments,
NaN handling, optimizer slots and state persistence."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import tf_dsr
from tf_dsr.core.update import Update
from tf_dsr.optimizer_slots import kernel_slots

from small_models import small_model, small_data, compile_small, masks_of, record_steps

# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def kernels_of(model):
    return [layer.kernel_variable.numpy().copy() for layer in tf_dsr.layers.find_sparse_layers(model)]


# ----------------------------------------------------------------------------
# Integration: LeNet-300-100 on sklearn digits
# ----------------------------------------------------------------------------

EPOCHS = 6
BATCH_SIZE = 50  # 1500 samples -> 30 steps per epoch, 180 steps
PERIOD = 20


class ActiveCounts(keras.callbacks.Callback):
    """Records per-layer active weights after every batch (runs after DSR)."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def on_train_batch_end(self, batch, logs=None):
        self.counts.append([int(m.sum()) for m in masks_of(self.model)])


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            tf_dsr.SparseDense(300, sparsity=0.9, seed=1, activation="relu", name="fc1"),
            tf_dsr.SparseDense(100, sparsity=0.9, seed=2, activation="relu", name="fc2"),
            tf_dsr.SparseDense(10, sparsity=0.9, seed=3, name="fc3"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    masks_before = masks_of(model)
    dsr = tf_dsr.DynamicReparam(prune_target=300, period=PERIOD, seed=0)
    recorder = ActiveCounts()
    history = model.fit(
        x[:1500], y[:1500], batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=0,
        callbacks=[dsr, recorder],
    )
    _, accuracy = model.evaluate(x[1500:], y[1500:], verbose=0)
    return types.SimpleNamespace(
        masks_before=masks_before,
        masks_after=masks_of(model),
        kernels_after=kernels_of(model),
        counts=np.array(recorder.counts),
        history=history.history,
        accuracy=accuracy,
        num_reallocations=int(dsr.state.num_reallocations.numpy()),
        num_steps=int(model.optimizer.iterations.numpy()),
    )


def test_training_moves_masks(trained):
    changed = [
        int(np.sum(before != after))
        for before, after in zip(trained.masks_before, trained.masks_after)
    ]
    assert sum(changed) > 0, changed
    for mask in trained.masks_after:
        assert set(np.unique(mask)) <= {0.0, 1.0}


def test_training_conserves_global_count_while_layers_trade(trained):
    # 10% of 64*300 + 300*100 + 100*10 = 50,200 weights.
    initial = [int(m.sum()) for m in trained.masks_before]
    assert initial == [1920, 3000, 100]
    assert trained.counts.shape == (trained.num_steps, 3)
    np.testing.assert_array_equal(trained.counts.sum(axis=1), sum(initial))
    final = trained.counts[-1]
    # Parameters moved between layers: some layer grew, another shrank.
    assert np.any(final > initial) and np.any(final < initial), final


def test_training_keeps_kernels_zero_where_masks_are_zero(trained):
    for kernel, mask in zip(trained.kernels_after, trained.masks_after):
        assert np.all(kernel[mask == 0] == 0.0)


def test_training_reallocates_once_per_period(trained):
    assert trained.num_steps == EPOCHS * 1500 // BATCH_SIZE
    assert trained.num_reallocations == trained.num_steps // PERIOD


def test_training_learns_digits(trained):
    # 10 classes: chance is 0.1. Observed about 0.86 with these settings.
    assert trained.accuracy > 0.7


def test_history_logs_threshold_num_pruned_sparsity(trained):
    history = trained.history
    for key in ("threshold", "num_pruned", "sparsity"):
        assert key in history
        assert len(history[key]) == EPOCHS
    np.testing.assert_allclose(history["sparsity"], 0.9, atol=1e-12)
    assert all(t > 0 and np.isfinite(t) for t in history["threshold"])
    assert history["num_pruned"][-1] > 0


# ----------------------------------------------------------------------------
# One reallocation: report, optimizer slots, saved state
# ----------------------------------------------------------------------------


OPTIMIZERS = {
    "SGD-momentum": (lambda: keras.optimizers.SGD(0.05, momentum=0.9), 1),
    "Adam": (lambda: keras.optimizers.Adam(0.01), 2),
    "AdamW": (lambda: keras.optimizers.AdamW(0.01), 2),
}


@pytest.fixture(scope="module", params=sorted(OPTIMIZERS))
def reallocated(request, tmp_path_factory):
    """One `reallocate()` after 10 training steps with each optimizer.

    Tracing the reallocation takes seconds per callback, so the report,
    optimizer-slot and state tests share these runs.
    """
    make_optimizer, num_slots = OPTIMIZERS[request.param]
    optimizer = make_optimizer()
    keras.utils.set_random_seed(0)
    model = compile_small(small_model(), optimizer)
    x, y = small_data()
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)
    # prune_target=1 with a high threshold: many weights pruned, H halves.
    dsr = tf_dsr.DynamicReparam(prune_target=1, period=1000, initial_threshold=0.1, seed=0)
    dsr.set_model(model)
    masks_before = masks_of(model)
    slots_before = [
        [s.variable.numpy().copy() for s in kernel_slots(optimizer, layer.kernel_variable)]
        for layer in dsr.layers
    ]

    report = dsr.reallocate()

    path = tmp_path_factory.mktemp("weights") / "model.weights.h5"
    model.save_weights(path)
    return types.SimpleNamespace(
        report=report,
        num_slots=num_slots,
        step=int(model.optimizer.iterations.numpy()),
        masks_before=masks_before,
        masks_after=masks_of(model),
        slots_before=slots_before,
        slots_after=[
            [s.variable.numpy().copy() for s in kernel_slots(optimizer, layer.kernel_variable)]
            for layer in dsr.layers
        ],
        threshold=float(dsr.state.threshold.numpy()),
        last_step=int(dsr.state.last_step.numpy()),
        num_reallocations=int(dsr.state.num_reallocations.numpy()),
        last_report=dsr.last_report,
        weights_path=path,
    )


def test_reallocate_returns_consistent_report(reallocated):
    report = reallocated.report
    total = sum(int(m.sum()) for m in reallocated.masks_before)

    assert isinstance(report, tf_dsr.ReallocationReport)
    assert reallocated.last_report is report
    assert report.step == reallocated.step == 10
    assert list(report.num_pruned) == list(report.num_grown) == ["a", "b"]
    for counts in (report.num_pruned, report.num_grown):
        assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    assert report.total_pruned == sum(report.num_grown.values()) > 0
    assert report.skipped is False
    # More pruned than 1.1 * prune_target: the threshold halves.
    assert report.info["threshold"] == pytest.approx(0.05)
    assert report.info["threshold"] == pytest.approx(reallocated.threshold)
    assert sum(int(m.sum()) for m in reallocated.masks_after) == total
    assert report.sparsity == pytest.approx(1 - total / (8 * 16 + 16 * 4))
    assert reallocated.num_reallocations == 1
    assert reallocated.last_step == 10


def test_reallocate_zeroes_optimizer_slots_at_inactive_positions(reallocated):
    stale = 0
    for mask, before, after in zip(
        reallocated.masks_after, reallocated.slots_before, reallocated.slots_after
    ):
        assert len(after) == len(before) == reallocated.num_slots
        for slot_before, slot_after in zip(before, after):
            assert np.all(slot_after[mask == 0] == 0.0)
            # Active positions keep their state.
            np.testing.assert_array_equal(slot_after[mask == 1], slot_before[mask == 1])
            stale += np.count_nonzero(slot_before[mask == 0])
    # The pruned weights did hold optimizer state, so the reset did work.
    assert stale > 0


def test_slots_reset_when_first_reallocation_precedes_optimizer_build():
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    keras.utils.set_random_seed(0)
    model = compile_small(small_model(), optimizer)
    dsr = tf_dsr.DynamicReparam(prune_target=1, period=1000, initial_threshold=0.1, seed=0)
    dsr.set_model(model)
    dsr.reallocate()  # the optimizer has no slots yet
    x, y = small_data()
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)

    assert dsr.reallocate().total_pruned > 0
    for layer in dsr.layers:
        slots = kernel_slots(optimizer, layer.kernel_variable)
        assert len(slots) == 1
        assert np.all(slots[0].variable.numpy()[layer.mask.numpy() == 0] == 0.0)


def test_state_round_trips_through_save_and_load_weights(reallocated):
    target = small_model()
    restored = tf_dsr.DynamicReparam(prune_target=10, period=5, seed=1)
    restored.set_model(target)  # attaches a fresh state: H=1e-3, step 0
    target.load_weights(reallocated.weights_path)

    assert float(restored.state.threshold.numpy()) == reallocated.threshold
    assert int(restored.state.last_step.numpy()) == reallocated.last_step
    assert int(restored.state.num_reallocations.numpy()) == 1
    for before, after in zip(reallocated.masks_after, masks_of(target)):
        np.testing.assert_array_equal(after, before)


def test_reallocate_before_set_model_raises():
    dsr = tf_dsr.DynamicReparam(prune_target=10, period=5)
    with pytest.raises(ValueError, match="set_model"):
        dsr.reallocate()


# ----------------------------------------------------------------------------
# When reallocations run
# ----------------------------------------------------------------------------


class CountingReparam(tf_dsr.DynamicReparam):
    """DynamicReparam whose update changes nothing.

    When to reallocate is decided by the base class; tracing the real
    reallocation costs seconds per callback instance, so these runs count
    calls with a trivial update. The integration test above counts with
    the real one.
    """

    def update(self, kernels, masks, step, gradients):
        zeros = tf.zeros([len(kernels)], tf.int64)
        return Update(kernels, masks, [tf.not_equal(m, 0) for m in masks], zeros, zeros,
                      tf.constant(True),
                      {"threshold": self.state.threshold.value})


@pytest.mark.parametrize(
    "period, steps_per_execution, stop_epoch, expected",
    [
        (10, 1, None, 6),
        (10, 5, None, 6),
        (10, 4, None, 6),  # callback sees steps 4, 8, 12, ...: off the grid
        ({0: 5, 1: 10}, 1, None, 8),  # 5, 10, 15, 20 | 30, 40 | 50, 60
        (5, 1, 1, 4),  # only epoch 0 reallocates
    ],
)
def test_number_of_reallocations(period, steps_per_execution, stop_epoch, expected):
    # 200 samples / batch 10 = 20 steps per epoch, 3 epochs = 60 steps.
    model = compile_small(small_model(), steps_per_execution=steps_per_execution)
    x, y = small_data()
    dsr = CountingReparam(prune_target=5, period=period, stop_epoch=stop_epoch, seed=0)

    model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=[dsr])

    assert int(model.optimizer.iterations.numpy()) == 60
    assert int(dsr.state.num_reallocations.numpy()) == expected
    expected_last_step = 60 if stop_epoch is None else 20
    assert int(dsr.state.last_step.numpy()) == expected_last_step


class MoveLastStep(keras.callbacks.Callback):
    """Sets the state's `last_step` variable at one batch, as a subclass or
    a restore would (listed before the DSR callback, so it runs first)."""

    def __init__(self, dsr, at_batch, value):
        super().__init__()
        self.dsr, self.at_batch, self.value = dsr, at_batch, value

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at_batch:
            self.dsr.state.last_step.assign(self.value)


@pytest.mark.parametrize("value, expected_steps", [(8, [18]), (0, [10, 20])])
def test_period_follows_the_last_step_variable_not_a_stale_copy(value, expected_steps):
    # The callback keeps a Python copy of `last_step` to skip a variable read
    # per step; moving the variable mid-epoch must still be honoured. With
    # period 10 over 20 steps: moved to 8 at step 3 -> one reallocation, at 18.
    model = compile_small(small_model())
    x, y = small_data()
    dsr = CountingReparam(prune_target=5, period=10, seed=0)
    steps = record_steps(dsr)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0,
              callbacks=[MoveLastStep(dsr, at_batch=2, value=value), dsr])
    assert steps == expected_steps


def test_current_period_follows_schedule():
    dsr = tf_dsr.DynamicReparam(prune_target=5, period={0: 100, 25: 200, 50: 400})
    assert [dsr.schedule.period_at(e) for e in (0, 24, 25, 49, 50, 99)] == [
        100, 100, 200, 200, 400, 400,
    ]


# ----------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------

VALID = {"prune_target": 10, "period": 5}


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"prune_target": 0}, ValueError),
        ({"prune_target": -1}, ValueError),
        ({"prune_target": 1.5}, ValueError),
        ({"prune_target": 0.0}, ValueError),
        ({"prune_target": True}, TypeError),
        ({"prune_target": "x"}, TypeError),
        ({"period": 0}, ValueError),
        ({"period": {}}, ValueError),
        ({"period": {1: 10}}, ValueError),
        ({"period": {0: -1}}, ValueError),
        ({"period": {0: 10, -1: 5}}, ValueError),
        ({"period": "10"}, TypeError),
        ({"stop_epoch": -1}, ValueError),
        ({"initial_threshold": 0}, ValueError),
        ({"initial_threshold": -1e-3}, ValueError),
        ({"initial_threshold": float("inf")}, ValueError),
        ({"initial_threshold": float("nan")}, ValueError),
        ({"initial_threshold": 1e-45}, ValueError),  # 0 in float32
        ({"initial_threshold": 1e-39}, ValueError),  # float32 denormal
        ({"initial_threshold": 1e39}, ValueError),  # inf in float32
        ({"initial_threshold": "1e-3"}, TypeError),
        ({"tolerance": 1.0}, ValueError),
        ({"tolerance": -0.1}, ValueError),
        ({"seed": "a"}, TypeError),
        ({"seed": 2**70}, ValueError),
        ({"seed": 2**63}, ValueError),
        ({"seed": -1}, ValueError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        tf_dsr.DynamicReparam(**{**VALID, **kwargs})


def test_model_without_sparse_layers_raises():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dsr = tf_dsr.DynamicReparam(**VALID)
    with pytest.raises(ValueError, match="sparse layer"):
        dsr.set_model(model)


# ----------------------------------------------------------------------------
# Non-finite kernels
# ----------------------------------------------------------------------------


def test_nan_kernel_skips_with_warning_and_changes_nothing():
    model = small_model()
    dsr = tf_dsr.DynamicReparam(prune_target=10, period=5, initial_threshold=0.1, seed=0)
    dsr.set_model(model)
    layer = model.get_layer("a")
    kernel = layer.kernel_variable.numpy()
    kernel.flat[int(np.argmax(layer.mask.numpy()))] = np.nan  # an active weight
    layer.kernel_variable.assign(kernel)
    masks, kernels = masks_of(model), kernels_of(model)
    threshold = float(dsr.state.threshold.numpy())

    with pytest.warns(RuntimeWarning, match="NaN"):
        report = dsr.reallocate()

    assert report.skipped is True
    assert report.total_pruned == 0 and sum(report.num_grown.values()) == 0
    for before, after in zip(masks, masks_of(model)):
        np.testing.assert_array_equal(after, before)
    for before, after in zip(kernels, kernels_of(model)):
        np.testing.assert_array_equal(after, before)  # NaN matches NaN
    assert float(dsr.state.threshold.numpy()) == threshold
    assert int(dsr.state.num_reallocations.numpy()) == 0




def test_extreme_valid_arguments_are_accepted():
    dsr = tf_dsr.DynamicReparam(**{**VALID, "initial_threshold": 1.2e-38,
                                   "seed": np.int64(2**63 - 1)})
    assert dsr.seed == 2**63 - 1 and type(dsr.seed) is int


@pytest.mark.parametrize("make", [
    lambda seed: tf_dsr.SET(prune_fraction=0.1, period=5, seed=seed),
    lambda seed: tf_dsr.GradualPruning(0.9, 0, 100, seed=seed),
])
def test_every_method_validates_the_seed_range(make):
    with pytest.raises(ValueError, match=r"seed.*2\*\*63"):
        make(2**70)


# ----------------------------------------------------------------------------
# Settings that cannot work on the model: refused before anything changes
# ----------------------------------------------------------------------------


def _untouched(model):
    return [v.numpy().copy() for v in model.variables]


def _assert_untouched(model, before):
    for a, b in zip(before, _untouched(model)):
        np.testing.assert_array_equal(b, a)
    assert getattr(model, "_tf_dsr_state", None) is None


@pytest.mark.parametrize("prune_target", [96, 97, 600])
def test_prune_target_count_at_or_above_active_weights_raises_at_train_start(prune_target):
    # small_model: 64 + 32 = 96 active weights.
    model = compile_small(small_model())
    before = _untouched(model)
    x, y = small_data(40)
    dsr = tf_dsr.DynamicReparam(prune_target=prune_target, period=2, seed=0)

    with pytest.raises(ValueError, match=rf"prune_target={prune_target} .* 96 active "
                                         r"weights.*fraction.*prune_target=0\.05"):
        model.fit(x, y, batch_size=10, verbose=0, callbacks=[dsr])

    _assert_untouched(model, before)
    assert int(model.optimizer.iterations.numpy()) == 0
    with pytest.raises(ValueError, match="set_model"):
        dsr.reallocate()  # the refused model is not bound


def test_papers_prune_target_on_the_digits_lenet_at_099_is_refused():
    model = tf_dsr.models.lenet_300_100((64,), 10, sparsity=0.99, seed=0)
    with pytest.raises(ValueError, match="prune_target=600 .* 502 active weights"):
        tf_dsr.DynamicReparam(prune_target=600, period=100).set_model(model)
    # The fraction it suggests works.
    tf_dsr.DynamicReparam(prune_target=0.05, period=100).set_model(model)


def test_set_prune_target_count_at_or_above_active_weights_raises():
    model = small_model()
    before = _untouched(model)
    with pytest.raises(ValueError, match="SET: prune_target=200 .* 96 active"):
        tf_dsr.SET(prune_target=200, period=2).set_model(model)
    _assert_untouched(model, before)
    tf_dsr.SET(prune_target=95, period=2).set_model(model)


def test_dsr_after_set_starts_from_its_own_state():
    model = compile_small(small_model())
    set_callback = tf_dsr.SET(prune_fraction=0.1, period=2, seed=0)
    set_callback.set_model(model)
    dsr = tf_dsr.DynamicReparam(prune_target=5, period=2, initial_threshold=0.02)
    dsr.set_model(model)
    assert dsr.state is not set_callback.state
    assert float(dsr.state.threshold.numpy()) == pytest.approx(0.02)


def test_threshold_restored_as_nan_after_set_model_is_refused_at_train_start():
    model = compile_small(small_model())
    dsr = tf_dsr.DynamicReparam(prune_target=5, period=2, seed=0)
    dsr.set_model(model)
    dsr.state.threshold.assign(float("nan"))  # as a tf.train.Checkpoint restore could
    before = _untouched(model)
    x, y = small_data(40)
    with pytest.raises(ValueError, match="threshold nan"):
        model.fit(x, y, batch_size=10, verbose=0, callbacks=[dsr])
    for a, b in zip(before, _untouched(model)):
        np.testing.assert_array_equal(b, a)
    assert int(model.optimizer.iterations.numpy()) == 0


# ----------------------------------------------------------------------------
# One callback, two models
# ----------------------------------------------------------------------------


class LogsAtBatchEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def test_reused_callback_reports_the_new_model_not_the_previous_one():
    x, y = small_data(60)
    first = compile_small(small_model())
    dsr = tf_dsr.DynamicReparam(prune_target=1, period=5, initial_threshold=0.1, seed=0)
    first.fit(x, y, batch_size=10, verbose=0, callbacks=[dsr])
    assert dsr.last_report is not None and dsr.last_report.total_pruned > 0

    second = compile_small(keras.Sequential([
        keras.Input((8,)), tf_dsr.SparseDense(4, sparsity=0.75, seed=3),
    ]))
    recorder = LogsAtBatchEnd()
    # 3 steps < period: no reallocation of the second model yet.
    second.fit(x[:30], y[:30], batch_size=10, verbose=0, callbacks=[dsr, recorder])

    assert dsr.last_report is None
    assert len(recorder.logs) == 3
    for logs in recorder.logs:
        assert logs["num_pruned"] == 0.0
        assert logs["sparsity"] == pytest.approx(0.75)
    assert dsr.layers == tf_dsr.layers.find_sparse_layers(second)


# ----------------------------------------------------------------------------
# steps_per_execution above the period
# ----------------------------------------------------------------------------


def test_steps_per_execution_above_period_warns_with_the_effective_period():
    # 56 steps, period 5: 11 reallocations asked; callbacks run every 7 steps,
    # so one per execution, 8 in all.
    model = compile_small(small_model(), steps_per_execution=7)
    x, y = small_data(56)
    dsr = CountingReparam(prune_target=5, period=5, seed=0)
    with pytest.warns(UserWarning, match=r"steps_per_execution=7 is above period=5.*"
                                         r"every 7 steps \(the effective period\)"):
        model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[dsr])
    assert int(dsr.state.num_reallocations.numpy()) == 8


@pytest.mark.parametrize("steps_per_execution, period", [(5, 5), (4, 10), (1, {0: 1, 1: 5})])
def test_no_warning_when_the_period_can_be_kept(steps_per_execution, period, recwarn):
    model = compile_small(small_model(), steps_per_execution=steps_per_execution)
    x, y = small_data(20)
    dsr = CountingReparam(prune_target=5, period=period, seed=0)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[dsr])
    assert not [w for w in recwarn if "steps_per_execution" in str(w.message)]


def test_schedule_warns_about_its_shortest_period_below_steps_per_execution():
    model = compile_small(small_model(), steps_per_execution=4)
    x, y = small_data(20)
    dsr = CountingReparam(prune_target=5, period={0: 10, 1: 3, 2: 2}, seed=0)
    with pytest.warns(UserWarning, match="steps_per_execution=4 is above period=2"):
        model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[dsr])
