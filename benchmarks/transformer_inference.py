"""TFLite latency of block-sparse keras-hub transformers against their dense
twins (issue 22, item 3), and what the blocks cost in accuracy.

Models (keras-hub, `preprocessor=None`, dropout 0): a BERT-like text
classifier (`BertBackbone` + `BertTextClassifier`, 4 classes) and a
GPT-2-like LM (`GPT2Backbone` + `GPT2CausalLM`); default 4 layers, hidden
256, 4 heads, intermediate 1024, sequence 128, vocabulary 8,000.

"Sparse" is the same model "trained sparse at 0.9 with blocks":
`tf_dsr.sparsify(model, 0.9, block_shape=b, keep_dense=<tables>)` (the
tables only looked up stay dense: BERT's token, segment and position
tables, GPT-2's position table; GPT-2's tied token table, which also
projects to the logits, is sparse in the int8 model's 16x1 blocks and
dense in the float model: TFLite's float 1x4 sparse kernel runs that
256 x 8,000 projection slower than its dense one, the int8 one 5x
faster, see the `FC LM logits` rows), then
`--train-steps` steps of Adam on random tokens with
`tf_dsr.DynamicReparam(prune_target=0.05, period=--period)`, so that the
masks moved as in training. `b` is (4, 1) for the float rows (TFLite's
1x4 float block) and (16, 1) for the int8 rows (its 1x16 int8 block): two
sparse models per architecture. The dense twin is the plain model (same
architecture and seed, not sparsified).

Conversion: `tf_dsr.to_tflite(..., sparse_weights=True)` at batch 1 with
`quantize=None` (float), `"dynamic"` (int8 weights, float activations)
and `"int8"` (weights and activations, calibrated on `--calibration`
random token batches). Rows run on TFLite's built-in kernels
(`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`, where the sparse
kernels run), one thread, unless named `XNNPack`: those run on the
default resolver, what a user gets by default. Its XNNPack delegate takes
every op it can: all of a dense model, all but the float sparse
FULLY_CONNECTEDs of a float sparse one (they stay on TFLite's sparse
kernel). It also takes sparse int8 weights with float activations, and
returns wrong outputs from them (`to_tflite` warns), so there is no
sparse int8 XNNPack row. A dense XNNPack row is compared with the same
model on the built-in kernels; a sparse XNNPack row with the dense one
on XNNPack.

Attention: the matmuls of two computed operands (scores and values) are
BATCH_MATMUL ops by default, and TFLite's built-in BATCH_MATMUL is 6-10x
slower than its FULLY_CONNECTED on x86. So every built-in-kernel row is
converted with `converter_options={"unfold_batchmatmul": True}` (one
FULLY_CONNECTED per head), and every XNNPack row without (XNNPack runs
BATCH_MATMUL faster): each resolver in its faster form. The `BATCH_MATMUL
kept` and `unfolded` rows swap them, to show what the choice is worth.

Timing: `tf_dsr.app.latency.interleaved_times`: every round runs a chunk of
calls of every variant in turn (load from other processes falls on all
alike); latency = median over rounds of the per-call time; `x dense` =
median over rounds of the paired ratio dense twin / this. Outputs are
compared with the Keras model on the same tokens (max abs difference,
and relative to the largest output).

The int8 LM's tied token table (vocabulary x hidden) is block-sparse:
its logits projection (`sequence x hidden x vocabulary` multiply-adds) is
a sparse FULLY_CONNECTED in TFLite (`to_tflite` gives the token lookup a
table of its own); the float LM's is dense. The `GPT-2 backbone` rows time the same trained
models without it (`lm.backbone`, the hidden states), which is the
breakdown of the LM rows. The `FC ops` column says how many
FULLY_CONNECTED ops run sparse (sparse weight, no DENSIFY) out of all,
and how many BATCH_MATMULs there are.

Where the time goes: the
`FC ...` rows time one FULLY_CONNECTED layer of each transformer shape
alone on `--seq` tokens (dense vs sparse: the speed-up of the sparse
kernel itself; full int8 too), and the LM's logits projection alone; the `attention matmul ...` rows the attention's two matmuls
(built-in kernels vs XNNPack, unfolded or not), and the lines below the table add them up
per model (times their number in the model) as a share of its latency.

`--accuracy`: LeNet-300-100-style MLPs (`tf_dsr.models.lenet_300_100`,
64-288-96-10 so that 16x1 blocks tile every kernel, sparsity 0.9)
trained with DSR on the bundled digits, unstructured vs (4, 1) vs
(16, 1) blocks, same sparsity and schedule, `--seeds` seeds: mean test
accuracy +- std.

Targets (issue 22): float sparse >= 2.5x float dense; int8 sparse
(dynamic) >= 1.8x int8 dense (both on the built-in kernels). The lines
under the table also compare each sparse model with the dense one on
XNNPack, the fastest dense runtime on this machine.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/transformer_inference.py
        [--layers 4 --hidden 256 --heads 4 --intermediate 1024 --seq 128
         --vocab 8000 --train-steps 6 --period 2 --rounds 15]
        [--models bert,gpt2] [--no-int8] [--no-full-int8] [--no-kernels]
        [--json out.json]
    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/transformer_inference.py --accuracy
        [--seeds 3 --epochs 30]
    python benchmarks/transformer_inference.py --quick   # ~35 s of CPU; the test
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

# Measure this checkout's code, not a copy installed in site-packages.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPARSITY = 0.9
FLOAT_BLOCK = (4, 1)
INT8_BLOCK = (16, 1)
NUM_CLASSES = 4
_QUICK = dict(layers=1, hidden=32, heads=2, intermediate=64, seq=16, vocab=128,
              train_steps=1, period=1, batch=2, rounds=2, chunk_seconds=0.002,
              calibration=16, seeds=1, epochs=1)
_FULL = dict(layers=4, hidden=256, heads=4, intermediate=None, seq=128, vocab=8000,
             train_steps=6, period=2, batch=4, rounds=15, chunk_seconds=0.3,
             calibration=16, seeds=3, epochs=30)


def _imports():
    if _REPO not in sys.path:
        sys.path.insert(0, _REPO)
    import tensorflow as tf

    # TensorFlow (training, the Keras reference) on one thread too.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started (the tests)
        pass
    import keras  # noqa: F401

    import tf_dsr  # noqa: F401


# ----- models -----------------------------------------------------------
def build(kind, args):
    """The plain keras-hub task model `kind` ("bert" or "gpt2"), seed 0."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    sizes = dict(vocabulary_size=args.vocab, num_layers=args.layers,
                 num_heads=args.heads, hidden_dim=args.hidden,
                 intermediate_dim=args.intermediate, max_sequence_length=args.seq,
                 dropout=0.0)
    if kind == "bert":
        backbone = keras_hub.models.BertBackbone(**sizes)
        return keras_hub.models.BertTextClassifier(
            backbone=backbone, num_classes=NUM_CLASSES, preprocessor=None, dropout=0.0)
    backbone = keras_hub.models.GPT2Backbone(**sizes)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def tokens(kind, args, num, seed):
    """`(x, y)`: `num` random token sequences and labels for `kind`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1, args.vocab, (num, args.seq)).astype("int32"),
         "padding_mask": np.ones((num, args.seq), "int32")}
    if kind == "bert":
        x["segment_ids"] = np.zeros((num, args.seq), "int32")
        y = rng.integers(0, NUM_CLASSES, num)
    else:
        y = rng.integers(1, args.vocab, (num, args.seq))
    return x, y


def train_sparse(kind, args, block_shape):
    """`build(kind)` made sparse in `block_shape` blocks and trained with DSR.

    Returns `(model, number of reallocations)`."""
    import keras

    import tf_dsr

    model = build(kind, args)
    with warnings.catch_warnings():
        # The report of what stays dense (the lookup tables, by request).
        warnings.simplefilter("ignore")
        tf_dsr.sparsify(model, SPARSITY, block_shape=block_shape, seed=0,
                        keep_dense=lambda layer: kept_dense(kind, layer, block_shape))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    x, y = tokens(kind, args, args.train_steps * args.batch, seed=1)
    reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=args.period, seed=0)
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False,
              callbacks=[reparam])
    return model, int(reparam.state.num_reallocations.numpy())


def kept_dense(kind, layer, block_shape):
    """True for the embedding tables kept dense: all but the LM's tied
    token table in 16x1 blocks, which its logits read too (in float, the
    sparse kernel would run those logits slower than the dense one)."""
    import keras

    logits_table = (kind == "gpt2" and block_shape == INT8_BLOCK
                    and isinstance(layer, keras.layers.ReversibleEmbedding))
    return isinstance(layer, keras.layers.Embedding) and not logits_table


def _signature(kind, args):
    import tensorflow as tf

    names = ["token_ids", "padding_mask"] + (["segment_ids"] if kind == "bert" else [])
    return [{name: tf.TensorSpec((1, args.seq), tf.int32) for name in names}]


# ----- TFLite -----------------------------------------------------------
def _resolver(xnnpack):
    import tensorflow as tf

    types = tf.lite.experimental.OpResolverType
    return types.AUTO if xnnpack else types.BUILTIN_WITHOUT_DEFAULT_DELEGATES


class Runner:
    """One TFLite interpreter (one thread) with its inputs set: `run()` is
    one `invoke()`; `outputs(x)` sets `x`, invokes and returns the output."""

    def __init__(self, flatbuffer, x, xnnpack=False):
        import tensorflow as tf

        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to ai_edge_litert.
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(
                model_content=flatbuffer, num_threads=1,
                experimental_op_resolver_type=_resolver(xnnpack))
        self.interpreter.allocate_tensors()
        serve = self.interpreter.get_signature_runner("serving_default")
        # A dict input is flattened in sorted key order (args_0, args_0_1, ...).
        details = serve.get_input_details()
        self.indices = [details[n]["index"] for n in sorted(details)]
        self.keys = sorted(x)
        (out,) = serve.get_output_details().values()
        self.output_index = out["index"]
        del serve
        self.set(x)

    def set(self, x):
        for index, key in zip(self.indices, self.keys):
            self.interpreter.set_tensor(index, x[key])

    def __call__(self):
        self.interpreter.invoke()

    def outputs(self, x):
        self.set(x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()


def _calibration(kind, args):
    x, _ = tokens(kind, args, args.calibration, seed=3)
    keys = sorted(x)
    return lambda: ([x[k][i:i + 1] for k in keys] for i in range(args.calibration))


def unfolds(variant):
    """Whether `variant` converts with the attention's matmuls unfolded into
    FULLY_CONNECTEDs: on the built-in kernels yes, on XNNPack no (each its
    faster form), unless the name says otherwise."""
    if variant.endswith(KEPT):
        return False
    return variant.endswith(UNFOLDED) or "XNNPack" not in variant


def convert(model, kind, args, quantize, sparse, unfold):
    import tf_dsr

    calibration = _calibration(kind, args) if quantize == "int8" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flatbuffer = tf_dsr.to_tflite(model, sparse_weights=sparse,
                                      input_signature=_signature(kind, args),
                                      quantize=quantize,
                                      representative_dataset=calibration,
                                      converter_options={"unfold_batchmatmul": unfold})
    densified = [str(w.message) for w in caught if "will be densified" in str(w.message)]
    return flatbuffer, densified


def fc_summary(flatbuffer):
    """`"k/n sparse FC, m FC of computed operands, b BMM"`: of the n
    FULLY_CONNECTED ops with a constant weight, k store it sparse (TFLite's
    sparse kernel); m more multiply two computed tensors (the attention's
    unfolded matmuls); b BATCH_MATMULs; plus DENSIFY ops if any."""
    import tensorflow as tf

    from tf_dsr.saving.tflite import tflite_ops

    ops = tflite_ops(flatbuffer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    sparse_tensors = {t["index"] for t in interpreter.get_tensor_details()
                      if t.get("sparsity_parameters")}
    details = interpreter._get_ops_details()
    computed = {i for op in details for i in op["outputs"]}
    computed |= {d["index"] for d in interpreter.get_input_details()}
    fc = sparse_fc = fc_computed = 0
    for op in details:
        if op["op_name"] != "FULLY_CONNECTED":
            continue
        if op["inputs"][1] in computed:  # the weight operand
            fc_computed += 1
            continue
        fc += 1
        sparse_fc += any(i in sparse_tensors for i in op["inputs"])
    densify = [op for op, _, _ in ops].count("DENSIFY")
    batch_matmul = [op for op, _, _ in ops].count("BATCH_MATMUL")
    text = (f"{sparse_fc}/{fc} sparse FC, {fc_computed} FC of computed operands, "
            f"{batch_matmul} BMM")
    return text + (f", {densify} DENSIFY" if densify else "")


# ----- the benchmark ----------------------------------------------------
KEPT = ", BATCH_MATMUL kept"
UNFOLDED = ", unfolded"
VARIANTS = (
    # name, quantize, sparse, xnnpack, dense twin
    ("float dense", None, False, False, "float dense"),
    ("float sparse 1x4", None, True, False, "float dense"),
    ("float dense XNNPack", None, False, True, "float dense"),
    ("float sparse 1x4 XNNPack", None, True, True, "float dense XNNPack"),
    ("dynamic int8 dense", "dynamic", False, False, "dynamic int8 dense"),
    ("dynamic int8 sparse 1x16", "dynamic", True, False, "dynamic int8 dense"),
    ("int8 dense", "int8", False, False, "int8 dense"),
    ("int8 sparse 1x16", "int8", True, False, "int8 dense"),
    # What a user gets from the default interpreter with int8 weights (no
    # sparse row: XNNPack reads sparse int8 weights wrong; see to_tflite).
    ("dynamic int8 dense XNNPack", "dynamic", False, True, "dynamic int8 dense"),
    # Each resolver in the other's attention form.
    ("float dense" + KEPT, None, False, False, "float dense"),
    ("float dense XNNPack" + UNFOLDED, None, False, True, "float dense XNNPack"),
)
# The LM without its logits projection (lm.backbone): float and dynamic.
BACKBONE_VARIANTS = ("float dense", "float sparse 1x4", "float dense XNNPack",
                     "float sparse 1x4 XNNPack", "dynamic int8 dense",
                     "dynamic int8 sparse 1x16", "dynamic int8 dense XNNPack")


def _keras_outputs(model, x):
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def prepare(kind, args, log):
    """Trains the sparse models of `kind`, converts every variant and
    returns `{(model label, variant): config}` with runners."""
    import numpy as np

    t0 = time.perf_counter()
    dense = build(kind, args)
    sparse = {}
    for block in [FLOAT_BLOCK] + [INT8_BLOCK] * args.int8:
        sparse[block], reallocs = train_sparse(kind, args, block)
        log(f"  {kind}: sparse {block} trained {args.train_steps} steps, "
            f"{reallocs} reallocations ({time.perf_counter() - t0:.0f} s)")
    label = {"bert": "BERT classifier", "gpt2": "GPT-2 LM"}[kind]
    x, _ = tokens(kind, args, 1, seed=2)
    parts = [(label, lambda m: m)]
    if kind == "gpt2":
        parts.append(("GPT-2 backbone (no logits)", lambda m: m.backbone))
    configs = {}
    for part_label, part in parts:
        for name, quantize, is_sparse, xnnpack, twin in VARIANTS:
            if quantize is not None and not args.int8:
                continue
            if part_label.startswith("GPT-2 backbone") and name not in BACKBONE_VARIANTS:
                continue
            if quantize == "int8" and not args.full_int8:
                continue
            block = FLOAT_BLOCK if quantize is None else INT8_BLOCK
            model = part(sparse[block] if is_sparse else dense)
            config = {"model": part_label, "variant": name, "twin": twin,
                      "quantize": quantize, "sparse": is_sparse, "xnnpack": xnnpack}
            unfold = unfolds(name)
            same = [c for c in configs.values() if c["model"] == part_label
                    and c["quantize"] == quantize and c["sparse"] == is_sparse
                    and unfolds(c["variant"]) == unfold]
            try:
                if same:  # the same flatbuffer, another resolver
                    flatbuffer, densified = same[0]["flatbuffer"], same[0]["densified"]
                else:
                    flatbuffer, densified = convert(model, kind, args, quantize, is_sparse,
                                                    unfold)
                runner = Runner(flatbuffer, x, xnnpack=xnnpack)
                got = runner.outputs(x)
            except Exception as error:  # noqa: BLE001 (reported in the table)
                log(f"  {part_label} {name}: failed: {type(error).__name__}: "
                    f"{str(error).splitlines()[0][:300] if str(error) else ''}")
                continue
            expected = _keras_outputs(model, x)
            diff = float(np.max(np.abs(got - expected)))
            scale = float(np.max(np.abs(expected)))
            config.update(flatbuffer=flatbuffer, densified=densified, runner=runner,
                          bytes=len(flatbuffer), max_diff=diff, scale=scale,
                          ops=fc_summary(flatbuffer))
            configs[(part_label, name)] = config
            log(f"  {part_label} {name}: {len(flatbuffer) / 2**20:.2f} MB, {config['ops']}, "
                f"max |tflite - keras| {diff:.2e} (output scale {scale:.2f}), "
                f"{len(densified)} densified ({time.perf_counter() - t0:.0f} s)")
    return configs


def fc_shapes(args):
    """`(label, inputs, units, count per model)` of the transformer's FC ops:
    the 4 attention projections, the two feed-forward layers (per layer)
    and the LM's logits projection."""
    shapes = [("FC attention projection", args.hidden, args.hidden, 4 * args.layers),
              ("FC feed-forward in", args.hidden, args.intermediate, args.layers),
              ("FC feed-forward out", args.intermediate, args.hidden, args.layers),
              (LOGITS, args.hidden, args.vocab, 1)]
    # --quick: one shape of each kind (fewer conversions).
    return [shapes[0], shapes[3]] if args.quick else shapes


