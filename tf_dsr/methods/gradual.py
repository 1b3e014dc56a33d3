"""GradualPruning: the "compressed sparse" baseline (Zhu & Gupta, 2018)."""

import numbers

from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import register_state
from tf_dsr.core import gradual
from tf_dsr.training.callback import ReparamCallback
from tf_dsr.validation import validate_fraction


@register_state("gradual")
class GradualState(MethodState):
    """State of `GradualPruning`: `start_step` is where its schedule counts
    from (`begin_step` and `end_step` are steps after it)."""


class GradualPruning(ReparamCallback):
    """Gradual magnitude pruning on a cubic schedule during `model.fit`.

    Every `period` steps, sets the target sparsity
    `s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3` and prunes the
    smallest-magnitude active weights of each sparse layer (`scope="layer"`)
    or of all of them together (`scope="global"`) down to it. Masks only
    shrink: pruned weights never return, and a layer already sparser than
    `s_t` is left alone, so training can start from dense layers
    (`sparsity=0`) or from any sparsity. The last update runs at the first
    batch end at or after `end_step`, leaving `final_sparsity`.

    Reference: Zhu & Gupta, "To prune, or not to prune: exploring the
    efficacy of pruning for model compression", ICLR Workshop 2018; the
    "compressed sparse" baseline of Mostafa & Wang, ICML 2019.

    Args:
        final_sparsity: float in [0, 1), s_f.
        begin_step: int >= 0, t0: step where the schedule starts (steps of
            this method: optimizer steps since it started on the model).
        end_step: int > begin_step, t0 + n dt: where it reaches s_f.
        initial_sparsity: float in [0, 1), s_i. Defaults to 0.0.
        period: int steps between pruning updates (dt), or a schedule
            `{epoch: steps}` with key 0. Defaults to 100.
        scope: "layer" (every layer to s_t) or "global" (one magnitude cut
            across layers). Defaults to "layer".
        seed: int in [0, 2**63 - 1] or None, breaks ties between equal
            magnitudes.
        jit_compile: bool, compile the update with XLA. Defaults to False.

    Steps count from where this callback first trains the model (its
    state's `start_step`), so `begin_step=0` means "from the start of this
    method", also after another method ran on the model.

    Logs: `num_pruned` (at the last update) and `sparsity` (global,
    current).

    Example:

    >>> model = tf_dsr.models.lenet_300_100((64,), 10, sparsity=0.0)  # dense start
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> pruning = tf_dsr.GradualPruning(
    ...     final_sparsity=0.9, begin_step=0, end_step=100, period=10)
    >>> history = model.fit(x, y, epochs=3, callbacks=[pruning], verbose=0)
    >>> round(tf_dsr.sparsity_summary(model).sparsity, 4)
    0.9
    """

    def __init__(
        self,
        final_sparsity,
        begin_step,
        end_step,
        initial_sparsity=0.0,
        period=100,
        scope="layer",
        seed=None,
        jit_compile=False,
    ):
        for name, value in (("begin_step", begin_step), ("end_step", end_step)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"`{name}` must be an int number of steps. Received: {value!r}.")
        if begin_step < 0 or end_step <= begin_step:
            raise ValueError(
                "Need 0 <= begin_step < end_step. Received: "
                f"begin_step={begin_step}, end_step={end_step}."
            )
        super().__init__(period, seed=seed, jit_compile=jit_compile, final_step=int(end_step))
        self.final_sparsity = validate_fraction(final_sparsity, "final_sparsity", low_open=False)
        self.initial_sparsity = validate_fraction(
            initial_sparsity, "initial_sparsity", low_open=False)
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                "GradualPruning only prunes: `initial_sparsity` must not exceed "
                f"`final_sparsity`. Received: initial_sparsity={initial_sparsity}, "
                f"final_sparsity={final_sparsity}. Swap them, or to make a model "
                "denser train it with DynamicReparam/SET/RigL from a lower "
                "`tf_dsr.sparsify` sparsity."
            )
        if scope not in gradual.SCOPES:
            raise ValueError(f"`scope` must be one of {gradual.SCOPES}. Received: {scope!r}.")
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.scope = scope

    method = "gradual"
    set_by_run = ReparamCallback.set_by_run | {"final_sparsity"}

    @classmethod
    def for_run(cls, run, period=100, begin_step=None, end_step=None, **options):
        """Gradual pruning to the run's sparsity, from a dense start. Zhu &
        Gupta prune over most of training, then fine-tune: the schedule
        defaults to the first 75 % of the run's steps. `begin_step` and
        `end_step` are given together or not at all."""
        if (begin_step is None) != (end_step is None):
            raise ValueError(
                "GradualPruning: give `begin_step` and `end_step` together, or "
                "neither (the schedule is then the first 75% of the run). "
                f"Received: begin_step={begin_step!r}, end_step={end_step!r}.")
        if begin_step is None:
            begin_step, end_step = 0, max(1, int(round(0.75 * run.total_steps)))
        return cls(final_sparsity=run.sparsity, begin_step=begin_step, end_step=end_step,
                   period=period, seed=run.seed, **options)

    def target_sparsity(self, step):
        """The scheduled sparsity s_t at the method's step `step` (a float)."""
        return float(
            gradual.scheduled_sparsity(
                step, self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step
            ).numpy()
        )

    def update(self, kernels, masks, step, gradients):
        sparsity = gradual.scheduled_sparsity(
            step, self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step
        )
        return gradual.prune_to_sparsity(
            kernels, masks, sparsity, scope=self.scope, seed=self.state.seed.value, step=step,
        )
