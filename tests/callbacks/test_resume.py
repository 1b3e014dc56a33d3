"""Interrupted-and-resumed training equals uninterrupted training."""

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.data import load_digits
from tf_dsr.models import lenet_300_100

EPOCHS = 3


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("simulated crash")


def _model():
    model = lenet_300_100((64,), 10, sparsity=0.9, seed=11)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(model, extra_callbacks=()):
    (x, y), _ = load_digits()
    reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=7, seed=4)
    model.fit(x[:600], y[:600], batch_size=50, epochs=EPOCHS, shuffle=False,
              verbose=0, callbacks=[reparam, *extra_callbacks])
    return reparam


def _state(model, reparam):
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "threshold": float(reparam.state.threshold.numpy()),
        "last_step": int(reparam.state.last_step.numpy()),
        "num_reallocations": int(reparam.state.num_reallocations.numpy()),
        "iterations": int(model.optimizer.iterations.numpy()),
    }


def test_backup_and_restore_resumes_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    reference = _model()
    reparam = _fit(reference)
    expected = _state(reference, reparam)
    assert expected["num_reallocations"] >= 4

    keras.utils.set_random_seed(0)
    crashed = _model()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(crashed, [backup, Interrupt(epoch=1, batch=5)])

    # A new process would rebuild the model from code; the seed differs on
    # purpose, so only what BackupAndRestore restores can make them equal.
    keras.utils.set_random_seed(123)
    resumed = _model()
    reparam = _fit(resumed, [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    got = _state(resumed, reparam)

    assert got["iterations"] == expected["iterations"]
    assert got["threshold"] == expected["threshold"]
    assert got["last_step"] == expected["last_step"]
    for a, b in zip(got["weights"], expected["weights"]):
        np.testing.assert_array_equal(a, b)


def test_state_survives_save_weights_and_checkpoint(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _model()
    reparam = _fit(model)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    checkpoint = tf.train.Checkpoint(model=model, dsr=reparam.state)
    path = checkpoint.save(str(tmp_path / "ckpt"))

    fresh = _model()
    fresh_reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=7, seed=4)
    fresh_reparam.set_model(fresh)
    assert float(fresh_reparam.state.threshold.numpy()) == pytest.approx(1e-3)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(str(tmp_path / "w.weights.h5"))
    assert fresh_reparam.state.threshold.numpy() == reparam.state.threshold.numpy()
    assert fresh_reparam.state.last_step.numpy() == reparam.state.last_step.numpy()

    fresh_reparam.state.threshold.assign(42.0)
    tf.train.Checkpoint(model=fresh, dsr=fresh_reparam.state).restore(path).expect_partial()
    assert fresh_reparam.state.threshold.numpy() == reparam.state.threshold.numpy()