LOGITS = "FC LM logits (tied table)"
ATTENTION = "attention matmul"
ATTENTION_VARIANTS = ("float dense", "float dense XNNPack", "float dense" + KEPT,
                      "float dense XNNPack" + UNFOLDED)
# The single-FC rows: float and dynamic as the backbone, full int8 too.
KERNEL_VARIANTS = BACKBONE_VARIANTS + ("int8 dense", "int8 sparse 1x16")


def _single_fc(args, inputs, units, quantize, sparse):
    """`(model, flatbuffer)`: one Dense layer on `(1, seq, inputs)`, dense or
    sparse at 0.9 in the blocks of `quantize`."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_dsr

    keras.utils.set_random_seed(0)
    if sparse:
        block = FLOAT_BLOCK if quantize is None else INT8_BLOCK
        layer = tf_dsr.SparseDense(units, sparsity=SPARSITY, block_shape=block, seed=0)
    else:
        layer = keras.layers.Dense(units)
    model = keras.Sequential([keras.Input((args.seq, inputs)), layer])
    for _, pair in tf_dsr.layers.find_sparse_kernels(model):  # no zero weights
        pair.kernel.assign(pair.masked + 0.01 * tf.cast(pair.mask, tf.float32))
    calibration = None
    if quantize == "int8":
        samples = np.random.default_rng(5).standard_normal(
            (args.calibration, 1, args.seq, inputs)).astype("float32")
        calibration = lambda: ([sample] for sample in samples)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flatbuffer = tf_dsr.to_tflite(
            model, sparse_weights=sparse, quantize=quantize,
            representative_dataset=calibration,
            input_signature=[tf.TensorSpec((1, args.seq, inputs), tf.float32)])
    return model, flatbuffer


def prepare_kernels(args, log):
    """One FULLY_CONNECTED layer of each transformer shape on `seq` tokens,
    dense vs sparse (float 1x4, dynamic int8 1x16): the speed-up of the
    sparse kernel alone, against which the whole models' is read."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_dsr

    configs = {}
    rng = np.random.default_rng(4)
    for label, inputs, units, count in fc_shapes(args):
        part_label = f"{label} {inputs}->{units}"
        x = {"x": rng.standard_normal((1, args.seq, inputs)).astype("float32")}
        converted = {}
        for name, quantize, is_sparse, xnnpack, twin in VARIANTS:
            if name not in KERNEL_VARIANTS or (quantize is not None and not args.int8):
                continue
            if quantize == "int8" and not args.full_int8:
                continue
            if (quantize, is_sparse) in converted:  # another resolver
                model, flatbuffer = converted[(quantize, is_sparse)]
            else:
                model, flatbuffer = _single_fc(args, inputs, units, quantize, is_sparse)
                converted[(quantize, is_sparse)] = model, flatbuffer
            runner = Runner(flatbuffer, x, xnnpack=xnnpack)
            got = runner.outputs(x)
            expected = _keras_outputs(model, x["x"])
            configs[(part_label, name)] = {
                "model": part_label, "variant": name, "twin": twin, "quantize": quantize,
                "sparse": is_sparse, "xnnpack": xnnpack, "flatbuffer": flatbuffer,
                "densified": [], "runner": runner, "bytes": len(flatbuffer),
                "max_diff": float(np.max(np.abs(got - expected))),
                "scale": float(np.max(np.abs(expected))), "ops": fc_summary(flatbuffer),
                "count": count}
    # The attention's two matmuls (both operands computed), float: unfolded
    # into a FULLY_CONNECTED per head (to_tflite's default) or BATCH_MATMUL.
    heads, depth = args.heads, args.hidden // args.heads
    for label, a, c in ((ATTENTION + " scores", (1, heads, args.seq, depth),
                         (1, heads, depth, args.seq)),
                        (ATTENTION + " values", (1, heads, args.seq, args.seq),
                         (1, heads, args.seq, depth))):
        part_label = f"{label} {a}x{c}"
        left, right = keras.Input(a[1:], batch_size=1), keras.Input(c[1:], batch_size=1)
        model = keras.Model([left, right], keras.ops.matmul(left, right))
        x = {"x0": rng.standard_normal(a).astype("float32"),
             "x1": rng.standard_normal(c).astype("float32")}
        signature = [[tf.TensorSpec(a, tf.float32), tf.TensorSpec(c, tf.float32)]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffers = {unfold: tf_dsr.to_tflite(
                model, input_signature=signature,
                converter_options={"unfold_batchmatmul": unfold}) for unfold in (False, True)}
        expected = _keras_outputs(model, [x["x0"], x["x1"]])
        for name in ATTENTION_VARIANTS:
            xnnpack = "XNNPack" in name
            flatbuffer = flatbuffers[unfolds(name)]
            runner = Runner(flatbuffer, x, xnnpack=xnnpack)
            got = runner.outputs(x)
            configs[(part_label, name)] = {
                "model": part_label, "variant": name, "twin": "float dense",
                "quantize": None, "sparse": False, "xnnpack": xnnpack,
                "flatbuffer": flatbuffer, "densified": [], "runner": runner,
                "bytes": len(flatbuffer), "max_diff": float(np.max(np.abs(got - expected))),
                "scale": float(np.max(np.abs(expected))), "ops": fc_summary(flatbuffer),
                "count": args.layers}
    log(f"  {len(configs)} single-op variants converted")
    return configs


def tolerance(config):
    """The allowed max abs difference from Keras: float ~1e-4 relative to
    the output scale; int8 within quantization error."""
    scale = max(config["scale"], 1.0)
    if config["quantize"] is None:
        return 1e-4 * scale
    if config["quantize"] == "dynamic":
        return 0.05 * scale
    return 0.25 * scale  # int8 activations through every layer


def run(args, log=print):
    from tf_dsr.app import latency

    configs = {}
    for kind in args.models:
        configs.update(prepare(kind, args, log))
    if args.kernels:
        configs.update(prepare_kernels(args, log))
    log(f"timing {len(configs)} variants: {args.rounds} interleaved rounds "
        f"(load average {os.getloadavg()[0]:.2f})")
    load = os.getloadavg()[0]
    times = latency.interleaved_times({k: c["runner"] for k, c in configs.items()},
                                      args.rounds, args.chunk_seconds)
    rows = []
    for key, config in configs.items():
        twin = (config["model"], config["twin"])
        median, speedup = latency.median_and_speedup(times[key], times[twin])
        rows.append({k: v for k, v in config.items()
                     if k not in ("flatbuffer", "runner", "densified")}
                    | {"ms": median * 1e3, "speedup": speedup,
                       "min_ms": min(times[key]) * 1e3,
                       "num_densified": len(config["densified"]),
                       "ok": config["max_diff"] <= tolerance(config)})
    return rows, {"load_start": load, "load_end": os.getloadavg()[0]}


def format_table(rows):
    lines = ["| model | variant | median ms | x dense twin | file MB | FC ops "
             "| max abs diff vs Keras (rel.) |",
             "|" + " --- |" * 7]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['ms']:.2f} | {r['speedup']:.2f}x "
            f"| {r['bytes'] / 2**20:.2f} | {r['ops']} "
            f"| {r['max_diff']:.1e} ({r['max_diff'] / max(r['scale'], 1e-12):.1e})"
            f"{'' if r['ok'] else ' OUT OF TOLERANCE'} |")
    return "\n".join(lines)


