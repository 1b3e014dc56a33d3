"""Thin dense baselines: dense networks as small as a sparse one.

Mostafa & Wang (ICML 2019) compare DSR with a "thin dense" network: the
same architecture, uniformly narrower, with as many parameters as the
sparse network has non-zero ones.
"""

import math
import numbers

import tf_dsr.counting as counting
from tf_dsr.validation import validate_sparsity
from tf_dsr.models import common

# Bisection stops when the bracket on the width multiplier is this narrow:
# fine when counting is free, coarser when every step builds a model.
_PLANNED_RESOLUTION = 1e-9
_BUILT_RESOLUTION = 1e-4
_MIN_WIDTH_MULTIPLIER = 1e-6


def _num_trainable_params(model):
    return counting.parameter_counts(model).num_trainable


def thin_dense_width(builder, sparsity, tolerance=0.02, **builder_kwargs):
    """Width multiplier of the dense network as small as a sparse one.

    Finds `w` such that `builder(sparsity=None, width_multiplier=w,
    **builder_kwargs)` has as many trainable parameters as
    `builder(sparsity=sparsity, **builder_kwargs)` has non-zero trainable
    parameters (active kernel weights at initialisation plus biases,
    BatchNorm gamma and beta and the dense layers; see
    `num_nonzero_params`). This is the paper's thin dense baseline.

    The dense count only grows with `w`, so `w` is found by bisection.
    For the builders of `tf_dsr.models` the counts are computed from the
    architecture without building anything (milliseconds, even for
    ResNet-50); any other builder with `sparsity` and `width_multiplier`
    arguments is built at every step (slow). Widths are integers, so the
    closest count is returned, and an error raised if it is not within
    `tolerance`.

    Reference: Mostafa & Wang, "Parameter Efficient Training of Deep
    Convolutional Neural Networks by Dynamic Sparse Reparameterization",
    ICML 2019: the "thin dense" baseline of their experiments.

    Args:
        builder: a model builder such as `tf_dsr.models.lenet_300_100`.
        sparsity: float in [0, 1), the sparse network's sparsity.
        tolerance: float >= 0, largest accepted relative mismatch
            `|dense - target| / target`. Defaults to 0.02.
        **builder_kwargs: other arguments of `builder` (`input_shape`,
            `num_classes`, `distribution`, `depth`, ...), used for both
            networks. Must not contain `sparsity` or `width_multiplier`.

    Returns:
        A float `w` in (0, 1], a round value inside the range of widths
        that give the best count.

    Raises:
        TypeError: `builder` is not callable, or an argument has the wrong
            type.
        ValueError: `sparsity` or `tolerance` is out of range, or no width
            comes within `tolerance` (the message gives the best mismatch).

    Example:

    >>> w = tf_dsr.models.thin_dense_width(tf_dsr.models.lenet_300_100, 0.9)
    >>> w
    0.117
    >>> thin = tf_dsr.models.lenet_300_100(sparsity=None, width_multiplier=w)
    >>> tf_dsr.models.num_nonzero_params(thin)  # sparse at 0.9: 27,830
    28131
    """
    if not callable(builder):
        raise TypeError(
            f"`builder` must be a model builder such as tf_dsr.models.lenet_300_100. "
            f"Received: {builder!r}."
        )
    sparsity = validate_sparsity(sparsity)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"`tolerance` must be a float >= 0. Received: {tolerance!r}.")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"`tolerance` is a relative mismatch and must be >= 0, e.g. 0.02. "
            f"Received: tolerance={tolerance}."
        )
    for name in ("sparsity", "width_multiplier"):
        if name in builder_kwargs:
            raise TypeError(
                f"`{name}` is set by thin_dense_width; remove it from the builder "
                f"arguments. Received: {name}={builder_kwargs[name]!r}."
            )
    name = getattr(builder, "__name__", repr(builder))

    if common.plan(builder, **builder_kwargs) is not None:
        def dense_count(w):
            return common.plan(builder, width_multiplier=w, **builder_kwargs).num_params

        distribution = builder_kwargs.get("distribution", "uniform")
        target = common.plan(builder, **builder_kwargs).num_nonzero_params(
            sparsity, distribution)
        resolution = _PLANNED_RESOLUTION
    else:
        def dense_count(w):
            return _num_trainable_params(
                builder(sparsity=None, width_multiplier=w, **builder_kwargs))

        target = counting.num_nonzero_params(builder(sparsity=sparsity, **builder_kwargs))
        resolution = _BUILT_RESOLUTION

    best = _closest_width(dense_count, target, resolution)
    count = dense_count(best)
    mismatch = abs(count - target) / target
    if mismatch > tolerance:
        where = f" with {builder_kwargs}" if builder_kwargs else ""
        raise ValueError(
            f"No width multiplier gives a dense `{name}`{where} within "
            f"tolerance={tolerance} of the {target} non-zero parameters at "
            f"sparsity={sparsity}: the closest, width_multiplier={best}, has "
            f"{count} parameters, {mismatch:.2%} off. Widths are integers and "
            "cannot match more closely; pass a larger `tolerance` (e.g. "
            f"{math.ceil(mismatch * 100) / 100}) or use a lower `sparsity`."
        )
    return best


def _closest_width(count, target, resolution):
    """The round `w` whose `count(w)` (non-decreasing) is closest to `target`."""
    lo, hi = _MIN_WIDTH_MULTIPLIER, 1.0
    if count(lo) >= target:
        return _roundest(count, lo, _plateau_end(count, lo, count(lo), resolution))
    if count(hi) < target:
        return 1.0
    lo, hi = _bisect(lambda w: count(w) >= target, lo, hi, resolution)
    below, above = count(lo), count(hi)
    if target - below < above - target:
        return _roundest(count, _plateau_start(count, lo, below, resolution), lo)
    return _roundest(count, hi, _plateau_end(count, hi, above, resolution))


def _bisect(predicate, lo, hi, resolution):
    """Narrows `[lo, hi]` to `resolution`, keeping `predicate` false at `lo`, true at `hi`."""
    while hi - lo > resolution:
        mid = 0.5 * (lo + hi)
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def _plateau_start(count, w, value, resolution):
    """Smallest multiplier (to resolution) with `count == value`, below `w`."""
    if count(_MIN_WIDTH_MULTIPLIER) == value:
        return _MIN_WIDTH_MULTIPLIER
    return _bisect(lambda m: count(m) == value, _MIN_WIDTH_MULTIPLIER, w, resolution)[1]


def _plateau_end(count, w, value, resolution):
    """Largest multiplier (to resolution) with `count == value`, above `w`."""
    if count(1.0) == value:
        return 1.0
    return _bisect(lambda m: count(m) != value, w, 1.0, resolution)[0]


def _roundest(count, start, end):
    """The value in [start, end] with the fewest significant digits."""
    value = count(start)
    middle = 0.5 * (start + end)
    for digits in range(1, 12):
        candidate = float(f"{middle:.{digits}g}")
        if start <= candidate <= end and count(candidate) == value:
            return candidate
    return middle
