"""The offline default data set: scikit-learn's bundled handwritten digits."""

import numpy as np


def load_digits(test_fraction=0.2, seed=0, flat=True):
    """Loads the 8x8 digits bundled with scikit-learn, split train/test.

    1,797 real handwritten digits (UCI), no download. Pixels are scaled to
    [0, 1]; the split is stratified by class and fixed by `seed`: each
    class holds out `round(test_fraction * its size)` images, so the
    default split has 1,438 training and 359 test images.

    Args:
        test_fraction: float in (0, 1), share of samples held out.
            Defaults to 0.2.
        seed: int, fixes the split. Defaults to 0.
        flat: bool, return `(n, 64)` vectors (True) or `(n, 8, 8, 1)` images.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, float32 inputs and int32
        labels in 0..9.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_digits(seed=0)
    >>> x_train.shape, x_test.shape
    ((1438, 64), (359, 64))
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError(
            "The default data set needs scikit-learn: pip install 'tf-dsr[demo]'."
        ) from error
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1). Received: {test_fraction}.")
    digits = sklearn_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    if not flat:
        x = x.reshape(-1, 8, 8, 1)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        chosen = rng.choice(members, int(round(test_fraction * len(members))), replace=False)
        test[chosen] = True
    return (x[~test], y[~test]), (x[test], y[test])


def subsample(x, y, num, seed=0):
    """A random subset of `num` examples, kept in their original order.

    Args:
        x: array, inputs (first axis: examples).
        y: array, labels of the same length.
        num: int or None; None or `num >= len(x)` keeps every example.
        seed: int, fixes the subset. Defaults to 0.

    Returns:
        `(x, y)`, sliced.
    """
    if num is None or num >= len(x):
        return x, y
    chosen = np.sort(np.random.default_rng(seed).choice(len(x), num, replace=False))
    return x[chosen], y[chosen]
