"""Batch ends read the optimizer's step (a host sync that stalls Keras'
queue of steps) only near an update: elsewhere the callback knows from
Keras' batch index that no update, and no gradient capture, is due.
Updates still run at the same steps."""

import keras
import pytest

import tf_dsr

from small_models import small_data, small_model
from small_models import compile_small as _compile

PERIOD = 10
STEPS = 60  # per epoch: 2 epochs, 12 updates


def _fit_counting_reads(callback, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = small_model()
    _compile(model, keras.optimizers.SGD(0.05), steps_per_execution=steps_per_execution)
    x, y = small_data(STEPS * 8)
    reads = []
    original = callback._optimizer_step

    def counted():
        step = original()
        reads.append(step)
        return step

    callback._optimizer_step = counted
    steps = []

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            report = callback.last_report
            if report is not None and report.step not in steps:
                steps.append(report.step)

    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
              callbacks=[callback, Steps()])
    return reads, steps


@pytest.mark.parametrize("make, reads_per_update", [
    (lambda: tf_dsr.DynamicReparam(prune_target=0.05, period=PERIOD, seed=0), 1),
    (lambda: tf_dsr.RigL(drop_fraction=0.3, period=PERIOD, end_step=10_000, seed=0), 2),
])
def test_idle_batch_ends_do_not_read_the_step(make, reads_per_update):
    reads, steps = _fit_counting_reads(make())
    assert steps == list(range(PERIOD, 2 * STEPS + 1, PERIOD))
    # A few reads at the fit's and each epoch's start (state, schedule
    # checks), then only at the batch end of each update (and, to arm the
    # gradient capture, the one before it): not one per step (120).
    assert len(reads) <= 6 + reads_per_update * len(steps), len(reads)


def test_steps_per_execution_keeps_the_updates_and_reads_little():
    reads, steps = _fit_counting_reads(
        tf_dsr.DynamicReparam(prune_target=0.05, period=PERIOD, seed=0),
        steps_per_execution=4)
    # Batch ends every 4 steps: updates on the period grid at the first
    # batch end at or after each multiple of 10.
    assert steps == [12, 20, 32, 40, 52, 60, 72, 80, 92, 100, 112, 120]
    assert len(reads) <= 6 + len(steps), len(reads)


def test_surely_not_due_never_hides_a_due_step():
    from tf_dsr.training.schedule import Schedule

    for schedule in (Schedule(10), Schedule({0: 10, 2: 4}, stop_epoch=3),
                     Schedule(10, final_step=25)):
        for epoch in range(4):
            for last in (0, 7, 20):
                for bound in range(last, last + 30):
                    if schedule.surely_not_due(bound, last, epoch):
                        # Then no step up to the bound is due.
                        assert all(schedule.due(s, last, epoch) is None
                                   for s in range(bound + 1)), (bound, last, epoch)
