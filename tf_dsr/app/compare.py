"""Compare DSR with its baselines on the bundled digits, offline.

Trains every method of the paper's LeNet-300-100 comparison (Mostafa &
Wang, ICML 2019, Table 1), plus RigL and DSR with gradient growth, on
scikit-learn's 8x8 digits at several sparsities and seeds. The methods are
the registry's (`tf_dsr/methods/registry.py`): `dsr`, `dsr-gradient`,
`rigl`, `set`, `static`, `gradual`, `dense`, `thin`. As in the paper,
`static` and `thin` train for twice as many epochs by default.

`run_one` trains one configuration and returns a plain dict; `run_grid`
loops over methods, sparsities and seeds, after `check_runs` has built
every run's callback. One dict of method options serves every method:
each takes the options its callback's constructor has
(`Method.make_callback`). `tf_dsr.app.report` turns the dicts into tables
and plots.

Example:

>>> from tf_dsr.app import report
>>> results = run_grid(["dsr", "static"], [0.9], num_seeds=1, epochs=2)
>>> print(report.format_markdown(results))
Test accuracy (%), mean ± std over 1 seed(s).
<BLANKLINE>
| method | epochs | s = 0.9 |
| --- | --- | --- |
| DSR | 2 | ... ± 0.00 |
| static sparse | 4 | ... ± 0.00 |
<BLANKLINE>
"""

import math
import numbers
import time

from tf_dsr.app.options import DEFAULTS
from tf_dsr.app.options import SET_BY_THE_APP
from tf_dsr.methods import registry
from tf_dsr.methods.registry import METHODS
from tf_dsr.methods.registry import Run

MODELS = ("lenet300", "lenet5")


# ----- validation -------------------------------------------------------
def validate_methods(methods):
    """Returns `methods` as a tuple of known names, in the given order."""
    methods, known = tuple(methods), tuple(registry.REGISTRY)
    if not methods:
        raise ValueError(f"Give at least one method out of {known}. Received none.")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}. Choose from {known}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"Each method may appear once. Received: {list(methods)}.")
    return methods


def validate_sparsities(sparsities):
    """Returns `sparsities` as a tuple of floats in [0, 1), each once."""
    sparsities = tuple(sparsities)
    if not sparsities:
        raise ValueError("Give at least one sparsity in [0, 1), e.g. 0.9.")
    for value in sparsities:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"Sparsities must be floats in [0, 1). Received: {value!r}.")
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"Sparsity is the fraction of zeros and must be in [0, 1). "
                f"Received: {value}. Use e.g. 0.9 for 10% non-zeros."
            )
    if len(set(sparsities)) != len(sparsities):
        raise ValueError(f"Each sparsity may appear once. Received: {list(sparsities)}.")
    return tuple(float(s) for s in sparsities)


def validate_num_seeds(num_seeds):
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, numbers.Integral):
        raise TypeError(f"`num_seeds` must be an int >= 1. Received: {num_seeds!r}.")
    if num_seeds < 1:
        raise ValueError(
            f"`num_seeds` must be >= 1 (runs per configuration). Received: {num_seeds}."
        )
    return int(num_seeds)


def method_epochs(method, epochs, double_static_epochs=True):
    """Epochs `method` trains for: static and thin dense get twice as many."""
    if double_static_epochs and registry.get(method).doubled_epochs:
        return 2 * epochs
    return epochs


# ----- one configuration -------------------------------------------------
def _kernel_counts(model):
    """`(num_active, num_weights)` of every kernel of `model`, sparse or dense."""
    from tf_dsr.counting import kernel_counts

    return {
        row.name: (row.num_active, row.num_weights)
        for row in kernel_counts(model, dense=True)
    }


