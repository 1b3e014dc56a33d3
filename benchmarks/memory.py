"""Peak memory of training with tf_dsr layers vs plain Keras layers (issue 5,
target 5).

Each run is a fresh Python process, so that allocator caches and other
configurations do not blur the figure; ops run one at a time (inter-op
parallelism 1), which makes the peak repeatable to about 2 MB. The child builds the
model (the same builders as `train_step.py`), records its resident set
size (RSS), runs `model.fit` for a few steps of synthetic data, and
reports the peak RSS (`resource.getrusage(...).ru_maxrss`, the high-water
mark of the process). `tf.config.experimental.get_memory_info` does not
support CPU devices, hence RSS.

Columns:
    before fit   RSS after imports, model build and data creation
    peak         highest RSS over the whole process
    spread       max - min of the peak over the runs
    fit growth   peak - before fit: what training adds (activations,
                 gradients, optimizer slots, the traced graph)
    vs plain     ratio of fit growth, and the peak difference in MB

A mask is one float32 buffer per sparse kernel, so the expected extra is
4 bytes per sparse weight (5.8 MB for WRN-28-2's 1,451,520) plus the
per-step `kernel * mask` product and its gradient, another one or two
kernel-sized transients.

The `mask-dtype` subcommand answers "would a smaller mask help?" without
changing the layers: it times `kernel * cast(mask)` forward and backward
for float32, uint8 and bool masks on WRN-28-2's largest kernel shape and
prints the bytes each mask dtype keeps resident.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/memory.py [all|fit|mask-dtype]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

_CONFIGS = {
    # name: (model, sparse, steps)
    "lenet-plain": ("lenet", False, 30),
    "lenet-tf_dsr": ("lenet", True, 30),
    "wrn-plain": ("wrn", False, 2),
    "wrn-tf_dsr": ("wrn", True, 2),
}


def _rss_mb():
    # Linux reports ru_maxrss in KiB; /proc gives the current value.
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(name):
    import tensorflow as tf

    # One op at a time: with parallel ops the set of live buffers, and so
    # the peak, depends on thread timing (runs differed by ~95 MB).
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_step  # noqa: E402  (imports keras, tf_dsr)

    model_name, sparse, steps = _CONFIGS[name]
    build = train_step.lenet if model_name == "lenet" else train_step.wrn_28_2
    shape = (784,) if model_name == "lenet" else (32, 32, 3)
    model = train_step.compile_model(build(sparse))
    x, y = train_step.data(shape, steps)
    before = _rss_mb()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=100, epochs=1, steps_per_epoch=steps,
              verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "before": before, "peak": peak,
                      "params": int(model.count_params()),
                      "seconds": seconds}))


def cmd_fit(args):
    print(f"\n## peak RSS of model.fit, fresh process per run, {args.runs} runs "
          "per configuration (median; spread = max - min of peak)", flush=True)
    print(f"{'configuration':<16} {'params':>10} {'before fit MB':>14} "
          f"{'peak MB':>9} {'spread':>7} {'fit growth MB':>14} {'vs plain':>24}")
    runs = {name: [] for name in _CONFIGS}
    for _ in range(args.runs):  # interleaved, so drifts hit all alike
        for name in _CONFIGS:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "child", "--config",
                 name], capture_output=True, text=True, timeout=args.timeout,
            )
            lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
            if not lines:
                print(f"{name:<16} failed: {out.stderr[-300:]}", flush=True)
                continue
            runs[name].append(json.loads(lines[-1]))
    summary = {}
    for name, results in runs.items():
        if not results:
            continue
        peak = statistics.median(r["peak"] for r in results)
        before = statistics.median(r["before"] for r in results)
        spread = max(r["peak"] for r in results) - min(r["peak"] for r in results)
        summary[name] = (peak, before)
        versus = "-"
        plain = summary.get(name.split("-")[0] + "-plain")
        if not name.endswith("plain") and plain is not None:
            versus = (f"x{(peak - before) / (plain[0] - plain[1]):.3f}, "
                      f"peak {peak - plain[0]:+.1f} MB")
        print(f"{name:<16} {results[0]['params']:>10,} {before:>14.1f} "
              f"{peak:>9.1f} {spread:>7.1f} {peak - before:>14.1f} {versus:>24}",
              flush=True)


def cmd_mask_dtype(args):
    import tensorflow as tf

    shape = (3, 3, 128, 128)  # WRN-28-2's largest sparse kernel
    print(f"\n## kernel * cast(mask) forward + backward, kernel {shape}, "
          f"{args.repeats} x 200 calls, dtypes interleaved", flush=True)
    print(f"{'mask dtype':<10} {'resident bytes/weight':>22} {'median us':>10} "
          f"{'min us':>8} {'ratio':>7}")
    kernel = tf.Variable(tf.random.normal(shape))
    base = tf.random.uniform(shape) < 0.1
    steps = {}
    for dtype in (tf.float32, tf.uint8, tf.bool):
        mask = tf.Variable(tf.cast(base, dtype), trainable=False)

        @tf.function(autograph=False)
        def step(mask=mask):
            total = tf.constant(0.0)
            for _ in range(200):
                with tf.GradientTape() as tape:
                    product = kernel * tf.cast(mask, tf.float32)
                    loss = tf.reduce_sum(product)
                total += tf.reduce_sum(tape.gradient(loss, kernel))
            return total

        step().numpy()
        steps[dtype] = step
    times = {dtype: [] for dtype in steps}
    for _ in range(args.repeats):
        for dtype, step in steps.items():
            t0 = time.perf_counter()
            step().numpy()
            times[dtype].append((time.perf_counter() - t0) / 200)
    ref = statistics.median(times[tf.float32])
    for dtype, ts in times.items():
        med = statistics.median(ts)
        print(f"{dtype.name:<10} {dtype.size:>22} {med * 1e6:>10.1f} "
              f"{min(ts) * 1e6:>8.1f} {med / ref:>7.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="all",
                        choices=["all", "fit", "mask-dtype", "child"])
    parser.add_argument("--config", choices=sorted(_CONFIGS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=2,
                        help="fresh processes per configuration")
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    if args.command == "child":
        _child(args.config)
        return
    if args.command in ("all", "fit"):
        cmd_fit(args)
    if args.command in ("all", "mask-dtype"):
        cmd_mask_dtype(args)


if __name__ == "__main__":
    main()
