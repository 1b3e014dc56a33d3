"""`tf_dsr.app.data`: the bundled digits and their split."""

import numpy as np
import pytest

from tf_dsr.app import data


def test_default_split_is_1438_train_359_test_stratified():
    (x_train, y_train), (x_test, y_test) = data.load_digits(seed=0)
    assert (x_train.shape, x_test.shape) == ((1438, 64), (359, 64))
    classes = np.concatenate([y_train, y_test])
    # Each class holds out round(0.2 * its size): 35.6 -> 36, 34.8 -> 35, ...
    expected = [int(round(0.2 * np.sum(classes == c))) for c in range(10)]
    assert np.bincount(y_test, minlength=10).tolist() == expected
    assert sum(expected) == 359


def test_split_depends_on_the_seed_only():
    (a, _), _ = data.load_digits(seed=0)
    (b, _), _ = data.load_digits(seed=0)
    (c, _), (d, _) = data.load_digits(seed=1, flat=False)
    np.testing.assert_array_equal(a, b)
    assert (c.shape, d.shape) == ((1438, 8, 8, 1), (359, 8, 8, 1))
    assert not np.array_equal(a, c.reshape(-1, 64))


def test_bad_test_fraction_says_the_range():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        data.load_digits(test_fraction=1.0)
