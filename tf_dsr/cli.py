"""The `tf-dsr` command line: train a sparse model with DSR, offline.

    tf-dsr train                      # LeNet-300-100 on the bundled digits
    tf-dsr train --model conv --sparsity 0.95 --epochs 40
"""

import argparse
import os
import sys


def _prune_target(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--prune-target must be a number, got {text!r}"
        ) from None
    if value.is_integer() and value >= 1:
        return int(value)
    if 0.0 < value < 1.0:
        return value
    raise argparse.ArgumentTypeError(
        f"--prune-target must be a count >= 1 or a fraction in (0, 1), got {text}"
    )


def _sparsity(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--sparsity must be in [0, 1), got {text}")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tf-dsr",
        description="Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a sparse model with DSR on scikit-learn's bundled digits (no download)",
    )
    train.add_argument("--model", choices=("lenet300", "conv"), default="lenet300",
                       help="LeNet-300-100 (default) or a small conv net")
    train.add_argument("--sparsity", type=_sparsity, default=0.9,
                       help="fraction of zeros in every sparse kernel (default 0.9)")
    train.add_argument("--epochs", type=_positive_int, default=30)
    train.add_argument("--batch-size", type=_positive_int, default=50)
    train.add_argument("--learning-rate", type=float, default=0.1)
    train.add_argument("--prune-target", type=_prune_target, default=0.05,
                       help="N_prune: a count, or a fraction of the active weights (default 0.05)")
    train.add_argument("--period", type=_positive_int, default=25,
                       help="steps between reallocations (default 25)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--export", metavar="DIR", default=None,
                       help="also write a plain SavedModel (masks folded in) to DIR")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="Keras progress display (default 1: progress bars)")
    return parser


def train(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import tf_dsr
    from tf_dsr import data
    from tf_dsr import models

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = data.load_digits(
        seed=args.seed, flat=args.model == "lenet300"
    )
    if args.model == "lenet300":
        model = models.lenet_300_100(x_train.shape[1:], 10, args.sparsity, seed=args.seed)
    else:
        model = models.small_convnet(x_train.shape[1:], 10, args.sparsity, seed=args.seed)
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    reparam = tf_dsr.DynamicReparam(
        prune_target=args.prune_target, period=args.period, seed=args.seed
    )
    print(f"tf-dsr: {model.name} on digits ({len(x_train)} train / {len(x_test)} test), "
          f"sparsity {args.sparsity}, N_prune {args.prune_target}, period {args.period}")
    print("Initial masks:")
    print(tf_dsr.sparsity_summary(model))
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              callbacks=[reparam], verbose=args.verbose)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    num_nonzero = sum(
        int(np.count_nonzero(keras.ops.convert_to_numpy(v))) for v in model.trainable_variables
    )
    num_trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    print("\nFinal masks (after DSR moved weights between layers):")
    print(tf_dsr.sparsity_summary(model))
    print(f"\nreallocations: {int(reparam.state.num_reallocations.numpy())}, "
          f"final threshold: {float(reparam.state.threshold.numpy()):.3g}")
    print(f"non-zero trainable parameters: {num_nonzero} of {num_trainable}")
    print(f"test accuracy: {accuracy:.4f}")
    if args.export:
        tf_dsr.export(model, args.export)
        print(f"exported a plain SavedModel to {args.export}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return train(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
