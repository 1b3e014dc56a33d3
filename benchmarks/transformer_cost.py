"""Training cost of a sparse GPT-2-like keras-hub model vs the same dense
model (issue 20, item 6): step time and peak memory.

The model is keras-hub's `GPT2CausalLM` (`preprocessor=None`) on a
`GPT2Backbone` (default: 4 layers, hidden 256, 4 heads, intermediate
1024, vocabulary 8,000, sequence 128, dropout 0), trained with Adam on
random token data (next-token labels). "sparse" is the same model (same
seed, same initial weights) after `tf_dsr.sparsify(lm, 0.9, seed=0)`:
every projection and the tied token table (`ReversibleEmbedding`) get a
mask; the position table stays dense.

Step time: whole `model.fit` calls of `--steps` steps (batch `--batch`),
the sparse one with `tf_dsr.DynamicReparam(period=--period)`, so any
`--steps` consecutive steps include exactly `steps // period`
reallocations (checked and printed). One warm-up fit per model first
(tracing), plus one `reallocate()` of the callback (tracing the
reallocation), so that tracing is excluded for both. Repeats alternate
plain, sparse, plain, sparse, ... so that load from other processes
hits both alike. Columns: median / min / max wall ms per step, the
median process CPU ms per step (all threads; less sensitive to other
processes sharing the cores than wall time), `ratio` = sparse median /
plain median, and `paired` = median over repeats of (sparse / plain of
the same repeat); one line per repeat is printed as it ends. Below the
table: the CPU-time ratios, and the reallocation alone
(`DynamicReparam.reallocate()` timed directly) with its share per step.
On a loaded machine (other processes on the cores) the wall times of
single fits scatter widely; the CPU-time ratio is then the steadier
figure.

Peak memory: one fresh process per variant and run (`--memory-runs`,
interleaved), as `memory.py` does: ops one at a time (inter-op
parallelism 1) for a repeatable peak; the child records the resident
set size (RSS) after imports, again after building the model and the
data, runs one `fit` of `--memory-steps` steps (the sparse one with
`DynamicReparam(period=--memory-period)`, so reallocations happen inside
it), and reports the peak RSS (`ru_maxrss`, the high-water mark). Columns:
`after imports`, `before fit`, `peak`, `training` = peak - after imports
(model, data, activations, gradients, Adam slots, traced graphs),
`fit growth` = peak - before fit; `vs plain` is the ratio of `training`
and, in brackets, of `fit growth`.

`--quick` (tiny sizes, for the smoke test) starts both memory children
at once, alongside the timing: it checks that everything runs and
prints, and measures nothing.

Targets (issue 20): sparse step <= 1.10 x plain, peak training memory
<= 1.25 x plain.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/transformer_cost.py [--quick]
        [--layers 4 --hidden 256 --heads 4 --intermediate 1024 --vocab 8000
         --seq 128 --batch 8 --steps 200 --period 100 --repeats 5]
        [--only time|memory]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

# Measure this checkout's code, not a copy installed in site-packages.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_QUICK = dict(layers=1, hidden=32, heads=2, intermediate=64, vocab=256, seq=16,
              batch=4, steps=8, period=4, repeats=2, memory_runs=1,
              memory_steps=4, memory_period=2)
_FULL = dict(layers=4, hidden=256, heads=4, intermediate=None, vocab=8000,
             seq=128, batch=8, steps=200, period=100, repeats=5, memory_runs=2,
             memory_steps=10, memory_period=5)
VARIANTS = ("plain", "sparse")
SPARSITY = 0.9


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _imports():
    if _REPO not in sys.path:
        sys.path.insert(0, _REPO)
    import keras  # noqa: F401
    import keras_hub  # noqa: F401

    import tf_dsr  # noqa: F401


def build(args, sparse):
    """The GPT-2-like causal LM, compiled; sparse = `tf_dsr.sparsify` of
    the same model (the same seed gives the same initial weights)."""
    import keras
    import keras_hub

    import tf_dsr

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.hidden, intermediate_dim=args.intermediate,
        max_sequence_length=args.seq, dropout=0.0,
    )
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    if sparse:
        with warnings.catch_warnings():
            # The report of what stays dense (the position table).
            warnings.simplefilter("ignore")
            tf_dsr.sparsify(lm, SPARSITY, seed=0)
    lm.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    return lm


def data(args, steps):
    """Random tokens: `steps` batches of inputs and next-token labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, args.vocab, (steps * args.batch, args.seq + 1))
    tokens = tokens.astype("int32")
    x = {"token_ids": tokens[:, :-1],
         "padding_mask": np.ones((steps * args.batch, args.seq), bool)}
    return x, tokens[:, 1:]


def make_callback(period):
    import tf_dsr

    return tf_dsr.DynamicReparam(prune_target=0.02, period=period,
                                 initial_threshold=0.01, seed=0)


def fit(model, x, y, args, callbacks):
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False,
              callbacks=callbacks)


