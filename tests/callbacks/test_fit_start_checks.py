"""What a method refuses when `fit` starts, before any step trains."""

import keras
import numpy as np
import pytest

import tf_dsr


class StepCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


@pytest.mark.parametrize("bad", [np.nan, 0.5])
@pytest.mark.parametrize("make_callback", [
    lambda: tf_dsr.DynamicReparam(prune_target=0.05, period=50),
    lambda: tf_dsr.SET(period=50, prune_fraction=0.3),
])
def test_a_mask_that_is_not_0_1_is_refused_when_fit_starts(bad, make_callback):
    model = keras.Sequential([
        keras.Input((6,)),
        tf_dsr.SparseDense(8, sparsity=0.5, seed=0, name="fc"),
        tf_dsr.SparseDense(2, sparsity=0.5, seed=1, name="out"),
    ])
    model.compile("sgd", "mse")
    mask = model.get_layer("fc").mask
    values = mask.numpy()
    values[0, 0] = bad
    mask.assign(values)
    kernel = model.get_layer("out").kernel_variable.numpy().copy()
    counter = StepCounter()
    with pytest.raises(ValueError, match="at the start of fit.*'fc'.*other than 0 and 1"):
        model.fit(np.ones((8, 6)), np.zeros((8, 2)), verbose=0,
                  callbacks=[make_callback(), counter])
    assert counter.steps == 0
    np.testing.assert_array_equal(model.get_layer("out").kernel_variable.numpy(), kernel)


def test_a_refused_fit_leaves_the_methods_state_unstarted():
    model = keras.Sequential([keras.Input((6,)), tf_dsr.SparseDense(8, sparsity=0.5, seed=0)])
    model.compile("sgd", "mse")
    model.fit(np.ones((8, 6)), np.zeros((8, 8)), verbose=0)  # dense steps first
    mask = model.layers[0].mask
    values = mask.numpy()
    values[0, 0] = 0.5
    mask.assign(values)
    dsr = tf_dsr.DynamicReparam(prune_target=2, period=50)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        model.fit(np.ones((8, 6)), np.zeros((8, 8)), verbose=0, callbacks=[dsr])
    assert not dsr.state.started()


def test_the_callback_that_starts_a_state_sets_its_initial_values():
    model = keras.Sequential([keras.Input((6,)), tf_dsr.SparseDense(8, sparsity=0.5, seed=0)])
    model.compile("sgd", "mse")
    tf_dsr.DynamicReparam(prune_target=2, period=50, initial_threshold=1e-3).set_model(model)
    second = tf_dsr.DynamicReparam(prune_target=2, period=50, initial_threshold=0.25)
    history = model.fit(np.ones((8, 6)), np.zeros((8, 8)), verbose=0, callbacks=[second])
    assert history.history["threshold"] == [pytest.approx(0.25)]
    assert float(second.state.threshold.numpy()) == pytest.approx(0.25)
