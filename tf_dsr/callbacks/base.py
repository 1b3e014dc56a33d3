"""What every mask-updating method shares: when to run, on what, and how
the results land in the model.

A method (DSR, SET, ...) is a subclass that implements `_update`, a pure
function from the current kernels and masks to new ones. This base finds
the sparse kernels (every kernel/mask pair of every sparse layer, at any
depth of the model: a layer with two kernels gives two), counts steps with `optimizer.iterations`, follows the
period schedule, runs `_update` inside one `tf.function`, assigns the
results, resets optimizer slots at inactive positions and reports to the
Keras logs.
"""

import numbers
import random
import warnings
from typing import NamedTuple

import keras
import tensorflow as tf

from tf_dsr import counting
from tf_dsr import optimizer_slots
from tf_dsr.callbacks import blocks as block_views
from tf_dsr.callbacks.logs import CountLog
from tf_dsr.callbacks.logs import ThresholdLog
from tf_dsr.callbacks.state import attach_state
from tf_dsr.core.reallocation import count_active
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.base import validate_seed


class Update(NamedTuple):
    """What a method's `_update` returns (tensors, one entry per layer)."""

    kernels: list
    masks: list
    num_pruned: tf.Tensor
    num_grown: tf.Tensor
    threshold: tf.Tensor
    is_finite: tf.Tensor


class ReallocationReport(NamedTuple):
    """What one reallocation did, as Python values.

    Attributes:
        step: the optimizer step it ran at.
        num_pruned: dict, kernel name -> weights pruned (names as in
            `tf_dsr.layers.find_sparse_kernels`: the layer's path for a
            layer with one kernel).
        num_grown: dict, kernel name -> weights regrown.
        threshold: the threshold after adapting (methods without one: nan).
        sparsity: global fraction of zeros over the sparse kernels.
        skipped: True when a kernel held NaN/Inf and nothing changed.
    """

    step: int
    num_pruned: dict
    num_grown: dict
    threshold: float
    sparsity: float
    skipped: bool

    @property
    def total_pruned(self):
        return sum(self.num_pruned.values())


def check_prune_target(callback, num_active):
    """Raises if `callback.prune_target` is a count of at least `num_active`.

    Pruning every active weight at each update leaves nothing to learn:
    DSR's threshold keeps doubling and SET empties every layer.
    """
    target = callback.prune_target
    if isinstance(target, numbers.Integral) and target >= num_active:
        name = type(callback).__name__
        raise ValueError(
            f"{name}: prune_target={target} weights per update is at or above "
            f"the model's {num_active} active weights, so every update would "
            f"prune (nearly) all of them. Pass a count below {num_active}, or a "
            f"fraction of the active weights, e.g. prune_target=0.05 "
            f"({max(1, round(0.05 * num_active))} weights here)."
        )


def _validate_period(period):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"`period` {where}must be a positive int number of steps. "
                f"Received: {value!r}."
            )
        return int(value)

    if isinstance(period, dict):
        if not period:
            raise ValueError("`period` schedule is empty; give e.g. {0: 100, 25: 200}.")
        schedule = {}
        for epoch, value in period.items():
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
                raise ValueError(
                    "`period` schedule keys are epochs (ints >= 0). "
                    f"Received key {epoch!r}."
                )
            schedule[int(epoch)] = check(value, f"at epoch {epoch} ")
        if 0 not in schedule:
            raise ValueError(
                "`period` schedule must say the period from epoch 0. "
                f"Received keys {sorted(schedule)}; add a 0 entry."
            )
        return schedule
    if isinstance(period, numbers.Integral) and not isinstance(period, bool):
        return {0: check(period, "")}
    raise TypeError(
        "`period` must be an int or a dict {epoch: period}. "
        f"Received: {period!r} of type {type(period).__name__}."
    )