def build_model(method, sparsity, seed, input_shape=(64,), num_classes=10, model="lenet300",
                block_shape=None):
    """The network `method` trains, and its width multiplier (1.0 unless thin).

    Args:
        method: one of `METHODS`.
        sparsity: float in [0, 1), the target sparsity (ignored by `dense`).
        seed: int, seeds the initial masks.
        input_shape: tuple. Defaults to `(64,)` (flat 8x8 digits).
        num_classes: int. Defaults to 10.
        model: one of `MODELS`: "lenet300" (LeNet-300-100 with BatchNorm,
            flat inputs) or "lenet5" (image inputs). Defaults to "lenet300".
        block_shape: None or `(b_in, b_out)`, the sparse layers' block
            shape (sparse methods only). Defaults to None.

    Returns:
        `(keras.Model, width_multiplier)`; thin dense has as many trainable
        parameters as the sparse network has non-zero ones (within 2%).
    """
    builder = model_builder(model)
    shape = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    network = registry.get(method).network
    if network == registry.SPARSE:
        return builder(sparsity=sparsity, seed=seed, block_shape=block_shape, **shape), 1.0
    if network == registry.DENSE_START:
        return builder(sparsity=0.0, seed=seed, block_shape=block_shape, **shape), 1.0
    if network == registry.DENSE:
        return builder(sparsity=None, seed=seed, **shape), 1.0
    from tf_dsr.models import thin_dense_width

    width = float(thin_dense_width(builder, sparsity, **shape))
    return builder(sparsity=None, width_multiplier=width, seed=seed, **shape), width


def model_builder(model):
    """The `tf_dsr.models` builder called `model` ("lenet300" or "lenet5")."""
    from tf_dsr.models import lenet5
    from tf_dsr.models import lenet_300_100

    builders = {"lenet300": lenet_300_100, "lenet5": lenet5}
    if model not in builders:
        raise ValueError(f"`model` must be one of {MODELS}. Received: {model!r}.")
    return builders[model]


def stop_epoch(epochs, stop_fraction):
    """First epoch without mask updates: `round(stop_fraction * epochs)`.

    None when `stop_fraction` is 1 (update until the end).
    """
    if not 0.0 < stop_fraction <= 1.0:
        raise ValueError(f"`stop_fraction` must be in (0, 1]. Received: {stop_fraction}.")
    return None if stop_fraction == 1.0 else int(round(stop_fraction * epochs))


def with_defaults(options):
    """`options` over the application's defaults (`tf_dsr.app.options.DEFAULTS`)."""
    return {**DEFAULTS, **(options or {})}


def make_callbacks(method, run, options=None, stop_epoch=None, history_every=None):
    """The mask-updating callback of `method` from the registry (none for
    static, dense and thin), and a `SparsityHistory` if asked.

    Args:
        method: a name of the registry.
        run: a `tf_dsr.methods.Run` (sparsity, seed, total steps).
        options: dict of method options over `DEFAULTS`; the method takes
            those its callback's constructor has.
        stop_epoch: int or None, first epoch without mask updates, for
            the methods that take it.
        history_every: int or None, `SparsityHistory(every=...)` of the
            sparse methods.

    Returns:
        `(callbacks, history)`: a list for `fit`, and the `SparsityHistory`
        in it (or None).
    """
    from tf_dsr.training.history import SparsityHistory

    callback = registry.make_callback(method, run, **with_defaults(options),
                                      stop_epoch=stop_epoch)
    callbacks = [] if callback is None else [callback]
    history = None
    if history_every is not None and registry.get(method).sparse:
        history = SparsityHistory(every=history_every)
        callbacks.append(history)
    return callbacks, history


def check_options(methods, options):
    """Raises unless each of `options` is taken by one of `methods`.

    Raises:
        ValueError: an option none of `methods` takes (a typo, or an
            option of a method left out), naming the methods that take it.
    """
    taken, known = registry.options(methods), registry.options(tuple(registry.REGISTRY))
    for option in options or {}:
        if option in SET_BY_THE_APP:
            raise ValueError(
                f"Option {option} is set for each run from `stop_fraction` and the "
                f"run's epochs. Received: {option}={options[option]!r}; pass "
                "`stop_fraction` instead.")
        if option not in taken:
            users = ", ".join(known.get(option, [])) or "no method"
            raise ValueError(
                f"Option {option}={options[option]!r} is not taken by {', '.join(methods)}; "
                f"it is for {users}. Leave it out, or run one of those.")


class RunError(ValueError):
    """A run of a comparison that cannot start: `method` at `sparsity`
    refused its options or its model."""

    def __init__(self, method, sparsity, error):
        super().__init__(f"{method} at sparsity {sparsity}: {error}")
        self.method, self.sparsity, self.error = method, sparsity, error


