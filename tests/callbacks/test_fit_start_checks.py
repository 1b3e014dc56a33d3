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
