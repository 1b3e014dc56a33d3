"""Training-step time of RigL and DSR with gradient growth (issue 13).

LeNet-300-100 (784-300-100-10, batch 100, s = 0.9, synthetic data, SGD
with momentum): seconds per step of `model.fit(..., steps_per_epoch=N)`
with each method's callback at period 100, so the time includes the
updates (one per 100 steps), the step before each update that captures
the dense gradient, and the callbacks' per-step bookkeeping. Variants are
interleaved inside each repeat; the table has the median / min / max, the
ratio of medians to plain Keras and the paired ratio (median over repeats
of this repeat / plain Keras in the same repeat).

Then the cost of one update on its own (`reallocate()` after a captured
step, median of repeats) for LeNet-300-100 and WRN-28-2 (the 24 sparse 3x3
convolutions, 1.45M weights), DSR (random growth), DSR with gradient
growth and RigL, and for WRN the amortised step ratio
(sparse step * 100 + update) / 100 / plain step.

Last, whole fits as a user runs them: `model.fit(x, y, epochs=E)` over
6,000 examples (60 steps per epoch) for E = 10 and a long fit (E = 50),
the callbacks reused after a warm-up fit, variants interleaved. The
per-fit cost is the intercept of fit time against epochs (two lengths),
so a fixed cost per `fit` call shows as a difference in that column; the
warm-up fit's time (first trace of the train step and of the update) is
printed as the one-time cost. Below the table, the floor: Keras' compiled
train function called alone (no fit loop, no callback) on the plain model
and on the one with tf_dsr's layers, paired, which no callback can go
under.

RigL runs with `end_step` far away so every update moves weights (a
drop fraction near 0.3, the start of its schedule: its most expensive
updates).

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/gradient_methods.py [--quick] [--only steps|updates|fits]
"""

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_dsr  # noqa: E402
from tf_dsr.app import latency  # noqa: E402
from train_step import compile_model  # noqa: E402
from train_step import data  # noqa: E402
from train_step import header  # noqa: E402
from train_step import lenet  # noqa: E402
from train_step import paired_ratio  # noqa: E402
from train_step import row  # noqa: E402
from train_step import time_fit  # noqa: E402
from train_step import wrn_28_2  # noqa: E402

PERIOD = 100
FAR = 10**9


def callbacks():
    return {
        "dsr": lambda: tf_dsr.DynamicReparam(prune_target=0.02, period=PERIOD,
                                             initial_threshold=0.01, seed=0),
        "dsr-gradient": lambda: tf_dsr.DynamicReparam(
            prune_target=0.02, period=PERIOD, initial_threshold=0.01, seed=0,
            growth="gradient"),
        "rigl": lambda: tf_dsr.RigL(drop_fraction=0.3, period=PERIOD, end_step=FAR, seed=0),
    }


def lenet_variants():
    """Plain Keras, tf_dsr layers without a callback, and one model per method."""
    variants = {"plain": (compile_model(lenet(False)), None),
                "sparse": (compile_model(lenet(True)), None)}
    for name, make in callbacks().items():
        variants[name] = (compile_model(lenet(True)), make())
    return variants


def bench_steps(repeats, steps):
    header(f"LeNet-300-100, batch 100, period {PERIOD}, {steps} steps per fit, "
           f"{repeats} repeats (ms per step, updates included)")
    keras.utils.set_random_seed(0)
    x, y = data((784,), steps)
    variants = lenet_variants()
    times = {name: [] for name in variants}
    for model, callback in variants.values():  # warm-up: traces, first update
        time_fit(model, x, y, steps, [callback] if callback else None)
    for _ in range(repeats):
        for name, (model, callback) in variants.items():
            times[name].append(time_fit(model, x, y, steps, [callback] if callback else None))
    ref = row("plain keras.layers.Dense", times["plain"], None)
    row("tf_dsr SparseDense, no callback", times["sparse"], ref, "", times["plain"])
    for name in callbacks():
        callback = variants[name][1]
        row(f"{name} (period {PERIOD})", times[name], ref,
            f"{int(callback.state.num_reallocations.numpy())} updates", times["plain"])


def time_epochs(model, x, y, epochs, callback):
    start = time.perf_counter()
    model.fit(x, y, batch_size=100, epochs=epochs, callbacks=[callback] if callback else None,
              verbose=0, shuffle=False)
    return time.perf_counter() - start


