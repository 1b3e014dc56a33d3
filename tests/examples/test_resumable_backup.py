"""The examples' backup recovers from a kill inside its very first save."""

import keras
import numpy as np
import pytest

from examples.common import ResumableBackup


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    return model


def _first_save_killed(backup_dir):
    """The folder a kill inside the first save leaves: the weights file
    half written, no metadata and no previous backup."""
    backup_dir.mkdir()
    whole = backup_dir / "whole.weights.h5"
    _model().save_weights(whole)
    data = whole.read_bytes()
    whole.unlink()
    (backup_dir / "latest.weights.h5").write_bytes(data[: len(data) // 2])


def test_keras_alone_cannot_resume_after_a_kill_in_the_first_save(tmp_path):
    _first_save_killed(tmp_path / "backup")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"),
                                              double_checkpoint=True)
    with pytest.raises(OSError):
        _model().fit(np.ones((4, 4)), np.ones((4, 2)), epochs=2, verbose=0,
                     callbacks=[backup])


class OpensBackup(keras.callbacks.Callback):
    """Listed after the backup: at each epoch end, the new backup opens."""

    def __init__(self, path):
        super().__init__()
        self.path, self.opened = path, 0

    def on_epoch_end(self, epoch, logs=None):
        import h5py

        h5py.File(self.path, "r").close()
        self.opened += 1


def test_the_examples_backup_starts_anew_and_then_backs_up(tmp_path):
    _first_save_killed(tmp_path / "backup")
    model = _model()
    check = OpensBackup(tmp_path / "backup" / "latest.weights.h5")
    history = model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=2, verbose=0,
                        callbacks=[ResumableBackup(str(tmp_path / "backup")), check])
    assert len(history.history["loss"]) == 2  # every epoch, from the first
    assert check.opened == 2