def describe(args, lm_sparse=None):
    import tf_dsr

    text = (f"GPT2CausalLM: {args.layers} layers, hidden {args.hidden}, "
            f"{args.heads} heads, intermediate {args.intermediate}, vocabulary "
            f"{args.vocab:,}, sequence {args.seq}, batch {args.batch}, Adam; "
            f"sparse = tf_dsr.sparsify(lm, {SPARSITY}, seed=0)")
    if lm_sparse is not None:
        counts = tf_dsr.counting.parameter_counts(lm_sparse)
        text += (f"\n{counts.num_trainable:,} trainable parameters, "
                 f"{counts.num_sparse_weights:,} in sparse kernels "
                 f"({counts.sparse_share:.1%}), {counts.num_active:,} active; "
                 f"{counts.num_dense_trainable:,} dense")
    return text


# ----- step time -------------------------------------------------------
def _row(name, times, cpu, ref=None, ref_times=None, note=""):
    med = statistics.median(times)
    ratio = paired = "      -"
    if ref is not None:
        ratio = f"{med / ref:7.3f}"
        paired = f"{statistics.median(t / r for t, r in zip(times, ref_times)):7.3f}"
    print(f"{name:<28} {med * 1e3:10.1f} {min(times) * 1e3:9.1f} "
          f"{max(times) * 1e3:9.1f} {statistics.median(cpu) * 1e3:8.1f} "
          f"{ratio} {paired}  {note}", flush=True)
    return med