def check_runs(methods, sparsities, epochs, steps_per_epoch, options=None, input_shape=(64,),
               num_classes=10, model="lenet300", double_static_epochs=True,
               stop_fraction=0.9, block_shape=None):
    """Builds the callback of every run of a comparison and binds it to a
    fresh model of the run, so that options a constructor refuses, or a
    model a callback refuses (N_prune as a count at or above the active
    weights), fail before the first run trains.

    Raises:
        RunError: the first run that cannot start, with the method's error.
    """
    check_options(methods, options)
    for method in methods:
        if not registry.get(method).updates_masks:
            continue
        epochs_run = method_epochs(method, epochs, double_static_epochs)
        for sparsity in sparsities:
            try:
                callbacks, _ = make_callbacks(
                    method, Run(sparsity, 0, epochs_run * steps_per_epoch), options,
                    stop_epoch=stop_epoch(epochs_run, stop_fraction))
                net, _ = build_model(method, sparsity, 0, input_shape, num_classes,
                                     model=model, block_shape=block_shape)
                callbacks[0].set_model(net)
            except (ValueError, TypeError) as error:
                raise RunError(method, sparsity, error) from error


def run_one(method, sparsity, seed, data, epochs, batch_size=50, learning_rate=0.1,
            stop_fraction=0.9, history_every=None, model="lenet300", block_shape=None,
            options=None):
    """Trains one configuration and returns what it measured, as a dict.

    Compiles as `tf-dsr train` does: SGD with Nesterov momentum 0.9 at a
    constant learning rate, cross-entropy on logits.

    Args:
        method: a name of the registry (`tf_dsr.methods.METHODS`).
        sparsity: float in [0, 1), or None for `dense`.
        seed: int, seeds initialization, masks and the callback.
        data: `((x_train, y_train), (x_test, y_test))`.
        epochs: int, epochs for this run (already doubled if wanted).
        batch_size: int. Defaults to 50.
        learning_rate: float. Defaults to 0.1.
        stop_fraction: float in (0, 1]; the methods taking `stop_epoch`
            (DSR, SET, RigL) stop updating masks after this fraction of
            the epochs, as the paper stops at epoch 90 of 100. A late
            update leaves BatchNorm's moving statistics stale (a unit
            regrown from no inputs has a moving variance near 0), so
            inference breaks although training accuracy is high.
            Defaults to 0.9.
        history_every: int or None; record per-layer sparsity every so many
            steps (sparse methods). Defaults to None.
        model: one of `MODELS`.
        block_shape: None or `(b_in, b_out)` for block-sparse layers
            (sparse methods). Defaults to None.
        options: dict of method options (`prune_target`, `period`,
            `drop_fraction`, ...: any constructor argument of a method's
            callback) over `tf_dsr.app.options.DEFAULTS` (N_prune 0.05,
            period 25); the method takes those it has. Defaults to None.

    Returns:
        A JSON-ready dict: `method`, `sparsity`, `seed`, `epochs`,
        `test_accuracy`, `test_loss`, `train_accuracy`, `width_multiplier`,
        `num_active_initial` / `num_active_final` / `num_weights` (dicts
        from layer name to kernel counts), `num_kernel_active` (sum of the
        final active counts), `num_nonzero_parameters` (active kernel
        weights plus biases and BatchNorm, the thin dense target),
        `num_parameters` (all trainable), `model`, `num_mask_updates`
        (mask updates run by the method's callback; 0 without one),
        `seconds`, and `sparsity_history` (dict or None).
    """
    import keras

    from tf_dsr.counting import parameter_counts
    from tf_dsr.training.callback import ReparamCallback

    validate_methods([method])
    if registry.get(method).network == registry.DENSE:
        sparsity = None
    else:
        validate_sparsities([sparsity])
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data
    net, width = build_model(method, sparsity, seed, x_train.shape[1:],
                             int(max(y_train.max(), y_test.max())) + 1, model=model,
                             block_shape=block_shape)
    net.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    callbacks, history = make_callbacks(
        method, Run(sparsity, seed, epochs * steps_per_epoch), options,
        stop_epoch=stop_epoch(epochs, stop_fraction), history_every=history_every)
    initial = _kernel_counts(net)
    fit = net.fit(x_train, y_train, epochs=epochs, batch_size=batch_size,
                  callbacks=callbacks, verbose=0)
    test_loss, test_accuracy = net.evaluate(x_test, y_test, verbose=0)
    final = _kernel_counts(net)
    counts = parameter_counts(net)
    updaters = [c for c in callbacks if isinstance(c, ReparamCallback)]
    return {
        "method": method,
        "model": model,
        "block_shape": None if block_shape is None else list(block_shape),
        "sparsity": sparsity,
        "seed": int(seed),
        "epochs": int(epochs),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "train_accuracy": float(fit.history["accuracy"][-1]),
        "width_multiplier": width,
        "num_weights": {name: n for name, (_, n) in final.items()},
        "num_active_initial": {name: a for name, (a, _) in initial.items()},
        "num_active_final": {name: a for name, (a, _) in final.items()},
        "num_kernel_active": sum(a for a, _ in final.values()),
        "num_nonzero_parameters": counts.num_params,
        "num_parameters": counts.num_trainable,
        "num_mask_updates": sum(int(c.state.num_reallocations.numpy()) for c in updaters),
        "seconds": round(time.perf_counter() - start, 2),
        "sparsity_history": None if history is None else history.history,
    }


