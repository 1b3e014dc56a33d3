"""What capturing the dense gradient costs per training step (issue 13).

`tf_dsr.dense_gradients.DenseGradients` hooks every sparse kernel; the
hook does nothing until `request()`. Three copies of each model (same
architecture, seed and data) are timed with `model.fit(...,
steps_per_epoch=N)` after a warm-up fit:

    sparse     tf_dsr layers, nothing attached (the reference)
    attached   DenseGradients attached, not requested (every step of a
               RigL run between two reallocations)
    requested  DenseGradients attached and requested for every step (the
               upper bound: a reallocation step, or capture left armed)

Variants are interleaved inside each repeat, in alternating order, so that
load from other processes hits all alike; printed are the median / min /
max ms per step, the ratio of medians to `sparse` and the paired ratio
(median over repeats of variant / sparse in the same repeat), for wall
time and for this process's CPU time (less blurred by other processes). The eager
cost of one `request()` + `release()` pair (what a callback pays once per
reallocation, outside the step) is timed at the end. Timings on a shared
machine are noisy, so each variant's train step is also traced and its
graph ops counted (top-level graph plus function bodies: `tf.cond`
branches live in the function library), a figure load cannot blur.

Models: LeNet-300-100 (784-300-100-10, 3 sparse kernels, batch 100), a
narrow MLP (16 SparseDense(64) layers: many small kernels, the worst case
for a fixed cost per kernel) and a small CNN (16x16x32 input, two
SparseConv2D(64, 3)), batch 100; each also with `jit_compile=True` unless
`--no-xla`.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/dense_gradient.py [--quick]
"""

import argparse
import os
import statistics
import sys
import time

# Measure this checkout's code, not a copy installed in site-packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_dsr  # noqa: E402
from tf_dsr.dense_gradients import DenseGradients  # noqa: E402
from tf_dsr.layers.find import find_sparse_kernels  # noqa: E402
from train_step import header  # noqa: E402
from train_step import lenet  # noqa: E402
from train_step import row  # noqa: E402

VARIANTS = ("sparse", "attached", "requested")


def cnn():
    inputs = keras.Input((16, 16, 32))
    h = tf_dsr.SparseConv2D(64, 3, padding="same", activation="relu",
                            sparsity=0.9, seed=1)(inputs)
    h = tf_dsr.SparseConv2D(64, 3, padding="same", activation="relu",
                            sparsity=0.9, seed=2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def narrow_mlp():
    # Worst case for a per-kernel fixed cost: many small kernels.
    model = keras.Sequential([keras.Input((64,))])
    for index in range(16):
        model.add(tf_dsr.SparseDense(64, activation="relu", sparsity=0.9, seed=index))
    model.add(keras.layers.Dense(10))
    return model


MODELS = {
    "LeNet-300-100": (lambda: lenet(True), (784,)),
    "MLP 16 x SparseDense(64)": (narrow_mlp, (64,)),
    "CNN 2 x SparseConv2D(64, 3)": (cnn, (16, 16, 32)),
}


def build(name, variant, jit_compile):
    keras.utils.set_random_seed(0)
    model = MODELS[name][0]()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    capture = None
    if variant != "sparse":
        capture = DenseGradients([pair for _, pair in find_sparse_kernels(model)])
        if variant == "requested":
            capture.request()
    return model, capture


def data(input_shape, steps, batch=100):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps * batch,) + input_shape).astype("float32")
    return x, rng.integers(0, 10, steps * batch).astype("int32")


def time_fit(model, x, y, steps):
    """Wall and process CPU seconds per step of one `fit`. CPU time counts
    only this process's threads, so other processes' load blurs it less."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=100, epochs=1, steps_per_epoch=steps,
              verbose=0, shuffle=False)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def count_ops(model, x, y):
    """Ops in the traced train step: its graph plus every function body."""
    step = tf.function(lambda: model.train_step((x[:100], y[:100])))
    graph_def = step.get_concrete_function().graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def bench(name, jit_compile, repeats, steps):
    header(f"{name}, batch 100, jit_compile={jit_compile}, {steps} steps per "
           f"fit, {repeats} repeats (ms per step)")
    x, y = data(MODELS[name][1], steps)
    runs = {variant: build(name, variant, jit_compile) for variant in VARIANTS}
    for model, _ in runs.values():  # warm-up: trace the train step
        time_fit(model, x, y, 2)
    wall = {variant: [] for variant in VARIANTS}
    cpu = {variant: [] for variant in VARIANTS}
    for repeat in range(repeats):
        order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            seconds, cpu_seconds = time_fit(runs[variant][0], x, y, steps)
            wall[variant].append(seconds)
            cpu[variant].append(cpu_seconds)
    for title, times in (("wall", wall), ("process CPU", cpu)):
        print(f"{title} time:")
        ref = row("sparse, nothing attached", times["sparse"], None)
        row("DenseGradients attached, idle", times["attached"], ref,
            "cost between reallocations", times["sparse"])
        row("DenseGradients requested", times["requested"], ref,
            "cost of a capturing step", times["sparse"])
    ops = {variant: count_ops(runs[variant][0], x, y) for variant in VARIANTS}
    print(f"graph ops in the train step: sparse {ops['sparse']}, attached "
          f"{ops['attached']} (+{ops['attached'] - ops['sparse']}); "
          f"{len(runs['attached'][1].variables)} sparse kernels")
    capture = runs["requested"][1]
    assert bool(capture.captured.numpy()), "the requested variant captured nothing"
    assert not bool(runs["attached"][1].captured.numpy())
    return capture


def time_request(capture, repeats=200):
    capture.release()
    t0 = time.perf_counter()
    for _ in range(repeats):
        capture.request()
        capture.release()
    per_pair = (time.perf_counter() - t0) / repeats
    print(f"\nrequest() + release(), eager: {per_pair * 1e3:.3f} ms per pair "
          f"({repeats} pairs)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats of 10 steps")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed fit")
    parser.add_argument("--no-xla", action="store_true")
    parser.add_argument("--only", choices=sorted(MODELS))
    args = parser.parse_args()
    repeats, steps = (3, 10) if args.quick else (args.repeats, args.steps)
    capture = None
    for name in [args.only] if args.only else MODELS:
        for jit_compile in (False,) if args.no_xla else (False, True):
            capture = bench(name, jit_compile, repeats, steps)
    time_request(capture)


if __name__ == "__main__":
    main()
