"""benchmarks/gradient_methods.py: the floor under its whole-fit table."""

import re

import tensorflow as tf

from benchmark_scripts import load


def _setup():
    script = load("gradient_methods")
    x, y = script.data((784,), 1, batch=8)
    plain = script.compile_model(script.lenet(False))
    sparse = script.compile_model(script.lenet(True))  # never fit: the floor builds
    return script, plain, sparse, (tf.constant(x), tf.constant(y))


def test_each_runner_is_one_training_step_of_its_own_model(capsys, monkeypatch):
    script, plain, sparse, batch = _setup()

    def fake_times(runners, rounds, chunk_seconds):
        for name, model, other in (("plain", plain, sparse), ("sparse", sparse, plain)):
            before = int(model.optimizer.iterations.numpy()), int(other.optimizer.iterations.numpy())
            runners[name]()
            assert int(model.optimizer.iterations.numpy()) == before[0] + 1
            assert int(other.optimizer.iterations.numpy()) == before[1]
        return {"plain": [1e-3] * rounds, "sparse": [2e-3] * rounds}

    monkeypatch.setattr(script.latency, "interleaved_times", fake_times)
    script.bench_step_floor(plain, sparse, batch, rounds=3)

    out = capsys.readouterr().out
    assert "plain 1.000 ms, tf_dsr layers 2.000 ms per step, paired 2.000" in out, out


def test_a_tiny_real_run_trains_both_models_and_prints_the_ratio(capsys):
    script, plain, sparse, batch = _setup()

    script.bench_step_floor(plain, sparse, batch, rounds=2, chunk_seconds=0.001)

    # Warm-up and timed calls all train (at least 3 + 1 + 2 per model).
    assert int(plain.optimizer.iterations.numpy()) >= 6
    assert int(sparse.optimizer.iterations.numpy()) >= 6
    assert re.search(r"plain [0-9.]+ ms, tf_dsr layers [0-9.]+ ms per step, paired [0-9.]+",
                     capsys.readouterr().out)
