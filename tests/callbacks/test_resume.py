"""Interrupted-and-resumed training equals uninterrupted training."""

import os
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.app.data import load_digits
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


def _fit_rigl(model, seed, extra_callbacks=()):
    (x, y), _ = load_digits()
    rigl = tf_dsr.RigL(drop_fraction=0.3, period=7, seed=seed)
    model.fit(x[:600], y[:600], batch_size=50, epochs=EPOCHS, shuffle=False,
              verbose=0, callbacks=[rigl, *extra_callbacks])
    return rigl


@pytest.mark.parametrize("seed", [4, None])
def test_rigl_backup_and_restore_resumes_exactly(tmp_path, seed):
    keras.utils.set_random_seed(0)
    crashed = _model()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed_rigl = _fit_rigl(crashed, seed, [backup, Interrupt(epoch=1, batch=5)])
    drawn = int(crashed._tf_dsr_state.rigl.seed.numpy())

    keras.utils.set_random_seed(0)
    reference = _model()
    if seed is None:
        # The uninterrupted run draws its own seed; give it the crashed
        # run's, which the backup must carry to the resumed run.
        rigl = _fit_rigl(reference, drawn)
    else:
        rigl = _fit_rigl(reference, seed)
    expected = {
        "weights": [np.array(w) for w in reference.get_weights()],
        "last_step": int(rigl.state.last_step.numpy()),
        "num_reallocations": int(rigl.state.num_reallocations.numpy()),
    }
    assert expected["num_reallocations"] >= 4

    keras.utils.set_random_seed(123)
    resumed = _model()
    rigl = _fit_rigl(resumed, seed, [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])

    assert rigl.seed == drawn
    assert int(rigl.state.last_step.numpy()) == expected["last_step"]
    assert int(rigl.state.num_reallocations.numpy()) == expected["num_reallocations"]
    for a, b in zip(resumed.get_weights(), expected["weights"]):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# A worker process killed during a backup save resumes exactly
# ----------------------------------------------------------------------------

WORKER = os.path.join(os.path.dirname(__file__), "backup_worker.py")
TIMEOUT_SECONDS = 300
# (where the kill lands, its position): the 6th dataset of the weights
# file, and the middle of copying the previous backup to `.bkp`.
KILLS = {"weights": 5, "copy": 200_000}


def _worker(tmp_path, name, runs, *options):
    log = open(tmp_path / f"{name}.log", "w")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [sys.executable, WORKER, *[f"{d}:{o}" for d, o in runs], *options],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _wait(tmp_path, name, process):
    try:
        code = process.wait(timeout=TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, (tmp_path / f"{name}.log").read_text()[-3000:]


def test_worker_killed_during_backup_save_resumes_bit_identical(tmp_path):
    backups = {where: tmp_path / f"backup_{where}" for where in KILLS}
    killed = {
        where: _worker(tmp_path, f"killed_{where}", [(backups[where], tmp_path / "unused.npz")],
                       "--kill-in", where, "--kill-after", str(after))
        for where, after in KILLS.items()
    }
    for where, process in killed.items():
        code, log = _wait(tmp_path, f"killed_{where}", process)
        assert code == -signal.SIGKILL, f"{where}: exit {code}\n{log}"

    # The kills left what they should: a latest backup that cannot be
    # opened, and a truncated `.bkp` next to an intact latest one.
    latest = "latest.weights.h5"
    with pytest.raises(OSError):
        h5py.File(backups["weights"] / latest, "r")
    assert (backups["weights"] / f"{latest}.bkp").exists()
    h5py.File(backups["copy"] / latest, "r").close()
    assert (backups["copy"] / f"{latest}.bkp").stat().st_size == KILLS["copy"]

    # One process resumes both runs and trains the uninterrupted reference.
    outputs = {where: tmp_path / f"resumed_{where}.npz" for where in KILLS}
    reference = tmp_path / "reference.npz"
    runs = [(backups[w], outputs[w]) for w in KILLS] + [(tmp_path / "fresh", reference)]
    code, log = _wait(tmp_path, "resume", _worker(tmp_path, "resume", runs))
    assert code == 0, log

    expected = np.load(reference)
    assert int(expected["num_reallocations"]) >= 4
    for where, output in outputs.items():
        got = np.load(output)
        assert sorted(got.files) == sorted(expected.files)
        for name in expected.files:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{where}: {name}")
