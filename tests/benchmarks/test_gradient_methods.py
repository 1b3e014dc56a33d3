"""benchmarks/gradient_methods.py: the floor under its whole-fit table."""

import re

import tensorflow as tf

from benchmark_scripts import load


def _models(script):
    plain = script.compile_model(script.lenet(False))
    sparse = script.compile_model(script.lenet(True))
    return plain, sparse


def test_every_timed_call_is_one_training_step_of_its_model(capsys):
    script = load("gradient_methods")
    x, y = script.data((784,), 1, batch=8)
    plain, sparse = _models(script)  # never fit: the floor builds the functions

    script.bench_step_floor(plain, sparse, (tf.constant(x), tf.constant(y)), rounds=2, steps=3)

    # One untimed call, then 2 rounds of 3 calls, for each model.
    assert int(plain.optimizer.iterations.numpy()) == 1 + 2 * 3
    assert int(sparse.optimizer.iterations.numpy()) == 1 + 2 * 3
    assert re.search(r"plain [0-9.]+ ms, tf_dsr layers [0-9.]+ ms per step, paired [0-9.]+",
                     capsys.readouterr().out)


def test_paired_ratio_is_tf_dsr_over_plain(capsys, monkeypatch):
    script = load("gradient_methods")
    plain, sparse = _models(script)
    monkeypatch.setattr(script, "time_train_function",
                        lambda model, batch, steps: 0.002 if model is sparse else 0.001)

    script.bench_step_floor(plain, sparse, None, rounds=3, steps=5)

    out = capsys.readouterr().out
    assert "plain 1.000 ms, tf_dsr layers 2.000 ms per step, paired 2.000" in out, out