def bench_fits(repeats, short, long):
    keras.utils.set_random_seed(0)
    x, y = data((784,), 60)
    variants = lenet_variants()
    print(f"\n## Whole fits, LeNet-300-100, 60 steps per epoch, period {PERIOD}, "
          f"{repeats} repeats (seconds per fit; paired = median of variant / plain)", flush=True)
    first = {name: time_epochs(model, x, y, 2, callback)  # warm-up: traces, first update
             for name, (model, callback) in variants.items()}
    times = {(name, epochs): [] for name in variants for epochs in (short, long)}
    for _ in range(repeats):
        for epochs in (short, long):
            for name, (model, callback) in variants.items():
                times[(name, epochs)].append(time_epochs(model, x, y, epochs, callback))
    print(f"{'variant':<34} {'warm-up s':>9} {f'{short} ep s':>9} {'paired':>7} "
          f"{f'{long} ep s':>9} {'paired':>7} {'per-fit ms':>10}")
    for name in variants:
        cells = []
        for epochs in (short, long):
            mine = times[(name, epochs)]
            paired = paired_ratio(mine, times[("plain", epochs)])
            cells.append(f"{statistics.median(mine):9.3f} {paired:7.3f}")
        t_short, t_long = (statistics.median(times[(name, e)]) for e in (short, long))
        per_fit = t_short - short * (t_long - t_short) / (long - short)
        print(f"{name:<34} {first[name]:9.2f} {cells[0]} {cells[1]} {per_fit * 1e3:10.1f}",
              flush=True)
    bench_step_floor(variants["plain"][0], variants["sparse"][0],
                     (tf.constant(x[:100]), tf.constant(y[:100])))


def bench_step_floor(plain, sparse, batch, rounds=15, chunk_seconds=0.5):
    """Prints Keras' train function alone, plain Keras vs tf_dsr's layers,
    timed in interleaved rounds (`tf_dsr.app.latency`), one batch repeated."""
    runners = {}
    for name, model in (("plain", plain), ("sparse", sparse)):
        model.make_train_function()
        runners[name] = functools.partial(
            model.train_function, iter(tf.data.Dataset.from_tensors(batch).repeat()))
    times = latency.interleaved_times(runners, rounds, chunk_seconds)
    ratio = paired_ratio(times["sparse"], times["plain"])
    print(f"floor: the train function alone ({rounds} interleaved rounds, no fit loop, "
          f"no callback): plain {statistics.median(times['plain']) * 1e3:.3f} ms, "
          f"tf_dsr layers {statistics.median(times['sparse']) * 1e3:.3f} ms per step, "
          f"paired {ratio:.3f} (the masked products, forward and backward)", flush=True)


def update_cost(model, callback, x, y, repeats):
    """Median seconds of one `reallocate()` after a captured training step."""
    callback.set_model(model)
    seconds = []
    for index in range(repeats + 1):
        callback.request_gradients()
        model.train_on_batch(x, y)
        start = time.perf_counter()
        callback.reallocate()
        if index:  # the first call traces
            seconds.append(time.perf_counter() - start)
    return seconds


def bench_updates(repeats, wrn_steps):
    print(f"\n## One update (ms, median / min / max of {repeats}; after one captured step)",
          flush=True)
    print(f"{'model / method':<34} {'median ms':>10} {'min ms':>10} {'max ms':>10}")
    keras.utils.set_random_seed(0)
    results = {}
    for model_name, build, shape in (("LeNet-300-100", lenet, (784,)),
                                      ("WRN-28-2", wrn_28_2, (32, 32, 3))):
        x, y = data(shape, 1)
        for name, make in callbacks().items():
            model = compile_model(build(True))
            seconds = update_cost(model, make(), x, y, repeats)
            results[(model_name, name)] = statistics.median(seconds)
            print(f"{model_name + ' ' + name:<34} {statistics.median(seconds) * 1e3:10.1f} "
                  f"{min(seconds) * 1e3:10.1f} {max(seconds) * 1e3:10.1f}", flush=True)
    header(f"WRN-28-2, batch 100, {wrn_steps} steps per fit (ms per step), amortised "
           f"over period {PERIOD}")
    x, y = data((32, 32, 3), wrn_steps)
    plain, sparse = compile_model(wrn_28_2(False)), compile_model(wrn_28_2(True))
    times = {"plain": [], "sparse": []}
    for model in (plain, sparse):
        time_fit(model, x, y, 2, None)
    for _ in range(3):
        times["plain"].append(time_fit(plain, x, y, wrn_steps, None))
        times["sparse"].append(time_fit(sparse, x, y, wrn_steps, None))
    ref = row("plain Conv2D", times["plain"], None)
    row("tf_dsr SparseConv2D, no callback", times["sparse"], ref, "", times["plain"])
    for name in callbacks():
        update = results[("WRN-28-2", name)]
        amortised = [s + update / PERIOD for s in times["sparse"]]
        row(f"{name} + update/{PERIOD}", amortised, ref,
            f"update {update * 1e3:.1f} ms (captured step not included)", times["plain"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", choices=("steps", "updates", "fits"))
    args = parser.parse_args()
    repeats, steps, update_repeats, wrn_steps = (3, 200, 3, 3) if args.quick else (7, 300, 7, 5)
    if args.only in (None, "steps"):
        bench_steps(repeats, steps)
    if args.only in (None, "updates"):
        bench_updates(update_repeats, wrn_steps)
    if args.only in (None, "fits"):
        bench_fits(3 if args.quick else 5, 10, 30 if args.quick else 50)


if __name__ == "__main__":
    main()
