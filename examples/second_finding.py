r"""The paper's second finding: DSR's final structure alone is not enough.

Mostafa & Wang (ICML 2019) ask whether
DSR's advantage lies in the sparse structure it finds or in exploring
structures during training. They train static sparse networks that copy
DSR's *final* masks, (i) from a fresh random initialization and (ii) from
the initial weights DSR itself started from, and find both worse than DSR.

For every seed this script

1. trains LeNet-300-100 (BatchNorm after both hidden layers) with
   `tf_dsr.DynamicReparam`, after recording its initial weights;
2. builds the same network, sets its masks to DSR's final masks and trains
   it without any mask update, once from a fresh initialization and once
   from DSR's initial weights;

and reports the three test accuracies as mean ± std over seeds.

"DSR's initial weights" follows the lottery-ticket protocol the paper
refers to: every kernel is drawn dense (the layer's own initializer, with
a seed) and multiplied by the mask. DSR starts from `draw * initial_mask`;
the static copy starts from `draw * final_mask`, so positions DSR kept
start where DSR started, and positions DSR grew later get the value the
same draw had there (DSR itself grew them at zero). Biases and BatchNorm
start from DSR's recorded values too. The fresh initialization draws the
kernels with another seed. All three runs see the same batches in the
same order, and train for the same number of epochs unless
`--static_epochs` says otherwise. Defaults: sparsity 0.98, 30 epochs,
5 seeds; DSR stops reallocating after 90% of its epochs, as the paper
does (a late reallocation leaves BatchNorm's moving statistics stale).

Data: the digits bundled with scikit-learn by default (offline; 1,438
training and 359 test images of 8x8 pixels), or MNIST from
tensorflow-datasets (`--dataset=mnist`, downloads on first use).

Usage (from the repository root):

    python examples/second_finding.py --output=docs/results/second_finding.json
    python examples/second_finding.py --dataset=mnist --epochs=20 --seeds=2
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_dsr  # noqa: E402
from tf_dsr.app import data as digits  # noqa: E402
from tf_dsr.layers import find_sparse_layers  # noqa: E402
from tf_dsr.app.compare import stop_epoch  # noqa: E402

VARIANTS = ("dsr", "static_fresh_init", "static_dsr_init")
LABELS = {
    "dsr": "DSR",
    "static_fresh_init": "static, DSR's final mask, fresh init",
    "static_dsr_init": "static, DSR's final mask, DSR's init",
}
# The fresh initialization of seed s draws kernels with seed s + this.
FRESH_SEED_OFFSET = 10_000


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_enum("dataset", "digits", ["digits", "mnist"],
                      "digits: scikit-learn's bundled 8x8 digits (offline); "
                      "mnist: tensorflow-datasets' MNIST.", flag_values=flag_values)
    flags.DEFINE_float("sparsity", 0.98, "Sparsity of every kernel, in [0, 1).",
                       flag_values=flag_values)
    flags.DEFINE_integer("epochs", 30, "Epochs of DSR.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("static_epochs", None,
                         "Epochs of the two static runs (default: --epochs).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seeds", 5, "Runs of each variant, seeds 0..N-1.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 50, "Batch size.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (Nesterov momentum 0.9).",
                       flag_values=flag_values)
    flags.DEFINE_float("prune_target", 0.05,
                       "DSR's N_prune as a fraction of the active weights.",
                       flag_values=flag_values)
    flags.DEFINE_integer("period", 25, "Steps between DSR reallocations.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_float("stop_fraction", 0.9,
                       "DSR stops reallocating after this fraction of its epochs, as the "
                       "paper stops at epoch 90 of 100 (1 = never).", flag_values=flag_values)
    flags.DEFINE_integer("num_train", None,
                         "Train on a random subset of this many examples (default: all).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_string("output", None, "Write the results JSON here.",
                        flag_values=flag_values)
    flags.DEFINE_integer("verbose", 0, "Keras fit verbosity.", flag_values=flag_values)


# ----- data -----------------------------------------------------------------
def load_data(dataset, seed, num_train=None):
    """`((x_train, y_train), (x_test, y_test))`, flat float32 inputs."""
    if dataset == "digits":
        (x_train, y_train), test = digits.load_digits(seed=seed)
    elif dataset == "mnist":
        import tensorflow_datasets as tfds

        def split(name):
            images, labels = tfds.as_numpy(
                tfds.load("mnist", split=name, batch_size=-1, as_supervised=True))
            return images.reshape(len(images), -1).astype("float32") / 255.0, labels

        (x_train, y_train), test = split("train"), split("test")
    else:
        raise ValueError(f"`dataset` must be 'digits' or 'mnist'. Received: {dataset!r}.")
    x_train, y_train = digits.subsample(x_train, y_train, num_train, seed)
    return (x_train, y_train.astype("int32")), (test[0], test[1].astype("int32"))


# ----- weights ----------------------------------------------------------------
def draw_kernels(model, seed):
    """Dense draws of every sparse kernel with the layer's own initializer.

    Returns:
        dict, layer name -> numpy array of the kernel's shape (no zeros
        from masking).
    """
    kernels = {}
    for index, layer in enumerate(find_sparse_layers(model)):
        initializer = layer.kernel_initializer
        config = dict(initializer.get_config(), seed=seed * 1000 + index)
        drawn = type(initializer).from_config(config)(tuple(layer.kernel.shape))
        kernels[layer.name] = keras.ops.convert_to_numpy(drawn)
    return kernels


def masks_of(model):
    """dict, layer name -> the layer's current 0/1 mask (numpy)."""
    return {layer.name: keras.ops.convert_to_numpy(layer.mask).copy()
            for layer in find_sparse_layers(model)}


