"""benchmarks/gradient_methods.py: the floor under its whole-fit table."""

import re

import numpy as np
import tensorflow as tf

from benchmark_scripts import load


def test_step_floor_times_the_train_function_of_both_models(capsys):
    script = load("gradient_methods")
    x, y = script.data((784,), 1, batch=8)
    plain = script.compile_model(script.lenet(False))
    sparse = script.compile_model(script.lenet(True))
    for model in (plain, sparse):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = [w.numpy() for w in plain.trainable_weights + sparse.trainable_weights]

    script.bench_step_floor(plain, sparse, (tf.constant(x), tf.constant(y)), rounds=2, steps=3)

    line = capsys.readouterr().out
    match = re.search(r"plain ([0-9.]+) ms, tf_dsr layers ([0-9.]+) ms per step, "
                      r"paired ([0-9.]+)", line)
    assert match, line
    assert all(float(value) > 0 for value in match.groups())
    after = [w.numpy() for w in plain.trainable_weights + sparse.trainable_weights]
    # Every timed call is a real training step of its model.
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))