def bench_time(args):
    x, y = data(args, args.steps)
    models = {"plain": build(args, False), "sparse": build(args, True)}
    callback = make_callback(args.period)
    callbacks = {"plain": None, "sparse": [callback]}
    print(f"\n## training step time: whole fit of {args.steps} steps, "
          f"{args.repeats} repeats, plain and sparse alternating "
          f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    print(describe(args, models["sparse"]), flush=True)
    warm_x, warm_y = data(args, 2)
    with warnings.catch_warnings():
        # "No update can run in this fit": the warm-up is shorter than a period.
        warnings.simplefilter("ignore", UserWarning)
        for name, model in models.items():  # tracing, for both
            fit(model, warm_x, warm_y, args, callbacks[name])
    callback.reallocate()  # traces the reallocation
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    reallocs = []
    for _ in range(args.repeats):
        for name, model in models.items():
            before = int(callback.state.num_reallocations.numpy())
            t0, c0 = time.perf_counter(), time.process_time()
            fit(model, x, y, args, callbacks[name])
            wall[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
            if name == "sparse":
                reallocs.append(int(callback.state.num_reallocations.numpy()) - before)
        print(f"  repeat {len(reallocs)}: plain {wall['plain'][-1] * 1e3:.1f} ms, "
              f"sparse {wall['sparse'][-1] * 1e3:.1f} ms per step (CPU "
              f"{cpu['plain'][-1] * 1e3:.1f} / {cpu['sparse'][-1] * 1e3:.1f}; load "
              f"average {os.getloadavg()[0]:.2f})", flush=True)
    realloc, realloc_cpu = [], []
    for _ in range(max(3, args.repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        callback.reallocate()
        realloc.append(time.perf_counter() - t0)
        realloc_cpu.append(time.process_time() - c0)
    print(f"{'variant':<28} {'median ms':>10} {'min ms':>9} {'max ms':>9} "
          f"{'CPU ms':>8} {'ratio':>7} {'paired':>7}")
    ref = _row("plain (dense GPT2CausalLM)", wall["plain"], cpu["plain"])
    sparse = _row(f"sparse + DynamicReparam({args.period})", wall["sparse"],
                  cpu["sparse"], ref, wall["plain"],
                  f"target <= 1.10; reallocations per fit {sorted(set(reallocs))}")
    cpu_ratio = statistics.median(cpu["sparse"]) / statistics.median(cpu["plain"])
    cpu_paired = statistics.median(s / p for s, p in zip(cpu["sparse"], cpu["plain"]))
    r = statistics.median(realloc)
    print(f"CPU time sparse/plain: ratio {cpu_ratio:.3f}, paired {cpu_paired:.3f}",
          flush=True)
    print(f"reallocation alone (DynamicReparam.reallocate()): median {r * 1e3:.1f} ms "
          f"wall (min {min(realloc) * 1e3:.1f}), "
          f"{statistics.median(realloc_cpu) * 1e3:.1f} ms CPU, n={len(realloc)}; "
          f"{r / args.period * 1e3:.2f} ms per step at period {args.period} "
          f"({r / args.period / ref:.1%} of a plain step)", flush=True)
    return {"plain_ms": ref * 1e3, "sparse_ms": sparse * 1e3, "ratio": sparse / ref,
            "cpu_ratio": cpu_ratio, "reallocations": reallocs}


# ----- peak memory ------------------------------------------------------
def _child(args):
    import tensorflow as tf

    # One op at a time: with parallel ops the set of live buffers, and so
    # the peak, depends on thread timing (see memory.py).
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _imports()
    imports = _rss_mb()
    sparse = args.variant == "sparse"
    model = build(args, sparse)
    x, y = data(args, args.memory_steps)
    callbacks = [make_callback(args.memory_period)] if sparse else None
    before = _rss_mb()
    t0 = time.perf_counter()
    fit(model, x, y, args, callbacks)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reallocs = int(callbacks[0].state.num_reallocations.numpy()) if sparse else 0
    print(json.dumps({"variant": args.variant, "imports": imports,
                      "before": before, "peak": peak, "seconds": seconds,
                      "params": int(model.count_params()),
                      "reallocations": reallocs}))


def _size_arguments(args):
    return ["--layers", str(args.layers), "--hidden", str(args.hidden),
            "--heads", str(args.heads), "--intermediate", str(args.intermediate),
            "--vocab", str(args.vocab), "--seq", str(args.seq),
            "--batch", str(args.batch), "--memory-steps", str(args.memory_steps),
            "--memory-period", str(args.memory_period)]


def _memory_command(args, name):
    return ([sys.executable, os.path.abspath(__file__), "--child", name]
            + _size_arguments(args))


def start_memory(args):
    """With `--quick`, starts both memory children now, side by side (they
    then run alongside the step timing: a smoke test, not a measurement);
    otherwise returns None and `bench_memory` runs them one at a time."""
    if not args.quick or args.memory_runs != 1:
        return None
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {name: subprocess.Popen(_memory_command(args, name), env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name in VARIANTS}


def _child_result(name, stdout, stderr):
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if not lines:
        print(f"{name:<8} failed: {stderr[-500:]}", flush=True)
        return None
    return json.loads(lines[-1])


def bench_memory(args, started=None):
    print(f"\n## peak RSS of one fit of {args.memory_steps} steps (sparse: "
          f"DynamicReparam(period={args.memory_period}) inside it), fresh "
          f"process per run, {args.memory_runs} run(s) per variant, median"
          + (" (quick: both run at once, alongside the timing)" if started else ""),
          flush=True)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    runs = {name: [] for name in VARIANTS}
    if started is not None:
        for name, process in started.items():
            stdout, stderr = process.communicate(timeout=args.timeout)
            result = _child_result(name, stdout, stderr)
            if result is not None:
                runs[name].append(result)
    else:
        for _ in range(args.memory_runs):  # interleaved: drifts hit both alike
            for name in VARIANTS:
                out = subprocess.run(_memory_command(args, name), capture_output=True,
                                     text=True, timeout=args.timeout, env=env)
                result = _child_result(name, out.stdout, out.stderr)
                if result is not None:
                    runs[name].append(result)
    print(f"{'variant':<8} {'params':>11} {'after imports':>14} {'before fit':>11} "
          f"{'peak MB':>9} {'spread':>7} {'training MB':>12} {'fit growth':>11} "
          f"{'vs plain':>16}")
    summary = {}
    for name, results in runs.items():
        if not results:
            continue
        med = {k: statistics.median(r[k] for r in results)
               for k in ("imports", "before", "peak")}
        spread = max(r["peak"] for r in results) - min(r["peak"] for r in results)
        training, growth = med["peak"] - med["imports"], med["peak"] - med["before"]
        summary[name] = (training, growth, med["peak"])
        versus = "-"
        if name != "plain" and "plain" in summary:
            versus = (f"x{training / summary['plain'][0]:.3f} "
                      f"(x{growth / summary['plain'][1]:.3f})")
        print(f"{name:<8} {results[0]['params']:>11,} {med['imports']:>14.1f} "
              f"{med['before']:>11.1f} {med['peak']:>9.1f} {spread:>7.1f} "
              f"{training:>12.1f} {growth:>11.1f} {versus:>16}", flush=True)
    if "plain" in summary and "sparse" in summary:
        ratio = summary["sparse"][0] / summary["plain"][0]
        print(f"peak training memory sparse/plain: x{ratio:.3f} (target <= 1.25); "
              f"peak difference {summary['sparse'][2] - summary['plain'][2]:+.1f} MB; "
              f"reallocations in the sparse fit: "
              f"{[r['reallocations'] for r in runs['sparse']]}", flush=True)
        return {"ratio": ratio}
    return {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, a smoke test of a few seconds")
    parser.add_argument("--only", choices=["time", "memory"])
    for name in ("layers", "hidden", "heads", "intermediate", "vocab", "seq",
                 "batch", "steps", "period", "repeats", "memory-runs",
                 "memory-steps", "memory-period"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per memory child process")
    parser.add_argument("--child", choices=VARIANTS, dest="variant",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = _QUICK if args.quick else _FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.intermediate is None:
        args.intermediate = 4 * args.hidden
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.variant is not None:
        _child(args)
        return None
    started = start_memory(args) if args.only != "time" else None
    _imports()
    results = {}
    if args.only != "memory":
        results["time"] = bench_time(args)
    if args.only != "time":
        results["memory"] = bench_memory(args, started)
    return results


if __name__ == "__main__":
    main()