def kernels_of(model):
    return {layer.name: keras.ops.convert_to_numpy(layer.kernel).copy()
            for layer in find_sparse_layers(model)}


def set_masks_and_kernels(model, masks, kernels):
    """Assigns every sparse layer's mask and `kernel = kernels * mask`.

    Inactive kernel entries must be zero (tf_dsr.layers.base), so the draw
    is multiplied by the mask before it is assigned.
    """
    for layer in find_sparse_layers(model):
        mask = np.asarray(masks[layer.name], layer.mask.dtype)
        layer.mask.assign(mask)
        layer.kernel_variable.assign(
            np.asarray(kernels[layer.name], layer.kernel_variable.dtype) * mask)


# ----- training ---------------------------------------------------------------
def _build(input_shape, num_classes, sparsity, seed):
    return tf_dsr.models.lenet_300_100(input_shape, num_classes, sparsity=sparsity, seed=seed)


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _fit_and_evaluate(model, data, epochs, seed, batch_size, callbacks, verbose):
    (x_train, y_train), (x_test, y_test) = data
    # The same seed before every fit: all variants see the same batches.
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size,
              callbacks=callbacks, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"test_accuracy": float(accuracy), "test_loss": float(loss), "epochs": int(epochs),
            "seconds": round(time.perf_counter() - start, 2)}


def run_seed(seed, data, sparsity, epochs, static_epochs=None, batch_size=50,
             learning_rate=0.1, prune_target=0.05, period=25, stop_fraction=0.9, verbose=0):
    """DSR and its two static copies for one seed.

    Returns:
        `(result, arrays)`: `result` is JSON-ready (accuracies per variant,
        per-layer active counts, mask overlap); `arrays` holds numpy masks
        and kernels for checks: `dsr_initial_kernels`, `dsr_initial_masks`,
        `dsr_final_masks`, and for each static variant `<variant>_masks_before`,
        `<variant>_masks_after`, `<variant>_kernels_before`,
        `<variant>_kernels_after`.
    """
    static_epochs = epochs if static_epochs is None else static_epochs
    (x_train, y_train), _ = data
    input_shape = x_train.shape[1:]
    num_classes = int(max(y_train.max(), data[1][1].max())) + 1

    keras.utils.set_random_seed(seed)
    dsr_model = _build(input_shape, num_classes, sparsity, seed)
    dense_draw = draw_kernels(dsr_model, seed)
    initial_masks = masks_of(dsr_model)
    set_masks_and_kernels(dsr_model, initial_masks, dense_draw)
    initial_weights = [keras.ops.convert_to_numpy(v).copy() for v in dsr_model.weights]
    arrays = {"dsr_initial_masks": initial_masks, "dsr_initial_kernels": kernels_of(dsr_model)}
    _compile(dsr_model, learning_rate)
    # Reallocating until the last step leaves BatchNorm's moving statistics
    # stale; the paper stops 10% before the end.
    reparam = tf_dsr.DynamicReparam(prune_target=prune_target, period=period,
                                    stop_epoch=stop_epoch(epochs, stop_fraction), seed=seed)
    result = {"seed": int(seed)}
    result["dsr"] = _fit_and_evaluate(dsr_model, data, epochs, seed, batch_size,
                                      [reparam], verbose)
    result["dsr"]["num_reallocations"] = int(reparam.state.num_reallocations.numpy())
    final_masks = masks_of(dsr_model)
    arrays["dsr_final_masks"] = final_masks
    num_active = tf_dsr.counting.num_active
    num_final = sum(num_active(m) for m in final_masks.values())
    kept = sum(num_active(final_masks[n] * initial_masks[n]) for n in final_masks)
    result["num_active_initial"] = {n: num_active(m) for n, m in initial_masks.items()}
    result["num_active_final"] = {n: num_active(m) for n, m in final_masks.items()}
    result["final_mask_overlap_with_initial"] = kept / num_final

    starts = {
        "static_fresh_init": draw_kernels(dsr_model, seed + FRESH_SEED_OFFSET),
        "static_dsr_init": dense_draw,
    }
    for variant, kernels in starts.items():
        keras.utils.set_random_seed(seed + FRESH_SEED_OFFSET)
        model = _build(input_shape, num_classes, sparsity, seed + FRESH_SEED_OFFSET)
        if variant == "static_dsr_init":
            # Biases and BatchNorm as DSR had them before training.
            for variable, value in zip(model.weights, initial_weights):
                variable.assign(value)
        set_masks_and_kernels(model, final_masks, kernels)
        arrays[f"{variant}_masks_before"] = masks_of(model)
        arrays[f"{variant}_kernels_before"] = kernels_of(model)
        _compile(model, learning_rate)
        result[variant] = _fit_and_evaluate(model, data, static_epochs, seed, batch_size,
                                            [], verbose)
        arrays[f"{variant}_masks_after"] = masks_of(model)
        arrays[f"{variant}_kernels_after"] = kernels_of(model)
        before, after = arrays[f"{variant}_masks_before"], arrays[f"{variant}_masks_after"]
        result[variant]["masks_unchanged"] = all(
            np.array_equal(before[n], after[n]) for n in final_masks)
    return result, arrays


