"""Training-step time of each sparse layer against its Keras layer (issue 10).

For every layer of the sparse family, a small model `Input -> layer ->
pooling -> Dense(10)` is built twice, once with the Keras layer and once
with its tf_dsr counterpart at sparsity 0.9 (no callback), and
`model.fit(..., steps_per_epoch=N)` is timed after a warm-up fit. The two
variants are interleaved inside each repeat, so that load from other
processes hits both alike. Prints per layer the median ms per step of
each and the ratio of medians (target <= 1.05), plus the paired ratio
(median over repeats of sparse / Keras in the same repeat). Many short
repeats in alternating order: on a shared 2-core machine whole seconds run
at two speeds, and pairing adjacent fits cancels that.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/layer_step.py [--quick] [--only NAME ...]
"""

import argparse
import os
import statistics
import sys

# Measure this checkout's code, not a copy installed in site-packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_dsr  # noqa: E402
from train_step import header  # noqa: E402
from train_step import row  # noqa: E402
from train_step import time_fit  # noqa: E402

L = keras.layers

# name: (input shape without batch, Keras class, sparse class, args, kwargs)
LAYERS = {
    "Dense": ((512,), L.Dense, tf_dsr.SparseDense, (512,), {}),
    "EinsumDense": ((16, 256), L.EinsumDense, tf_dsr.SparseEinsumDense,
                    ("abc,cde->abde", (16, 8, 32)), {"bias_axes": "de"}),
    "Embedding": ((32,), L.Embedding, tf_dsr.SparseEmbedding, (2000, 64), {}),
    "Conv1D": ((64, 64), L.Conv1D, tf_dsr.SparseConv1D, (64, 5), {"padding": "same"}),
    "Conv2D": ((16, 16, 32), L.Conv2D, tf_dsr.SparseConv2D, (64, 3), {"padding": "same"}),
    "Conv3D": ((8, 8, 8, 8), L.Conv3D, tf_dsr.SparseConv3D, (16, 3), {"padding": "same"}),
    "Conv1DTranspose": ((32, 64), L.Conv1DTranspose, tf_dsr.SparseConv1DTranspose,
                        (64, 5), {"padding": "same"}),
    "Conv2DTranspose": ((16, 16, 32), L.Conv2DTranspose, tf_dsr.SparseConv2DTranspose,
                        (32, 3), {"padding": "same"}),
    "Conv3DTranspose": ((8, 8, 8, 8), L.Conv3DTranspose, tf_dsr.SparseConv3DTranspose,
                        (8, 3), {"padding": "same"}),
    "DepthwiseConv1D": ((64, 64), L.DepthwiseConv1D, tf_dsr.SparseDepthwiseConv1D,
                        (5,), {"padding": "same", "depth_multiplier": 2}),
    "DepthwiseConv2D": ((16, 16, 64), L.DepthwiseConv2D, tf_dsr.SparseDepthwiseConv2D,
                        (3,), {"padding": "same", "depth_multiplier": 2}),
    "SeparableConv1D": ((64, 64), L.SeparableConv1D, tf_dsr.SparseSeparableConv1D,
                        (128, 5), {"padding": "same"}),
    "SeparableConv2D": ((16, 16, 64), L.SeparableConv2D, tf_dsr.SparseSeparableConv2D,
                        (128, 3), {"padding": "same"}),
    "SimpleRNN": ((20, 64), L.SimpleRNN, tf_dsr.SparseSimpleRNN, (128,), {}),
    "GRU": ((20, 64), L.GRU, tf_dsr.SparseGRU, (128,), {}),
    "LSTM": ((20, 64), L.LSTM, tf_dsr.SparseLSTM, (128,), {}),
}


def model_for(name, sparse):
    input_shape, keras_class, sparse_class, args, kwargs = LAYERS[name]
    is_ids = keras_class is L.Embedding
    inputs = keras.Input(input_shape, dtype="int32" if is_ids else "float32")
    if sparse:
        layer = sparse_class(*args, sparsity=0.9, seed=0, **kwargs)
    else:
        layer = keras_class(*args, **kwargs)
    h = L.Flatten()(layer(inputs))
    model = keras.Model(inputs, L.Dense(10)(h))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data_for(name, steps, batch=100):
    input_shape, keras_class = LAYERS[name][:2]
    rng = np.random.default_rng(0)
    size = (steps * batch,) + input_shape
    if keras_class is L.Embedding:
        x = rng.integers(0, LAYERS[name][3][0], size=size).astype("int32")
    else:
        x = rng.standard_normal(size).astype("float32")
    return x, rng.integers(0, 10, steps * batch).astype("int32")


def bench(name, repeats, steps):
    keras.utils.set_random_seed(0)
    x, y = data_for(name, steps)
    models = {"keras": model_for(name, False), "sparse": model_for(name, True)}
    times = {key: [] for key in models}
    for model in models.values():  # warm-up: trace the train step
        time_fit(model, x, y, 2, None)
    for repeat in range(repeats):
        # Alternate which variant goes first, so that neither always runs
        # right after the other's allocations or in the same phase of load.
        order = list(models) if repeat % 2 == 0 else list(models)[::-1]
        for key in order:
            times[key].append(time_fit(models[key], x, y, steps, None))
    ref = row(f"keras.layers.{name}", times["keras"], None)
    row(f"tf_dsr.Sparse{name} (s=0.9)", times["sparse"], ref, "target <= 1.05",
        times["keras"])
    paired = statistics.median(s / k for s, k in zip(times["sparse"], times["keras"]))
    return statistics.median(times["sparse"]) / ref, paired


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats of 10 steps")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed fit")
    parser.add_argument("--only", nargs="+", choices=sorted(LAYERS))
    args = parser.parse_args()
    repeats, steps = (3, 10) if args.quick else (args.repeats, args.steps)
    ratios = {}
    for name in args.only or LAYERS:
        header(f"{name}, batch 100, {steps} steps per fit, {repeats} repeats "
               "(ms per step)")
        ratios[name] = bench(name, repeats, steps)
    print("\n## summary: sparse / Keras (target <= 1.05); ratio of medians, and the "
          "median of the ratios within a repeat (paired; steadier under load)")
    print(f"{'layer':<18} {'ratio':>6} {'paired':>7}")
    for name, (ratio, paired) in ratios.items():
        flag = "" if min(ratio, paired) <= 1.05 else "  above target"
        print(f"{name:<18} {ratio:6.3f} {paired:7.3f}{flag}")


if __name__ == "__main__":
    main()
