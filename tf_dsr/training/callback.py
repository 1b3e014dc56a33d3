"""The one Keras callback every mask-updating method runs in.

A method (DSR, SET, RigL, gradual pruning) is a subclass whose constructor
is its configuration (with its validation) and which provides `update`, a
pure function from the current kernels and masks to new ones
(`tf_dsr.core.update.Update`). This callback finds the model's sparse
kernels, asks its `Schedule` when an update is due, runs `update` inside
one `tf.function`, assigns the results, resets optimizer slots wherever a
weight is not carried over (inactive positions and new weights) and
reports to the Keras logs. Methods that grow by gradient get the dense
gradient of the step before each update from a `GradientCapture`.
"""

import random
import warnings

import keras
import tensorflow as tf

from tf_dsr.core.counts import count_active
from tf_dsr.counting import num_active as count_mask
from tf_dsr.optimizer_slots import kernel_slots
from tf_dsr.saving.state import attach_state
from tf_dsr.validation import validate_bool
from tf_dsr.validation import validate_seed
from tf_dsr.training import blocks as block_views
from tf_dsr.training.capture import GradientCapture
from tf_dsr.training.kernels import BinaryMaskCheck
from tf_dsr.training.kernels import find_method_kernels
from tf_dsr.training.report import ReallocationReport
from tf_dsr.training.schedule import Schedule


