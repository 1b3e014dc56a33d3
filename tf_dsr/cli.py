"""The `tf-dsr` command line: train a sparse model with DSR, offline.

    tf-dsr train                      # LeNet-300-100 on the bundled digits
    tf-dsr train --model conv --sparsity 0.95 --epochs 40
    tf-dsr train --method rigl        # any sparse method of tf_dsr.methods
    tf-dsr train --block-shape 4x1 --export-tflite model.tflite   # fast TFLite
    tf-dsr compare --output-dir docs/results   # DSR vs its baselines
"""

import argparse
import json
import os
import shlex
import sys
import tempfile
import time


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
# DSR's N_prune unless --prune-target says otherwise (the paper's 5%).
PRUNE_TARGET = 0.05
QUICK = {"seeds": 1, "epochs": 3, "num_train": 300, "period": 4}

_sparsity = _number(float, lambda v: 0.0 <= v < 1.0, "--sparsity must be in [0, 1)")
_positive_int = _number(int, lambda v: v >= 1, "expected a positive int")
_stop_fraction = _number(float, lambda v: 0.0 < v <= 1.0, "--stop-fraction must be in (0, 1]")
# keras.utils.set_random_seed seeds numpy, which takes [0, 2**32 - 1].
_seed = _number(int, lambda v: 0 <= v <= 2**32 - 1, "--seed must be an int in [0, 4294967295]")
_drop_fraction = _number(float, lambda v: 0.0 < v <= 1.0, "--drop-fraction must be in (0, 1]")
_prune_fraction = _number(
    float, lambda v: 0.0 < v < 1.0,
    "--prune-target must be a fraction of the active weights in (0, 1)",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tf-dsr",
        description="Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    from tf_dsr.methods import REGISTRY
    from tf_dsr.methods import SPARSE

    train = commands.add_parser(
        "train",
        help="train a sparse model with DSR (or --method) on scikit-learn's bundled "
             "digits (no download)",
    )
    sparse_methods = [name for name, m in REGISTRY.items() if m.network == SPARSE]
    train.add_argument("--method", choices=sparse_methods, default="dsr",
                       help="how masks move: " + "; ".join(
                           f"{name}: {REGISTRY[name].summary}" for name in sparse_methods)
                       + " (default dsr)")
    train.add_argument("--model", choices=("lenet300", "conv"), default="lenet300",
                       help="LeNet-300-100 (default) or a small conv net")
    train.add_argument("--sparsity", type=_sparsity, default=0.9,
                       help="fraction of zeros in every sparse kernel (default 0.9)")
    train.add_argument("--epochs", type=_positive_int, default=30)
    train.add_argument("--batch-size", type=_positive_int, default=50)
    train.add_argument("--learning-rate", type=float, default=0.1)
    train.add_argument("--prune-target", type=_prune_target, default=None,
                       help="DSR's N_prune: a count, or a fraction of the active weights "
                            f"(default {PRUNE_TARGET}); SET prunes that fraction per layer. "
                            "For dsr, dsr-gradient and set")
    train.add_argument("--drop-fraction", type=_drop_fraction, default=None,
                       help="RigL's initial drop fraction, cosine-annealed (default 0.3). "
                            "For rigl")
    train.add_argument("--period", type=_positive_int, default=25,
                       help="steps between reallocations (default 25)")
    train.add_argument("--stop-fraction", type=_stop_fraction, default=0.9,
                       help="stop reallocating after this fraction of the epochs (RigL's "
                            "drop fraction reaches 0 there), as the "
                            "paper stops at epoch 90 of 100, so BatchNorm's statistics "
                            "settle on the final masks (default 0.9; 1 = never stop)")
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
    _add_compare_parser(commands)
    return parser


def _add_compare_parser(commands):
    from tf_dsr.compare import MODELS
    from tf_dsr.methods import METHODS

    compare = commands.add_parser(
        "compare",
        help="compare DSR, DSR with gradient growth, RigL, SET, static, gradual pruning, "
             "dense and thin dense on the digits",
        description=(
            "Train every method at every sparsity with several seeds on the bundled "
            "digits (LeNet-300-100 with BatchNorm unless --model says otherwise) and "
            "write a mean ± std test-accuracy table (markdown), all raw results (JSON) "
            "and two plots (PNG) to --output-dir."
        ),
    )
    compare.add_argument("--model", choices=MODELS, default="lenet300",
                         help="LeNet-300-100 with BatchNorm (default) or LeNet-5 on 8x8 images")
    compare.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                         metavar="METHOD",
                         help=f"methods to run, out of {' '.join(METHODS)} (default: all)")
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
    compare.add_argument("--batch-size", type=_positive_int, default=50)
    compare.add_argument("--learning-rate", type=float, default=0.1)
    compare.add_argument("--drop-fraction", type=_drop_fraction, default=None,
                         help="RigL's initial drop fraction (default 0.3, the paper's)")
    compare.add_argument("--prune-target", type=_prune_fraction, default=None,
                         help="N_prune of DSR and DSR-gradient as a fraction of the active "
                              "weights; SET prunes this fraction of each layer (default "
                              f"{PRUNE_TARGET})")
    compare.add_argument("--period", type=_positive_int, default=25,
                         help="steps between mask updates of every method that updates "
                              "masks (default 25)")
    compare.add_argument("--stop-fraction", type=_stop_fraction, default=0.9,
                         help="DSR, DSR-gradient, SET and RigL stop moving masks after this "
                              "fraction of their epochs (RigL's drop fraction reaches 0 "
                              "there), as the paper stops at epoch 90 of 100; 1 = never "
                              "(default 0.9)")
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
    compare.add_argument("--output-dir", default="compare_results",
                         help="where to write the table, JSON and plots (default compare_results)")


