"""Inference latency of exported sparse models: TFLite and SavedModel.

For LeNet-300-100 (784-300-100-10, BatchNorm folded by the converter)
dense, unstructured at sparsity 0.9, 0.95 and 0.99, and in 1x4 blocks
(`block_shape=(4, 1)`) at 0.9 and 0.95; and for a small MobileNet-style
conv net (3x3 stem, depthwise 3x3 + pointwise 1x1 blocks, global pooling)
dense and with its 1x1 convs sparse in blocks of 4 output channels
(`block_shape=(1, 4)`, the blocks XNNPack's sparse inference takes),
this script exports each model with `tf_dsr.to_tflite(...,
sparse_weights=True)` and `tf_dsr.export`, and measures the median
latency at batch 1 and batch 32 on one thread: the TFLite interpreter
(`num_threads=1`, its default XNNPack delegate) and the SavedModel's
`serve` (TensorFlow with one intra-op and one inter-op thread).

Measurements are interleaved (`tf_dsr.app.latency`): every round times a
chunk of calls of every configuration in turn, so that load from other
processes falls on all of them alike. Each row reports the median over
rounds of the per-call time, and the speed-up as the median over rounds
of the paired ratio dense / this (same round, same batch, same runtime).

The TFLite column also says which ops the converter emitted: a sparse
FULLY_CONNECTED runs on TFLite's sparse kernel; DENSIFY in front of an op
means the weight is stored sparse and densified at run time (dense speed).

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/inference.py [--rounds 15]
        [--output benchmarks/results/inference.md] [--json out.json]
    python benchmarks/inference.py --tiny   # seconds; what the tests run
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings


def _configure_threads():
    # Must run before TensorFlow starts its runtime.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


LENET_ROWS = (
    ("dense", None, None),
    ("unstructured", 0.9, None),
    ("unstructured", 0.95, None),
    ("unstructured", 0.99, None),
    ("1x4 blocks", 0.9, (4, 1)),
    ("1x4 blocks", 0.95, (4, 1)),
)
CONV_ROWS = (
    ("dense", None, None),
    ("1x1 convs in blocks of 4 outputs", 0.9, (1, 4)),
)


def lenet(sparsity, block_shape, tiny):
    import tf_dsr

    inputs = 64 if tiny else 784
    return tf_dsr.models.lenet_300_100(
        (inputs,), 10, sparsity=sparsity, seed=0, block_shape=block_shape,
        width_multiplier=0.2 if tiny else 1.0)


def mobilenet_style(sparsity, block_shape, tiny):
    """3x3 stride-2 stem, depthwise/pointwise blocks, global pooling, Dense.

    The shape XNNPack's sparse inference looks for (MobileNet v1): its
    1x1 convolutions are the sparse layers; the stem, the depthwise convs
    and the classifier stay dense, as in the pruning guides.
    """
    import keras

    import tf_dsr

    size, widths = (16, (8, 16, 16)) if tiny else (96, (32, 64, 64, 128, 128, 256, 256))
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    channels = 16
    for i, width in enumerate(widths):
        strides = 2 if width > channels and i > 0 else 1
        x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                         name=f"depthwise_{i}")(x)
        x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
        if sparsity is None:
            pointwise = keras.layers.Conv2D(width, 1, use_bias=False, name=f"pointwise_{i}")
        else:
            pointwise = tf_dsr.SparseConv2D(width, 1, use_bias=False, sparsity=sparsity,
                                            block_shape=block_shape, seed=i,
                                            name=f"pointwise_{i}")
        x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(pointwise(x)))
        channels = width
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x),
                       name="mobilenet_style")


def _ops_summary(flatbuffer):
    from tf_dsr.saving.tflite import tflite_ops

    ops = [op for op, _, _ in tflite_ops(flatbuffer)]
    densify = ops.count("DENSIFY")
    fc = ops.count("FULLY_CONNECTED")
    conv = ops.count("CONV_2D")
    text = f"{fc} FC" if fc else ""
    text += (", " if text and conv else "") + (f"{conv} CONV_2D" if conv else "")
    return text + (f", {densify} DENSIFY" if densify else ", no DENSIFY"), densify


class _SavedModelRunner:
    def __init__(self, loaded, batch, input_shape):
        import numpy as np
        import tensorflow as tf

        self.loaded = loaded  # keep the variables alive
        x = np.random.default_rng(0).standard_normal((batch,) + input_shape)
        self.x = tf.constant(x.astype("float32"))

    def __call__(self):
        self.loaded.serve(self.x)


def run(tiny=False, rounds=15, chunk_seconds=0.02):
    """Builds, exports and times every configuration; returns result rows."""
    import tensorflow as tf

    import tf_dsr
    from tf_dsr.app import latency

    batches = (1, 32)
    configs = []
    for family, build, rows in (("LeNet-300-100", lenet, LENET_ROWS),
                                ("MobileNet-style", mobilenet_style, CONV_ROWS)):
        for weights, sparsity, block_shape in rows:
            configs.append({"model": family, "weights": weights, "sparsity": sparsity,
                            "block_shape": block_shape,
                            "keras": build(sparsity, block_shape, tiny)})
    runners = {}
    tmp = tempfile.TemporaryDirectory()
    for i, config in enumerate(configs):
        model = config.pop("keras")
        with warnings.catch_warnings():
            # The densify warnings are what the ops column shows.
            warnings.simplefilter("ignore")
            flatbuffer = tf_dsr.to_tflite(model, sparse_weights=config["sparsity"] is not None)
        config["tflite_ops"], config["num_densify"] = _ops_summary(flatbuffer)
        config["tflite_bytes"] = len(flatbuffer)
        path = os.path.join(tmp.name, f"model_{i}")
        tf_dsr.export(model, path, verbose=False)
        loaded = tf.saved_model.load(path)
        shape = tuple(model.inputs[0].shape[1:])
        for batch in batches:
            runners[(i, "tflite", batch)] = latency.TFLiteRunner(flatbuffer, batch)
            runners[(i, "saved_model", batch)] = _SavedModelRunner(loaded, batch, shape)
    times = latency.interleaved_times(runners, rounds, chunk_seconds)
    dense_of = {}
    for i, config in enumerate(configs):
        if config["weights"] == "dense":
            dense_of[config["model"]] = i
    for i, config in enumerate(configs):
        base = dense_of[config["model"]]
        for runtime in ("tflite", "saved_model"):
            for batch in batches:
                median, speedup = latency.median_and_speedup(
                    times[(i, runtime, batch)], times[(base, runtime, batch)])
                config[f"{runtime}_b{batch}_us"] = median * 1e6
                config[f"{runtime}_b{batch}_speedup"] = speedup
    tmp.cleanup()
    return configs


def format_table(rows):
    head = ("| model | weights | sparsity | TFLite ops | TFLite b1 (us) | x dense "
            "| TFLite b32 (us) | x dense | SavedModel b1 (us) | x dense "
            "| SavedModel b32 (us) | x dense |")
    lines = [head, "|" + " --- |" * 12]
    for r in rows:
        sparsity = "-" if r["sparsity"] is None else f"{r['sparsity']:g}"
        cells = [r["model"], r["weights"], sparsity, r["tflite_ops"]]
        for runtime in ("tflite", "saved_model"):
            for batch in (1, 32):
                cells.append(f"{r[f'{runtime}_b{batch}_us']:.1f}")
                cells.append(f"{r[f'{runtime}_b{batch}_speedup']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="tiny models, 2 rounds: checks the script runs (seconds)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--chunk-seconds", type=float, default=0.02,
                        help="time per chunk of calls of one configuration in a round")
    parser.add_argument("--output", default=None, help="also write the table (markdown)")
    parser.add_argument("--json", default=None, help="also write every row as JSON")
    args = parser.parse_args(argv)
    _configure_threads()
    rounds, chunk = (2, 0.002) if args.tiny else (args.rounds, args.chunk_seconds)
    load = os.getloadavg()[0]
    started = time.time()
    rows = run(tiny=args.tiny, rounds=rounds, chunk_seconds=chunk)
    table = format_table(rows)
    command = "python benchmarks/inference.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:])
    footer = (f"\n{rounds} interleaved rounds, one thread, load average {load:.2f} at "
              f"start, {time.time() - started:.0f} s. `x dense`: median over rounds of "
              f"the paired ratio dense / this.\nCommand: `{command.strip()}`")
    print(table + footer)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n" + footer + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "load_average": load, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