class ReparamCallback(keras.callbacks.Callback):
    """Base of the callbacks that periodically update the masks of sparse layers.

    A method subclass sets `method` (the name of its state, see
    `tf_dsr.saving.state`) and implements `update`; it may set
    `needs_gradients` (`update` then receives the dense gradient of every
    kernel, captured at the training step before the update), `logged`
    (names logged at every batch: the last update's `info` value, before
    any update the state variable of that name, else 0), and override
    `check_model`, `state_arguments` and `begin_fit`.

    Steps: the method counts optimizer steps from where it started on the
    model (`state.start_step`), so a method that follows another on the
    same model runs like on a fresh model; `period` and the randomness use
    that count.

    Args:
        period: int, or dict `{epoch: steps}` (a schedule; must have key 0).
            An update runs when at least `period` optimizer steps have
            passed since the last one.
        stop_epoch: int or None. No update from this epoch (0-based) on.
            Defaults to None (never stop).
        seed: int in [0, 2**63 - 1] or None. With the step and the layer's
            index it fixes all randomness. None draws one from Python's
            `random`, saved in the method's state the first time it runs, so
            a resumed run keeps it.
        jit_compile: bool, compile the update with XLA. Defaults to False
            (see BUILD_NOTES.md: faster without it on CPU).
    """

    method = None
    needs_gradients = False
    logged = ()
    # Constructor arguments a run sets (`for_run`), not options of the method.
    set_by_run = frozenset({"seed"})

    def __init__(self, period, stop_epoch=None, seed=None, jit_compile=False, final_step=None):
        super().__init__()
        self.schedule = Schedule(period, stop_epoch, final_step=final_step)
        self._seed_argument = validate_seed(seed)
        self._drawn_seed = random.randint(0, 2**31 - 1)
        self.jit_compile = validate_bool(jit_compile, "jit_compile")
        self.kernels, self.kernel_names, self.layers = [], [], []
        self.state = None
        self.last_report = None
        self._epoch = 0
        self._epoch_first_step = None  # the optimizer's step at this epoch's start
        self._bound_model = None
        self._capture = GradientCapture(self)
        self._step_fn = None

    @property
    def period(self):
        """The period schedule `{epoch: steps}`."""
        return self.schedule.period

    @property
    def stop_epoch(self):
        return self.schedule.stop_epoch

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
    def update(self, kernels, masks, step, gradients):
        """Returns an `Update` for the given kernels and masks (pure TF)."""
        raise NotImplementedError

    def state_arguments(self):
        """Keyword arguments of the method's state class (when created)."""
        return {}

    def check_model(self, num_active):
        """Raises if the method cannot work on a model with `num_active`
        active weights (blocks for block-sparse layers), before anything
        is attached to it."""

    def begin_fit(self, epoch):
        """Runs at the first epoch begin of each `fit` (`epoch`: the one it
        starts at), after `BackupAndRestore` restored the state."""

    @classmethod
    def for_run(cls, run, **options):
        """This method's callback for a run of the method registry
        (`tf_dsr.methods.Run`: sparsity, seed, total steps)."""
        return cls(seed=run.seed, **options)

    # ----- wiring into the model --------------------------------------
    def set_model(self, model):
        super().set_model(model)
        if model is self._bound_model:
            return
        # A new model: report nothing of the previous one, and stay unbound
        # if this model is refused.
        self._bound_model = None
        self.last_report = None
        kernel_names, kernels, num_active_blocks = find_method_kernels(model, type(self).__name__)
        self.check_model(num_active_blocks)
        self.detach_gradients()
        self.kernel_names, self.kernels = kernel_names, kernels
        self._block_shapes = block_views.kernel_block_shapes(kernels)
        # The sparse layers updated, each once (a layer may own two kernels).
        self.layers = list({id(pair.layer): pair.layer for pair in kernels}.values())
        self._num_weights = sum(pair.size for pair in kernels)
        self._initial_active = sum(count_mask(pair.mask) for pair in kernels)
        self.model_state = attach_state(model)
        self.state = self.model_state.state_for(self.method, **self.state_arguments())
        self._bound_model = model
        self._step_fn = None
        self._binary_check = None
        self._logged_seen = dict.fromkeys(self.logged, 0.0)
        self._refresh_mirrors()

    def _refresh_mirrors(self):
        # Python copies of the state's step variables, so that a step with
        # nothing to do reads one variable (the optimizer's step), not
        # three: each read is a host sync. The variables stay the truth:
        # the mirrors are refreshed at every train and epoch start and
        # after each update, and a due update re-reads `last_step` first.
        self._last_step_seen = int(self.state.last_step.numpy())
        self._start_step_seen = max(0, int(self.state.start_step.numpy()))
        for name in self.logged:
            if hasattr(self.state, name):
                self._logged_seen[name] = float(getattr(self.state, name).numpy())

    def _sync_seed(self):
        # The state's seed is what the graph reads. An explicit argument
        # wins; otherwise a saved seed (a resumed run) is kept, and a fresh
        # state saves the seed drawn at construction.
        if self._seed_argument is not None:
            self.state.seed.assign(self._seed_argument)
        elif int(self.state.seed.numpy()) < 0:
            self.state.seed.assign(self._drawn_seed)

    def detach_gradients(self):
        """Removes the dense-gradient hooks from the model's layers.

        Methods growing by gradient keep them between `fit` calls (idle,
        they cost one `tf.cond` per kernel and step); call this before
        Keras' own `model.export` or when the callback is done.
        """
        if self._capture.attached:
            self._capture.detach()
            self._step_fn = None  # it read the old capture's variables

    # ----- one update ---------------------------------------------------
    def _slots(self):
        optimizer = getattr(self.model, "optimizer", None)
        return [kernel_slots(optimizer, pair.kernel) for pair in self.kernels]

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
                lambda step, mark: self._update_in_graph(step, mark, slots),
                jit_compile=self.jit_compile,
                autograph=False,
            )
            self._step_fn_slots = key
        return self._step_fn

    def _update_in_graph(self, step, mark, slots):
        kernels = [pair.kernel.value for pair in self.kernels]
        masks = [pair.mask.value for pair in self.kernels]
        gradients = self._capture.values() if self.needs_gradients else None
        # Block-sparse kernels go to the core as grids of block scores, block
        # masks and block gradients, and come back expanded: the one place
        # this happens (`tf_dsr/training/blocks.py`).
        scores, block_masks, block_gradients = block_views.to_blocks(
            kernels, masks, gradients, self._block_shapes)
        update = self.update(scores, block_masks, step, block_gradients)
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
        # A figure the update reports under the name of a state variable
        # (DSR's threshold) is that variable's new value.
        for name, value in update.info.items():
            if name in self.state.method_variable_names():
                getattr(self.state, name).assign(value)
        # The one writer of `last_step`: the step of this update, or where
        # the period grid stands.
        self.state.last_step.assign(tf.cast(mark, tf.int64))
        self.state.num_reallocations.assign_add(tf.cast(update.is_finite, tf.int64))
        num_active = tf.stack([count_active(m) for m in update.masks])
        info = {name: tf.cast(value, tf.float32) for name, value in update.info.items()}
        return update.num_pruned, update.num_grown, info, update.is_finite, num_active

    def method_step(self):
        """The method's step: optimizer steps since it started on the model
        (None without an optimizer)."""
        step = self._optimizer_step()
        if step is None:
            return None
        return step - max(0, int(self.state.start_step.numpy()))

    def reallocate(self, step=None, mark=None):
        """Runs one update now on the model given to `set_model`.

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
        mark = step if mark is None else mark
        results = self._step_function()(tf.constant(step, tf.int64), tf.constant(mark, tf.int64))
        report = self._report(step, *results)
        self.last_report = report
        self._last_step_seen = int(mark)
        self._logged_seen.update({name: report.info[name] for name in self.logged
                                  if name in report.info})
        self._capture.release()
        return report

    def _report(self, step, num_pruned, num_grown, info, is_finite, num_active):
        report = ReallocationReport(
            step=int(step),
            num_pruned=dict(zip(self.kernel_names, num_pruned.numpy().tolist())),
            num_grown=dict(zip(self.kernel_names, num_grown.numpy().tolist())),
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
                stacklevel=3,
            )
        return report

    def gradients_captured(self):
        """Whether a dense gradient was captured since the last request
        (False when no capture was ever set up: asking attaches nothing)."""
        return self._capture.captured()

    def request_gradients(self):
        """Arms the dense-gradient capture for the next training step(s)."""
        if self.needs_gradients:
            self._capture.attach(self._bound_model, self.model_state, self.kernels)
            self._capture.arm()

    def _check_masks_binary(self, where=None):
        """Raises before anything changes if a mask holds a value not 0/1."""
        if self._binary_check is None:
            self._binary_check = BinaryMaskCheck(self.kernel_names, self.kernels)
        self._binary_check(where or f"{type(self).__name__}.reallocate")

    def _optimizer_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        return int(optimizer.iterations.numpy())

    # ----- Keras hooks --------------------------------------------------
    def on_train_begin(self, logs=None):
        # Every check first: a refused fit leaves the state as it was.
        name = type(self).__name__
        self.state.check_usable(name)
        self._check_optimizer()
        # A mask of NaN or 0.5 would train a whole period wrongly before the
        # first update refused it: refuse it now.
        self._check_masks_binary(f"{name} at the start of fit")
        self.schedule.warn_if_steps_per_execution_exceeds_period(
            self._steps_per_execution(), name)
        # Outside `fit` (a custom loop calling the hooks) there is no fit
        # to share: a new object claims nothing another callback holds.
        self.model_state.claim(self, self.params if self.params else object())
        if not self.state.started():
            # A method's steps count from here: after another method it
            # starts like on a fresh model, and with this callback's
            # arguments (another may have bound the state first).
            self.state.start_with(self._optimizer_step() or 0, **self.state_arguments())
        self._sync_seed()
        self._refresh_mirrors()
        if self.needs_gradients:
            self._capture.attach(self._bound_model, self.model_state, self.kernels)
        # What depends on the epoch this fit starts at, and on a state that
        # `BackupAndRestore` may restore after this hook, waits for the
        # first epoch begin.
        self._fit_starting = True

    def on_train_end(self, logs=None):
        self._epoch_first_step = None
        self.model_state.release(self)
        # Disarmed, but the hooks stay for the next `fit` of this callback:
        # detaching would make Keras trace the train function again at every
        # `fit`. `detach_gradients()` removes them.
        self._capture.release()

    def _steps_per_execution(self):
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

    def _check_optimizer(self):
        # Find the optimizer's slots now, so that an optimizer whose slots
        # cannot be found raises (and an unsupported one warns) before the
        # first step, not at the first update. Keras builds the optimizer
        # at the first step; building it here, on the same variables, is
        # what `BackupAndRestore` does too.
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self._slots()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._refresh_mirrors()
        if getattr(self, "_fit_starting", False):
            self._fit_starting = False
            self.begin_fit(epoch)
            self._warn_if_no_update_can_run(epoch)
        # After `BackupAndRestore` restored the state (it runs in
        # `on_train_begin`, possibly after this callback's).
        step = self._optimizer_step()
        self._epoch_first_step = step
        if step is not None:
            self._arm_if_next_update_due(step - self._start_step_seen)

    def fit_length(self):
        """`(steps per epoch, epochs)` of the running fit (None if unknown)."""
        params = self.params or {}
        return params.get("steps"), params.get("epochs")

    def _warn_if_no_update_can_run(self, epoch):
        message = self.schedule.no_update_message(
            self.method_step(), self._last_step_seen, epoch, *self.fit_length())
        if message:
            warnings.warn(f"{type(self).__name__}: {message}", UserWarning, stacklevel=3)

    def _arm_if_next_update_due(self, step):
        # Arm the capture between steps when the next batch end (Keras runs
        # `steps_per_execution` steps before it) is due for an update: no
        # batch-begin hook, which would cost a host sync on every step.
        if not self.needs_gradients:
            return
        next_step = step + self._steps_per_execution()
        if self.schedule.due(next_step, self._last_step_seen, self._epoch) is not None:
            self._capture.arm()
        elif self._capture.armed:
            # Armed for an update that will not run (stopped): every later
            # step would write dense gradients.
            self._capture.release()

    def on_train_batch_end(self, batch, logs=None):
        if self._surely_idle(batch):
            self._add_logs(logs)
            return
        step = self._optimizer_step() - self._start_step_seen
        if self.schedule.due(step, self._last_step_seen, self._epoch) is not None:
            # The mirror only ever lags the variable, so it can say "due"
            # too early, never too late: confirm with the variable.
            self._last_step_seen = int(self.state.last_step.numpy())
            mark = self.schedule.due(step, self._last_step_seen, self._epoch)
            if mark is not None and self._gradients_ready(step):
                self.reallocate(step, mark=mark)
        self._arm_if_next_update_due(step)
        self._add_logs(logs)

    def _surely_idle(self, batch):
        """Whether no update is due now nor (capture) at the next batch end,
        known without reading the optimizer's step: that read is a host
        sync that stalls Keras' queue of steps (0.2 ms of a 2.5 ms LeNet
        step). At most `batch + 1` steps ran in this epoch, so the step is
        at most the epoch's first plus that."""
        if self._epoch_first_step is None or self._capture.armed:
            return False  # outside `fit`'s epochs, or an armed capture to settle
        bound = self._epoch_first_step + batch + 1 - self._start_step_seen
        if self.needs_gradients:
            bound += self._steps_per_execution()
        return self.schedule.surely_not_due(bound, self._last_step_seen, self._epoch)

    def _gradients_ready(self, step):
        """Whether the update due at `step` has the gradient it needs; if
        not, arms the capture so that it runs after the next step."""
        if not self.needs_gradients:
            return True
        if not self.gradients_captured():
            # Not armed for this step (the state was restored after the
            # batch began).
            problem = "no dense gradient was captured for"
        elif not self._capture.finite():
            # A float16 loss-scale overflow (the optimizer skips that step
            # too): the update would be skipped and its period lost.
            problem = ("the dense gradient captured holds NaN or Inf (a "
                       "loss-scale overflow under mixed precision?) for")
        else:
            return True
        warnings.warn(
            f"{type(self).__name__}: {problem} the update due at step {step}; it "
            "runs after the next step.",
            RuntimeWarning,
            stacklevel=3,
        )
        self._capture.arm()
        return False

    def on_epoch_end(self, epoch, logs=None):
        self._add_logs(logs)

    def _add_logs(self, logs):
        if logs is None:
            return
        report = self.last_report
        logs.update(self._logged_seen)
        logs["num_pruned"] = float(report.total_pruned if report else 0)
        logs["sparsity"] = (report.sparsity if report
                            else 1.0 - self._initial_active / self._num_weights)
