"""The `tf-dsr` command line: train a sparse model with DSR, offline.

    tf-dsr train                      # LeNet-300-100 on the bundled digits
    tf-dsr train --model conv --sparsity 0.95 --epochs 40
    tf-dsr train --method rigl        # any sparse method of tf_dsr.methods
    tf-dsr train --block-shape 4x1 --export-tflite model.tflite   # fast TFLite
    tf-dsr compare --output-dir docs/results   # DSR vs its baselines
"""

import argparse
import sys

from tf_dsr.app import options
from tf_dsr.methods import registry


def _block_shape(text):
    """`4x1` -> (4, 1): the block's extent along (input, output) axes."""
    parts = text.lower().split("x")
    try:
        pair = tuple(int(p) for p in parts)
    except ValueError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise argparse.ArgumentTypeError(
            f"--block-shape must be INPUTSxOUTPUTS with positive ints, e.g. 4x1 "
            f"(TFLite's 1x4 block of a Dense kernel), got {text!r}")
    return pair


def _number(convert, in_range, message):
    """An argparse `type` that converts with `convert` and checks `in_range`."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not in_range(value):
            raise argparse.ArgumentTypeError(f"{message}, got {text!r}")
        return value

    return parse


# `compare --quick`: small, but long enough for the methods to do what they
# do: 3 epochs of 300 digits at batch 50 are 18 steps, so a period of 4
# gives DSR, SET and gradual pruning 4 mask updates each.
QUICK = {"seeds": 1, "epochs": 3, "num_train": 300, "period": 4}

_sparsity = _number(float, lambda v: 0.0 <= v < 1.0, "--sparsity must be in [0, 1)")
_positive_int = _number(int, lambda v: v >= 1, "expected a positive int")
_stop_fraction = _number(float, lambda v: 0.0 < v <= 1.0, "--stop-fraction must be in (0, 1]")
# keras.utils.set_random_seed seeds numpy, which takes [0, 2**32 - 1].
_seed = _number(int, lambda v: 0 <= v <= 2**32 - 1, "--seed must be an int in [0, 4294967295]")


def build_parser():
    """The `tf-dsr` parser: `train` and `compare`, each with one flag per
    option of the registry's methods (`tf_dsr.app.options`)."""
    parser = argparse.ArgumentParser(
        prog="tf-dsr",
        description="Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_compare_parser(commands)
    return parser


def _add_train_parser(commands):
    train = commands.add_parser(
        "train",
        help="train a sparse model with DSR (or --method) on scikit-learn's bundled "
             "digits (no download)",
    )
    sparse_methods = [name for name, m in registry.REGISTRY.items()
                      if m.network == registry.SPARSE]
    train.add_argument("--method", choices=sparse_methods, default="dsr",
                       help="how masks move: " + "; ".join(
                           f"{name}: {registry.get(name).summary}" for name in sparse_methods)
                       + " (default dsr)")
    train.add_argument("--model", choices=("lenet300", "conv"), default="lenet300",
                       help="LeNet-300-100 (default) or a small conv net")
    train.add_argument("--sparsity", type=_sparsity, default=0.9,
                       help="fraction of zeros in every sparse kernel (default 0.9)")
    train.add_argument("--epochs", type=_positive_int, default=30)
    _add_step_arguments(train)
    train.add_argument("--seed", type=_seed, default=0,
                       help="seeds data split, model and DSR; an int in [0, 2**32 - 1] (default 0)")
    train.add_argument("--block-shape", type=_block_shape, default=None, metavar="IxO",
                       help="masks made of whole blocks of I inputs by O outputs of each "
                            "sparse kernel, e.g. 4x1: TFLite's 1x4 block, which its "
                            "sparse FULLY_CONNECTED kernel runs (default: unstructured)")
    train.add_argument("--export", metavar="DIR", default=None,
                       help="also write a plain SavedModel (masks folded in) to DIR")
    train.add_argument("--export-tflite", metavar="FILE", default=None,
                       help="also write a TFLite file with sparse weights to FILE and "
                            "print its latency (batch 1, one thread) against the dense "
                            "architecture's")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="Keras progress display (default 1: progress bars)")
    options.add_flags(train.add_argument_group(
        "method options", "the constructor arguments of the methods' callbacks; a value "
        "is a Python literal (0.05, 600, {0: 25, 10: 50}) or text"))