def check_export_target(path):
    """Why a SavedModel cannot be written to `path`, or None if it can.

    Probes by creating the directory (and a file in it) and removing what
    it created, so that a run that would train for minutes and then fail to
    export fails before training, leaving nothing behind.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a directory"
    missing = []
    parent = path
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".tf_dsr_probe_")
        probe.close()
    except OSError as error:
        return f"cannot write to {path} ({error.strerror or error})"
    finally:
        for directory in missing:
            try:
                os.rmdir(directory)
            except OSError:
                pass
    return None


def check_file_target(path):
    """Why a file cannot be written at `path`, or None if it can (nothing is left)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return f"{path} is a directory"
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        return f"{parent} is not an existing directory"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"cannot write to {path}"
    return None


def _print_tflite_latency(model, builder, path):
    """Writes the TFLite file and prints its latency against the dense model's."""
    import warnings

    import tf_dsr
    from tf_dsr import latency
    from tf_dsr.saving.tflite import tflite_ops

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flatbuffer = tf_dsr.to_tflite(model, path, sparse_weights=True)
    densified = [str(w.message) for w in caught if "tf_dsr.to_tflite" in str(w.message)]
    for message in densified:
        print("warning: " + message)
    dense = tf_dsr.to_tflite(builder(sparsity=None))
    ops = [op for op, _, _ in tflite_ops(flatbuffer)]
    times = latency.interleaved_times(
        {"sparse": latency.TFLiteRunner(flatbuffer), "dense": latency.TFLiteRunner(dense)},
        rounds=15)
    median, speedup = latency.median_and_speedup(times["sparse"], times["dense"])
    dense_median, _ = latency.median_and_speedup(times["dense"], times["dense"])
    print(f"wrote {path} ({len(flatbuffer):,} bytes; dense architecture "
          f"{len(dense):,} bytes); ops: {', '.join(ops)}")
    print(f"TFLite latency, batch 1, one thread (median of 15 interleaved rounds): "
          f"{median * 1e6:.1f} us vs {dense_median * 1e6:.1f} us for the dense "
          f"architecture: {speedup:.2f}x")
    if "DENSIFY" in ops:
        print("  (DENSIFY ops: those layers run at dense speed; see the warnings above)")