def grid(methods, sparsities, num_seeds):
    """The `(method, sparsity, seed)` triples of a comparison, in run order.

    Seeds run outermost so that an interrupted grid still has every method
    at every sparsity; `dense` runs once per seed, with sparsity None.
    """
    methods = validate_methods(methods)
    sparsities = validate_sparsities(sparsities)
    triples = []
    for seed in range(validate_num_seeds(num_seeds)):
        dense = [m for m in methods if registry.is_full_dense(m)]
        triples.extend((m, None, seed) for m in dense)
        for sparsity in sparsities:
            triples.extend((m, sparsity, seed) for m in methods if m not in dense)
    return triples


def run_grid(methods, sparsities, num_seeds, epochs, data=None, double_static_epochs=True,
             history_every=25, on_result=None, model="lenet300", check=True, **kwargs):
    """Runs `run_one` over methods x sparsities x seeds.

    Args:
        methods: names out of `METHODS`.
        sparsities: floats in [0, 1).
        num_seeds: int >= 1; seeds are `0 .. num_seeds - 1`. Each seed also
            fixes the train/test split of the digits.
        epochs: int, epochs of every method (static and thin: doubled).
        data: None (the digits, split by seed; flat for "lenet300", 8x8x1
            images otherwise) or a function
            `seed -> ((x_train, y_train), (x_test, y_test))`.
        double_static_epochs: bool, static and thin dense train
            `2 * epochs`, as in the paper. Defaults to True.
        history_every: int or None, `SparsityHistory(every=...)` of the
            sparse methods. Defaults to 25.
        on_result: optional function called with each result dict (and its
            index and the number of runs) as soon as it is done.
        model: one of `MODELS`. Defaults to "lenet300".
        check: bool, run `check_runs` before the first run (False when the
            caller has). Defaults to True.
        **kwargs: passed to `run_one` (batch_size, learning_rate, options, ...).

    Returns:
        A list of result dicts, in run order.

    Raises:
        RunError: (with `check`) a run whose callback refuses its options
            or its model, before anything trains.
    """
    if data is None:
        from tf_dsr.app import data as digits

        data = lambda seed: digits.load_digits(seed=seed, flat=model == "lenet300")
    triples = grid(methods, sparsities, num_seeds)
    results, split, split_seed = [], None, None
    for index, (method, sparsity, seed) in enumerate(triples):
        if seed != split_seed:
            split, split_seed = data(seed), seed
        if check and index == 0:
            _check_grid(methods, sparsities, epochs, split, double_static_epochs, model,
                        kwargs)
        result = run_one(method, sparsity, seed, split,
                         method_epochs(method, epochs, double_static_epochs),
                         history_every=history_every, model=model, **kwargs)
        results.append(result)
        if on_result is not None:
            on_result(result, index, len(triples))
    return results


def _check_grid(methods, sparsities, epochs, split, double_static_epochs, model, kwargs):
    (x_train, y_train), (_, y_test) = split
    check_runs(methods, sparsities, epochs,
               math.ceil(len(x_train) / kwargs.get("batch_size", 50)),
               options=kwargs.get("options"), input_shape=x_train.shape[1:],
               num_classes=int(max(y_train.max(), y_test.max())) + 1, model=model,
               double_static_epochs=double_static_epochs,
               stop_fraction=kwargs.get("stop_fraction", 0.9),
               block_shape=kwargs.get("block_shape"))
