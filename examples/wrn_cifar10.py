r"""WRN-28-2 on CIFAR-10, as in Mostafa & Wang (ICML 2019).

The paper's CIFAR-10 experiment (Mostafa & Wang, ICML 2019) with its
hyperparameters as flag defaults: WRN-28-2 whose 24 3x3 convs in residual
blocks are sparse (1,451,520 weights; stem conv, 1x1 shortcuts, final
Dense and BatchNorm dense), 200 epochs of batch 100, SGD with Nesterov
momentum 0.9, learning rate 0.1 divided by 5 at epochs 60, 120 and 160,
weight decay 5e-4; DSR prunes N_prune = 20,000 weights per reallocation
every 100, 200, 400, 800 steps (from epochs 0, 25, 80, 140) and stops at
epoch 190.

Weight decay. The authors train with PyTorch, where
`SGD(weight_decay=wd)` adds `wd * w` to the gradient before the momentum
step. That is the gradient of `wd / 2 * sum(w ** 2)`, so we add Keras
`L2(wd / 2)` regularizers (Keras' `L2(c)` is `c * sum(w ** 2)`, gradient
`2 c w`): the decay goes through the Nesterov momentum exactly as in
PyTorch. We do not use the `weight_decay` argument of Keras optimizers,
which is decoupled (AdamW-style `w -= lr * wd * w`, outside the momentum)
and at momentum 0.9 would decay about 10x less. By default the decay
covers every trainable weight, BatchNorm scales and offsets and the
Dense bias included, as `SGD(model.parameters(), weight_decay=wd)` does;
`--weight_decay_on=kernels` restricts it to conv and Dense kernels. On a
sparse kernel it acts on the raw kernel, which is exactly zero where the
mask is 0, so inactive weights are unaffected.

Augmentation (training only), as in the paper and the usual CIFAR-10
recipe: pad the 32x32 image with 4 black pixels on each side, crop a
random 32x32 window, flip left-right with probability 1/2; then, for
training and test alike, scale to [0, 1] and standardise each channel with
CIFAR-10's training-set mean (0.4914, 0.4822, 0.4465) and standard
deviation (0.2470, 0.2435, 0.2616). Padding happens before the
normalisation, as with torchvision's `RandomCrop(32, padding=4)`.

Usage (from the repository root):

    python examples/wrn_cifar10.py --method=dsr --sparsity=0.9 \
        --output=runs/wrn_dsr_0.9.json
    python examples/wrn_cifar10.py --helpfull
"""

import os
import sys

from absl import app
from absl import flags
import tensorflow as tf

if __package__ in (None, ""):
    # Run as `python examples/wrn_cifar10.py`: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples import common  # noqa: E402
import tf_dsr  # noqa: E402

RECIPE = common.Recipe(
    model="wrn_28_2",
    dataset="cifar10",
    epochs=200,
    batch_size=100,
    lr_schedule={0: 0.1, 60: 0.02, 120: 0.004, 160: 0.0008},
    prune_target=20_000,
    period={0: 100, 25: 200, 80: 400, 140: 800},
    stop_epoch=190,
    sparsity=0.9,
    num_train_examples=50_000,
)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
PADDING = 4


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(RECIPE, flag_values)
    # List the shared flags in --help, not only under --helpfull.
    flags.adopt_module_key_flags(common, flag_values=flag_values)
    flags.DEFINE_integer("depth", 28, "WRN depth, 6n + 4.", flag_values=flag_values)
    flags.DEFINE_integer("width", 2, "WRN widening factor k.", flag_values=flag_values)
    flags.DEFINE_float("weight_decay", 5e-4,
                       "PyTorch-style SGD weight decay wd (added as L2(wd / 2)).",
                       flag_values=flag_values)
    flags.DEFINE_enum("weight_decay_on", "all", ("all", "kernels"),
                      "all: every trainable weight (as PyTorch's SGD over "
                      "model.parameters()); kernels: conv and Dense kernels only.",
                      flag_values=flag_values)


def normalize(image):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - CIFAR10_MEAN) / CIFAR10_STD


def augment(image, label):
    size = tf.shape(image)[:2]
    padded = tf.image.resize_with_crop_or_pad(image, size[0] + 2 * PADDING, size[1] + 2 * PADDING)
    image = tf.image.random_crop(padded, tf.shape(image))
    image = tf.image.random_flip_left_right(image)
    return normalize(image), label


def load_data(flag_values):
    fv = flag_values
    train, num_train = common.load_split("cifar10", "train", fv)
    test, _ = common.load_split("cifar10", "test", fv)
    train = (
        common.seeded_shuffle(train.cache(), 50_000, fv.seed)
        .repeat()
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(fv.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = (
        test.map(lambda image, label: (normalize(image), label),
                 num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .batch(fv.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return common.Data(train, test, num_train, input_shape=(32, 32, 3), num_classes=10)


def model_builder(flag_values, data):
    fv = flag_values
    return tf_dsr.models.wide_resnet, dict(
        depth=fv.depth, width=fv.width, input_shape=data.input_shape,
        num_classes=data.num_classes,
    )


def build_model(flag_values, sparsity, data, width_multiplier=1.0):
    fv = flag_values
    model = common.build(model_builder, fv, sparsity, data, width_multiplier)
    common.add_weight_decay(model, fv.weight_decay, fv.weight_decay_on)
    return model


def run(flag_values=flags.FLAGS):
    return common.run(RECIPE, flag_values, load_data, build_model, model_builder)


if __name__ == "__main__":
    define_flags()
    app.run(common.main(run))
