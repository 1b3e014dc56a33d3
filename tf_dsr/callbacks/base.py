"""What every mask-updating method shares: when to run, on what, and how
the results land in the model.

A method (DSR, SET, ...) is a subclass that implements `_update`, a pure
function from the current kernels and masks to new ones. This base finds
the sparse kernels (every kernel/mask pair of every sparse layer, at any
depth of the model: a layer with two kernels gives two), counts steps
with `optimizer.iterations`, follows the period schedule, runs `_update`
inside one `tf.function`, assigns the results, resets optimizer slots
wherever a weight is not carried over (inactive positions and new
weights) and reports to the Keras logs.
"""

import numbers
import random
import warnings
from typing import NamedTuple

import keras
import tensorflow as tf

from tf_dsr import counting
from tf_dsr import dense_gradients
from tf_dsr import optimizer_slots
from tf_dsr.callbacks import blocks as block_views
from tf_dsr.callbacks.logs import CountLog
from tf_dsr.callbacks.state import attach_state
from tf_dsr.core.reallocation import count_active
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.find import check_masks
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import walk_layers
from tf_dsr.layers.base import validate_seed


class ReallocationReport(NamedTuple):
    """What one reallocation did, as Python values.

    Attributes:
        step: the optimizer step it ran at.
        num_pruned: dict, kernel name -> weights pruned (names as in
            `tf_dsr.layers.find_sparse_kernels`: the layer's path for a
            layer with one kernel).
        num_grown: dict, kernel name -> weights regrown.
        info: dict of the method's own figures as floats (DSR:
            `threshold`, H after adapting; RigL: `drop_fraction`, f(t);
            gradual pruning: `sparsity`, the target s_t).
        sparsity: global fraction of zeros over the sparse kernels.
        skipped: True when a kernel (or a gradient used for growth) held
            NaN/Inf and nothing changed.
    """

    step: int
    num_pruned: dict
    num_grown: dict
    info: dict
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
            f"the model's {num_active} active weights (counted in blocks for "
            "block-sparse layers), so every update would "
            f"prune (nearly) all of them. Pass a count below {num_active}, or a "
            f"fraction of the active weights, e.g. prune_target=0.05 "
            f"({max(1, round(0.05 * num_active))} weights here)."
        )


