"""When a mask-updating method updates: its period, where updates end, and
the `steps_per_execution` grid.

Steps here are the method's steps: optimizer steps since the method
started on the model (its state's `start_step`). `last` is the state's
`last_step`: the step of the last update, or where the period grid stands.
"""

import warnings

from tf_dsr.validation import validate_optional_int
from tf_dsr.validation import validate_period


class Schedule:
    """When updates run.

    An update is due at a batch end when at least `period` steps passed
    since `last`. It is recorded on the period grid (`last + k * period`),
    so that `steps_per_execution > 1`, where Keras runs batch ends only
    every few steps, keeps the number of updates `period` implies.

    Updates end at the start of epoch `stop_epoch`, and from `end_step` on
    (RigL's T_end, which its callback sets per fit). `final_step` (gradual
    pruning's end) runs one last update at the first batch end at or after
    it, on the grid or not, and none after it.

    Args:
        period: int, or dict `{epoch: steps}` with key 0.
        stop_epoch: int or None, the first epoch (0-based) with no update.
        final_step: int or None, see above.
    """

    def __init__(self, period, stop_epoch=None, final_step=None):
        self.period = validate_period(period)
        self.stop_epoch = validate_optional_int(stop_epoch, "stop_epoch", 0)
        self.final_step = final_step
        self.end_step = None

    def period_at(self, epoch):
        """The period in force at `epoch`."""
        return self.period[max(e for e in self.period if e <= epoch)]

    def shortest_period(self, from_epoch=0):
        """The smallest period used at `from_epoch` or later."""
        return min([self.period_at(from_epoch)]
                   + [p for e, p in self.period.items() if e > from_epoch])

    def stopped(self, step, epoch):
        """Whether no update may run at `step` in `epoch`."""
        if self.stop_epoch is not None and epoch >= self.stop_epoch:
            return True
        return self.end_step is not None and step >= self.end_step

    def finished(self, last):
        """Whether the final update (`final_step`) has run."""
        return self.final_step is not None and last >= self.final_step

    def due(self, step, last, epoch):
        """The grid mark of an update due at `step`, or None.

        The mark is what `last` becomes: `last` plus whole periods, or
        `step` itself for the final update.
        """
        if self.stopped(step, epoch) or self.finished(last):
            return None
        period = self.period_at(epoch)
        if self.final_step is not None and step >= self.final_step:
            return step
        if step - last >= period:
            return last + (step - last) // period * period
        return None

    def surely_not_due(self, step_bound, last, epoch):
        """Whether no step up to `step_bound` can be due in `epoch` (`last`
        may lag the true last update: that only makes this say False)."""
        if self.final_step is not None and step_bound >= self.final_step:
            return False
        return step_bound - last < self.period_at(epoch)

    def last_updatable_step(self, step, epoch, steps_per_epoch, epochs):
        """The last step of a fit whose batch end may update (None if the
        fit did not say its length)."""
        if not steps_per_epoch or not epochs or step is None:
            return None
        stop = epochs if self.stop_epoch is None else min(self.stop_epoch, epochs)
        last = step + max(0, stop - epoch) * steps_per_epoch
        if self.end_step is not None:
            last = min(last, self.end_step - 1)
        return last

    def no_update_message(self, step, last, epoch, steps_per_epoch, epochs):
        """Why no update can run in a fit starting at `epoch`, or None."""
        last_updatable = self.last_updatable_step(step, epoch, steps_per_epoch, epochs)
        if last_updatable is None:
            return None
        period = self.shortest_period(epoch)
        first_due = last + period
        if self.final_step is not None and not self.finished(last):
            first_due = min(first_due, self.final_step)  # the final update
        if first_due <= last_updatable:
            return None
        length = max(0, epochs - epoch) * steps_per_epoch
        window = ""
        if self.stop_epoch is not None:
            window += f"; stop_epoch={self.stop_epoch} ends updates at that epoch's start"
        if self.end_step is not None:
            window += f"; updates end before step {self.end_step}"
        advice = (f"Use period <= {last_updatable - last}, train longer, or "
                  if last_updatable > last else "Train longer, or ")
        return (
            f"no update can run in this fit. The first is due at the method's "
            f"step {first_due} (last update or start {last} + period {period}), "
            f"and the last step that can update is {last_updatable} (the fit "
            f"runs steps {step + 1} to {step + length}{window}). {advice}move "
            "the end of the updates later."
        )

    def warn_if_steps_per_execution_exceeds_period(self, steps, name):
        """Warns when Keras' batch ends come less often than the period."""
        # Several updates back to back, with no training between, would
        # change nothing but the random draws: one runs per batch end.
        short = sorted(p for p in set(self.period.values()) if p < steps)
        if short:
            warnings.warn(
                f"{name}: steps_per_execution={steps} is above period={short[0]}. "
                f"Keras runs callbacks only every {steps} steps, so updates run "
                f"every {steps} steps (the effective period), not every "
                f"{short[0]}: fewer than `period` asks for. Compile with "
                f"steps_per_execution <= {short[0]}, or set period >= {steps}.",
                UserWarning,
                stacklevel=3,
            )
