"""DSR training runs with BackupAndRestore, optionally killed mid-save.

Usage (from tests/callbacks/test_resume.py):

    python backup_worker.py BACKUP_DIR:OUTPUT.npz [BACKUP_DIR:OUTPUT.npz ...]
        [--kill-in {weights,copy} --kill-after N]

For each pair, in one process, trains LeNet-300-100 on 600 digits for
`EPOCHS` epochs with DynamicReparam and `keras.callbacks.BackupAndRestore(
BACKUP_DIR, double_checkpoint=True)`, resuming from whatever the directory
holds, and writes the final weights and DSR state to OUTPUT.npz. With
`--kill-in`, the process sends itself SIGKILL inside the backup save at the
end of epoch `KILL_EPOCH`, at a fixed point, so the test is deterministic:

- `weights`: after the save has written N datasets of latest.weights.h5
  (the file is left half written, as a kill during the write leaves it);
- `copy`: after copying N bytes of the previous backup to its `.bkp`
  (the copy is left truncated).

Threads are limited to one, so that runs in different processes compute
bit-identical weights.
"""

import argparse
import os
import shutil
import signal
import sys

import h5py
import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import tf_dsr  # noqa: E402
from tf_dsr.app.data import load_digits  # noqa: E402
from tf_dsr.models import lenet_300_100  # noqa: E402

EPOCHS = 3
KILL_EPOCH = 1


class KillDuringBackup(keras.callbacks.Callback):
    """Listed just before BackupAndRestore: at the end of `KILL_EPOCH` it
    arms a SIGKILL that fires inside the save that follows."""

    def __init__(self, where, after):
        super().__init__()
        self.where, self.after = where, after

    def on_epoch_end(self, epoch, logs=None):
        if epoch != KILL_EPOCH:
            return
        if self.where == "weights":
            write = h5py.Group.__setitem__
            written = [0]

            def setitem(group, name, value):
                if written[0] == self.after:
                    os.kill(os.getpid(), signal.SIGKILL)
                written[0] += 1
                return write(group, name, value)

            h5py.Group.__setitem__ = setitem
        else:
            after = self.after

            def copy(source, target, **kwargs):
                with open(source, "rb") as src, open(target, "wb") as dst:
                    dst.write(src.read(after))
                    dst.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

            shutil.copy = copy


def train(backup_dir, output, kill_in=None, kill_after=0):
    # A restart rebuilds the model from code with another seed on purpose:
    # only what BackupAndRestore restores can make the runs agree.
    keras.utils.set_random_seed(0 if os.path.exists(backup_dir) else 1)
    model = lenet_300_100((64,), 10, sparsity=0.9, seed=11)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=7, seed=4)
    callbacks = [reparam]
    if kill_in:
        callbacks.append(KillDuringBackup(kill_in, kill_after))
    callbacks.append(keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True))
    (x, y), _ = load_digits()
    model.fit(x[:600], y[:600], batch_size=50, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=callbacks)
    np.savez(
        output,
        *model.get_weights(),
        threshold=reparam.state.threshold.numpy(),
        last_step=reparam.state.last_step.numpy(),
        num_reallocations=reparam.state.num_reallocations.numpy(),
        iterations=model.optimizer.iterations.numpy(),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", metavar="BACKUP_DIR:OUTPUT")
    parser.add_argument("--kill-in", choices=("weights", "copy"))
    parser.add_argument("--kill-after", type=int, default=0)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for run in args.runs:
        backup_dir, output = run.split(":")
        train(backup_dir, output, args.kill_in, args.kill_after)


if __name__ == "__main__":
    main()
