"""Training-step time: plain Keras layers vs tf_dsr layers (issue 5, target 1).

For LeNet-300-100 (784-300-100-10, batch 100) and WRN-28-2 (32x32x3,
batch 100; SparseConv2D for the 24 3x3 residual convs, plain Conv2D/Dense
for the stem, the 1x1 shortcuts and the classifier), synthetic data, SGD
with momentum, times `model.fit(..., steps_per_epoch=N)` after a warm-up
fit and prints the median / min / max seconds per step over repeats, with
the ratio to plain Keras. Variants are interleaved inside each repeat so
that load from other processes hits all of them alike.

Variants:
    plain     keras.layers.Dense / Conv2D
    sparse    tf_dsr layers at s = 0.9, no callback
    hook      tf_dsr layers + a callback with an empty on_train_batch_end
              (LeNet only: what Keras' synchronous batch hooks cost)
    dsr       tf_dsr layers + DynamicReparam(period=100) inside fit
              (LeNet: one reallocation per 100 timed steps, measured
              directly).
For WRN-28-2, 100 steps per repeat is too slow on 2 CPU cores, so the
reallocation is timed separately with `DynamicReparam.reallocate()` on the
same model and amortised: (sparse step * 100 + reallocation) / 100.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/train_step.py [--quick]
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

import tf_dsr  # noqa: E402


def lenet(sparse):
    dense = (lambda u, **kw: tf_dsr.SparseDense(u, sparsity=0.9, seed=u, **kw)) if sparse \
        else keras.layers.Dense
    return keras.Sequential([
        keras.Input((784,)),
        dense(300, activation="relu"),
        dense(100, activation="relu"),
        dense(10),
    ])


def wrn_28_2(sparse):
    counter = [0]

    def conv3(filters, strides=1):
        counter[0] += 1
        if sparse:
            return tf_dsr.SparseConv2D(filters, 3, strides=strides, padding="same",
                                       use_bias=False, sparsity=0.9, seed=counter[0])
        return keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                   use_bias=False)

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    cin = 16
    for group, width in enumerate((32, 64, 128)):
        for block in range(4):
            strides = 2 if (block == 0 and group > 0) else 1
            h = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
            shortcut = x
            if cin != width or strides != 1:
                shortcut = keras.layers.Conv2D(width, 1, strides=strides,
                                               use_bias=False)(h)
            y = conv3(width, strides)(h)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
            y = conv3(width)(y)
            x = keras.layers.Add()([shortcut, y])
            cin = width
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def data(input_shape, num_batches, batch=100):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_batches * batch,) + input_shape).astype("float32")
    y = rng.integers(0, 10, num_batches * batch).astype("int32")
    return x, y


class EmptyBatchHook(keras.callbacks.Callback):
    """A callback whose `on_train_batch_end` does nothing.

    Keras dispatches batch-end hooks synchronously, converting the logs to
    Python numbers after every step, as soon as any callback defines one.
    DynamicReparam must (it checks the step count after each batch), so
    this variant shows how much of its overhead is that dispatch alone.
    """

    def on_train_batch_end(self, batch, logs=None):
        pass


def make_dsr():
    return tf_dsr.DynamicReparam(prune_target=0.02, period=100,
                                 initial_threshold=0.01, seed=0)


def time_fit(model, x, y, steps, callbacks):
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=100, epochs=1, steps_per_epoch=steps,
              callbacks=callbacks, verbose=0, shuffle=False)
    return (time.perf_counter() - t0) / steps


def paired_ratio(times, ref_times):
    """Median over repeats of (this repeat / reference in the same repeat)."""
    return statistics.median(t / r for t, r in zip(times, ref_times))


def row(name, times, ref, target="", ref_times=None):
    """Prints one variant; `ratio` is median / reference median and `paired`
    the median over repeats of (this repeat / reference in the same repeat),
    which cancels load that drifts between repeats."""
    med = statistics.median(times)
    ratio = f"{med / ref:7.3f}" if ref else "      -"
    paired = "      -"
    if ref_times is not None:
        paired = f"{paired_ratio(times, ref_times):7.3f}"
    print(f"{name:<34} {med * 1e3:10.2f} {min(times) * 1e3:10.2f} "
          f"{max(times) * 1e3:10.2f} {ratio} {paired}  {target}", flush=True)
    return med


def header(title):
    print(f"\n## {title}", flush=True)
    print(f"{'variant':<34} {'median ms':>10} {'min ms':>10} {'max ms':>10} "
          f"{'ratio':>7} {'paired':>7}")


def bench_lenet(repeats, steps):
    header(f"LeNet-300-100, batch 100, {steps} steps per fit, {repeats} repeats "
           "(ms per step)")
    keras.utils.set_random_seed(0)
    x, y = data((784,), steps)
    models = {
        "plain": (compile_model(lenet(False)), None),
        "sparse": (compile_model(lenet(True)), None),
        "hook": (compile_model(lenet(True)), EmptyBatchHook()),
        "dsr": (compile_model(lenet(True)), make_dsr()),
    }
    times = {k: [] for k in models}
    for name, (model, cb) in models.items():  # warm-up: trace + 1st realloc
        time_fit(model, x, y, steps, [cb] if cb else None)
    for _ in range(repeats):
        for name, (model, cb) in models.items():
            times[name].append(time_fit(model, x, y, steps, [cb] if cb else None))
    ref = row("plain keras.layers.Dense", times["plain"], None)
    row("tf_dsr SparseDense, no realloc", times["sparse"], ref, "target <= 1.03",
        times["plain"])
    row("tf_dsr + empty batch-end callback", times["hook"], ref,
        "Keras' cost of any batch hook", times["plain"])
    row("tf_dsr + DynamicReparam(100)", times["dsr"], ref,
        f"target <= 1.05; {models['dsr'][1].state.num_reallocations.numpy()} reallocs",
        times["plain"])


def bench_wrn(repeats, steps, realloc_repeats):
    header(f"WRN-28-2, 32x32x3, batch 100, {steps} steps per fit, {repeats} "
           "repeats (ms per step)")
    keras.utils.set_random_seed(0)
    x, y = data((32, 32, 3), steps)
    plain = compile_model(wrn_28_2(False))
    sparse = compile_model(wrn_28_2(True))
    print(f"params: plain {plain.count_params():,}; sparse kernels "
          f"{sum(int(np.prod(l.kernel.shape)) for l in tf_dsr.layers.find_sparse_layers(sparse)):,}",
          flush=True)
    times = {"plain": [], "sparse": []}
    for model in (plain, sparse):
        time_fit(model, x, y, 2, None)
    for _ in range(repeats):
        times["plain"].append(time_fit(plain, x, y, steps, None))
        times["sparse"].append(time_fit(sparse, x, y, steps, None))
    cb = make_dsr()
    cb.set_model(sparse)
    cb.reallocate()  # trace
    realloc = []
    for _ in range(realloc_repeats):
        t0 = time.perf_counter()
        cb.reallocate()
        realloc.append(time.perf_counter() - t0)
    ref = row("plain Conv2D", times["plain"], None)
    row("tf_dsr SparseConv2D, no realloc", times["sparse"], ref, "target <= 1.03",
        times["plain"])
    r = statistics.median(realloc)
    amort = [s + r / 100 for s in times["sparse"]]
    row("sparse + realloc/100 (amortised)", amort, ref,
        f"target <= 1.05; realloc median {r * 1e3:.1f} ms "
        f"(min {min(realloc) * 1e3:.1f}, max {max(realloc) * 1e3:.1f}, n={len(realloc)})",
        times["plain"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and WRN steps (about 1.5 minutes)")
    parser.add_argument("--only", choices=["lenet", "wrn"])
    parser.add_argument("--repeats", type=int, help="LeNet repeats (WRN: half)")
    parser.add_argument("--lenet-steps", type=int, help="steps per LeNet fit")
    parser.add_argument("--wrn-steps", type=int, help="steps per WRN fit")
    args = parser.parse_args()
    if args.quick:
        lenet_cfg, wrn_cfg = [5, 100], [3, 3, 5]
    else:
        lenet_cfg, wrn_cfg = [9, 200], [5, 5, 7]
    if args.repeats:
        lenet_cfg[0], wrn_cfg[0] = args.repeats, max(3, args.repeats // 2)
    if args.lenet_steps:
        lenet_cfg[1] = args.lenet_steps
    if args.wrn_steps:
        wrn_cfg[1] = args.wrn_steps
    if args.only != "wrn":
        bench_lenet(*lenet_cfg)
    if args.only != "lenet":
        bench_wrn(*wrn_cfg)


if __name__ == "__main__":
    main()