def _refuse_unread_options(args, methods, parser):
    """argparse error for an option none of `methods` reads; then the
    defaults of the options left unset."""
    from tf_dsr.methods import METHODS
    from tf_dsr.methods import readers

    for option, setting in (("--prune-target", "prune_target"),
                            ("--drop-fraction", "drop_fraction")):
        if getattr(args, setting) is not None and not readers(methods, setting):
            users = readers(METHODS, setting)
            parser.error(
                f"{option} {getattr(args, setting)}: not used by {', '.join(methods)}; it "
                f"is for {', '.join(users)}. Leave it out, or choose one of those.")
    if args.prune_target is None:
        args.prune_target = PRUNE_TARGET


def train(args, parser=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _refuse_unread_options(args, [args.method], parser or build_parser())
    if args.export:
        problem = check_export_target(args.export)
        if problem:
            (parser or build_parser()).error(f"--export {args.export}: {problem}")
    if args.export_tflite:
        problem = check_file_target(args.export_tflite)
        if problem:
            (parser or build_parser()).error(f"--export-tflite {args.export_tflite}: {problem}")
    import keras

    import tf_dsr
    from tf_dsr import data
    from tf_dsr import models

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = data.load_digits(
        seed=args.seed, flat=args.model == "lenet300"
    )
    import functools

    builder = functools.partial(
        models.lenet_300_100 if args.model == "lenet300" else models.small_convnet,
        x_train.shape[1:], 10, seed=args.seed)
    try:
        model = builder(sparsity=args.sparsity, block_shape=args.block_shape)
    except ValueError as error:
        (parser or build_parser()).error(f"--block-shape: {error}")
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    from tf_dsr import methods
    from tf_dsr.compare import stop_epoch

    settings = methods.Settings(
        sparsity=args.sparsity, seed=args.seed, prune_target=args.prune_target,
        period=args.period, stop_epoch=stop_epoch(args.epochs, args.stop_fraction),
        total_steps=args.epochs * -(-len(x_train) // args.batch_size),
        drop_fraction=args.drop_fraction)
    reparam = methods.make_callback(args.method, settings)
    callbacks = [] if reparam is None else [reparam]
    label = methods.get(args.method).label
    blocks = "" if args.block_shape is None else (
        f", blocks of {args.block_shape[0]}x{args.block_shape[1]}")
    reads = methods.get(args.method).reads
    knobs = "".join(
        f", {text}" for setting, text in (
            ("prune_target", f"N_prune {args.prune_target}"),
            ("drop_fraction", "drop fraction "
             f"{methods.RIGL_DROP_FRACTION if args.drop_fraction is None else args.drop_fraction}"),
            ("period", f"period {args.period}"))
        if setting in reads)
    print(f"tf-dsr: {model.name} on digits ({len(x_train)} train / {len(x_test)} test), "
          f"{label}, sparsity {args.sparsity}{blocks}{knobs}")
    print("Initial masks:")
    print(tf_dsr.sparsity_summary(model))
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              callbacks=callbacks, verbose=args.verbose)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    counts = tf_dsr.counting.parameter_counts(model)
    print(f"\nFinal masks (after {label}):")
    print(tf_dsr.sparsity_summary(model))
    if reparam is not None:
        report = reparam.last_report
        info = "".join(f", final {name}: {value:.3g}" for name, value in
                       (report.info.items() if report else ()))
        print(f"\nreallocations: {int(reparam.state.num_reallocations.numpy())}{info}")
    print(f"non-zero trainable parameters: {counts.num_params} of {counts.num_trainable}")
    print(f"test accuracy: {accuracy:.4f}")
    if args.export:
        tf_dsr.export(model, args.export)
        print(f"exported a plain SavedModel to {args.export}")
    if args.export_tflite:
        _print_tflite_latency(model, builder, args.export_tflite)
    return 0


def _load_split(seed, num_train=None, flat=True):
    from tf_dsr import data

    (x_train, y_train), test = data.load_digits(seed=seed, flat=flat)
    return data.subsample(x_train, y_train, num_train, seed), test


def compare(args, argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_dsr import compare as comparison
    from tf_dsr import report

    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if len(set(args.sparsities)) != len(args.sparsities):
        build_parser().error(f"--sparsities must not repeat a value, got {args.sparsities}")
    if len(set(args.methods)) != len(args.methods):
        build_parser().error(f"--methods must not repeat a name, got {args.methods}")
    _refuse_unread_options(args, args.methods, build_parser())
    if args.history_sparsity is not None and args.history_sparsity not in args.sparsities:
        build_parser().error(f"--history-sparsity {args.history_sparsity} is not one of "
                             f"--sparsities {args.sparsities}")
    os.makedirs(args.output_dir, exist_ok=True)
    name = "digits" if args.model == "lenet300" else f"digits_{args.model}"
    if args.block_shape is not None:
        name += "_blocks{}x{}".format(*args.block_shape)
    prefix = os.path.join(args.output_dir, name)
    paths = {
        "markdown": prefix + "_comparison.md",
        "json": prefix + "_comparison.json",
        "accuracy_plot": prefix + "_accuracy.png",
        "layer_plot": prefix + "_dsr_layer_sparsity.png",
    }
    command = "tf-dsr " + shlex.join(argv)
    epochs = {m: comparison.method_epochs(m, args.epochs, args.double_static_epochs)
              for m in args.methods}
    config = {
        "model": args.model, "data": "digits", "methods": args.methods,
        "sparsities": args.sparsities, "num_seeds": args.seeds, "epochs": args.epochs,
        "double_static_epochs": args.double_static_epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "optimizer": "SGD, Nesterov momentum 0.9",
        "prune_target": args.prune_target, "period": args.period,
        "drop_fraction": args.drop_fraction,
        "stop_fraction": args.stop_fraction,
        "history_every": args.history_every or args.period, "num_train": args.num_train,
        "block_shape": None if args.block_shape is None else list(args.block_shape),
    }
    started = time.time()

    def write_json(results, finished):
        payload = {"command": command, "config": config, "epochs_per_method": epochs,
                   "finished": finished, "wall_seconds": round(time.time() - started, 1),
                   "results": results}
        with open(paths["json"], "w") as file:
            json.dump(payload, file, indent=1)

    results = []

    def on_result(result, index, total):
        results.append(result)
        sparsity = "-" if result["sparsity"] is None else f"{result['sparsity']:g}"
        print(f"[{index + 1}/{total}] {result['method']:<12} s={sparsity:<5} "
              f"seed={result['seed']} epochs={result['epochs']} "
              f"mask updates={result['num_mask_updates']}: "
              f"test accuracy {result['test_accuracy']:.4f} ({result['seconds']:.1f} s)",
              flush=True)
        write_json(results, finished=False)

    print(f"tf-dsr compare: {len(comparison.grid(args.methods, args.sparsities, args.seeds))} "
          f"runs; epochs per method {epochs}", flush=True)
    comparison.run_grid(
        args.methods, args.sparsities, args.seeds, args.epochs,
        data=lambda seed: _load_split(seed, args.num_train, flat=args.model == "lenet300"),
        model=args.model,
        double_static_epochs=args.double_static_epochs,
        history_every=args.history_every or args.period, on_result=on_result,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        prune_target=args.prune_target, period=args.period, stop_fraction=args.stop_fraction,
        drop_fraction=args.drop_fraction,
        block_shape=args.block_shape,
    )
    write_json(results, finished=True)
    title = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}[args.model] + " on the digits"
    if args.block_shape is not None:
        title += ", blocks of {}x{} (inputs x outputs)".format(*args.block_shape)
    table = report.format_markdown(results, title="### " + title)
    wall = time.time() - started
    with open(paths["markdown"], "w") as file:
        file.write(table)
        file.write(f"\nCommand: `{command}` ({wall / 60:.1f} min).\n")
    report.plot_accuracy(results, paths["accuracy_plot"], title=title)
    written = [paths["markdown"], paths["json"], paths["accuracy_plot"]]
    from tf_dsr.methods import get

    moving = [m for m in args.methods if get(m).moves_between_layers]
    if moving:
        report.plot_layer_sparsity(results, paths["layer_plot"],
                                   sparsity=args.history_sparsity, method=moving[0],
                                   title=f"Per-layer sparsity during {get(moving[0]).label} "
                                         "training")
        written.append(paths["layer_plot"])
    print()
    print(table)
    print(f"wall time {wall / 60:.1f} min; wrote " + ", ".join(written))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args, parser)
    if args.command == "compare":
        return compare(args, argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
