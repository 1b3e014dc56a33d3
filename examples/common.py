"""What the three reproduction scripts share: flags, schedules, the training
run and its results file.

Each script (`lenet300_mnist.py`, `wrn_cifar10.py`, `resnet50_imagenet.py`)
describes its experiment with a `Recipe` (the hyperparameters of Mostafa
& Wang, ICML 2019), defines its flags with `define_flags`, and hands
`run` three functions: one that loads its data as `tf.data` pipelines from
tensorflow-datasets, one that names its `tf_dsr.models` builder and
arguments, one that builds the model (with its regularizers). `run` does the rest in the
same way for every experiment: build and compile under a distribution
strategy, pick the method's callback from the registry (`tf_dsr.methods`: DSR,
DSR with gradient growth, RigL, SET, gradual pruning; static, dense and thin
dense have none),
`model.fit`, evaluate on the test split and write a results JSON.

The methods' options are flags read from the registry as well: one flag
per constructor argument any method's callback takes (`--prune_target`,
`--period`, `--drop_fraction`, ...), its value a Python literal or an
`epoch:value` schedule, validated by the callback's constructor before any
data is loaded. One command line serves every method: a method ignores, with
a warning, the option flags it does not take.

Schedules are given in epochs, as in the paper, and turned into optimizer
steps here: the learning rate with `EpochPiecewiseConstant`, the
reallocation period by `tf_dsr.DynamicReparam` itself (it takes the
`{epoch: steps}` dict).
"""

import ast
import contextlib
import dataclasses
import json
import math
import os
import platform
import time
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

import tf_dsr
from tf_dsr.app.options import help_text
from tf_dsr.methods import registry

METHODS = tf_dsr.methods.METHODS

