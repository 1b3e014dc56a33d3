"""`tf-dsr compare`: every method at every sparsity on the digits, with
its table, raw results and plots.

One dict of method options (`tf_dsr.app.options`) goes to every method,
each taking those its callback's constructor has. Every run's callback is
built and bound to a model of its run before the first run trains
(`tf_dsr.app.compare.check_runs`), so a value a method refuses is a usage
error naming the flag, not a failure an hour in.
"""

import json
import math
import os
import shlex
import time

from tf_dsr.app import options
from tf_dsr.methods import registry


def _load_split(seed, num_train=None, flat=True):
    from tf_dsr.app import data

    (x_train, y_train), test = data.load_digits(seed=seed, flat=flat)
    return data.subsample(x_train, y_train, num_train, seed), test


def _check_arguments(args, parser):
    """Usage errors for arguments that contradict each other, then for
    options a method refuses; returns the method options."""
    from tf_dsr.app import compare as comparison
    from tf_dsr.app.cli import QUICK

    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if len(set(args.sparsities)) != len(args.sparsities):
        parser.error(f"--sparsities must not repeat a value, got {args.sparsities}")
    if len(set(args.methods)) != len(args.methods):
        parser.error(f"--methods must not repeat a name, got {args.methods}")
    options.refuse_untaken(args, args.methods, parser)
    if args.history_sparsity is not None and args.history_sparsity not in args.sparsities:
        parser.error(f"--history-sparsity {args.history_sparsity} is not one of "
                     f"--sparsities {args.sparsities}")
    method_options = options.chosen(args, args.methods)
    (x_train, y_train), (_, y_test) = _load_split(0, args.num_train,
                                                  flat=args.model == "lenet300")
    try:
        comparison.check_runs(
            args.methods, args.sparsities, args.epochs,
            math.ceil(len(x_train) / args.batch_size), options=method_options,
            input_shape=x_train.shape[1:],
            num_classes=int(max(y_train.max(), y_test.max())) + 1, model=args.model,
            double_static_epochs=args.double_static_epochs,
            stop_fraction=args.stop_fraction, block_shape=args.block_shape)
    except comparison.RunError as error:
        options.usage_error(parser, f"{error.method} at sparsity {error.sparsity}",
                            method_options, error.error)
    return method_options


def _history_every(args, method_options):
    """--history-every, else the period (its first value if a schedule)."""
    period = method_options.get("period", options.DEFAULTS["period"])
    return args.history_every or (period[0] if isinstance(period, dict) else period)


def compare(args, argv, parser):
    """Runs `tf-dsr compare` with parsed `args` (`argv`: the command line,
    recorded in the results); returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_dsr.app import compare as comparison

    method_options = _check_arguments(args, parser)
    os.makedirs(args.output_dir, exist_ok=True)
    name = "digits" if args.model == "lenet300" else f"digits_{args.model}"
    if args.block_shape is not None:
        name += "_blocks{}x{}".format(*args.block_shape)
    prefix = os.path.join(args.output_dir, name)
    paths = {"markdown": prefix + "_comparison.md", "json": prefix + "_comparison.json",
             "accuracy_plot": prefix + "_accuracy.png",
             "layer_plot": prefix + "_dsr_layer_sparsity.png"}
    command = "tf-dsr " + shlex.join(argv)
    epochs = {m: comparison.method_epochs(m, args.epochs, args.double_static_epochs)
              for m in args.methods}
    history_every = _history_every(args, method_options)
    config = {
        "model": args.model, "data": "digits", "methods": args.methods,
        "sparsities": args.sparsities, "num_seeds": args.seeds, "epochs": args.epochs,
        "double_static_epochs": args.double_static_epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "optimizer": "SGD, Nesterov momentum 0.9",
        **{option: method_options.get(option) for option in options.takers(args.methods)},
        "stop_fraction": args.stop_fraction, "history_every": history_every,
        "num_train": args.num_train,
        "block_shape": None if args.block_shape is None else list(args.block_shape),
    }
    started = time.time()
    results = []

    def write_json(finished):
        payload = {"command": command, "config": config, "epochs_per_method": epochs,
                   "finished": finished, "wall_seconds": round(time.time() - started, 1),
                   "results": results}
        with open(paths["json"], "w") as file:
            json.dump(payload, file, indent=1)

    def on_result(result, index, total):
        results.append(result)
        _print_result(result, index, total)
        write_json(finished=False)

    print(f"tf-dsr compare: {len(comparison.grid(args.methods, args.sparsities, args.seeds))} "
          f"runs; epochs per method {epochs}", flush=True)
    comparison.run_grid(
        args.methods, args.sparsities, args.seeds, args.epochs,
        data=lambda seed: _load_split(seed, args.num_train, flat=args.model == "lenet300"),
        model=args.model, double_static_epochs=args.double_static_epochs,
        history_every=history_every, on_result=on_result, check=False,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        stop_fraction=args.stop_fraction, block_shape=args.block_shape,
        options=method_options,
    )
    write_json(finished=True)
    _write_report(args, results, paths, command, started)
    return 0


def _print_result(result, index, total):
    sparsity = "-" if result["sparsity"] is None else f"{result['sparsity']:g}"
    print(f"[{index + 1}/{total}] {result['method']:<12} s={sparsity:<5} "
          f"seed={result['seed']} epochs={result['epochs']} "
          f"mask updates={result['num_mask_updates']}: "
          f"test accuracy {result['test_accuracy']:.4f} ({result['seconds']:.1f} s)",
          flush=True)


def _write_report(args, results, paths, command, started):
    """Writes the markdown table and the plots; prints the table."""
    from tf_dsr.app import report

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
    moving = [m for m in args.methods if registry.get(m).moves_between_layers]
    if moving:
        report.plot_layer_sparsity(results, paths["layer_plot"],
                                   sparsity=args.history_sparsity, method=moving[0],
                                   title=f"Per-layer sparsity during "
                                         f"{registry.get(moving[0]).label} training")
        written.append(paths["layer_plot"])
    print()
    print(table)
    print(f"wall time {wall / 60:.1f} min; wrote " + ", ".join(written))