def targets(rows):
    """The issue's targets, and the breakdown of the LM's logits."""
    by = {(r["model"], r["variant"]): r for r in rows}
    lines = []
    for model in ("BERT classifier", "GPT-2 LM", "GPT-2 backbone (no logits)"):
        for variant, goal in (("float sparse 1x4", 2.5), ("dynamic int8 sparse 1x16", 1.8)):
            r = by.get((model, variant))
            if r is None:
                continue
            met = "met" if r["speedup"] >= goal else "MISSED"
            text = (f"{model}: {variant} {r['speedup']:.2f}x its dense twin "
                    f"(target >= {goal}x: {met})")
            dense_name = "float dense" if variant.startswith("float") else "dynamic int8 dense"
            xnn = by.get((model, dense_name + " XNNPack"))
            if xnn is not None:
                text += f"; {xnn['ms'] / r['ms']:.2f}x {dense_name} on XNNPack"
                sparse_xnn = by.get((model, variant + " XNNPack"))
                if sparse_xnn is not None:
                    text += (f"; on the default resolver (XNNPack) sparse is "
                             f"{sparse_xnn['speedup']:.2f}x dense")
            lines.append(text)
    for variant in BACKBONE_VARIANTS:
        lm, bb = by.get(("GPT-2 LM", variant)), by.get(("GPT-2 backbone (no logits)", variant))
        if lm is None or bb is None:
            continue
        logits = lm["ms"] - bb["ms"]
        text = (f"GPT-2 LM {variant}: {lm['ms']:.2f} ms = backbone {bb['ms']:.2f} ms "
                f"+ logits projection (tied table) {logits:.2f} ms "
                f"({logits / lm['ms']:.0%})")
        sparse_fc, fc = map(int, lm["ops"].split(" sparse FC")[0].split("/"))
        table = variant if sparse_fc == fc else variant.replace(
            " sparse 1x4", " dense").replace(" sparse 1x16", " dense")  # a dense table
        alone = [r for r in rows if r["model"].startswith(LOGITS) and r["variant"] == table]
        if alone:
            text += (f"; the logits FC alone: {alone[0]['ms']:.2f} ms "
                     f"({alone[0]['ms'] / lm['ms']:.0%})")
        lines.append(text)
    attention = [r for r in rows if r["model"].startswith(ATTENTION)]
    for variant in ATTENTION_VARIANTS:
        ops = [r for r in attention if r["variant"] == variant]
        if not ops:
            continue
        bmm_ms = sum(r["ms"] * r["count"] for r in ops)
        kind = "matmuls (unfolded)" if unfolds(variant) else "BATCH_MATMULs"
        text = (f"{variant}: the attention's {kind} alone, timed one by one: "
                f"{bmm_ms:.2f} ms for all of them")
        for model in ("BERT classifier", "GPT-2 LM"):
            r = by.get((model, variant))
            if r is not None:
                text += f"; {bmm_ms / r['ms']:.0%} of the {model}'s {r['ms']:.2f} ms"
        lines.append(text)
    kernels = [r for r in rows if r["model"].startswith("FC ")
               and not r["model"].startswith(LOGITS)]
    for variant in KERNEL_VARIANTS:
        fcs = [r for r in kernels if r["variant"] == variant]
        if not fcs:
            continue
        fc_ms = sum(r["ms"] * r["count"] for r in fcs)
        speedups = ", ".join(f"{r['model']} {r['speedup']:.2f}x" for r in fcs)
        text = (f"{variant}: transformer-layer FC ops alone, timed one by one: "
                f"{fc_ms:.2f} ms for all of them ({speedups})")
        for model in ("BERT classifier", "GPT-2 backbone (no logits)"):
            r = by.get((model, variant))
            if r is not None:
                text += f"; {fc_ms / r['ms']:.0%} of the {model}'s {r['ms']:.2f} ms"
        lines.append(text)
    return "\n".join(lines)


