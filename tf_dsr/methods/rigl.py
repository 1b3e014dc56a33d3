"""RigL: the Rigged Lottery (Evci et al., ICML 2020)."""

import tensorflow as tf

from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import register_state
from tf_dsr.core import rigl
from tf_dsr.training.callback import ReparamCallback
from tf_dsr.validation import validate_fraction
from tf_dsr.validation import validate_optional_int


@register_state("rigl")
class RigLState(MethodState):
    """State of `RigL`: the variables every method has and its schedule.

    Attributes (int64 scalar variables, -1 until a schedule starts):
        schedule_begin: the method's step where the cosine schedule in
            force started.
        schedule_end: T_end, the method's step where it ends.
        fit_end: the method's step where the fit that runs the schedule
            ends (planned when it starts, actual when it ends): a fit
            starting before it resumes the schedule, one starting at or
            after it starts a new one.
    """

    SCHEDULE = ("schedule_begin", "schedule_end", "fit_end")

    def build_method_variables(self):
        for name in self.SCHEDULE:
            setattr(self, name, self._int_variable(name, -1))

    def reset_method_variables(self):
        for name in self.SCHEDULE:
            getattr(self, name).assign(-1)


class RigL(ReparamCallback):
    """RigL during `model.fit`: drop the weakest, grow where the gradient is.

    Every `period` steps until T_end, each sparse layer on its own drops the
    fraction `f(t) = drop_fraction / 2 * (1 + cos(pi t / T_end))` of its
    active weights with the smallest magnitude and grows as many where the
    magnitude of the dense loss gradient is largest among its inactive
    positions. New weights start at 0 and their optimizer slots are reset; a
    weight dropped and regrown in the same update keeps its value. Layer
    budgets stay fixed: every layer keeps its number of active weights.

    The dense gradient (with respect to `kernel * mask`, which the
    optimizer never sees at inactive positions) is captured by
    `tf_dsr.dense_gradients` at the training step just before each update
    only. The model, `compile` and `fit` are the user's, unchanged.

    The schedule (its start and T_end, in the method's steps) is recorded
    in the state when a fit starts one, and `t` counts from its start. A
    fit that starts before the recorded fit's end (a run resumed by
    `BackupAndRestore`) keeps it, so the resumed run equals the
    uninterrupted one; a later fit (this callback again, a new `RigL` on
    the model, or a model from `tf_dsr.load_model`) starts a new schedule
    over its own epochs, from the steps already taken. `end_step` keeps
    one schedule, from the method's start, over every fit. A fit in which
    no update can run (the first due step at or after T_end) warns.

    Reference: Evci, Gale, Menick, Castro and Elsen, "Rigging the Lottery:
    Making All Tickets Winners", ICML 2020, Algorithm 1. RigL's default
    initial split is ERK with a dense first layer: build with
    `distribution="erk"` (the `tf_dsr.models` builders) to match it.

    Args:
        drop_fraction: float in (0, 1], alpha, the fraction moved at the
            first update. Defaults to 0.3 (the paper's).
        period: int steps between updates (Delta T), or a schedule
            `{epoch: steps}` with key 0. Defaults to 100 (the paper's).
        stop_epoch: int or None. T_end is the start of epoch
            `stop_epoch` of the fit, and no update runs from that epoch
            on; None: T_end is the end of the fit (it runs
            `epochs - initial_epoch` epochs). The paper stops at 75% of
            training. Defaults to None.
        end_step: int or None, T_end in the method's steps, from its start,
            overriding the one derived from `fit` (custom loops, or several
            `fit` calls sharing one schedule); at or below `period` no
            update could run, which raises. Defaults to None.
        seed: int in [0, 2**63 - 1] or None, breaks ties (equal magnitudes,
            equal gradients) at random with the step and layer; None draws
            one, saved in the state.
        jit_compile: bool, compile the update with XLA. Defaults to False.

    Logs: `num_pruned` (moved at the last update), `sparsity` (global,
    constant) and `drop_fraction` (f(t) at the last update).

    Example:

    >>> rigl = tf_dsr.RigL(drop_fraction=0.3, period=100)
    >>> history = model.fit(x, y, epochs=3, callbacks=[rigl], verbose=0)
    >>> int(rigl.state.num_reallocations.numpy())
    1
    """

    method = "rigl"
    needs_gradients = True
    logged = ("drop_fraction",)

    def __init__(self, drop_fraction=0.3, period=100, stop_epoch=None, end_step=None,
                 seed=None, jit_compile=False):
        super().__init__(period, stop_epoch=stop_epoch, seed=seed, jit_compile=jit_compile)
        self.drop_fraction = validate_fraction(
            drop_fraction, "drop_fraction", high_open=False,
            meaning="It is the fraction of each layer's active weights moved at the "
                    "first update; RigL uses 0.3.")
        self.end_step = validate_optional_int(end_step, "end_step", 1, " (T_end in steps)")
        shortest = self.schedule.shortest_period()
        if self.end_step is not None and self.end_step <= shortest:
            raise ValueError(
                f"RigL: end_step={self.end_step} is at or below period={shortest}: "
                f"the first update is due at step {shortest} or later and none "
                f"runs from T_end on, so no update could ever run. Pass "
                f"end_step > {shortest}, or a smaller period."
            )
        # (begin, T_end) of the cosine schedule in force, method steps.
        self._schedule = None if self.end_step is None else (0, self.end_step)
        self.schedule.end_step = self.end_step

    def on_train_begin(self, logs=None):
        steps, epochs = self.fit_length()
        if self.end_step is None and (not steps or not epochs):
            raise ValueError(
                "RigL needs T_end, the step where updates stop, and `fit` did not "
                f"say how long the run is (steps per epoch: {steps!r}, epochs: "
                f"{epochs!r}; a dataset of unknown size?). Pass "
                "`steps_per_epoch` to fit, or `end_step` to RigL."
            )
        super().on_train_begin(logs)

    def begin_fit(self, epoch):
        state = self.state
        step = self.method_step()
        steps, epochs = self.fit_length()
        length = None if not steps or not epochs else max(0, epochs - epoch) * steps
        recorded = tuple(int(getattr(state, name).numpy()) for name in state.SCHEDULE)
        if self.end_step is not None:
            begin, end = 0, self.end_step
        elif recorded[1] >= 0 and step < recorded[2]:
            # Within the fit that started the recorded schedule: a run
            # resumed by `BackupAndRestore`, or restarted after a crash.
            begin, end = recorded[0], recorded[1]
        else:
            # A new fit: a new schedule over it, from where the method
            # stands, and its period grid starts here too.
            stop = epochs if self.stop_epoch is None else min(self.stop_epoch, epochs)
            begin, end = step, step + max(0, stop - epoch) * steps
            if int(state.last_step.numpy()) < begin:
                state.last_step.assign(begin)
                self._refresh_mirrors()
        state.fit_end.assign(-1 if length is None else step + length)
        self._set_window(begin, end)

    def _set_window(self, begin, end):
        self._schedule = (begin, end)
        self.schedule.end_step = end
        self.state.schedule_begin.assign(begin)
        self.state.schedule_end.assign(end)

    def on_train_end(self, logs=None):
        # The fit is over (also when stopped early): the next one starts a
        # new schedule.
        step = self.method_step()
        if step is not None and self._schedule is not None:
            self.state.fit_end.assign(step)
        super().on_train_end(logs)

    @property
    def t_end(self):
        """T_end in steps of this method (None before training starts)."""
        return None if self._schedule is None else self._schedule[1]

    @property
    def t_begin(self):
        """The method's step where the cosine schedule in force started
        (None before training starts)."""
        return None if self._schedule is None else self._schedule[0]

    def drop_fraction_at(self, step):
        """f(t) at the method's step `step` (a float)."""
        if self._schedule is None:
            raise ValueError("T_end is known once training starts; pass `end_step`.")
        begin, end = self._schedule
        return float(rigl.drop_fraction_at(step - begin, self.drop_fraction,
                                           max(1, end - begin)).numpy())

    def reallocate(self, step=None, mark=None):
        if self._schedule is None:
            raise ValueError(
                "RigL.reallocate needs T_end: train with `fit` first or pass "
                "`end_step` to RigL."
            )
        # The update reads the window from the state, so that a new window
        # (each fit starts one) needs no new trace.
        self._set_window(*self._schedule)
        return super().reallocate(step, mark)

    def update(self, kernels, masks, step, gradients):
        begin = self.state.schedule_begin.value
        length = tf.maximum(self.state.schedule_end.value - begin, 1)
        fraction = rigl.drop_fraction_at(step - begin, self.drop_fraction, length)
        return rigl.rigl_update(
            kernels, masks, gradients, fraction, seed=self.state.seed.value, step=step
        )