def summarize(runs):
    """dict, variant -> {"mean", "std" (sample, 0 for one run), "num_runs"}."""
    summary = {}
    for variant in VARIANTS:
        accuracies = np.array([run[variant]["test_accuracy"] for run in runs], float)
        std = float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0
        summary[variant] = {"mean": float(accuracies.mean()), "std": std,
                            "num_runs": len(accuracies)}
    return summary


def format_table(summary, runs):
    lines = ["| run | epochs | test accuracy (%) |", "| --- | --- | --- |"]
    for variant in VARIANTS:
        entry = summary[variant]
        lines.append(f"| {LABELS[variant]} | {runs[0][variant]['epochs']} | "
                     f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f} |")
    return "\n".join(lines)


def run(flag_values=flags.FLAGS):
    """Runs every seed, prints the table, writes the JSON; returns the results."""
    if not 0.0 <= flag_values.sparsity < 1.0:
        raise ValueError(f"--sparsity must be in [0, 1). Received: {flag_values.sparsity}.")
    if not 0.0 < flag_values.stop_fraction <= 1.0:
        raise ValueError(
            f"--stop_fraction must be in (0, 1]. Received: {flag_values.stop_fraction}.")
    if not 0.0 < flag_values.prune_target < 1.0:
        raise ValueError(
            f"--prune_target must be a fraction in (0, 1). Received: {flag_values.prune_target}.")
    start = time.time()
    runs = []
    for seed in range(flag_values.seeds):
        data = load_data(flag_values.dataset, seed, flag_values.num_train)
        result, _ = run_seed(
            seed, data, flag_values.sparsity, flag_values.epochs,
            static_epochs=flag_values.static_epochs, batch_size=flag_values.batch_size,
            learning_rate=flag_values.learning_rate, prune_target=flag_values.prune_target,
            period=flag_values.period, stop_fraction=flag_values.stop_fraction,
            verbose=flag_values.verbose)
        runs.append(result)
        print(f"seed {seed}: " + ", ".join(
            f"{v} {result[v]['test_accuracy']:.4f}" for v in VARIANTS), flush=True)
    summary = summarize(runs)
    table = format_table(summary, runs)
    results = {
        "experiment": "second_finding",
        "model": "lenet_300_100",
        "dataset": flag_values.dataset,
        "flags": {name: flag_values[name].value for name in (
            "dataset", "sparsity", "epochs", "static_epochs", "seeds", "batch_size",
            "learning_rate", "prune_target", "period", "stop_fraction", "num_train",
            "output")},
        "summary": summary,
        "table": table,
        "runs": runs,
        "wall_time_seconds": round(time.time() - start, 1),
    }
    print(f"\nLeNet-300-100 on {flag_values.dataset}, sparsity {flag_values.sparsity}, "
          f"{flag_values.seeds} seed(s):\n{table}")
    if flag_values.output:
        os.makedirs(os.path.dirname(os.path.abspath(flag_values.output)), exist_ok=True)
        with open(flag_values.output, "w") as file:
            json.dump(results, file, indent=1)
        print(f"wrote {flag_values.output}")
    return results


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
