"""DynamicReparam: the DSR callback (Mostafa & Wang, ICML 2019)."""

import numbers

import keras
import tensorflow as tf

from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import register_state
from tf_dsr.core import reallocation
from tf_dsr.core.counts import count_active
from tf_dsr.core.growth import validate_growth
from tf_dsr.training.callback import ReparamCallback
from tf_dsr.validation import check_prune_target_below
from tf_dsr.validation import validate_fraction
from tf_dsr.validation import validate_prune_target
from tf_dsr.validation import validate_threshold


@register_state("dsr")
class DSRState(MethodState):
    """State of `DynamicReparam`: the common variables and the threshold H.

    Args:
        initial_threshold: float, H at the start. Defaults to 1e-3.
    """

    def __init__(self, initial_threshold=1e-3, **kwargs):
        self.initial_threshold = float(initial_threshold)
        super().__init__(**kwargs)

    def build_method_variables(self):
        self.threshold = self.add_weight(
            shape=(), name="threshold", dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self.initial_threshold),
        )

    def reset_method_variables(self):
        self.threshold.assign(self.initial_threshold)

    def check_values(self, values):
        super().check_values(values)
        names = [v.name for v in self.variables]
        threshold = float(values[names.index("threshold")])
        try:
            validate_threshold(threshold, "threshold")
        except ValueError:
            raise ValueError(
                f"The tf_dsr state in this file has threshold {threshold!r}; a "
                "threshold must be a positive normal float32 number. The file "
                "is corrupt or was edited: load an earlier checkpoint, or load "
                "it before attaching the tf_dsr callback (Keras then skips the "
                "state, and the callback's starts fresh)."
            ) from None

    def check_usable(self, name):
        # The state may have been restored since the callback was bound.
        threshold = float(self.threshold.numpy())
        try:
            validate_threshold(threshold, "threshold")
        except ValueError:
            raise ValueError(
                f"{name}: the model's DSR state holds threshold {threshold!r}, "
                "which cannot steer pruning (it must be a positive normal "
                "float32 number). It was restored from a corrupt checkpoint. "
                "Assign a usable one first (`callback.state.threshold.assign(1e-3)`), "
                "or start from a fresh model."
            ) from None


class DynamicReparam(ReparamCallback):
    """Dynamic Sparse Reparameterization during `model.fit`.

    Every `period` steps, prunes the weights of all sparse layers whose
    magnitude is below one global threshold H and regrows as many at random
    empty positions, shared across layers in proportion to the weights each
    kept; H adapts so that about `prune_target` weights are pruned each time
    (Algorithm 1). The number of non-zero weights never changes.

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
            and layer (None: drawn once and saved in the state).
        jit_compile: bool, compile the reallocation with XLA. Defaults to
            False.
        growth: "random" (the paper's: uniformly among empty positions) or
            "gradient" (where the dense loss gradient is largest among
            empty positions, RigL's criterion on DSR's global threshold and
            share-out). Defaults to "random".

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
        growth="random",
    ):
        super().__init__(period, stop_epoch=stop_epoch, seed=seed, jit_compile=jit_compile)
        self.growth = validate_growth(growth)
        self.prune_target = validate_prune_target(prune_target)
        self.initial_threshold = validate_threshold(initial_threshold)
        self.tolerance = validate_fraction(tolerance, "tolerance", low_open=False)

    method = "dsr"

    @property
    def needs_gradients(self):
        return self.growth == "gradient"

    logged = ("threshold",)

    def state_arguments(self):
        return {"initial_threshold": self.initial_threshold}

    def check_model(self, num_active):
        check_prune_target_below(self.prune_target, num_active, type(self).__name__)

    def _prune_target_in_graph(self, masks):
        if isinstance(self.prune_target, numbers.Integral):
            return int(self.prune_target)
        # A fraction of the active weights counted now, in the graph: a
        # count taken when the function was traced would go stale.
        num_active = tf.add_n([count_active(m) for m in masks])
        count = tf.round(tf.cast(num_active, tf.float64) * self.prune_target)
        return tf.maximum(count, 1.0)

    def update(self, kernels, masks, step, gradients):
        return reallocation.reallocate(
            kernels,
            masks,
            threshold=self.state.threshold.value,
            prune_target=self._prune_target_in_graph(masks),
            tolerance=self.tolerance,
            seed=self.state.seed.value,
            step=step,
            growth=self.growth,
            gradients=gradients,
        )