def describe(args):
    return (f"keras-hub BertTextClassifier ({NUM_CLASSES} classes) and GPT2CausalLM: "
            f"{args.layers} layers, hidden {args.hidden}, {args.heads} heads, "
            f"intermediate {args.intermediate}, sequence {args.seq}, vocabulary "
            f"{args.vocab:,}; sparse = sparsify({SPARSITY}, block_shape={FLOAT_BLOCK} "
            f"float / {INT8_BLOCK} int8, tables dense but the int8 LM's token "
            f"table) + {args.train_steps} Adam "
            f"steps with DynamicReparam(prune_target=0.05, period={args.period}); "
            f"batch 1, one thread, TFLite built-in kernels (no delegate) unless "
            f"'XNNPack'")


# ----- accuracy: blocks vs unstructured on the digits --------------------
BLOCKS = (("unstructured", None), ("1x4 blocks (4, 1)", FLOAT_BLOCK),
          ("1x16 blocks (16, 1)", INT8_BLOCK))


def accuracy(args, log=print):
    """Test accuracy of DSR-trained LeNet-300-100 MLPs on the digits,
    unstructured vs blocks, same sparsity; `{label: [accuracy per seed]}`."""
    import keras

    import tf_dsr
    from tf_dsr.app.compare import stop_epoch
    from tf_dsr.app.data import load_digits

    (x, y), (x_test, y_test) = load_digits(seed=0)
    results = {label: [] for label, _ in BLOCKS}
    for seed in range(args.seeds):
        for label, block in BLOCKS:
            keras.utils.set_random_seed(seed)
            # Width 0.96: 288 and 96 hidden units, inputs 16x1 blocks tile.
            model = tf_dsr.models.lenet_300_100((64,), 10, sparsity=SPARSITY, seed=seed,
                                                block_shape=block, width_multiplier=0.96)
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            reparam = tf_dsr.DynamicReparam(prune_target=0.05, period=25, seed=seed,
                                            stop_epoch=stop_epoch(args.epochs, 0.9))
            model.fit(x, y, epochs=args.epochs, batch_size=50, verbose=0,
                      callbacks=[reparam])
            _, acc = model.evaluate(x_test, y_test, verbose=0)
            results[label].append(float(acc))
            log(f"  seed {seed} {label}: test accuracy {acc:.4f} "
                f"({int(reparam.state.num_reallocations.numpy())} reallocations)")
    return results


