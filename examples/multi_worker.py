r"""DSR on several workers: MultiWorkerMirroredStrategy and a custom loop.

Keras 3's `model.fit` does not run under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585; plain Keras models fail too), so every worker
runs the training loop below: `strategy.run` for the step, and
`DynamicReparam.reallocate()` at the same optimizer steps on every worker.
It trains LeNet-300-100 with BatchNorm at sparsity 0.9 on scikit-learn's
bundled digits (no download; needs scikit-learn: `pip install
"tf-dsr[demo]"`).

Every worker runs this same script with its own `TF_CONFIG`. Two workers
on one machine, from the repository root:

    CLUSTER='"cluster": {"worker": ["localhost:23456", "localhost:23457"]}'
    TF_CONFIG="{$CLUSTER, \"task\": {\"type\": \"worker\", \"index\": 0}}" \
        python examples/multi_worker.py --output_dir=/tmp/dsr_workers &
    TF_CONFIG="{$CLUSTER, \"task\": {\"type\": \"worker\", \"index\": 1}}" \
        python examples/multi_worker.py --output_dir=/tmp/dsr_workers

Without `TF_CONFIG` it runs as one worker. What makes the workers agree
on every variable, without exchanging anything but gradients and batch
statistics:

1. The strategy is created before any other TensorFlow call: collective
   ops are configured when TensorFlow starts, so creating it later fails
   with `RuntimeError: Collective ops must be configured at program
   startup`.
2. Gradients are summed over all replicas of all workers, so each
   replica's loss is its per-example losses summed and divided by the
   *global* batch size (`tf.nn.compute_average_loss`): the update is then
   the one-device update on the global batch. (A mean over the local
   batch would scale the gradient by the number of replicas.)
3. `BatchNormalization(synchronized=True)`: the batch mean and variance
   are all-reduced over the global batch, so every worker updates its
   moving mean and variance with the same values. With the default
   `synchronized=False` each worker updates them from its own part of the
   batch; the workers then hold different moving statistics and would
   export different models. The builders in `tf_dsr.models` use
   unsynchronized BatchNorm, hence the model is written out here.
4. `reallocate(step=...)` runs at the same steps on every worker. Its
   inputs (kernels, masks) are identical and its randomness depends only
   on `(seed, step, layer)`, so every worker draws the same new masks.

Each worker writes `worker<i>.npz` to `--output_dir`: every variable of
the model, the optimizer and the DSR state, keyed by its path. Worker 0
(the chief) also exports the plain SavedModel (`tf_dsr.export`) to
`<output_dir>/saved_model`.
"""

import json
import os
import sys

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

if __package__ in (None, ""):
    # Run as `python examples/multi_worker.py`: import tf_dsr from this
    # checkout, as the sibling scripts do, not from an older installed copy.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_dsr  # noqa: E402
from tf_dsr.app.data import load_digits  # noqa: E402

flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 50, "Global batch size, split over all replicas.")
flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (Nesterov momentum 0.9).")
flags.DEFINE_float("sparsity", 0.9, "Initial sparsity of every sparse kernel.")
flags.DEFINE_float("prune_target", 0.05, "DSR's N_prune, as a fraction of the active weights.")
flags.DEFINE_integer("period", 25, "Optimizer steps between reallocations.")
flags.DEFINE_float("stop_fraction", 0.9,
                   "Stop reallocating after this fraction of the epochs, so that "
                   "BatchNorm's moving statistics settle on the final masks.")
flags.DEFINE_integer("seed", 0, "Seeds the initialization, the masks, the data order and DSR.")
flags.DEFINE_string("output_dir", None, "Where to write worker<i>.npz and the SavedModel.")
FLAGS = flags.FLAGS


