"""`tf-dsr train`: one sparse model on the bundled digits, offline.

The method's callback is the registry's (`tf_dsr/methods/registry.py`),
built from the option flags the method takes (`tf_dsr.app.options`) and
bound to the model before training starts, so that a value its constructor
or its model check refuses is a usage error naming the flag.
"""

import functools
import math
import os
import tempfile

from tf_dsr.app import options
from tf_dsr.methods import registry
from tf_dsr.methods.registry import Run


def train(args, parser):
    """Runs `tf-dsr train` with parsed `args`; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options.refuse_untaken(args, [args.method], parser)
    _check_targets(args, parser)
    import keras

    from tf_dsr.app import data

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = data.load_digits(
        seed=args.seed, flat=args.model == "lenet300"
    )
    model, builder = _build(args, x_train.shape[1:], parser)
    method_options = options.chosen(args, [args.method])
    reparam = _method_callback(args, model, len(x_train), method_options, parser)
    label = registry.get(args.method).label
    blocks = "" if args.block_shape is None else (
        f", blocks of {args.block_shape[0]}x{args.block_shape[1]}")
    knobs = options.describe(args.method, method_options)
    print(f"tf-dsr: {model.name} on digits ({len(x_train)} train / {len(x_test)} test), "
          f"{label}, sparsity {args.sparsity}{blocks}{', ' + knobs if knobs else ''}")
    _train_and_report(args, model, reparam, label, (x_train, y_train), (x_test, y_test))
    if args.export:
        from tf_dsr.saving.savedmodel import export

        export(model, args.export)
        print(f"exported a plain SavedModel to {args.export}")
    if args.export_tflite:
        _print_tflite_latency(model, builder, args.export_tflite)
    return 0


def _check_targets(args, parser):
    """Usage error, before anything is built, for an export target that
    cannot be written."""
    if args.export:
        problem = check_export_target(args.export)
        if problem:
            parser.error(f"--export {args.export}: {problem}")
    if args.export_tflite:
        problem = check_file_target(args.export_tflite)
        if problem:
            parser.error(f"--export-tflite {args.export_tflite}: {problem}")


def _build(args, input_shape, parser):
    """The compiled model of `--model` and its builder (for the dense twin)."""
    import keras

    from tf_dsr.models import lenet_300_100
    from tf_dsr.models import small_convnet

    builder = functools.partial(
        lenet_300_100 if args.model == "lenet300" else small_convnet,
        input_shape, 10, seed=args.seed)
    try:
        model = builder(sparsity=args.sparsity, block_shape=args.block_shape)
    except ValueError as error:
        parser.error(f"--block-shape: {error}")
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, builder


def _method_callback(args, model, num_train, method_options, parser):
    """The method's callback, bound to `model`; a usage error naming the
    flag when its constructor or its model check refuses a value."""
    from tf_dsr.app.compare import stop_epoch

    run = Run(args.sparsity, args.seed, args.epochs * math.ceil(num_train / args.batch_size))
    try:
        reparam = registry.make_callback(
            args.method, run, **method_options,
            stop_epoch=stop_epoch(args.epochs, args.stop_fraction))
        if reparam is not None:
            reparam.set_model(model)
    except (ValueError, TypeError) as error:
        options.usage_error(parser, args.method, method_options, error)
    return reparam


def _train_and_report(args, model, reparam, label, train, test):
    """Fits `model` and prints its masks, reallocations and accuracy."""
    from tf_dsr.counting import parameter_counts
    from tf_dsr.summary import sparsity_summary

    print("Initial masks:")
    print(sparsity_summary(model))
    model.fit(*train, epochs=args.epochs, batch_size=args.batch_size,
              callbacks=[] if reparam is None else [reparam], verbose=args.verbose)
    _, accuracy = model.evaluate(*test, verbose=0)
    counts = parameter_counts(model)
    print(f"\nFinal masks (after {label}):")
    print(sparsity_summary(model))
    if reparam is not None:
        report = reparam.last_report
        info = "".join(f", final {name}: {value:.3g}" for name, value in
                       (report.info.items() if report else ()))
        print(f"\nreallocations: {int(reparam.state.num_reallocations.numpy())}{info}")
    print(f"non-zero trainable parameters: {counts.num_params} of {counts.num_trainable}")
    print(f"test accuracy: {accuracy:.4f}")


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

    from tf_dsr.app import latency
    from tf_dsr.saving.tflite import tflite_ops
    from tf_dsr.saving.tflite import to_tflite

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flatbuffer = to_tflite(model, path, sparse_weights=True)
    densified = [str(w.message) for w in caught if "tf_dsr.to_tflite" in str(w.message)]
    for message in densified:
        print("warning: " + message)
    dense = to_tflite(builder(sparsity=None))
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
