"""SET callback: per-layer counts fixed while masks move, smallest pruned,
regrown at zero, logs, arguments."""

import types

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers

from small_models import small_model, small_data, masks_of
from small_models import compile_small as _compile


def compile_small(model):
    return _compile(model, keras.optimizers.SGD(0.05, momentum=0.9))


PERIOD = 5


def kernels_of(model):
    return [layer.kernel_variable.numpy().copy() for layer in find_sparse_layers(model)]


class Recorder(keras.callbacks.Callback):
    """Per-layer active counts and masks after every batch (runs after SET)."""

    def __init__(self):
        super().__init__()
        self.counts, self.masks = [], []

    def on_train_batch_end(self, batch, logs=None):
        masks = masks_of(self.model)
        self.counts.append([int(m.sum()) for m in masks])
        self.masks.append(masks)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = compile_small(small_model())
    masks_before = masks_of(model)
    callback = tf_dsr.SET(prune_fraction=0.3, period=PERIOD, seed=0)
    recorder = Recorder()
    x, y = small_data()
    history = model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[callback, recorder])
    return types.SimpleNamespace(
        masks_before=masks_before,
        recorder=recorder,
        history=history.history,
        model=model,
        callback=callback,
        num_steps=int(model.optimizer.iterations.numpy()),
    )


def test_set_keeps_per_layer_counts_while_masks_change(trained):
    initial = [int(m.sum()) for m in trained.masks_before]
    assert initial == [64, 32]
    counts = np.array(trained.recorder.counts)
    assert counts.shape == (trained.num_steps, 2)
    np.testing.assert_array_equal(counts, np.tile(initial, (trained.num_steps, 1)))
    masks = trained.recorder.masks
    # Every update moves about 30% of each layer; between updates nothing.
    for step in range(1, trained.num_steps):
        changed = [int(np.sum(a != b)) for a, b in zip(masks[step - 1], masks[step])]
        if (step + 1) % PERIOD == 0:
            # round(0.3 * 64) = 19, round(0.3 * 32) = 10 moved out, as many in.
            assert changed == [2 * 19, 2 * 10], (step, changed)
        else:
            assert changed == [0, 0], (step, changed)


def test_set_runs_once_per_period_and_logs(trained):
    assert trained.num_steps == 20
    assert int(trained.callback.state.num_reallocations.numpy()) == trained.num_steps // PERIOD
    report = trained.callback.last_report
    assert report.num_pruned == {"a": 19, "b": 10} == report.num_grown
    history = trained.history
    assert "threshold" not in history  # SET has none to log
    assert history["num_pruned"][-1] == 29
    np.testing.assert_allclose(history["sparsity"], 0.5)


def test_set_keeps_kernels_zero_under_masks(trained):
    for kernel, mask in zip(kernels_of(trained.model), masks_of(trained.model)):
        assert np.all(kernel[mask == 0] == 0.0)


def test_set_prunes_smallest_and_regrows_at_zero(trained):
    model = trained.model
    callback = tf_dsr.SET(prune_target=12, period=PERIOD, seed=1)
    callback.set_model(model)
    masks, kernels = masks_of(model), kernels_of(model)
    report = callback.reallocate(step=1000)
    # N_prune = 12 shared 64:32 between the layers.
    assert report.num_pruned == {"a": 8, "b": 4} == report.num_grown
    for mask, kernel, new_mask, new_kernel in zip(
        masks, kernels, masks_of(model), kernels_of(model)
    ):
        assert new_mask.sum() == mask.sum()
        pruned = (mask == 1) & (new_mask == 0)
        grown = (mask == 0) & (new_mask == 1)
        survivors = (mask == 1) & (new_mask == 1)
        assert pruned.sum() == grown.sum() > 0
        assert np.abs(kernel[pruned]).max() <= np.abs(kernel[survivors]).min()
        assert np.all(new_kernel[grown] == 0.0)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({}, ValueError),
        ({"prune_fraction": 0.1, "prune_target": 10}, ValueError),
        ({"prune_fraction": 0.0}, ValueError),
        ({"prune_fraction": 1.5}, ValueError),
        ({"prune_fraction": "0.3"}, TypeError),
        ({"prune_target": 0}, ValueError),
        ({"prune_target": 2.5}, TypeError),
        ({"prune_target": True}, TypeError),
        ({"prune_target": 5, "period": 0}, ValueError),
    ],
)
def test_set_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        tf_dsr.SET(**kwargs)


def test_set_is_exported():
    assert "SET" in tf_dsr.__all__
    assert isinstance(tf_dsr.SET(prune_target=3, period=10), tf_dsr.ReparamCallback)


def test_a_given_prune_fraction_wins_over_the_runs_prune_target():
    from tf_dsr.methods import registry
    run = registry.Run(sparsity=0.9, seed=0)
    shared = registry.make_callback("set", run, prune_target=0.05)
    assert shared.prune_fraction == 0.05
    own = registry.make_callback("set", run, prune_target=0.05, prune_fraction=0.1)
    assert own.prune_fraction == 0.1 and own.prune_target is None
    counted = registry.make_callback("set", run, prune_target=30)
    assert counted.prune_target == 30 and counted.prune_fraction is None
