r"""ResNet-50 on ImageNet (ILSVRC 2012), as in Mostafa & Wang (ICML 2019).

The paper's ImageNet experiment (Mostafa & Wang, ICML 2019) with its
hyperparameters as flag defaults: ResNet-50 (torchvision layout) whose 48
bottleneck convs and final Dense kernel are sparse (22,724,608 weights;
7x7 stem conv, 1x1 downsample convs, BatchNorm and the Dense bias dense),
100 epochs of batch 256, SGD with Nesterov momentum 0.9, learning rate
0.1 divided by 10 at epochs 30, 60 and 90, weight decay 1e-4; DSR prunes
N_prune = 400,000 weights per reallocation every 1000, 2000, 4000, 8000
steps (from epochs 0, 25, 50, 75) and stops at epoch 95. Reports top-1
and top-5 accuracy on the 50,000 validation images.

Weight decay is PyTorch's coupled SGD weight decay, added as Keras
`L2(wd / 2)` terms on every trainable weight by default (see
`examples/wrn_cifar10.py` and `examples.common.add_weight_decay`).

Data. ImageNet cannot be downloaded automatically: get
`ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` from
image-net.org, put them in a directory and pass it as `--manual_dir`
(default: `<data_dir>/downloads/manual`). The first run prepares the
tensorflow-datasets `imagenet2012` TFRecords in `--data_dir` (several
hours, about 150 GB); later runs read them directly.

Preprocessing, the standard ImageNet recipe (torchvision's):
- training: a random crop of 8% to 100% of the image area with aspect
  ratio in [3/4, 4/3] (`tf.image.sample_distorted_bounding_box`, 10
  attempts, the whole image if none fits), resized to 224x224
  bilinearly, flipped left-right with probability 1/2;
- evaluation: the shorter side resized to 256 (aspect kept), the central
  224x224 crop;
- both: scaled to [0, 1] and standardised per channel with mean
  (0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225).
`--image_size` changes 224 (evaluation resizes to `image_size * 256 /
224`); it exists for smoke tests on a CPU. JPEGs are decoded only inside
the crop window (`decode_and_crop_jpeg`), so any image size works.

Usage (from the repository root):

    python examples/resnet50_imagenet.py --method=dsr --sparsity=0.8 \
        --data_dir=/data/tfds --manual_dir=/data/imagenet \
        --strategy=mirrored --output=runs/resnet50_dsr_0.8.json
"""

import os
import sys

from absl import app
from absl import flags
import tensorflow as tf

if __package__ in (None, ""):
    # Run as `python examples/resnet50_imagenet.py`: make `examples` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples import common  # noqa: E402
import tf_dsr  # noqa: E402

RECIPE = common.Recipe(
    model="resnet50",
    dataset="imagenet2012",
    epochs=100,
    batch_size=256,
    lr_schedule={0: 0.1, 30: 0.01, 60: 0.001, 90: 0.0001},
    prune_target=400_000,
    period={0: 1000, 25: 2000, 50: 4000, 75: 8000},
    stop_epoch=95,
    sparsity=0.9,
    num_train_examples=1_281_167,
    top5=True,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHUFFLE_BUFFER = 10_000
# The evaluation resize: 256 for a 224 crop.
RESIZE_RATIO = 256 / 224


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(RECIPE, flag_values)
    # List the shared flags in --help, not only under --helpfull.
    flags.adopt_module_key_flags(common, flag_values=flag_values)
    flags.DEFINE_string("manual_dir", None,
                        "Directory holding ILSVRC2012_img_train.tar and "
                        "ILSVRC2012_img_val.tar (tfds DownloadConfig.manual_dir).",
                        flag_values=flag_values)
    flags.DEFINE_integer("image_size", 224, "Side of the square input images.",
                         flag_values=flag_values)
    flags.DEFINE_float("weight_decay", 1e-4,
                       "PyTorch-style SGD weight decay wd (added as L2(wd / 2)).",
                       flag_values=flag_values)
    flags.DEFINE_enum("weight_decay_on", "all", ("all", "kernels"),
                      "all: every trainable weight; kernels: conv and Dense kernels.",
                      flag_values=flag_values)


def normalize(image):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - IMAGENET_MEAN) / IMAGENET_STD


def train_preprocess(image_bytes, label, image_size):
    """Random resized crop (decoding only the window), flip, normalise."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    image = tf.image.random_flip_left_right(image)
    return normalize(image), label


def eval_preprocess(image_bytes, label, image_size):
    """Shorter side to `image_size * 256 / 224`, central square crop."""
    image = tf.image.decode_jpeg(image_bytes, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resize_to = tf.round(image_size * RESIZE_RATIO)
    new_shape = tf.cast(tf.round(shape * resize_to / tf.reduce_min(shape)), tf.int32)
    # Rounding can leave a side a pixel short of the crop.
    new_shape = tf.maximum(new_shape, image_size)
    image = tf.image.resize(image, new_shape, method="bilinear")
    top = (new_shape[0] - image_size) // 2
    left = (new_shape[1] - image_size) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)
    return normalize(image), label


def load_data(flag_values):
    import tensorflow_datasets as tfds

    fv = flag_values
    kwargs = {
        "decoders": {"image": tfds.decode.SkipDecoding()},
        "download_and_prepare_kwargs": {
            "download_config": tfds.download.DownloadConfig(manual_dir=fv.manual_dir)
        },
    }
    train, num_train = common.load_split("imagenet2012", "train", fv, shuffle_files=True,
                                         **kwargs)
    test, _ = common.load_split("imagenet2012", "validation", fv, **kwargs)
    size = fv.image_size
    train = (
        common.seeded_shuffle(train, SHUFFLE_BUFFER, fv.seed)
        .repeat()
        .map(lambda x, y: train_preprocess(x, y, size), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(fv.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = (
        test.map(lambda x, y: eval_preprocess(x, y, size), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(fv.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return common.Data(train, test, num_train, input_shape=(size, size, 3), num_classes=1000)


def model_builder(flag_values, data):
    del flag_values  # The recipe's model takes no flags.
    return tf_dsr.models.resnet50, dict(
        input_shape=data.input_shape, num_classes=data.num_classes
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
