"""GradualPruning callback: the cubic schedule during fit, masks only
shrink, kernels zero under masks, global scope, logs, arguments."""

import types

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers

from small_models import small_data, masks_of
from small_models import compile_small as _compile


def compile_small(model):
    return _compile(model, keras.optimizers.SGD(0.05, momentum=0.9))


BEGIN, END, PERIOD, FINAL = 0, 20, 6, 0.8
SIZES = [8 * 16, 16 * 4]


def dense_start_model(sparsity=0.0):
    return keras.Sequential(
        [
            keras.Input((8,)),
            tf_dsr.SparseDense(16, sparsity=sparsity, seed=1, activation="relu", name="a"),
            tf_dsr.SparseDense(4, sparsity=sparsity, seed=2, name="b"),
        ]
    )


def expected_active(step, size, initial=0.0):
    """Active weights of a dense-started layer after pruning at `step`."""
    progress = min(max((step - BEGIN) / (END - BEGIN), 0.0), 1.0)
    sparsity = FINAL + (initial - FINAL) * (1.0 - progress) ** 3
    return max(1, int(np.round((1.0 - sparsity) * size)))


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.masks, self.kernels = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.optimizer.iterations.numpy()))
        self.masks.append(masks_of(self.model))
        self.kernels.append([l.kernel_variable.numpy().copy() for l in find_sparse_layers(self.model)])


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = compile_small(dense_start_model())
    callback = tf_dsr.GradualPruning(
        final_sparsity=FINAL, begin_step=BEGIN, end_step=END, period=PERIOD, seed=0
    )
    recorder = Recorder()
    x, y = small_data()
    # 10 steps per epoch, 30 steps: updates at 6, 12, 18 (grid) and 20 (end).
    history = model.fit(x, y, batch_size=20, epochs=3, verbose=0, callbacks=[callback, recorder])
    return types.SimpleNamespace(
        model=model, callback=callback, recorder=recorder, history=history.history
    )


def test_gradual_follows_cubic_schedule(trained):
    counts = {
        step: [int(m.sum()) for m in masks]
        for step, masks in zip(trained.recorder.steps, trained.recorder.masks)
    }
    assert sorted(counts) == list(range(1, 31))
    last_update = 0
    for step in range(1, 31):
        if step in (6, 12, 18, 20):
            last_update = step
        expected = [expected_active(last_update, size) for size in SIZES]
        assert counts[step] == expected, (step, counts[step], expected)
    # Hand-computed: at step 6, s = 0.8 - 0.8 * 0.7^3 = 0.5256.
    assert counts[6] == [61, 30]
    # From end_step on: the final sparsity, exactly.
    assert counts[20] == counts[30] == [26, 13]


def test_gradual_masks_only_shrink_and_kernels_zero_under_masks(trained):
    masks = trained.recorder.masks
    for before, after in zip(masks, masks[1:]):
        for b, a in zip(before, after):
            assert np.all(a <= b)
    for step_masks, step_kernels in zip(masks, trained.recorder.kernels):
        for mask, kernel in zip(step_masks, step_kernels):
            assert np.all(kernel[mask == 0] == 0.0)


def test_gradual_stops_after_end_step_and_logs(trained):
    assert int(trained.callback.state.num_reallocations.numpy()) == 4
    assert trained.callback.last_report.step == 20
    history = trained.history
    np.testing.assert_allclose(history["sparsity"][-1], 1 - (26 + 13) / sum(SIZES))
    assert history["sparsity"][0] < history["sparsity"][-1]
    assert "threshold" not in history  # gradual pruning has none to log


def test_gradual_global_scope_prunes_across_layers():
    keras.utils.set_random_seed(0)
    model = compile_small(dense_start_model(sparsity=0.5))
    callback = tf_dsr.GradualPruning(
        final_sparsity=0.9, begin_step=0, end_step=10, period=10, scope="global", seed=0
    )
    callback.set_model(model)
    layers = find_sparse_layers(model)
    before = masks_of(model)
    magnitudes = [np.abs(l.kernel_variable.numpy()) for l in layers]
    report = callback.reallocate(step=10)
    after = masks_of(model)
    # One cut over both layers: 10% of 192 weights kept.
    assert sum(int(m.sum()) for m in after) == round(0.1 * sum(SIZES))
    assert report.sparsity == pytest.approx(1 - 19 / 192)
    kept = np.concatenate([mag[m == 1] for mag, m in zip(magnitudes, after)])
    dropped = np.concatenate(
        [mag[(b == 1) & (m == 0)] for mag, b, m in zip(magnitudes, before, after)]
    )
    assert kept.min() >= dropped.max()


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"final_sparsity": 1.0}, ValueError),
        ({"final_sparsity": -0.1}, ValueError),
        ({"final_sparsity": "0.9"}, TypeError),
        ({"initial_sparsity": 1.2}, ValueError),
        # It only prunes: a schedule that would make the model denser is
        # refused before training (it used to end silently in between).
        ({"initial_sparsity": 0.8, "final_sparsity": 0.5}, ValueError),
        ({"begin_step": 10, "end_step": 10}, ValueError),
        ({"begin_step": -1}, ValueError),
        ({"end_step": 2.5}, TypeError),
        ({"scope": "model"}, ValueError),
        ({"period": 0}, ValueError),
    ],
)
def test_gradual_rejects_bad_arguments(kwargs, error):
    arguments = dict(final_sparsity=0.9, begin_step=0, end_step=100)
    arguments.update(kwargs)
    with pytest.raises(error):
        tf_dsr.GradualPruning(**arguments)


def test_gradual_is_exported():
    assert "GradualPruning" in tf_dsr.__all__
    callback = tf_dsr.GradualPruning(final_sparsity=0.9, begin_step=0, end_step=100)
    assert callback.target_sparsity(50) == pytest.approx(0.9 - 0.9 / 8)