def task():
    """`(index, number of workers)` of this process, from `TF_CONFIG`."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = config.get("cluster", {}).get("worker", [None])
    return config.get("task", {}).get("index", 0), len(workers)


def build_model(sparsity, seed):
    """LeNet-300-100 with synchronized BatchNorm, for 64 inputs."""

    def batch_norm():
        return keras.layers.BatchNormalization(synchronized=True, momentum=0.9, epsilon=1e-5)

    return keras.Sequential([
        keras.Input((64,)),
        tf_dsr.SparseDense(300, sparsity=sparsity, seed=seed, name="dense_300"),
        batch_norm(),
        keras.layers.Activation("relu"),
        tf_dsr.SparseDense(100, sparsity=sparsity, seed=seed + 1, name="dense_100"),
        batch_norm(),
        keras.layers.Activation("relu"),
        tf_dsr.SparseDense(10, sparsity=sparsity, seed=seed + 2, name="logits"),
    ], name="lenet_300_100")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # First, before any other TensorFlow call (see the module docstring).
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index, num_workers = task()
    keras.utils.set_random_seed(FLAGS.seed)
    (x, y), (x_test, y_test) = load_digits(seed=FLAGS.seed)
    global_batch_size = FLAGS.batch_size
    steps_per_epoch = len(x) // global_batch_size
    stop_step = int(round(FLAGS.stop_fraction * FLAGS.epochs)) * steps_per_epoch

    with strategy.scope():
        model = build_model(FLAGS.sparsity, FLAGS.seed)
        optimizer = keras.optimizers.SGD(FLAGS.learning_rate, momentum=0.9, nesterov=True)
        optimizer.build(model.trainable_variables)
        model.optimizer = optimizer  # lets reallocate() reset the momentum it frees
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    reparam = tf_dsr.DynamicReparam(prune_target=FLAGS.prune_target, period=FLAGS.period,
                                    seed=FLAGS.seed)
    reparam.set_model(model)
    num_active = tf_dsr.sparsity_summary(model).num_active

    @tf.function
    def train_step(batch):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example_loss = loss_fn(y, model(x, training=True))
                loss = tf.nn.compute_average_loss(
                    per_example_loss, global_batch_size=global_batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        strategy.run(replica_step, args=batch)

    dataset = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=FLAGS.seed, reshuffle_each_iteration=True)
               .batch(global_batch_size, drop_remainder=True)
               .repeat(FLAGS.epochs))
    options = tf.data.Options()
    # Each worker reads every global batch and keeps its share of it.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    for batch in strategy.experimental_distribute_dataset(dataset.with_options(options)):
        train_step(batch)
        step = int(optimizer.iterations.numpy())
        if step % FLAGS.period == 0 and step < stop_step:
            reparam.reallocate(step=step)

    summary = tf_dsr.sparsity_summary(model)
    predictions = np.argmax(model(x_test, training=False), axis=-1)
    print(f"worker {index} of {num_workers}: {int(optimizer.iterations.numpy())} steps, "
          f"{int(reparam.state.num_reallocations.numpy())} reallocations, "
          f"threshold {float(reparam.state.threshold.numpy()):.3g}, active weights "
          f"{num_active} -> {summary.num_active}, test accuracy "
          f"{np.mean(predictions == y_test):.4f}")
    print(summary)
    if FLAGS.output_dir:
        write_outputs(FLAGS.output_dir, index, model, optimizer, reparam)


def write_outputs(output_dir, index, model, optimizer, reparam):
    """Every variable to `worker<index>.npz`; the SavedModel from the chief."""
    os.makedirs(output_dir, exist_ok=True)
    variables = list(model.variables) + list(optimizer.variables) + list(reparam.state.variables)
    arrays = {variable.path: np.asarray(variable.numpy()) for variable in variables}
    if len(arrays) != len(variables):
        raise ValueError(f"Variable paths are not unique: {sorted(arrays)}.")
    np.savez(os.path.join(output_dir, f"worker{index}.npz"), **arrays)
    if index == 0:
        # `export` copies the model outside the strategy (`tf_dsr.strip`), so
        # it runs no collective op and the other workers need not join in.
        tf_dsr.export(model, os.path.join(output_dir, "saved_model"), verbose=False)


if __name__ == "__main__":
    app.run(main)
