"""SET: the Sparse Evolutionary Training baseline (Mocanu et al., 2018)."""

import numbers

import tensorflow as tf

from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import register_state
from tf_dsr.core import set as set_core
from tf_dsr.core.counts import count_active
from tf_dsr.training.callback import ReparamCallback
from tf_dsr.validation import check_prune_target_below
from tf_dsr.validation import validate_fraction
from tf_dsr.validation import validate_prune_target


@register_state("set")
class SETState(MethodState):
    """State of `SET`: the variables every method has, nothing more."""


class SET(ReparamCallback):
    """Sparse Evolutionary Training during `model.fit`.

    Every `period` steps, each sparse layer on its own prunes a fixed
    fraction of its active weights, those of smallest magnitude, and regrows
    as many at random positions of the same layer that were empty before
    (new weights start at zero). Unlike DSR no weight moves between layers:
    every layer keeps its number of active weights.

    Reference: Mocanu et al., "Scalable training of artificial neural
    networks with adaptive sparse connectivity inspired by network
    science", Nature Communications 2018; as the baseline of Mostafa &
    Wang, ICML 2019, whose SET prunes the fraction N_prune / active weights.

    Args:
        prune_fraction: float in (0, 1), zeta: each layer prunes
            `round(zeta * active)` weights. Give this or `prune_target`.
        prune_target: int >= 1, N_prune: the total per update, shared out
            across layers in proportion to their active weights (the DSR
            paper's equal-N_prune comparison); below the model's number of
            active weights (checked when training starts).
        period: int steps between updates, or a schedule `{epoch: steps}`
            with key 0.
        stop_epoch: int or None, no update from this epoch on. Defaults to
            None.
        seed: int in [0, 2**63 - 1] or None, fixes all randomness with step
            and layer.
        jit_compile: bool, compile the update with XLA. Defaults to False.

    Logs: `num_pruned` (at the last update) and `sparsity` (global,
    constant).

    Example:

    >>> before = tf_dsr.sparsity_summary(model)
    >>> set_callback = tf_dsr.SET(prune_fraction=0.3, period=100)
    >>> history = model.fit(x, y, epochs=3, callbacks=[set_callback], verbose=0)
    >>> int(set_callback.state.num_reallocations.numpy())
    1
    >>> tf_dsr.sparsity_summary(model).layers == before.layers  # per-layer counts
    True
    """

    def __init__(
        self,
        prune_fraction=None,
        prune_target=None,
        period=100,
        stop_epoch=None,
        seed=None,
        jit_compile=False,
    ):
        super().__init__(period, stop_epoch=stop_epoch, seed=seed, jit_compile=jit_compile)
        if (prune_fraction is None) == (prune_target is None):
            raise ValueError(
                "Give exactly one of `prune_fraction` (float in (0, 1)) and "
                f"`prune_target` (int >= 1). Received: prune_fraction="
                f"{prune_fraction!r}, prune_target={prune_target!r}."
            )
        self.prune_fraction = (None if prune_fraction is None
                               else validate_fraction(prune_fraction, "prune_fraction"))
        self.prune_target = (None if prune_target is None
                             else validate_prune_target(prune_target, fraction_allowed=False))

    method = "set"

    @classmethod
    def for_run(cls, run, prune_target=None, **options):
        """SET as the DSR paper's baseline: a fraction `prune_target` is
        pruned from each layer, a count is shared out across layers. A
        `prune_fraction` given as well wins (a comparison passes every
        method DSR's `prune_target`)."""
        if options.get("prune_fraction") is None and prune_target is not None:
            if isinstance(prune_target, numbers.Real) and not isinstance(
                    prune_target, (numbers.Integral, bool)):
                options["prune_fraction"] = prune_target
            else:
                options["prune_target"] = prune_target
        return cls(seed=run.seed, **options)

    def check_model(self, num_active):
        check_prune_target_below(self.prune_target, num_active, type(self).__name__)

    def update(self, kernels, masks, step, gradients):
        num_active = tf.stack([count_active(m) for m in masks])
        counts = set_core.prune_counts(
            num_active, prune_fraction=self.prune_fraction, prune_target=self.prune_target
        )
        return set_core.set_update(kernels, masks, counts, seed=self.state.seed.value, step=step)
