r"""LeNet-300-100 on MNIST, as in Mostafa & Wang (ICML 2019).

The paper's MNIST experiment (Mostafa & Wang, ICML 2019) with its hyperparameters
as flag defaults: LeNet-300-100 with BatchNorm after both hidden layers,
all three Dense kernels sparse (266,200 weights), 100 epochs of batch 100,
SGD with Nesterov momentum 0.9, learning rate 0.1 divided by 5 at epochs
25, 50 and 75, an L1 penalty of 1e-4 on the sparse kernels and no weight
decay; DSR prunes N_prune = 600 weights per reallocation every 100, 200,
400, 800 steps (from epochs 0, 25, 50, 75) and stops at epoch 90.

Inputs are the 28x28 images flattened to 784 values, scaled to [0, 1] and
standardised with MNIST's mean 0.1307 and standard deviation 0.3081 (the
usual torchvision normalisation); no augmentation.

The L1 term is `l1 * sum(|kernel|)` over the three sparse kernels, added to
the mean cross-entropy of the batch, as a Keras `L1` regularizer. It acts
on the raw kernel; inactive positions of a sparse kernel are exactly zero
(see `examples.common.add_regularizer`), so it equals the L1 norm of the
masked kernel. Biases and BatchNorm are not penalised.

Usage (from the repository root):

    python examples/lenet300_mnist.py --method=dsr --sparsity=0.99 \
        --output=runs/lenet_dsr_0.99.json
    python examples/lenet300_mnist.py --helpfull
"""

import os
import sys

from absl import app
from absl import flags
import keras
import tensorflow as tf

if __package__ in (None, ""):
    # Run as `python examples/lenet300_mnist.py`: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples import common  # noqa: E402
import tf_dsr  # noqa: E402

RECIPE = common.Recipe(
    model="lenet_300_100",
    dataset="mnist",
    epochs=100,
    batch_size=100,
    lr_schedule={0: 0.1, 25: 0.02, 50: 0.004, 75: 0.0008},
    prune_target=600,
    period={0: 100, 25: 200, 50: 400, 75: 800},
    stop_epoch=90,
    sparsity=0.9,
    num_train_examples=60_000,
)

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(RECIPE, flag_values)
    # List the shared flags in --help, not only under --helpfull.
    flags.adopt_module_key_flags(common, flag_values=flag_values)
    flags.DEFINE_float("l1", 1e-4, "L1 coefficient on the sparse kernels.",
                       flag_values=flag_values)
    flags.DEFINE_boolean("batch_norm", True, "BatchNorm after each hidden layer.",
                         flag_values=flag_values)


def preprocess(image, label):
    image = tf.cast(tf.reshape(image, (-1,)), tf.float32) / 255.0
    return (image - MNIST_MEAN) / MNIST_STD, label


def load_data(flag_values):
    fv = flag_values
    train, num_train = common.load_split("mnist", "train", fv)
    test, _ = common.load_split("mnist", "test", fv)
    train = train.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).cache()
    train = (
        common.seeded_shuffle(train, 60_000, fv.seed)
        .repeat()
        .batch(fv.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = (
        test.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .batch(fv.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return common.Data(train, test, num_train, input_shape=(784,), num_classes=10)


def model_builder(flag_values, data):
    fv = flag_values
    return tf_dsr.models.lenet_300_100, dict(
        input_shape=data.input_shape, num_classes=data.num_classes, batch_norm=fv.batch_norm
    )


def build_model(flag_values, sparsity, data, width_multiplier=1.0):
    fv = flag_values
    model = common.build(model_builder, fv, sparsity, data, width_multiplier)
    if fv.l1 > 0:
        common.add_regularizer(common.sparse_kernels(model), keras.regularizers.L1(fv.l1))
    return model


def run(flag_values=flags.FLAGS):
    return common.run(RECIPE, flag_values, load_data, build_model, model_builder)


if __name__ == "__main__":
    define_flags()
    app.run(common.main(run))