def _add_step_arguments(parser):
    """The arguments `train` and `compare` share: batch, learning rate and
    where mask updates stop."""
    parser.add_argument("--batch-size", type=_positive_int, default=50)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--stop-fraction", type=_stop_fraction, default=0.9,
                        help="the methods taking stop_epoch (DSR, SET, RigL) stop moving "
                             "masks after this fraction of their epochs (RigL's drop "
                             "fraction reaches 0 there), as the paper stops at epoch 90 of "
                             "100, so BatchNorm's statistics settle on the final masks "
                             "(default 0.9; 1 = never stop)")


def _add_compare_parser(commands):
    from tf_dsr.app.compare import MODELS

    methods = tuple(registry.REGISTRY)
    compare = commands.add_parser(
        "compare",
        help="compare " + ", ".join(registry.get(name).label for name in methods)
             + " on the digits",
        description=(
            "Train every method at every sparsity with several seeds on the bundled "
            "digits (LeNet-300-100 with BatchNorm unless --model says otherwise) and "
            "write a mean ± std test-accuracy table (markdown), all raw results (JSON) "
            "and two plots (PNG) to --output-dir."
        ),
    )
    compare.add_argument("--model", choices=MODELS, default="lenet300",
                         help="LeNet-300-100 with BatchNorm (default) or LeNet-5 on 8x8 images")
    compare.add_argument("--methods", nargs="+", choices=methods, default=list(methods),
                         metavar="METHOD",
                         help=f"methods to run, out of {' '.join(methods)} (default: all)")
    _add_grid_arguments(compare)
    compare.add_argument("--output-dir", default="compare_results",
                         help="where to write the table, JSON and plots (default compare_results)")
    options.add_flags(compare.add_argument_group(
        "method options", "the constructor arguments of the methods' callbacks, passed "
        "to every method that takes them; a value is a Python literal (0.05, 600, "
        "{0: 25, 10: 50}) or text"))


def _add_grid_arguments(compare):
    compare.add_argument("--sparsities", nargs="+", type=_sparsity,
                         default=[0.9, 0.95, 0.98, 0.99], metavar="S",
                         help="target sparsities in [0, 1) (default 0.9 0.95 0.98 0.99)")
    compare.add_argument("--seeds", type=_positive_int, default=3,
                         help="runs per configuration, seeds 0..N-1; each seed also "
                              "fixes the train/test split (default 3)")
    compare.add_argument("--epochs", type=_positive_int, default=30,
                         help="epochs of every method but those --double-static-epochs "
                              "doubles (default 30)")
    compare.add_argument("--double-static-epochs", action=argparse.BooleanOptionalAction,
                         default=True,
                         help="train static sparse and thin dense for 2x --epochs, as the "
                              "paper does (default: on)")
    _add_step_arguments(compare)
    compare.add_argument("--history-every", type=_positive_int, default=None,
                         help="record per-layer sparsity every N steps (default: --period)")
    compare.add_argument("--history-sparsity", type=_sparsity, default=None,
                         help="sparsity of the per-layer plot (default: the highest)")
    compare.add_argument("--num-train", type=_positive_int, default=None,
                         help="train on a random subset of this many digits (default: all 1,438)")
    compare.add_argument("--quick", action="store_true",
                         help=f"smoke run: 1 seed, {QUICK['epochs']} epochs, "
                              f"{QUICK['num_train']} training digits, a mask update every "
                              f"{QUICK['period']} steps (4 updates at the default batch "
                              "size; overrides --seeds, --epochs, --num-train, --period). "
                              "Shows that every method runs; its accuracies mean nothing")
    compare.add_argument("--block-shape", type=_block_shape, default=None, metavar="IxO",
                         help="block-sparse masks for the sparse methods, e.g. 4x1 "
                              "(default: unstructured)")


def main(argv=None):
    """Runs `tf-dsr` with `argv` (default: the process's); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from tf_dsr.app.train import train

        return train(args, parser)
    if args.command == "compare":
        from tf_dsr.app.compare_command import compare

        return compare(args, argv, parser)
    return 2


if __name__ == "__main__":
    sys.exit(main())