def format_accuracy(results, args):
    lines = [f"LeNet-300-100-style MLP (64-288-96-10, width_multiplier=0.96 so that "
             f"16x1 blocks tile every kernel; BatchNorm) on the bundled digits, sparsity "
             f"{SPARSITY}, DSR (prune_target 0.05, period 25, stops at 90% of "
             f"{args.epochs} epochs), SGD 0.05 Nesterov, batch 50, seeds 0..{args.seeds - 1}",
             "| mask | test accuracy (mean +- std) | per seed |", "| --- | --- | --- |"]
    for label, accs in results.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {label} | {100 * statistics.mean(accs):.2f} +- {100 * std:.2f} % "
                     f"| {', '.join(f'{100 * a:.1f}' for a in accs)} |")
    return "\n".join(lines)


# ----- command line ------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 2 rounds: a smoke test")
    parser.add_argument("--accuracy", action="store_true",
                        help="the digits accuracy of blocks vs unstructured instead")
    for name in ("layers", "hidden", "heads", "intermediate", "seq", "vocab",
                 "train-steps", "period", "batch", "rounds", "calibration", "seeds",
                 "epochs"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--chunk-seconds", type=float)
    parser.add_argument("--models", default="bert,gpt2")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="float rows only")
    parser.add_argument("--no-full-int8", dest="full_int8", action="store_false",
                        help="skip quantize='int8' (weights and activations)")
    parser.add_argument("--no-kernels", dest="kernels", action="store_false",
                        help="skip the single-FC-layer rows")
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    for key, value in (_QUICK if args.quick else _FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.intermediate is None:
        args.intermediate = 4 * args.hidden
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.models) - {"bert", "gpt2"}
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from bert, gpt2")
    return args


def main(argv=None):
    args = parse_args(argv)
    _imports()
    command = "python benchmarks/transformer_inference.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    started = time.time()

    def log(text):
        print(text, flush=True)

    if args.accuracy:
        results = accuracy(args, log)
        print(format_accuracy(results, args))
        print(f"{time.time() - started:.0f} s. Command: `{command.strip()}`")
        return {"accuracy": results}
    print(describe(args), flush=True)
    rows, load = run(args, log)
    print(format_table(rows))
    print(targets(rows))
    print(f"{args.rounds} interleaved rounds; load average {load['load_start']:.2f} at "
          f"the start of timing, {load['load_end']:.2f} at the end (2 cores); "
          f"{time.time() - started:.0f} s in all. `x dense twin`: median over rounds of "
          f"the paired ratio twin / this (float dense XNNPack: float dense on the "
          f"built-in kernels / this; float sparse XNNPack: float dense XNNPack / "
          f"this).\nCommand: `{command.strip()}`", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load": load, "command": command}, f, indent=1)
    return {"rows": rows, "load": load}


if __name__ == "__main__":
    main()
