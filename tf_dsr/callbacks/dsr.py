"""DynamicReparam: the DSR callback (Mostafa & Wang, ICML 2019)."""

import numbers

import tensorflow as tf

from tf_dsr.callbacks.base import ReparamCallback
from tf_dsr.callbacks.base import Update
from tf_dsr.callbacks.base import check_prune_target
from tf_dsr.callbacks.state import existing_state
from tf_dsr.callbacks.state import validate_threshold
from tf_dsr.core import reallocation


class DynamicReparam(ReparamCallback):
    """Dynamic Sparse Reparameterization during `model.fit`.

    Every `period` steps, prunes the weights of all sparse layers whose
    magnitude is below one global threshold H and regrows as many at random
    empty positions, shared across layers in proportion to the weights each
    kept; H adapts so that about `prune_target` weights are pruned each time
    (DSR_SPEC section 4). The number of non-zero weights never changes.

    Reference: Mostafa & Wang, "Parameter Efficient Training of Deep
    Convolutional Neural Networks by Dynamic Sparse Reparameterization",
    ICML 2019, Algorithm 1.

    Args:
        prune_target: N_prune. An int (weights per reallocation), below the
            model's number of active weights (checked when training starts),
            or a float in (0, 1) (that fraction of the active weights).
        period: int steps between reallocations, or a schedule
            `{epoch: steps}` with key 0, as in the paper.
        stop_epoch: int or None, no reallocation from this epoch on
            (the paper stops 10 epochs before the end). Defaults to None.
            Set it when the model has BatchNorm: a weight regrown in the
            last steps feeds units whose moving statistics never saw an
            input, which can wreck inference accuracy at high sparsity.
        initial_threshold: float > 0, H at the start: finite and at least
            float32's smallest normal number (1.18e-38). Defaults to 1e-3.
        tolerance: float in [0, 1), delta. Defaults to 0.1.
        seed: int in [0, 2**63 - 1] or None, fixes all randomness with step
            and layer.
        jit_compile: bool, compile the reallocation with XLA. Defaults to
            False.

    Logs (progress bar, `History`, TensorBoard): `threshold` (the one in
    force, from the first step: `initial_threshold` or the restored one
    until the first reallocation), `num_pruned` (at the last reallocation,
    0 before) and `sparsity` (global).

    Example:

    >>> reparam = tf_dsr.DynamicReparam(prune_target=600, period={0: 100, 25: 200})
    >>> history = model.fit(x, y, epochs=5, callbacks=[reparam], verbose=0)
    >>> int(reparam.state.num_reallocations.numpy())  # at steps 100 and 200
    2
    >>> tf_dsr.sparsity_summary(model).num_active  # never changes
    5020
    """

    def __init__(
        self,
        prune_target,
        period,
        stop_epoch=None,
        initial_threshold=1e-3,
        tolerance=0.1,
        seed=None,
        jit_compile=False,
    ):
        super().__init__(period, stop_epoch=stop_epoch, seed=seed, jit_compile=jit_compile)
        if isinstance(prune_target, bool) or not isinstance(prune_target, numbers.Real):
            raise TypeError(
                "`prune_target` must be an int (weights) or a float in (0, 1) "
                f"(fraction of active weights). Received: {prune_target!r}."
            )
        if isinstance(prune_target, numbers.Integral):
            if prune_target < 1:
                raise ValueError(
                    f"`prune_target` as a count must be >= 1. Received: {prune_target}."
                )
        elif not 0.0 < prune_target < 1.0:
            raise ValueError(
                "`prune_target` as a fraction must be in (0, 1); pass an int "
                f"for an absolute count. Received: {prune_target}."
            )
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, numbers.Real)
            or not 0.0 <= tolerance < 1.0
        ):
            raise ValueError(f"`tolerance` must be a float in [0, 1). Received: {tolerance!r}.")
        self.prune_target = prune_target
        self.initial_threshold = validate_threshold(initial_threshold)
        self.tolerance = float(tolerance)

    def _initial_threshold(self):
        return self.initial_threshold

    def _check_model(self, model, num_active):
        check_prune_target(self, num_active)
        state = existing_state(model)
        if state is not None:
            self._check_threshold(float(state.threshold.numpy()))

    def on_train_begin(self, logs=None):
        # The state may have been restored since `set_model` (a checkpoint).
        self._check_threshold(float(self.state.threshold.numpy()))
        super().on_train_begin(logs)

    def _check_threshold(self, threshold):
        try:
            validate_threshold(threshold, "threshold")
        except ValueError:
            raise ValueError(
                f"DynamicReparam: the model's tf_dsr state holds threshold "
                f"{threshold!r}, which cannot steer pruning (it must be a positive "
                "normal float32 number). It was restored from a corrupt "
                "checkpoint, or written by a method without a threshold (SET, "
                "GradualPruning: nan). Assign a usable one to the model's state "
                "first (`model._tf_dsr_state.threshold.assign(1e-3)`), or start "
                "from a fresh model."
            ) from None

    def num_prune_target(self, num_active):
        """N_prune as a count for a model with `num_active` active weights."""
        if isinstance(self.prune_target, numbers.Integral):
            return int(self.prune_target)
        return max(1, int(round(self.prune_target * num_active)))

    def _update(self, kernels, masks, step, num_active):
        result = reallocation.reallocate(
            kernels,
            masks,
            threshold=self.state.threshold.value,
            prune_target=self.num_prune_target(num_active),
            tolerance=self.tolerance,
            seed=tf.constant(self.seed, tf.int64),
            step=step,
        )
        return Update(
            kernels=result.kernels,
            masks=result.masks,
            num_pruned=result.num_pruned,
            num_grown=result.num_grown,
            threshold=result.threshold,
            is_finite=result.is_finite,
        )
