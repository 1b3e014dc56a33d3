"""How an overall sparsity is split among sparse tensors at initialisation.

DSR (Mostafa & Wang, ICML 2019) starts every sparse tensor at the same
sparsity ("uniform"). The Erdos-Renyi-Kernel split ("ERK") of RigL
(Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
2020) gives small tensors relatively more non-zeros. Both are plain shape
arithmetic in Python and numpy.
"""

import math
import numbers

import numpy as np

from tf_dsr.validation import validate_sparsity

DISTRIBUTIONS = ("uniform", "erk")


def validate_distribution(distribution):
    """Returns `distribution` lower-cased, or raises if it is unknown."""
    if not isinstance(distribution, str) or distribution.lower() not in DISTRIBUTIONS:
        raise ValueError(
            f"`distribution` must be one of {DISTRIBUTIONS}. Received: "
            f"distribution={distribution!r}. Use 'uniform' for the paper's "
            "equal per-tensor sparsity or 'erk' for RigL's Erdos-Renyi-Kernel."
        )
    return distribution.lower()


def _validate_shapes(kernel_shapes):
    if isinstance(kernel_shapes, (str, bytes)) or not hasattr(kernel_shapes, "__iter__"):
        raise TypeError(
            "`kernel_shapes` must be a list of shapes (tuples of positive ints). "
            f"Received: {kernel_shapes!r}."
        )
    shapes = []
    for i, shape in enumerate(kernel_shapes):
        try:
            dims = tuple(shape)
        except TypeError:
            raise TypeError(
                f"`kernel_shapes[{i}]` must be a tuple of positive ints, e.g. "
                f"(784, 300) or (3, 3, 16, 32). Received: {shape!r}."
            ) from None
        if not dims or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1
            for d in dims
        ):
            raise ValueError(
                f"`kernel_shapes[{i}]` must be a non-empty tuple of positive ints. "
                f"Received: {shape!r}."
            )
        shapes.append(tuple(int(d) for d in dims))
    if not shapes:
        raise ValueError("`kernel_shapes` is empty; pass at least one kernel shape.")
    return shapes


def erk_sparsities(kernel_shapes, sparsity):
    """Per-tensor sparsities of the Erdos-Renyi-Kernel (ERK) distribution.

    The density (fraction of non-zeros) of tensor `l` is `eps * r_l` with
    `r_l = sum(shape_l) / prod(shape_l)`, i.e.
    `(h + w + c_in + c_out) / (h * w * c_in * c_out)` for a conv kernel and
    `(n_in + n_out) / (n_in * n_out)` for a Dense kernel. `eps` is chosen
    so that the tensors together keep `(1 - sparsity) * total` non-zeros.
    A tensor whose density would exceed 1 is made dense and taken out of
    the scaling; `eps` is then recomputed for the rest, until no density
    exceeds 1 (the iterative procedure of RigL's reference code).

    `sparsity` is the overall sparsity of the tensors, as in the uniform
    split, so both keep the same number of active weights up to rounding
    (each layer rounds `(1 - s_l) * size_l`). Dense (capped) tensors get
    sparsity `0.0`, which sparse layers accept.

    Reference: Evci, Gale, Menick, Castro & Elsen, "Rigging the Lottery:
    Making All Tickets Winners", ICML 2020, section 3 ("Sparsity
    distribution").

    The model builders of `tf_dsr.models` accept `distribution="erk"`.
    For your own models, pass one entry per sparse layer as that layer's
    `sparsity` (see the example).

    Args:
        kernel_shapes: list of kernel shapes (tuples of positive ints), one
            per sparse tensor, e.g. `[(784, 300), (300, 100), (100, 10)]`.
        sparsity: float in [0, 1), overall fraction of zeros.

    Returns:
        A list of floats in [0, 1), one sparsity per shape, in order.

    Raises:
        TypeError: `kernel_shapes` is not a list of shapes or `sparsity`
            is not a number.
        ValueError: a shape has a non-positive dimension, the list is
            empty, or `sparsity` is outside [0, 1).

    Example:

    >>> shapes = [(784, 300), (300, 100), (100, 10)]
    >>> s = tf_dsr.erk_sparsities(shapes, 0.9)
    >>> [round(s_l, 3) for s_l in s]  # the small output layer stays dense
    [0.92, 0.77, 0.0]
    >>> layers = [tf_dsr.SparseDense(n, sparsity=s_l)
    ...           for n, s_l in zip((300, 100, 10), s)]
    """
    shapes = _validate_shapes(kernel_shapes)
    sparsity = validate_sparsity(sparsity)
    sizes = np.array([math.prod(s) for s in shapes], dtype=np.float64)
    ratios = np.array([sum(s) / math.prod(s) for s in shapes], dtype=np.float64)
    target = (1.0 - sparsity) * sizes.sum()
    dense = np.zeros(len(shapes), dtype=bool)
    while True:
        # Non-zeros left for the tensors still being scaled.
        budget = target - sizes[dense].sum()
        scaled = ~dense
        if not scaled.any():
            break
        eps = budget / (ratios[scaled] * sizes[scaled]).sum()
        densities = eps * ratios
        over = scaled & (densities > 1.0)
        if not over.any():
            break
        # Cap one tensor at a time (the largest ratio first), as RigL does:
        # capping changes eps for all the others.
        dense[np.argmax(np.where(over, ratios, -np.inf))] = True
    result = []
    for l in range(len(shapes)):
        if dense[l]:
            result.append(0.0)
        else:
            result.append(float(min(max(1.0 - eps * ratios[l], 0.0), np.nextafter(1.0, 0.0))))
    return result
