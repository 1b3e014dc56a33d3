"""Growth criteria: where the weights of a mask update grow back.

A method's core decides how many weights each tensor regrows; a growth
criterion decides where. Both take the positions that may receive a new
weight (`candidates`), optionally positions to use only once every
candidate is taken (`fallback`, the positions dropped in the same step by
DSR and SET), and return exactly `num_grown` of them:

| name         | picks                                  | used by                 |
| ------------ | -------------------------------------- | ----------------------- |
| `"random"`   | uniformly at random (`random_subset`)  | DSR, SET                |
| `"gradient"` | largest `|dL/dW|` of the dense gradient | RigL, DSR `growth="gradient"` |

Ties in the gradient (for example the exact zeros of inputs that are
always 0) are broken uniformly at random with the same seed, so no
position is favoured by its index.
"""

import tensorflow as tf

from tf_dsr.core.selection import count_true
from tf_dsr.core.selection import largest_magnitudes
from tf_dsr.core.selection import random_subset

GROWTH = ("random", "gradient")


def validate_growth(growth):
    """Returns `growth` if it names a criterion, else raises ValueError."""
    if growth not in GROWTH:
        raise ValueError(
            f"`growth` must be one of {GROWTH}. Received: {growth!r}. Use "
            "'random' (the DSR paper's) or 'gradient' (RigL's: largest dense "
            "gradient magnitude)."
        )
    return growth


def random_growth(candidates, num_grown, seed, fallback=None, num_candidates=None,
                  num_fallback=None, gradient=None):
    """Picks `num_grown` positions uniformly at random, candidates first.

    Args:
        candidates: bool tensor, positions that may receive a weight.
        num_grown: int scalar, `<= count(candidates | fallback)`.
        seed: int tensor `[2]`, stateless RNG seed.
        fallback: optional bool tensor disjoint from `candidates`, used only
            once every candidate is taken.
        num_candidates, num_fallback: optional int scalars, their counts
            when the caller knows them.
        gradient: ignored (the signature every criterion shares).

    Returns:
        bool tensor shaped like `candidates`, exactly `num_grown` `True`.
    """
    del gradient
    return random_subset(candidates, num_grown, seed, fallback=fallback,
                         num_candidates=num_candidates, num_fallback=num_fallback)


def gradient_growth(candidates, num_grown, seed, fallback=None, num_candidates=None,
                    num_fallback=None, gradient=None):
    """Picks the `num_grown` positions of largest `|gradient|`, candidates first.

    RigL's criterion (Evci et al., ICML 2020, section 3): a zero weight
    whose loss gradient is large would reduce the loss fastest once it is
    allowed to move.

    Args:
        candidates: bool tensor, positions that may receive a weight.
        num_grown: int scalar, `<= count(candidates | fallback)`.
        seed: int tensor `[2]`, stateless seed breaking ties at the cut.
        fallback: optional bool tensor disjoint from `candidates`, ranked
            by gradient too but used only once every candidate is taken.
        num_candidates, num_fallback: ignored (the radix select counts).
        gradient: float tensor shaped like `candidates`, the dense gradient
            of the loss with respect to the masked kernel. Required.

    Returns:
        bool tensor shaped like `candidates`, exactly
        `min(num_grown, count(candidates | fallback))` `True`; no selected
        candidate has a smaller `|gradient|` than an unselected one.

    Raises:
        ValueError: `gradient` is missing.
    """
    del num_candidates, num_fallback
    if gradient is None:
        raise ValueError(
            "Gradient growth needs the dense gradient of every kernel. "
            "Received gradient=None; pass `gradients` to the core, or use "
            "growth='random'."
        )
    num_grown = tf.cast(num_grown, tf.int64)
    from_candidates = largest_magnitudes(gradient, candidates, num_grown, seed)
    if fallback is None:
        return from_candidates
    num_rest = num_grown - count_true(from_candidates)
    fallback_seed = tf.random.experimental.stateless_fold_in(seed, 1, alg="philox")
    # The fallback pass runs only when candidates ran out (rare).
    from_fallback = tf.cond(
        num_rest > 0,
        lambda: largest_magnitudes(gradient, fallback, num_rest, fallback_seed),
        lambda: tf.zeros_like(from_candidates),
    )
    return from_candidates | from_fallback


CRITERIA = {"random": random_growth, "gradient": gradient_growth}
