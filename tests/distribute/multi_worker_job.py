"""One worker of a MultiWorkerMirroredStrategy DSR run (used by the test).

Usage: python multi_worker_job.py OUTPUT.npz   (TF_CONFIG set by the caller)

Keras 3's `model.fit` does not run under MultiWorkerMirroredStrategy (it
fails for plain Keras models too: keras-team/keras#20585), so this is the
custom-loop recipe from the README: `strategy.run` for the step and
`DynamicReparam.reallocate()` every `PERIOD` steps.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

import tf_dsr
from tf_dsr.data import load_digits
from tf_dsr.models import lenet_300_100

PERIOD = 4
GLOBAL_BATCH = 40


def main(output):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    (x, y), _ = load_digits()
    with strategy.scope():
        model = lenet_300_100((64,), 10, sparsity=0.9, batch_norm=False, seed=7)
        model.build((None, 64))
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        optimizer.build(model.trainable_variables)
        model.optimizer = optimizer
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    reparam = tf_dsr.DynamicReparam(prune_target=100, period=PERIOD, seed=3)
    reparam.set_model(model)
    num_active = tf_dsr.sparsity_summary(model).num_active

    @tf.function
    def train_step(batch):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True)) / GLOBAL_BATCH
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        strategy.run(replica_step, args=batch)

    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x[:800], y[:800])).batch(GLOBAL_BATCH))
    for batch in dataset:
        train_step(batch)
        step = int(optimizer.iterations.numpy())
        if step % PERIOD == 0:
            reparam.reallocate(step=step)

    arrays = {f"mask_{i}": l.mask.numpy() for i, l in enumerate(reparam.layers)}
    arrays.update({f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    np.savez(
        output,
        threshold=reparam.state.threshold.numpy(),
        num_reallocations=reparam.state.num_reallocations.numpy(),
        num_active_before=num_active,
        num_active_after=tf_dsr.sparsity_summary(model).num_active,
        **arrays,
    )


if __name__ == "__main__":
    main(sys.argv[1])