def validate_optional_int(value, name, minimum, meaning=""):
    """Returns `value` (None or an int >= `minimum`) or raises ValueError."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be None or an int >= {minimum}{meaning}. Received: {value!r}."
        )
    return None if value is None else int(value)


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

    A method subclass sets `method` (the name of its state, see
    `tf_dsr.callbacks.state`), implements `_update` (a pure function of
    kernels and masks returning a `tf_dsr.core.update.Update`), and may set
    `needs_gradients` (the update then receives the dense gradient of every
    kernel, captured at the training step before the update).

    Steps: the method counts optimizer steps from where it started on the
    model (`state.start_step`), so a method that follows another on the
    same model runs like on a fresh model; `period` and the randomness use
    that count.

    Args:
        period: int, or dict `{epoch: steps}` (a schedule; must have key 0).
            A reallocation runs when at least `period` optimizer steps have
            passed since the last one.
        stop_epoch: int or None. No reallocation from this epoch (0-based)
            on. Defaults to None (never stop).
        seed: int in [0, 2**63 - 1] or None. With the step and the layer's
            index it fixes all randomness. None draws one from Python's
            `random`, saved in the method's state the first time it runs, so
            a resumed run keeps it.
        jit_compile: bool, compile the reallocation with XLA. Defaults to
            False (see BUILD_NOTES.md: faster without it on CPU).
    """

    method = None
    needs_gradients = False

    def __init__(self, period, stop_epoch=None, seed=None, jit_compile=False):
        super().__init__()
        self.period = _validate_period(period)
        self.stop_epoch = validate_optional_int(stop_epoch, "stop_epoch", 0)
        self._seed_argument = validate_seed(seed)
        self._drawn_seed = random.randint(0, 2**31 - 1)
        self.jit_compile = bool(jit_compile)
        self.kernels = []
        self.kernel_names = []
        self.layers = []
        self.state = None
        self.last_report = None
        self._epoch = 0
        self._bound_model = None
        self._capture = None
        # Mirrors whether this callback left the capture armed, so that a
        # stopped batch end disarms it without a variable write per step.
        self._armed = False

    @property
    def seed(self):
        """The seed in force: the argument, else the one saved in the state,
        else the one drawn at construction."""
        if self._seed_argument is not None:
            return self._seed_argument
        if self.state is not None:
            saved = int(self.state.seed.numpy())
            if saved >= 0:
                return saved
        return self._drawn_seed

    # ----- what a method provides -------------------------------------
    def _state_arguments(self):
        """Keyword arguments of the method's state class (when created)."""
        return {}

    def _update(self, kernels, masks, step, gradients):
        """Returns an `Update` for the given kernels and masks (pure TF)."""
        raise NotImplementedError

    def _assign_method_state(self, update):
        """Writes the method's own state from `update.info` (in the graph)."""

    def _method_logs(self):
        """Extra Keras logs of the method: dict name -> value."""
        return {}

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
        kernel_names = [name for name, _ in found]
        kernels = [pair for _, pair in found]
        block_views.check_block_sizes(kernel_names, kernels, type(self).__name__)
        active = [counting.num_active(pair.mask) for pair in kernels]
        num_active = sum(active)
        # Methods count in blocks where kernels have a block shape.
        self._check_model(model, sum(
            block_views.num_active_blocks(pair, n) for pair, n in zip(kernels, active)))
        self.kernel_names, self.kernels = kernel_names, kernels
        self._block_shapes = block_views.kernel_block_shapes(kernels)
        # The sparse layers updated, each once (a layer may own two kernels).
        self.layers = list({id(pair.layer): pair.layer for pair in self.kernels}.values())
        self._num_active = num_active
        self.model_state = attach_state(model)
        self.state = self.model_state.state_for(self.method, **self._state_arguments())
        self._bound_model = model
        self._num_weights = sum(pair.size for pair in self.kernels)
        self._step_fn = None
        self._step_fn_slots = None
        self._binary_fn = None
        self._detach_capture()
        self._refresh_mirrors()

    def _detach_capture(self):
        if self._capture is not None:
            self._capture.detach()
            self._capture = None
            self._step_fn = None  # it read the old capture's variables
            state = getattr(self, "model_state", None)
            if state is not None and state.gradient_user is self:
                state.gradient_user = None
            self._retrace_train_function()

    def _retrace_train_function(self):
        # Keras traced `train_function` once; the gradient hooks live in
        # the layers' `call`, so a function traced before they were
        # attached (or after they were detached) must be traced again.
        # Keras looks `model.train_function` up at every step.
        model = self._bound_model or self.model
        if model is not None and getattr(model, "optimizer", None) is not None:
            model.make_train_function(force=True)

    def _count_active_weights(self):
        return sum(counting.num_active(pair.mask) for pair in self.kernels)


    def _refresh_mirrors(self):
        # A Python copy of `state.last_step`, so that a step with nothing to
        # do reads one variable (the optimizer's step), not two: each read
        # is a host sync of ~0.05 ms, about 2% of a LeNet-300-100 step. The
        # variable stays the truth: the mirror is refreshed at every train
        # and epoch start and after each reallocation, and a due
        # reallocation re-reads `last_step` first.
        self._last_step_seen = int(self.state.last_step.numpy())
        self._start_step_seen = max(0, int(self.state.start_step.numpy()))

    def _sync_seed(self):
        # The state's seed is what the graph reads. An explicit argument
        # wins; otherwise a saved seed (a resumed run) is kept, and a fresh
        # state saves the seed drawn at construction.
        if self._seed_argument is not None:
            self.state.seed.assign(self._seed_argument)
        elif int(self.state.seed.numpy()) < 0:
            self.state.seed.assign(self._drawn_seed)

    def _slots(self):
        optimizer = getattr(self.model, "optimizer", None)
        return [optimizer_slots.kernel_slots(optimizer, pair.kernel) for pair in self.kernels]

    def _gradient_capture(self):
        """The dense-gradient capture of this callback's kernels (created once)."""
        if self._capture is None:
            # One capture per kernel: a callback that used one on this
            # model before (an earlier fit's) gives its hooks up.
            previous = self.model_state.gradient_user
            if previous is not None and previous is not self:
                previous.detach_gradients()
            self._capture = dense_gradients.DenseGradients(self.kernels)
            self.model_state.gradient_user = self
            self._retrace_train_function()
        return self._capture

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
                lambda step, mark: self._reallocate_in_graph(step, mark, slots),
                jit_compile=self.jit_compile,
                autograph=False,
            )
            self._step_fn_slots = key
        return self._step_fn

    def _reallocate_in_graph(self, step, mark, slots):
        kernels = [pair.kernel.value for pair in self.kernels]
        masks = [pair.mask.value for pair in self.kernels]
        gradients = None
        if self.needs_gradients:
            gradients = [tf.convert_to_tensor(v) for v in self._gradient_capture().variables]
        # Block-sparse kernels go to the core as grids of block scores, block
        # masks and block gradients, and come back expanded: the one place
        # this happens (`tf_dsr/callbacks/blocks.py`).
        scores, block_masks, block_gradients = block_views.to_blocks(
            kernels, masks, gradients, self._block_shapes)
        update = self._update(scores, block_masks, step, block_gradients)
        update = block_views.from_blocks(update, kernels, self._block_shapes)
        for pair, layer_slots, kernel, mask, carried in zip(
            self.kernels, slots, update.kernels, update.masks, update.carried
        ):
            pair.kernel.assign(kernel)
            pair.mask.assign(mask)
            # Slots start over wherever a weight is not carried over: at
            # inactive positions and at newly grown ones. Only the core
            # knows which are new: `old_mask & mask` would also keep the
            # state of a weight regrown where one was just dropped.
            kept = tf.cast(carried & tf.not_equal(mask, 0), tf.float32)
            for slot in layer_slots:
                slot.reset_inactive(kept)
        self._assign_method_state(update)
        # The one writer of `last_step`: the step of this update, or where
        # the period grid stands (`on_train_batch_end`).
        self.state.last_step.assign(tf.cast(mark, tf.int64))
        self.state.num_reallocations.assign_add(tf.cast(update.is_finite, tf.int64))
        num_active = tf.stack([count_active(m) for m in update.masks])
        info = {name: tf.cast(value, tf.float32) for name, value in update.info.items()}
        return update.num_pruned, update.num_grown, info, update.is_finite, num_active

    # ----- running ----------------------------------------------------
    def current_period(self, epoch=None):
        epoch = self._epoch if epoch is None else epoch
        return self.period[max(e for e in self.period if e <= epoch)]

    def method_step(self):
        """The method's step: optimizer steps since it started on the model
        (None without an optimizer)."""
        step = self._optimizer_step()
        if step is None:
            return None
        return step - max(0, int(self.state.start_step.numpy()))

    def reallocate(self, step=None, mark=None):
        """Runs one reallocation now on the model given to `set_model`.

        For custom training loops and benchmarks. Does not consult the
        period; `step` (default: the method's step, from the optimizer,
        else the state's last step + 1) seeds the randomness.

        Args:
            step: int or None, the method's step of this update.
            mark: int or None, what `state.last_step` records (defaults to
                `step`; the period grid passes its own).

        Returns:
            A `ReallocationReport`.
        """
        if self._bound_model is None:
            raise ValueError(
                "Call `set_model(model)` (or pass the callback to `fit`) "
                "before `reallocate()`."
            )
        if step is None:
            step = self.method_step()
            if step is None:
                step = int(self.state.last_step.numpy()) + 1
        self._check_masks_binary()
        if self.needs_gradients and not self.gradients_captured():
            raise ValueError(
                f"{type(self).__name__}.reallocate at step {step}: no dense "
                "gradient was captured since the last update, and growth needs "
                "it. Call `request_gradients()` before a training step, then "
                "`reallocate()` after it (`fit` does this by itself)."
            )
        self._sync_seed()
        num_pruned, num_grown, info, is_finite, num_active = self._step_function()(
            tf.constant(step, tf.int64), tf.constant(step if mark is None else mark, tf.int64)
        )
        names = self.kernel_names
        report = ReallocationReport(
            step=int(step),
            num_pruned=dict(zip(names, num_pruned.numpy().tolist())),
            num_grown=dict(zip(names, num_grown.numpy().tolist())),
            info={name: float(value.numpy()) for name, value in info.items()},
            sparsity=1.0 - float(num_active.numpy().sum()) / self._num_weights,
            skipped=not bool(is_finite.numpy()),
        )
        if report.skipped:
            warnings.warn(
                f"{type(self).__name__}: a sparse kernel"
                + (" or its dense gradient" if self.needs_gradients else "")
                + f" holds NaN or Inf at step {step}; reallocation skipped, masks "
                "unchanged. Lower the learning rate or check the inputs.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.last_report = report
        self._last_step_seen = int(step if mark is None else mark)
        self._release_capture()
        return report

    def gradients_captured(self):
        """Whether a dense gradient was captured since the last request
        (False when no capture was ever set up: asking attaches nothing)."""
        if self._capture is None:
            return False
        return bool(tf.convert_to_tensor(self._capture.captured).numpy())

    def request_gradients(self):
        """Arms the dense-gradient capture for the next training step(s)."""
        if self.needs_gradients:
            self._request_capture()

    def _request_capture(self):
        self._gradient_capture().request()
        self._armed = True

    def _release_capture(self):
        if self._capture is not None:
            self._capture.release()
        self._armed = False

    def _check_masks_binary(self, where=None):
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
                where or f"{type(self).__name__}.reallocate",
            )

    def _optimizer_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        # `.numpy()` is about twice as fast as `keras.ops.convert_to_numpy`.
        return int(optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        step = self._optimizer_step() or 0
        # Outside `fit` (a custom loop calling the hooks) there is no fit
        # to share: a new object claims nothing another callback holds.
        self.model_state.claim(self, self.params if self.params else object())
        if not self.state.started():
            # A method's steps count from here: after another method it
            # starts like on a fresh model.
            self.state.start_step.assign(step)
            self.state.last_step.assign(0)
        self._sync_seed()
        self._refresh_mirrors()
        self._check_optimizer()
        # A mask of NaN or 0.5 would train a whole period wrongly before the
        # first update refused it: refuse it now.
        self._check_masks_binary(f"{type(self).__name__} at the start of fit")
        self._warn_if_steps_per_execution_exceeds_period()
        if self.needs_gradients:
            self._gradient_capture()
        # What depends on the epoch this fit starts at, and on a state that
        # `BackupAndRestore` may restore after this hook, waits for the
        # first epoch begin.
        self._fit_starting = True

    def on_train_end(self, logs=None):
        self.model_state.release(self)
        # Disarmed, but the hooks stay for the next `fit` of this callback:
        # detaching would make Keras trace the train function again at every
        # `fit` (a second per fit on LeNet-300-100). `detach_gradients()`
        # removes them.
        self._release_capture()

    def detach_gradients(self):
        """Removes the dense-gradient hooks from the model's layers.

        Methods growing by gradient keep them between `fit` calls (idle,
        they cost one `tf.cond` per kernel and step); call this before
        Keras' own `model.export` or when the callback is done.
        """
        self._detach_capture()

    def _warn_if_steps_per_execution_exceeds_period(self):
        # Keras runs batch-end callbacks once per execution, so at most one
        # reallocation per `steps_per_execution` steps can run; running
        # several back to back, with no training between, would change
        # nothing but the random draws.
        steps = self._steps_per_execution()
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

    def _steps_per_execution(self):
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

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
        if getattr(self, "_fit_starting", False):
            self._fit_starting = False
            self._begin_fit(epoch)
        # After `BackupAndRestore` restored the state (it runs in
        # `on_train_begin`, possibly after this callback's).
        step = self._optimizer_step()
        if step is not None:
            self._arm_if_next_update_due(step - self._start_step_seen)

    def _begin_fit(self, epoch):
        """Runs at the first epoch begin of each `fit` (`epoch`: the one it
        starts at), after `BackupAndRestore` restored the state."""
        self._warn_if_no_update_can_run(epoch)

    def _fit_length(self, epoch):
        """Steps this fit runs from `epoch` on, and how many of them come
        before `stop_epoch` (None, None if `fit` did not say its length)."""
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps or not epochs:
            return None, None
        stop = epochs if self.stop_epoch is None else min(self.stop_epoch, epochs)
        return max(0, epochs - epoch) * steps, max(0, stop - epoch) * steps

    def _last_updatable_step(self, epoch):
        """The last method step of this fit whose batch end may update
        (None if unknown)."""
        _, before_stop = self._fit_length(epoch)
        step = self.method_step()
        if before_stop is None or step is None:
            return None
        return step + before_stop

    def _warn_if_no_update_can_run(self, epoch):
        last = self._last_updatable_step(epoch)
        if last is None:
            return
        # The smallest period this fit may use from `epoch` on.
        period = min([self.current_period(epoch)]
                     + [p for e, p in self.period.items() if e > epoch])
        first_due = self._last_step_seen + period
        if first_due > last:
            step = self.method_step()
            length, _ = self._fit_length(epoch)
            warnings.warn(
                f"{type(self).__name__}: no update can run in this fit. The first "
                f"is due at the method's step {first_due} (last update or start "
                f"{self._last_step_seen} + period {period}), and the last step "
                f"that can update is {last} (the fit runs steps {step + 1} to "
                f"{step + length}{self._update_window_text()}). "
                + (f"Use period <= {last - self._last_step_seen}, train longer, or "
                   if last > self._last_step_seen else "Train longer, or ")
                + "move the end of the updates later.",
                UserWarning,
                stacklevel=2,
            )

    def _update_window_text(self):
        if self.stop_epoch is None:
            return ""
        return f"; stop_epoch={self.stop_epoch} ends updates at that epoch's start"

    def _stopped(self, step):
        """Whether updates are over at the method's step `step` (no host
        read here: batch ends call it every step)."""
        return self.stop_epoch is not None and self._epoch >= self.stop_epoch

    def _arm_if_next_update_due(self, step):
        # Arm the capture between steps when the next batch end (Keras runs
        # `steps_per_execution` steps before it) is due for an update: no
        # batch-begin hook, which would cost a host sync on every step.
        if not self.needs_gradients:
            return
        next_step = step + self._steps_per_execution()
        # Stopped where the update would run, not now: armed for an update
        # that never runs, every later step would write dense gradients.
        if self._stopped(next_step):
            if self._armed:
                self._release_capture()
        elif next_step - self._last_step_seen >= self.current_period():
            self._request_capture()

    def on_train_batch_end(self, batch, logs=None):
        step = self._optimizer_step() - self._start_step_seen
        if self._stopped(step):
            # Armed at the last batch end of the epoch before `stop_epoch`.
            if self._armed:
                self._release_capture()
            self._add_logs(logs)
            return
        self._reallocate_if_due(step)
        self._arm_if_next_update_due(step)
        self._add_logs(logs)

    def _reallocate_if_due(self, step):
        period = self.current_period()
        if step - self._last_step_seen >= period:
            # The mirror only ever lags the variable, so it can say "due"
            # too early, never too late: confirm with the variable.
            last = int(self.state.last_step.numpy())
            self._last_step_seen = last
            if step - last >= period and self.needs_gradients and not self.gradients_captured():
                # The capture was not armed for this step (the state was
                # restored after the batch began): arm it and update after
                # the next step.
                warnings.warn(
                    f"{type(self).__name__}: no dense gradient was captured for "
                    f"the update due at step {step}; it runs after the next step.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._request_capture()
            elif step - last >= period and self.needs_gradients and not self._capture.finite():
                # A float16 loss-scale overflow (the optimizer skips that
                # step too): the update would be skipped and its period
                # lost. Capture again and update after the next step.
                warnings.warn(
                    f"{type(self).__name__}: the dense gradient captured for the "
                    f"update due at step {step} holds NaN or Inf (a loss-scale "
                    "overflow under mixed precision?); the update runs after the "
                    "next step.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._request_capture()
            elif step - last >= period:
                # Land on the period grid so that steps_per_execution > 1
                # keeps the number of reallocations that `period` implies.
                self.reallocate(step, mark=last + (step - last) // period * period)

    def on_epoch_end(self, epoch, logs=None):
        self._add_logs(logs)

    def _add_logs(self, logs):
        if logs is None:
            return
        report = self.last_report
        logs.update(self._method_logs())
        logs["num_pruned"] = CountLog(report.total_pruned if report else 0)
        logs["sparsity"] = (
            report.sparsity if report else 1.0 - self._num_active / self._num_weights
        )