# The recipes give gradual pruning's schedule in epochs, as the paper does:
# these flags set the method's step options (unless those are given).
EPOCH_OPTIONS = {"gradual": {"begin_step": "gradual_begin_epoch",
                             "end_step": "gradual_end_epoch"}}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One experiment of the paper: model, data set and hyperparameters.

    Attributes:
        model: str, the model's name in the results file.
        dataset: str, the tensorflow-datasets name.
        epochs: int, training epochs.
        batch_size: int, global batch size.
        lr_schedule: dict `{epoch: learning rate}` with key 0.
        prune_target: int, N_prune.
        period: dict `{epoch: steps between reallocations}` with key 0.
        stop_epoch: int, no reallocation from this epoch on.
        sparsity: float, default sparsity of the sparse tensors.
        num_train_examples: int, size of the training split, for when the
            data set's metadata does not say (mocked data).
        top5: bool, also report top-5 accuracy.
    """

    model: str
    dataset: str
    epochs: int
    batch_size: int
    lr_schedule: dict
    prune_target: int
    period: dict
    stop_epoch: int
    sparsity: float
    num_train_examples: int
    top5: bool = False


# ----- flags ------------------------------------------------------------


def format_schedule(schedule):
    """`{0: 0.1, 25: 0.02}` -> `"0:0.1,25:0.02"` (the flag syntax)."""
    return ",".join(f"{epoch}:{value}" for epoch, value in sorted(schedule.items()))


def parse_schedule(text, value_type, name="schedule"):
    """Parses `"0:0.1,25:0.02"` into `{0: 0.1, 25: 0.02}`.

    A bare value (`"100"`) means the same value from epoch 0 on.

    Args:
        text: str, comma-separated `epoch:value` pairs, or one value.
        value_type: `int` or `float`, the type of the values.
        name: str, the flag's name for error messages.

    Returns:
        A dict from int epoch to value, with key 0.

    Raises:
        ValueError: the text is malformed or has no entry for epoch 0.
    """
    text = str(text).strip()
    try:
        if ":" not in text:
            return {0: value_type(text)}
        schedule = {}
        for item in text.split(","):
            epoch, value = item.split(":")
            schedule[int(epoch)] = value_type(value)
    except ValueError as error:
        raise ValueError(
            f"--{name} must be `epoch:value` pairs separated by commas "
            f"(e.g. 0:0.1,25:0.02) or a single value. Received: {text!r}."
        ) from error
    if 0 not in schedule or min(schedule) < 0:
        raise ValueError(
            f"--{name} must start at epoch 0 and have no negative epoch. "
            f"Received: {text!r}."
        )
    return schedule


def define_flags(recipe, flag_values=flags.FLAGS):
    """Defines the flags every script has, with the recipe's values as defaults."""
    fv = flag_values
    flags.DEFINE_enum(
        "method", "dsr", METHODS,
        "; ".join(f"{name}: {tf_dsr.methods.get(name).summary}" for name in METHODS)
        + ". SET uses the same N_prune and period as DSR; gradual prunes a "
        "dense start down to --sparsity (the paper's 'compressed sparse'); "
        "dense ignores --sparsity; thin is narrowed (width multiplier) to as "
        "many parameters as the sparse network at --sparsity has non-zeros.",
        flag_values=fv)
    flags.DEFINE_float("sparsity", recipe.sparsity,
                       "Fraction of zeros in the sparse tensors (final, for gradual).",
                       flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seeds masks, initialisation, shuffling and reallocation "
                         "(keras.utils.set_random_seed takes [0, 2**32 - 1]).",
                         lower_bound=0, upper_bound=2**32 - 1, flag_values=fv)
    flags.DEFINE_integer("epochs", recipe.epochs, "Training epochs.", flag_values=fv)
    flags.DEFINE_integer("batch_size", recipe.batch_size, "Global batch size.", flag_values=fv)
    flags.DEFINE_string("lr_schedule", format_schedule(recipe.lr_schedule),
                        "Learning rate by epoch, `epoch:lr` pairs.", flag_values=fv)
    flags.DEFINE_float("momentum", 0.9, "SGD Nesterov momentum.", flag_values=fv)
    define_option_flags(recipe, fv)
    flags.DEFINE_float("thin_tolerance", 0.02,
                       "thin: largest relative mismatch allowed between the thin "
                       "network's parameters and the sparse network's non-zeros.",
                       flag_values=fv)
    flags.DEFINE_float("gradual_begin_epoch", 0.0,
                       "gradual: epoch where pruning starts.", flag_values=fv)
    flags.DEFINE_float("gradual_end_epoch", recipe.epochs / 2,
                       "gradual: epoch where --sparsity is reached.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory "
                        "(default: TFDS_DATA_DIR or ~/tensorflow_datasets).", flag_values=fv)
    flags.DEFINE_string("output", None, "Results JSON path (default: "
                        f"runs/examples/{recipe.model}_<method>_s<sparsity>_seed<seed>.json).",
                        flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", 0,
                         "Optimizer steps per epoch; 0: one pass over the training split.",
                         flag_values=fv)
    flags.DEFINE_integer("eval_steps", 0,
                         "Test batches to evaluate; 0: the whole test split.", flag_values=fv)
    flags.DEFINE_integer("validation_freq", 0,
                         "Also evaluate on the test split every N epochs during "
                         "training (learning curves); 0: only at the end.", flag_values=fv)
    flags.DEFINE_integer("history_every", 0,
                         "Also record per-layer sparsity every N steps; 0: per epoch.",
                         flag_values=fv)
    flags.DEFINE_enum("strategy", "default", ("default", "mirrored"),
                      "mirrored: tf.distribute.MirroredStrategy over all local GPUs.",
                      flag_values=fv)
    flags.DEFINE_string("backup_dir", None, "If set, keras BackupAndRestore directory "
                        "(double_checkpoint=True): an interrupted run resumes from its "
                        "last epoch, even if killed while saving.", flag_values=fv)
    flags.DEFINE_integer("mock_data", 0,
                         "If > 0, replace the data set by this many random examples "
                         "per split (tensorflow_datasets.testing.mock_data): checks "
                         "the whole pipeline without downloading anything.",
                         flag_values=fv)
    flags.DEFINE_boolean("run_eagerly", False,
                         "Train and evaluate without compiling tf.functions: slow "
                         "steps but no tracing, for debugging and smoke tests.",
                         flag_values=fv)
    flags.DEFINE_integer("verbose", 2, "model.fit verbosity (0, 1 or 2).", flag_values=fv)


class LiteralParser(flags.ArgumentParser):
    """absl parser of a method option flag: `parse_option`'s value."""

    syntactic_help = "a Python literal, an epoch:value schedule, or text"

    def parse(self, argument):
        return parse_option(argument) if isinstance(argument, str) else argument

    def flag_type(self):
        return "literal"