class ReparamCallback(keras.callbacks.Callback):
    """Base of callbacks that periodically update the masks of sparse layers.

    Args:
        period: int, or dict `{epoch: steps}` (a schedule; must have key 0).
            A reallocation runs when at least `period` optimizer steps have
            passed since the last one.
        stop_epoch: int or None. No reallocation from this epoch (0-based)
            on. Defaults to None (never stop).
        seed: int in [0, 2**63 - 1] or None. With the step and the layer's
            index it fixes all randomness. None draws one from Python's
            `random`.
        jit_compile: bool, compile the reallocation with XLA. Defaults to
            False (see BUILD_NOTES.md: faster without it on CPU).
    """

    def __init__(self, period, stop_epoch=None, seed=None, jit_compile=False):
        super().__init__()
        self.period = _validate_period(period)
        if stop_epoch is not None and (
            isinstance(stop_epoch, bool)
            or not isinstance(stop_epoch, numbers.Integral)
            or stop_epoch < 0
        ):
            raise ValueError(
                f"`stop_epoch` must be None or an int >= 0. Received: {stop_epoch!r}."
            )
        self.stop_epoch = stop_epoch
        seed = validate_seed(seed)
        self.seed = seed if seed is not None else random.randint(0, 2**31 - 1)
        self.jit_compile = bool(jit_compile)
        self.kernels = []
        self.kernel_names = []
        self.layers = []
        self.state = None
        self.last_report = None
        self._epoch = 0
        self._bound_model = None

    # ----- what a method provides -------------------------------------
    def _initial_threshold(self):
        return float("nan")

    def _update(self, kernels, masks, step, num_active):
        """Returns an `Update` for the given kernels and masks (pure TF)."""
        raise NotImplementedError

    def _check_model(self, model, num_active):
        """Raises if the method cannot work on `model` (before anything is
        attached to it); `num_active` counts its active weights."""

    # ----- wiring into the model --------------------------------------
    def set_model(self, model):
        super().set_model(model)
        if model is self._bound_model:
            return
        # A new model: report nothing of the previous one, and stay unbound
        # if this model is refused.
        self._bound_model = None
        self.last_report = None
        unbuilt = [
            layer.name for layer in walk_layers(model)
            if isinstance(layer, SparseLayer) and not layer.built
        ]
        if unbuilt:
            raise ValueError(
                f"Model '{model.name}' has unbuilt sparse layers {unbuilt}; "
                "build the model (call it once or give it an Input) before "
                "training."
            )
        found = find_sparse_kernels(model)
        if not found:
            raise ValueError(
                f"{type(self).__name__} found no tf_dsr sparse layer in model "
                f"'{model.name}'. Build the model with tf_dsr's sparse layers "
                "(tf_dsr.SparseDense, tf_dsr.SparseConv2D, ...), or convert "
                "it with tf_dsr.sparsify()."
            )
        self.kernel_names = [name for name, _ in found]
        self.kernels = [pair for _, pair in found]
        # The sparse layers updated, each once (a layer may own two kernels).
        self.layers = list({id(pair.layer): pair.layer for pair in self.kernels}.values())
        self._block_shapes = block_views.kernel_block_shapes(self.kernels)
        block_views.check_block_sizes(self.kernel_names, self.kernels, type(self).__name__)
        self._num_active = self._count_active_weights()
        # Python ints, read when the reallocation graph is traced.
        self._num_units = self._num_active_units()
        self._check_model(model, self._num_units)
        self.state = attach_state(model, self._initial_threshold())
        self._bound_model = model
        self._num_weights = sum(pair.size for pair in self.kernels)
        self._step_fn = None
        self._step_fn_slots = None
        self._binary_fn = None
        self._refresh_mirrors()

    def _count_active_weights(self):
        return sum(counting.num_active(pair.mask) for pair in self.kernels)

    def _num_active_units(self):
        """Active weights, or active blocks where kernels have a block shape:
        the unit a method's core counts in (`tf_dsr.callbacks.blocks`)."""
        return sum(
            block_views.num_active_blocks(pair, counting.num_active(pair.mask))
            for pair in self.kernels
        )

    def _refresh_mirrors(self):
        # Python copies of `state.last_step` and `state.threshold`, so that
        # a step with nothing to do reads one variable (the optimizer's
        # step), not three: each read is a host sync of ~0.05 ms, about 2%
        # of a LeNet-300-100 step. The variables stay the truth: mirrors are
        # refreshed at every train and epoch start and after each
        # reallocation, and a due reallocation re-reads `last_step` first.
        self._last_step_seen = int(self.state.last_step.numpy())
        self._threshold_seen = float(self.state.threshold.numpy())

    def _slots(self):
        optimizer = getattr(self.model, "optimizer", None)
        return [optimizer_slots.kernel_slots(optimizer, pair.kernel) for pair in self.kernels]

    def _step_function(self):
        # The traced function captures the optimizer's slot variables, which
        # appear when the optimizer builds and change on recompile: retrace
        # whenever they differ from the ones captured.
        slots = self._slots()
        key = [[id(s.variable) for s in layer_slots] for layer_slots in slots]
        if self._step_fn is None or key != self._step_fn_slots:
            # No autograph: the graph's control flow is explicit (tf.cond,
            # tf.while_loop) and Python loops run over layers, so conversion
            # would only double the tracing time.
            self._step_fn = tf.function(
                lambda step: self._reallocate_in_graph(step, slots),
                jit_compile=self.jit_compile,
                autograph=False,
            )
            self._step_fn_slots = key
        return self._step_fn

    def _reallocate_in_graph(self, step, slots):
        kernels = [pair.kernel.value for pair in self.kernels]
        masks = [pair.mask.value for pair in self.kernels]
        # Block-sparse kernels go to the core as grids of block scores and
        # block masks, and come back expanded: the one place this happens.
        scores, block_masks, _ = block_views.to_blocks(kernels, masks, None, self._block_shapes)
        update = self._update(scores, block_masks, step, self._num_units)
        update = block_views.from_blocks(update, kernels, self._block_shapes)
        for pair, layer_slots, kernel, mask in zip(
            self.kernels, slots, update.kernels, update.masks
        ):
            pair.kernel.assign(kernel)
            pair.mask.assign(mask)
            for slot in layer_slots:
                slot.reset_inactive(mask)
        self.state.threshold.assign(update.threshold)
        self.state.last_step.assign(tf.cast(step, tf.int64))
        self.state.num_reallocations.assign_add(tf.cast(update.is_finite, tf.int64))
        num_active = tf.stack([count_active(m) for m in update.masks])
        return update.num_pruned, update.num_grown, update.threshold, update.is_finite, num_active

    # ----- running ----------------------------------------------------
    def current_period(self, epoch=None):
        epoch = self._epoch if epoch is None else epoch
        return self.period[max(e for e in self.period if e <= epoch)]

    def reallocate(self, step=None):
        """Runs one reallocation now on the model given to `set_model`.

        For custom training loops and benchmarks. Does not consult the
        period; `step` (default: the optimizer's iterations, else the
        state's last step + 1) seeds the randomness.

        Returns:
            A `ReallocationReport`.
        """
        if self._bound_model is None:
            raise ValueError(
                "Call `set_model(model)` (or pass the callback to `fit`) "
                "before `reallocate()`."
            )
        if step is None:
            step = self._optimizer_step()
            if step is None:
                step = int(self.state.last_step.numpy()) + 1
        self._check_masks_binary()
        num_pruned, num_grown, threshold, is_finite, num_active = self._step_function()(
            tf.constant(step, tf.int64)
        )
        names = self.kernel_names
        report = ReallocationReport(
            step=int(step),
            num_pruned=dict(zip(names, num_pruned.numpy().tolist())),
            num_grown=dict(zip(names, num_grown.numpy().tolist())),
            threshold=float(threshold.numpy()),
            sparsity=1.0 - float(num_active.numpy().sum()) / self._num_weights,
            skipped=not bool(is_finite.numpy()),
        )
        if report.skipped:
            warnings.warn(
                f"{type(self).__name__}: a sparse kernel holds NaN or Inf at "
                f"step {step}; reallocation skipped, masks unchanged. Lower the "
                "learning rate or check the inputs.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.last_report = report
        self._last_step_seen = int(step)
        self._threshold_seen = report.threshold
        return report

    def _check_masks_binary(self):
        """Raises before anything changes if a mask holds a value not 0/1."""
        if self._binary_fn is None:
            self._binary_fn = tf.function(
                lambda: tf.stack([
                    tf.reduce_all((pair.mask.value == 0) | (pair.mask.value == 1))
                    for pair in self.kernels
                ]),
                autograph=False,
            )
        binary = self._binary_fn().numpy()
        if not binary.all():
            bad = [name for name, ok in zip(self.kernel_names, binary) if not ok]
            check_masks(
                [(name, pair) for name, pair in zip(self.kernel_names, self.kernels)
                 if name in bad],
                f"{type(self).__name__}.reallocate",
            )

    def _optimizer_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        # `.numpy()` is about twice as fast as `keras.ops.convert_to_numpy`.
        return int(optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self._refresh_mirrors()
        self._check_optimizer()
        self._warn_if_steps_per_execution_exceeds_period()

    def _warn_if_steps_per_execution_exceeds_period(self):
        # Keras runs batch-end callbacks once per execution, so at most one
        # reallocation per `steps_per_execution` steps can run; running
        # several back to back, with no training between, would change
        # nothing but the random draws.
        steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
        short = sorted(p for p in set(self.period.values()) if p < steps)
        if short:
            warnings.warn(
                f"{type(self).__name__}: steps_per_execution={steps} is above "
                f"period={short[0]}. Keras runs callbacks only every {steps} "
                f"steps, so reallocations run every {steps} steps (the effective "
                f"period), not every {short[0]}: fewer than `period` asks for. "
                f"Compile with steps_per_execution <= {short[0]}, or set period "
                f">= {steps}.",
                UserWarning,
                stacklevel=2,
            )

    def _check_optimizer(self):
        # Find the optimizer's slots now, so that an optimizer whose slots
        # cannot be found raises (and an unsupported one warns) before the
        # first step, not at the first reallocation. Keras builds the
        # optimizer at the first step; building it here, on the same
        # variables, is what `BackupAndRestore` does too.
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self._slots()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._refresh_mirrors()

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_epoch is not None and self._epoch >= self.stop_epoch:
            self._add_logs(logs)
            return
        step = self._optimizer_step()
        period = self.current_period()
        if step - self._last_step_seen >= period:
            # The mirror only ever lags the variable (subclasses move it
            # forward themselves), so it can say "due" too early, never too
            # late: confirm with the variable.
            last = int(self.state.last_step.numpy())
            self._last_step_seen = last
            if step - last >= period:
                self.reallocate(step)
                # Land on the period grid so that steps_per_execution > 1
                # keeps the number of reallocations that `period` implies.
                self._last_step_seen = last + (step - last) // period * period
                self.state.last_step.assign(self._last_step_seen)
        self._add_logs(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._threshold_seen = float(self.state.threshold.numpy())
        self._add_logs(logs)

    def _add_logs(self, logs):
        if logs is None:
            return
        report = self.last_report
        # The threshold in force: the state's (initial or restored) value
        # until the first reallocation, then the adapted one.
        logs["threshold"] = ThresholdLog(self._threshold_seen)
        logs["num_pruned"] = CountLog(report.total_pruned if report else 0)
        logs["sparsity"] = (
            report.sparsity if report else 1.0 - self._num_active / self._num_weights
        )
