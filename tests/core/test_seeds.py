"""Tests for `tf_dsr.core.seeds`: per-tensor seeds from a seed and a step."""

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.core.seeds import TIE_STREAM
from tf_dsr.core.seeds import layer_seeds


def _fold_in(seed, step, index):
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, index, alg="philox").numpy()


@pytest.mark.parametrize("seed,step", [(0, 0), (3, 17), (2**40, 5), (-7, 2**33)])
def test_layer_seeds_are_the_fold_in_of_each_index(seed, step):
    seeds = layer_seeds(seed, step, 6).numpy()
    assert seeds.dtype == np.int32 and seeds.shape == (6, 2)
    for i in range(6):
        np.testing.assert_array_equal(seeds[i], _fold_in(seed, step, i))


def test_layer_seeds_depend_on_every_input():
    base = layer_seeds(1, 100, 2).numpy()
    np.testing.assert_array_equal(layer_seeds(1, 100, 2).numpy(), base)
    others = [layer_seeds(2, 100, 2)[0], layer_seeds(1, 101, 2)[0], base[1]]
    values = {tuple(np.asarray(o)) for o in others}
    assert len({tuple(base[0])} | values) == 4
    # A tensor seed equals the same Python number.
    np.testing.assert_array_equal(layer_seeds(tf.constant(1), 100, 2).numpy(), base)
    # A row does not depend on how many tensors there are.
    np.testing.assert_array_equal(layer_seeds(1, 100, 5).numpy()[:2], base)


def test_streams_fold_the_stream_into_each_row():
    plain = layer_seeds(3, 8, 4)
    ties = layer_seeds(3, 8, 4, stream=TIE_STREAM).numpy()
    assert ties.dtype == np.int32 and ties.shape == (4, 2)
    for i in range(4):
        expected = tf.random.experimental.stateless_fold_in(plain[i], TIE_STREAM,
                                                            alg="philox")
        np.testing.assert_array_equal(ties[i], expected.numpy())
    assert len({tuple(row) for row in ties} | {tuple(row) for row in plain.numpy()}) == 8
    np.testing.assert_array_equal(layer_seeds(3, 8, 4, stream=0).numpy(), plain.numpy())


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_layer_seeds_compiled_equal_eager(jit_compile):
    compiled = tf.function(
        lambda seed, step: (layer_seeds(seed, step, 3), layer_seeds(seed, step, 3, stream=1)),
        jit_compile=jit_compile)
    got = compiled(tf.constant(5, tf.int64), tf.constant(300, tf.int64))
    np.testing.assert_array_equal(got[0].numpy(), layer_seeds(5, 300, 3).numpy())
    np.testing.assert_array_equal(got[1].numpy(), layer_seeds(5, 300, 3, stream=1).numpy())


@pytest.mark.parametrize("kwargs,error,match", [
    ({"num_layers": 0}, ValueError, "num_layers` must be >= 1. Received: 0"),
    ({"num_layers": 2.0}, TypeError, "num_layers.*Received: 2.0 of type float"),
    ({"num_layers": True}, TypeError, "num_layers"),
    ({"num_layers": 2, "stream": -1}, ValueError, "stream` must be >= 0"),
    ({"num_layers": 2, "stream": "ties"}, TypeError, "stream.*of type str"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        layer_seeds(0, 0, **kwargs)
