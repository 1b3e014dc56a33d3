"""RigL: the Rigged Lottery (Evci et al., ICML 2020)."""

from tf_dsr.callbacks.base import ReparamCallback
from tf_dsr.callbacks.base import validate_optional_int
from tf_dsr.callbacks.state import MethodState
from tf_dsr.callbacks.state import register_state
from tf_dsr.core import rigl


@register_state("rigl")
class RigLState(MethodState):
    """State of `RigL`: the variables every method has (T_end comes from
    the callback's arguments and the length of the run)."""


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

    Reference: Evci, Gale, Menick, Castro and Elsen, "Rigging the Lottery:
    Making All Tickets Winners", ICML 2020, Algorithm 1. RigL's default
    initial split is ERK with a dense first layer: build with
    `distribution="erk"` (the `tf_dsr.models` builders) to match it.

    Args:
        drop_fraction: float in (0, 1], alpha, the fraction moved at the
            first update. Defaults to 0.3 (the paper's).
        period: int steps between updates (Delta T), or a schedule
            `{epoch: steps}` with key 0. Defaults to 100 (the paper's).
        stop_epoch: int or None. T_end is `stop_epoch * steps_per_epoch`,
            and no update runs from that epoch on; None: T_end is the whole
            run (`epochs * steps_per_epoch` of `fit`). The paper stops at
            75% of training. Defaults to None.
        end_step: int or None, T_end in steps, overriding the one derived
            from `fit` (custom loops, or a second `fit` continuing the same
            schedule). Defaults to None.
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

    def __init__(self, drop_fraction=0.3, period=100, stop_epoch=None, end_step=None,
                 seed=None, jit_compile=False):
        super().__init__(period, stop_epoch=stop_epoch, seed=seed, jit_compile=jit_compile)
        self.drop_fraction = rigl.validate_drop_fraction(drop_fraction)
        self.end_step = validate_optional_int(end_step, "end_step", 1, " (T_end in steps)")
        self._end_step_in_force = self.end_step

    def on_train_begin(self, logs=None):
        self._end_step_in_force = self._resolve_end_step()
        super().on_train_begin(logs)

    def _resolve_end_step(self):
        if self.end_step is not None:
            return self.end_step
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps or not epochs:
            raise ValueError(
                "RigL needs T_end, the step where updates stop, and `fit` did not "
                f"say how long the run is (steps per epoch: {steps!r}, epochs: "
                f"{epochs!r}; a dataset of unknown size?). Pass "
                "`steps_per_epoch` to fit, or `end_step` to RigL."
            )
        epochs = epochs if self.stop_epoch is None else min(self.stop_epoch, epochs)
        return max(1, int(epochs) * int(steps))

    @property
    def t_end(self):
        """T_end in steps of this method (None before training starts)."""
        return self._end_step_in_force

    def drop_fraction_at(self, step):
        """f(t) at the method's step `step` (a float)."""
        end = self.t_end
        if end is None:
            raise ValueError("T_end is known once training starts; pass `end_step`.")
        return float(rigl.drop_fraction_at(step, self.drop_fraction, end).numpy())

    def _stopped(self):
        if super()._stopped():
            return True
        end = self.t_end
        if end is None:
            return False
        step = self._optimizer_step()
        return step is not None and step - self._start_step_seen >= end

    def _update(self, kernels, masks, step, gradients):
        end = self.t_end
        if end is None:
            raise ValueError(
                "RigL.reallocate needs T_end: train with `fit` first or pass "
                "`end_step` to RigL."
            )
        fraction = rigl.drop_fraction_at(step, self.drop_fraction, end)
        return rigl.rigl_update(
            kernels, masks, gradients, fraction, seed=self.state.seed.value, step=step
        )

    def _step_function(self):
        # T_end is a Python number in the traced graph: retrace if it moved.
        if getattr(self, "_traced_end", None) != self.t_end:
            self._step_fn = None
            self._traced_end = self.t_end
        return super()._step_function()

    def _method_logs(self):
        report = self.last_report
        return {"drop_fraction": report.info["drop_fraction"] if report else 0.0}