def define_option_flags(recipe, flag_values=flags.FLAGS):
    """One flag per option of any method's callback (the registry's), with
    the recipe's N_prune, period and stop epoch as defaults. The period
    stays the text of its schedule, the flags' other values are Python
    values."""
    defaults = {"prune_target": recipe.prune_target, "period": format_schedule(recipe.period),
                "stop_epoch": recipe.stop_epoch}
    for option, methods in registry.options(METHODS).items():
        default = defaults.get(option)
        if isinstance(default, str):
            flags.DEFINE_string(option, default, help_text(option, methods),
                                flag_values=flag_values)
        else:
            flags.DEFINE(LiteralParser(), option, default, help_text(option, methods),
                         flag_values=flag_values)


def parse_option(text):
    """A method option's text as a value: a Python literal (`0.05`, `600`,
    `{0: 100}`), an `epoch:value` schedule (`0:100,25:200`), else the text."""
    for literal in (text, "{" + text + "}"):
        try:
            return ast.literal_eval(literal)
        except (ValueError, SyntaxError, TypeError):
            pass
    return text


def method_options(flag_values):
    """The option flags set (by the user or the recipe) and `--method` takes,
    as values; warns about those given that it ignores."""
    fv = flag_values
    taken = registry.get(fv.method).options()
    values = {}
    for option in registry.options(METHODS):
        value = fv[option].value
        if value is None:
            continue
        if option in taken:
            values[option] = parse_option(value) if isinstance(value, str) else value
        elif fv[option].present:
            logging.warning("--%s=%s: not used by %s; it is for %s.", option, value,
                            fv.method, ", ".join(registry.options(METHODS)[option]))
    return values


def flag_dict(flag_values):
    """The flags the scripts define, as a plain dict (absl's own left out)."""
    values = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.split(".")[0] in ("absl", "tensorflow", "tensorflow_datasets", "keras"):
            continue
        for flag in module_flags:
            values[flag.name] = flag.value
    return values


# ----- schedules ----------------------------------------------------------


class EpochPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that is constant within epochs, set by an epoch table.

    `{0: 0.1, 25: 0.02}` with 600 steps per epoch gives 0.1 for optimizer
    steps 0..14999 and 0.02 from step 15000 (the first step of epoch 25).

    Args:
        values_by_epoch: dict `{epoch: value}` with key 0.
        steps_per_epoch: int > 0.

    Example:

    >>> lr = EpochPiecewiseConstant({0: 0.1, 25: 0.02}, steps_per_epoch=600)
    >>> float(lr(15000))
    0.02
    """

    def __init__(self, values_by_epoch, steps_per_epoch):
        if 0 not in values_by_epoch:
            raise ValueError(
                f"`values_by_epoch` needs a value for epoch 0. Received: {values_by_epoch}."
            )
        if steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1. Received: {steps_per_epoch}.")
        self.values_by_epoch = {int(e): float(v) for e, v in values_by_epoch.items()}
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        epochs = sorted(self.values_by_epoch)
        epoch = keras.ops.floor_divide(keras.ops.cast(step, "int64"), self.steps_per_epoch)
        started = keras.ops.greater_equal(epoch, keras.ops.convert_to_tensor(epochs, "int64"))
        index = keras.ops.sum(keras.ops.cast(started, "int32")) - 1
        values = keras.ops.convert_to_tensor([self.values_by_epoch[e] for e in epochs], "float32")
        return keras.ops.take(values, index)

    def get_config(self):
        return {"values_by_epoch": self.values_by_epoch, "steps_per_epoch": self.steps_per_epoch}


# ----- regularisation -----------------------------------------------------


def add_regularizer(variables, regularizer):
    """Puts `regularizer` on each variable; Keras adds it to the training loss.

    Same effect as the layer's `kernel_regularizer` argument, for models
    built without it. On a sparse kernel it acts on the raw kernel, which
    is exactly zero wherever the mask is 0 (set so at initialisation and at
    every reallocation; the loss gradient, the L1 subgradient sign(0) = 0
    and the L2 gradient all vanish there), so it equals the regularizer of
    the masked kernel.
    """
    for variable in variables:
        variable.regularizer = regularizer


def add_weight_decay(model, weight_decay, on="all"):
    """PyTorch-style (coupled) SGD weight decay `wd` as Keras `L2(wd / 2)` terms.

    `torch.optim.SGD(weight_decay=wd)` adds `wd * w` to the gradient before
    the momentum step, which is the gradient of `wd / 2 * sum(w ** 2)`.

    Args:
        model: a built Keras model.
        weight_decay: float >= 0, wd.
        on: "all" (every trainable weight, as PyTorch's SGD over
            `model.parameters()`) or "kernels" (conv and Dense kernels).
    """
    if weight_decay <= 0:
        return
    if on == "all":
        variables = model.trainable_variables
    elif on == "kernels":
        sparse = {id(pair.layer): pair.kernel
                  for _, pair in tf_dsr.layers.find_sparse_kernels(model)}
        variables = [sparse.get(id(layer), getattr(layer, "kernel", None))
                     for layer in model.layers]
        variables = [v for v in variables if v is not None]
    else:
        raise ValueError(f"`on` must be 'all' or 'kernels'. Received: {on!r}.")
    add_regularizer(variables, keras.regularizers.L2(weight_decay / 2))


def sparse_kernels(model):
    return [pair.kernel for _, pair in tf_dsr.layers.find_sparse_kernels(model)]


# ----- data -----------------------------------------------------------------


def load_split(name, split, flag_values, shuffle_files=False, **kwargs):
    """`tfds.load(name, split, as_supervised=True)` plus the split's size (or None)."""
    import tensorflow_datasets as tfds

    dataset, info = tfds.load(
        name, split=split, as_supervised=True, with_info=True, data_dir=flag_values.data_dir,
        shuffle_files=shuffle_files, **kwargs,
    )
    try:
        num_examples = info.splits[split].num_examples
    except (KeyError, ValueError):
        # Mocked data sets carry no split metadata.
        num_examples = None
    return dataset, num_examples


