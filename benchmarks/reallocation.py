"""Latency of one DSR reallocation (issue 5, targets 2-4) and per-stage cost.

Subcommands (each prints a table of median / min / max over repeats, the
first calls excluded as warm-up):

    latency   one `DynamicReparam.reallocate()` on sparse kernels shaped like
              WRN-28-2 (24 3x3 convs, 1,451,520 weights) and ResNet-50
              (48 bottleneck convs + 2048x1000 Dense, 22,724,608 weights),
              s = 0.9, jit_compile=False; with `--xla` also jit_compile=True
              (in a subprocess with a timeout: compiling takes minutes).
    scaling   reallocation time vs sparse-parameter count (1..25M in 4
              tensors each), linear fit: slope ms/M, intercept, R^2.
    replicas  MirroredStrategy over 4 logical CPU devices vs 1 device.
    stages    is_finite / prune / share_out / grow / assemble on the
              ResNet-50 shapes (`--stages-model wrn` for WRN-28-2), each
              stage alone in its own tf.function (core functions only).
    histogram one RigL core update (`rigl_update`, two radix selects per
              tensor) on LeNet-300-100 and WRN-28-2 shapes with the radix
              histogram as `tf.math.bincount` (the default outside XLA)
              and as `unsorted_segment_sum` (the one before, kept for
              XLA), interleaved; same masks checked.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/reallocation.py all [--repeats 7]
    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/reallocation.py latency --xla --xla-timeout 120
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import tensorflow as tf

# Logical devices must exist before TensorFlow initialises its runtime.
_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration() for _ in range(4)]
)

# Measure this checkout's code, not a copy installed in site-packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import tf_dsr  # noqa: E402
from tf_dsr.core import reallocation as core  # noqa: E402
from tf_dsr.core.seeds import layer_seeds  # noqa: E402
from tf_dsr.core.selection import random_subset  # noqa: E402
from tf_dsr.core.sharing import share_out  # noqa: E402


def wrn_28_2_shapes():
    shapes = []
    cin = 16
    for width in (32, 64, 128):
        for block in range(4):
            shapes.append((3, 3, cin, width))
            shapes.append((3, 3, width, width))
            cin = width
    return shapes


def resnet50_shapes():
    shapes = []
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for _ in range(blocks):
            shapes += [(1, 1, cin, width), (3, 3, width, width), (1, 1, width, 4 * width)]
            cin = 4 * width
    shapes.append((2048, 1000))
    return shapes


def num_weights(shapes):
    total = 0
    for shape in shapes:
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


class Holder(keras.Model):
    """A model that only holds built sparse layers of the given kernel shapes."""

    def __init__(self, shapes, sparsity=0.9):
        super().__init__()
        self.sparse = []
        for i, shape in enumerate(shapes):
            if len(shape) == 4:
                layer = tf_dsr.SparseConv2D(
                    shape[3], shape[:2], sparsity=sparsity, seed=i, padding="same"
                )
                layer.build((None, 8, 8, shape[2]))
            else:
                layer = tf_dsr.SparseDense(shape[1], sparsity=sparsity, seed=i)
                layer.build((None, shape[0]))
            self.sparse.append(layer)
        self.built = True

    def call(self, x):
        return x


def make_callback(model, jit_compile):
    # prune_target 2% of active weights, threshold near the weights' scale so
    # every call prunes and regrows a realistic amount.
    cb = tf_dsr.DynamicReparam(
        prune_target=0.02, period=100, initial_threshold=0.01, seed=0,
        jit_compile=jit_compile,
    )
    cb.set_model(model)
    return cb


def time_calls(fn, repeats, warmup=1):
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - t0)
    return times


def row(name, times, ref=None, extra=""):
    med = statistics.median(times)
    ratio = f"{med / ref:7.3f}" if ref else "      -"
    print(
        f"{name:<42} {med * 1e3:10.1f} {min(times) * 1e3:10.1f} "
        f"{max(times) * 1e3:10.1f} {ratio}  {extra}",
        flush=True,
    )
    return med


def header(title):
    print(f"\n## {title}", flush=True)
    print(f"{'case':<42} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'ratio':>7}")


def realloc_times(shapes, jit_compile, repeats, warmup=1):
    model = Holder(shapes)
    cb = make_callback(model, jit_compile)
    t0 = time.perf_counter()
    cb.reallocate(step=1)
    first = time.perf_counter() - t0
    times = time_calls(lambda i: cb.reallocate(step=i + 2), repeats, warmup)
    return first, times, cb.last_report


def cmd_latency(args):
    header("latency: one DynamicReparam.reallocate(), s=0.9")
    targets = {"wrn": 15.0, "resnet50": 500.0}
    for name, shapes in (("wrn", wrn_28_2_shapes()), ("resnet50", resnet50_shapes())):
        n = num_weights(shapes)
        for jit in (False, True) if args.xla else (False,):
            label = f"{name} ({n:,} w) jit={jit}"
            if jit and not args.in_subprocess:
                # XLA compile of the 22.7M case can take minutes: own process,
                # hard timeout.
                cmd = [sys.executable, __file__, "latency-one", "--model", name,
                       "--jit", "--repeats", str(args.repeats)]
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True,
                                         timeout=args.xla_timeout)
                    lines = [l for l in out.stdout.splitlines() if l.startswith(name)]
                    print(lines[-1] if lines else f"{label:<42} failed: {out.stderr[-300:]}",
                          flush=True)
                except subprocess.TimeoutExpired:
                    print(f"{label:<42} skipped: compile+run exceeded "
                          f"{args.xla_timeout:.0f} s timeout", flush=True)
                continue
            first, times, report = realloc_times(shapes, jit, args.repeats)
            row(label, times, extra=f"first call {first:.1f} s; "
                f"target <= {targets[name]:.0f} ms; pruned {report.total_pruned}")


def cmd_latency_one(args):
    shapes = wrn_28_2_shapes() if args.model == "wrn" else resnet50_shapes()
    n = num_weights(shapes)
    first, times, report = realloc_times(shapes, args.jit, args.repeats)
    row(f"{args.model} ({n:,} w) jit={args.jit}", times,
        extra=f"first call (trace+compile) {first:.1f} s; pruned {report.total_pruned}")


def cmd_scaling(args):
    header("scaling: reallocate() vs sparse weights (4 equal Dense kernels), jit=False")
    xs, ys = [], []
    for millions in args.sizes:
        per = int(millions * 1e6 / 4)
        cols = 1000
        shapes = [(per // cols, cols)] * 4
        n = num_weights(shapes)
        _, times, _ = realloc_times(shapes, False, args.repeats)
        med = row(f"{n / 1e6:.2f}M", times)
        xs.append(n / 1e6)
        ys.append(med * 1e3)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    print(f"linear fit: {slope:.1f} ms per M weights, intercept {intercept:.1f} ms, "
          f"R^2 {1 - ss_res / ss_tot:.4f}")
    per_m = [y / x for x, y in zip(xs, ys)]
    print("ms per M at each size: " + ", ".join(f"{v:.1f}" for v in per_m))


def cmd_replicas(args):
    header("replicas: WRN-28-2 shapes, MirroredStrategy 4 logical CPUs vs 1 device")
    shapes = wrn_28_2_shapes()
    _, single, _ = realloc_times(shapes, False, args.repeats)
    ref = row("1 device (default strategy)", single)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = Holder(shapes)
        cb = make_callback(model, False)
    try:
        with strategy.scope():
            cb.reallocate(step=1)
            times = time_calls(lambda i: cb.reallocate(step=i + 2), args.repeats)
        row(f"MirroredStrategy x{len(devices)}", times, ref)
    except Exception as e:  # report, don't hide
        print(f"MirroredStrategy x{len(devices)} failed: {type(e).__name__}: {e}"[:400])


def random_kernels(shapes, sparsity=0.9):
    kernels, masks = [], []
    for i, shape in enumerate(shapes):
        mask = random_subset(tf.ones(shape, tf.bool),
                             int(round((1 - sparsity) * num_weights([shape]))),
                             tf.constant([i, 0], tf.int64))
        mask = tf.cast(mask, tf.float32)
        kernels.append(tf.random.stateless_normal(shape, [i, 1], stddev=0.02) * mask)
        masks.append(mask)
    return kernels, masks


def cmd_stages(args):
    shapes = (resnet50_shapes() if args.stages_model == "resnet50"
              else wrn_28_2_shapes())
    header(f"stages: {args.stages_model} shapes ({num_weights(shapes):,} w), core "
           "functions, each stage alone in its own tf.function")
    kernels, masks = random_kernels(shapes)
    threshold = tf.constant(0.01)
    n_active = sum(int(tf.reduce_sum(m)) for m in masks)

    def fn(f):
        return tf.function(f, autograph=False)

    @fn
    def read_only(ks, ms):
        return [tf.reduce_sum(k) + tf.reduce_sum(m) for k, m in zip(ks, ms)]

    @fn
    def finite(ks):
        return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(k)) for k in ks]))

    @fn
    def prune_only(ks, ms):
        out = [core.prune(k, m, threshold) for k, m in zip(ks, ms)]
        return ([tf.not_equal(m, 0) & ~p.pruned for p, m in zip(out, ms)],
                [p.pruned for p in out],
                tf.stack([p.num_active for p in out]),
                tf.stack([p.num_pruned for p in out]))

    @fn
    def share(total, weights, capacity):
        return share_out(total, weights, capacity)

    @fn
    def philox_keys(ms, step):
        # The seed is an argument: with a constant seed Grappler would fold
        # the draw into a constant and time nothing.
        return [tf.reduce_max(tf.random.stateless_uniform(
            [m.shape.num_elements()], seed=tf.stack([step, i]), minval=None,
            maxval=None, dtype=tf.int32, alg="philox"))
            for i, m in enumerate(ms)]

    # Seeds and steps are arguments throughout: from constants Grappler
    # would fold the random draws into constants and time nothing.
    @fn
    def grow_all(ms, pruned, shares, num_free, num_pruned, step):
        seeds = layer_seeds(0, step, len(ms))
        return [core.grow(tf.equal(m, 0), shares[i], seeds[i],
                          fallback=p, num_candidates=num_free[i],
                          num_fallback=num_pruned[i])
                for i, (m, p) in enumerate(zip(ms, pruned))]

    @fn
    def assemble(ks, ms, surv, grown):
        return ([tf.cast(s | g, m.dtype) for s, g, m in zip(surv, grown, ms)],
                [tf.where(s, k, tf.zeros_like(k)) for s, k in zip(surv, ks)])

    @fn
    def whole(ks, ms, step):
        r = core.reallocate(ks, ms, threshold, int(0.02 * n_active), 0.1, 0, step)
        return r.kernels, r.masks, r.num_grown

    surv, pruned, num_active, num_pruned = prune_only(kernels, masks)
    sizes = tf.constant([num_weights([s]) for s in shapes], tf.int64)
    num_free = sizes - num_active
    shares = share(tf.reduce_sum(num_pruned), num_active - num_pruned, num_free)
    grown = grow_all(masks, pruned, shares, num_free, num_pruned,
                     tf.constant(1, tf.int64))
    stages = [
        ("read kernels+masks (floor)", lambda i: read_only(kernels, masks)),
        ("is_finite check", lambda i: finite(kernels)),
        ("prune + counts", lambda i: prune_only(kernels, masks)),
        ("share_out", lambda i: share(tf.reduce_sum(num_pruned),
                                      num_active - num_pruned, num_free)),
        ("  Philox keys alone (part of grow)",
         lambda i: philox_keys(masks, tf.constant(i, tf.int64))),
        ("grow (random_subset per tensor)",
         lambda i: grow_all(masks, pruned, shares, num_free, num_pruned,
                            tf.constant(i, tf.int64))),
        ("new masks + where(kernels)", lambda i: assemble(kernels, masks, surv, grown)),
        ("core.reallocate whole",
         lambda i: whole(kernels, masks, tf.constant(i, tf.int64))),
    ]
    whole_med = None
    results = []
    for name, f in stages:
        times = time_calls(f, args.repeats, warmup=2)
        results.append((name, times))
        if name.startswith("core.reallocate"):
            whole_med = statistics.median(times)
    for name, times in results:
        row(name, times, whole_med)
    print(f"pruned {int(tf.reduce_sum(num_pruned))} of {n_active} active; "
          "ratio = stage median / whole median")


def _segment_sum_histogram(bucket_ids, num_buckets):
    # The histogram before bincount (and still under XLA).
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(bucket_ids, tf.int32), bucket_ids, num_buckets + 1)
    return tf.cast(counts[:-1], tf.int64)


def cmd_histogram(args):
    from tf_dsr.core import selection
    from tf_dsr.core.rigl import rigl_update

    header("histogram: one rigl_update (drop_fraction 0.3), bincount vs segment sum")
    lenet = [(784, 300), (300, 100), (100, 10)]
    implementations = {"bincount": selection._histogram,
                       "unsorted_segment_sum": _segment_sum_histogram}
    for name, shapes in (("LeNet-300-100", lenet), ("WRN-28-2", wrn_28_2_shapes())):
        kernels, masks = random_kernels(shapes)
        gradients = [tf.random.stateless_normal(k.shape, seed=[7, i])
                     for i, k in enumerate(kernels)]
        functions, results = {}, {}
        for label, histogram in implementations.items():
            # Each implementation traced on its own: the per-shape functions
            # are cached by shape, so the cache is emptied in between.
            selection._histogram = histogram
            selection._TRACED.clear()
            # Tensors are arguments: captured constants would be folded.
            functions[label] = tf.function(
                lambda ks, ms, gs, step: rigl_update(list(ks), list(ms), list(gs), 0.3, 0,
                                                     step).masks,
                autograph=False)
            results[label] = [m.numpy() for m in functions[label](
                kernels, masks, gradients, tf.constant(3, tf.int64))]
        selection._histogram = implementations["bincount"]
        same = all((a == b).all() for a, b in zip(*results.values()))
        times = {label: [] for label in functions}
        for i in range(args.repeats):
            for label, fn in functions.items():
                t0 = time.perf_counter()
                fn(kernels, masks, gradients, tf.constant(10 + i, tf.int64))[0].numpy()
                times[label].append(time.perf_counter() - t0)
        ref = statistics.median(times["unsorted_segment_sum"])
        for label in functions:
            row(f"{name} {label}", times[label], ref,
                "same masks" if same else "MASKS DIFFER")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["all", "latency", "latency-one",
                                            "scaling", "replicas", "stages",
                                            "histogram"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--xla-timeout", type=float, default=150.0)
    parser.add_argument("--model", default="wrn")
    parser.add_argument("--stages-model", default="resnet50",
                        choices=["resnet50", "wrn"])
    parser.add_argument("--xla", action="store_true",
                        help="also time jit_compile=True (compiles for minutes)")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 2, 5, 10, 25])
    args = parser.parse_args()
    args.in_subprocess = args.command == "latency-one"
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, repeats={args.repeats}")
    commands = {"latency": cmd_latency, "latency-one": cmd_latency_one,
                "scaling": cmd_scaling, "replicas": cmd_replicas, "stages": cmd_stages,
                "histogram": cmd_histogram}
    if args.command == "all":
        for name in ("latency", "scaling", "replicas", "stages"):
            commands[name](args)
    else:
        commands[args.command](args)


if __name__ == "__main__":
    main()