def seeded_shuffle(dataset, buffer_size, seed):
    return dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)


@dataclasses.dataclass
class Data:
    """What a script's `load_data` returns.

    Attributes:
        train: batched `tf.data.Dataset` of `(inputs, labels)`, repeating
            forever (`fit` is given steps per epoch).
        test: batched, finite `tf.data.Dataset` of `(inputs, labels)`.
        num_train_examples: int or None, size of the training split.
        input_shape: tuple, one example's input shape.
        num_classes: int.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    num_train_examples: Optional[int]
    input_shape: tuple
    num_classes: int


# ----- the run --------------------------------------------------------------


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore(double_checkpoint=True)` that survives a kill
    inside its very first save.

    Keras restores the previous backup (`.bkp`) when the latest one cannot
    be opened, but the first save has no previous backup: a kill inside
    it leaves a half-written `latest.weights.h5` that makes every rerun
    fail (`OSError: bad object header version number`). No epoch's backup
    survived then, so this starts the run anew, with a warning, after
    removing the broken files.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError as error:
            if os.path.exists(self._prev_weights_path):
                raise  # Keras found a previous backup and could not use it.
            logging.warning(
                "The backup in %s cannot be opened (%s) and there is no earlier "
                "one: a run killed inside its first save. Starting anew.",
                self.backup_dir, error)
            for path in (self._weights_path, self._training_metadata_path):
                if os.path.exists(path):
                    os.remove(path)


def method_callback(flag_values, steps_per_epoch):
    """The mask-updating callback of `--method`, from the registry
    (`tf_dsr.methods`; None for static, dense and thin)."""
    fv = flag_values
    options = method_options(fv)
    epoch_flags = EPOCH_OPTIONS.get(fv.method, {})
    if epoch_flags and not any(option in options for option in epoch_flags):
        steps = {option: int(round(fv[name].value * steps_per_epoch))
                 for option, name in epoch_flags.items()}
        if "end_step" in steps and "begin_step" in steps:
            steps["end_step"] = max(steps["begin_step"] + 1, steps["end_step"])
        options.update(steps)
    run = registry.Run(fv.sparsity, fv.seed, fv.epochs * steps_per_epoch)
    try:
        return registry.make_callback(fv.method, run, **options)
    except (ValueError, TypeError) as error:
        given = " ".join(f"--{option}={fv[option].value}" for option in options
                         if option in fv and option in str(error))
        raise ValueError(f"--method={fv.method} {given}: {error}") from error


def parameter_counts(model):
    """Sparse and dense parameter counts of a trained model.

    Returns:
        dict: `sparse_weights` (size of the sparse tensors), `active_sparse`
        (mask ones), `dense_trainable` (every other trainable weight:
        biases, BatchNorm, layers kept dense), `num_params`
        (`active_sparse + dense_trainable`, the paper's parameter count),
        `nonzero_trainable` (non-zero entries of the masked kernels and the
        dense trainable weights, measured), `inactive_nonzero` (non-zero
        raw kernel entries where the mask is 0: always 0 unless something
        writes to inactive weights), `non_trainable` (BatchNorm statistics,
        masks, ...).
    """
    counts = tf_dsr.counting.parameter_counts(model)
    pairs = [pair for _, pair in tf_dsr.layers.find_sparse_kernels(model)]
    sparse_ids = {id(pair.kernel) for pair in pairs}
    # Non-zero values (what the weights hold), next to the active counts
    # (what the masks allow) from tf_dsr.counting.
    nonzero = inactive_nonzero = 0
    for pair in pairs:
        mask = np.asarray(keras.ops.convert_to_numpy(pair.mask))
        kernel = np.asarray(keras.ops.convert_to_numpy(pair.kernel))
        nonzero += int(np.count_nonzero(kernel[mask != 0]))
        inactive_nonzero += int(np.count_nonzero(kernel[mask == 0]))
    for variable in model.trainable_variables:
        if id(variable) not in sparse_ids:
            nonzero += int(np.count_nonzero(keras.ops.convert_to_numpy(variable)))
    return {
        "sparse_weights": counts.num_sparse_weights,
        "active_sparse": counts.num_active,
        "dense_trainable": counts.num_dense_trainable,
        "num_params": counts.num_params,
        "nonzero_trainable": nonzero,
        "inactive_nonzero": inactive_nonzero,
        "non_trainable": counts.num_non_trainable,
    }


def layer_table(model):
    return {
        row.name: {"shape": list(row.shape), "num_weights": row.num_weights,
                   "num_active": row.num_active, "sparsity": row.sparsity}
        for row in tf_dsr.sparsity_summary(model).layers
    }


def to_json_value(value):
    """Plain-JSON version of `value`: numpy scalars to Python, NaN/Inf to None."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def default_output(recipe, flag_values):
    fv = flag_values
    sparsity = 0.0 if tf_dsr.methods.is_full_dense(fv.method) else fv.sparsity
    return os.path.join(
        "runs", "examples", f"{recipe.model}_{fv.method}_s{sparsity:g}_seed{fv.seed}.json"
    )


def write_json(results, path):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(to_json_value(results), f, indent=1, allow_nan=False)


def main(run):
    """An `absl.app` main that runs `run(flags.FLAGS)` and rejects stray arguments."""

    def app_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        run(flags.FLAGS)

    return app_main


def thin_width(flag_values, model_builder, data):
    """Width multiplier of the thin dense baseline for `--sparsity`.

    The dense network at this width has as many trainable parameters as
    the sparse one (at `--sparsity`, width 1) has non-zero ones, within
    `--thin_tolerance` (the "thin dense" baseline of Mostafa & Wang, ICML 2019).
    """
    builder, kwargs = model_builder(flag_values, data)
    return tf_dsr.models.thin_dense_width(
        builder, flag_values.sparsity, tolerance=flag_values.thin_tolerance, **kwargs
    )


def build(model_builder, flag_values, sparsity, data, width_multiplier=1.0):
    """Builds the script's model at `sparsity` and `width_multiplier`."""
    builder, kwargs = model_builder(flag_values, data)
    return builder(sparsity=sparsity, seed=flag_values.seed,
                   width_multiplier=width_multiplier, **kwargs)


def run(recipe, flag_values, load_data, build_model, model_builder):
    """Trains and evaluates one experiment and writes its results JSON.

    Args:
        recipe: the script's `Recipe`.
        flag_values: parsed `absl.flags.FlagValues` with `define_flags`'
            flags and the script's own.
        load_data: function `(flag_values) -> Data`.
        build_model: function `(flag_values, sparsity, data,
            width_multiplier=1.0) -> keras.Model`, uncompiled, regularizers
            already attached.
        model_builder: function `(flag_values, data) -> (builder, kwargs)`:
            the `tf_dsr.models` builder and its arguments other than
            `sparsity`, `seed` and `width_multiplier` (for `thin`).

    Returns:
        The results dict that was written to `--output`.
    """
    fv = flag_values
    if not 0.0 <= fv.sparsity < 1.0:
        raise ValueError(f"--sparsity must be in [0, 1). Received: {fv.sparsity}.")
    lr_schedule = parse_schedule(fv.lr_schedule, float, "lr_schedule")
    # Fail before loading any data: the callback's constructor checks its options.
    method_callback(fv, fv.steps_per_epoch or max(1, recipe.num_train_examples // fv.batch_size))
    output = fv.output or default_output(recipe, fv)
    start = time.time()
    keras.utils.set_random_seed(fv.seed)

    with contextlib.ExitStack() as stack:
        if fv.mock_data > 0:
            import tensorflow_datasets as tfds

            stack.enter_context(tfds.testing.mock_data(
                num_examples=fv.mock_data, policy=tfds.testing.MockPolicy.USE_CODE))
        data = load_data(fv)
        num_train = data.num_train_examples or recipe.num_train_examples
        steps_per_epoch = fv.steps_per_epoch or max(1, num_train // fv.batch_size)

        strategy = (tf.distribute.MirroredStrategy() if fv.strategy == "mirrored"
                    else tf.distribute.get_strategy())
        with strategy.scope():
            # Gradual pruning starts from the dense network and prunes it;
            # "dense" is that network trained as it is, "thin" a narrower one.
            # Sparse layers at sparsity 0 train exactly like Keras' dense
            # layers and keep the per-layer reports working.
            network = tf_dsr.methods.get(fv.method).network
            width = (thin_width(fv, model_builder, data)
                     if network == tf_dsr.methods.THIN else 1.0)
            sparsity = fv.sparsity if network == tf_dsr.methods.SPARSE else 0.0
            model = build_model(fv, sparsity, data, width_multiplier=width)
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            if recipe.top5:
                metrics.append(
                    keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
            model.compile(
                optimizer=keras.optimizers.SGD(
                    EpochPiecewiseConstant(lr_schedule, steps_per_epoch),
                    momentum=fv.momentum, nesterov=True,
                ),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=metrics,
                run_eagerly=fv.run_eagerly,
            )
        initial = parameter_counts(model)

        reparam = method_callback(fv, steps_per_epoch)
        history = tf_dsr.SparsityHistory(every=fv.history_every or None)
        # The method's callback first: the history then sees this step's masks.
        callbacks = [c for c in (reparam, history) if c is not None]
        callbacks.append(keras.callbacks.TerminateOnNaN())
        if fv.backup_dir:
            # Two copies: a kill during the end-of-epoch save leaves the
            # latest one truncated, and Keras then restores the previous one
            # (or, after a kill inside the first save, the run starts anew).
            callbacks.append(ResumableBackup(fv.backup_dir))
        logging.info("%s on %s, method %s, sparsity %s: %d epochs of %d steps",
                     recipe.model, recipe.dataset, fv.method, fv.sparsity, fv.epochs,
                     steps_per_epoch)
        train_start = time.time()
        fit = model.fit(
            data.train,
            epochs=fv.epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the pipelines shuffle; fit cannot shuffle a Dataset
            validation_data=data.test if fv.validation_freq > 0 else None,
            validation_steps=fv.eval_steps or None,
            validation_freq=max(1, fv.validation_freq),
            verbose=fv.verbose,
        )
        train_time = time.time() - train_start
        eval_start = time.time()
        test = model.evaluate(data.test, steps=fv.eval_steps or None, return_dict=True,
                              verbose=0)
        eval_time = time.time() - eval_start

    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    state = getattr(reparam, "state", None)
    results = {
        "method": fv.method,
        "model": recipe.model,
        "dataset": recipe.dataset,
        "sparsity": 0.0 if tf_dsr.methods.is_full_dense(fv.method) else fv.sparsity,
        "width_multiplier": width,
        "seed": fv.seed,
        # From the optimizer, not `fit`'s History: a run resumed by
        # BackupAndRestore only lists the epochs after the restart.
        "epochs": steps // steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "steps": steps,
        "test": {k: float(v) for k, v in test.items()},
        "params": parameter_counts(model),
        "initial_params": initial,
        "layers": layer_table(model),
        "sparsity_history": history.history,
        "reallocation": None if state is None else {
            "method": type(reparam).__name__,
            # Only DSR has a threshold; null for the others.
            "threshold": (float(state.threshold.numpy())
                          if hasattr(state, "threshold") else None),
            "num_reallocations": int(state.num_reallocations.numpy()),
            "last_step": int(state.last_step.numpy()),
        },
        "train_history": {k: [float(x) for x in v] for k, v in fit.history.items()},
        "wall_time_seconds": {"total": time.time() - start, "train": train_time,
                              "eval": eval_time},
        "flags": flag_dict(fv),
        "versions": {"tf_dsr": tf_dsr.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }
    write_json(results, output)
    logging.info("test %s; results in %s", results["test"], output)
    return results
