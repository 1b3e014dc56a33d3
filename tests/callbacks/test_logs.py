"""What the progress bar shows of a reallocation method's logs."""

import json
import re

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.callbacks.logs import CountLog
from tf_dsr.callbacks.logs import ThresholdLog

STEPS_PER_EPOCH = 5


def _plain(text):
    """Progress-bar output without colours and carriage returns."""
    return re.sub(r"\x1b\[[0-9;]*m|\x08", "", text).replace("\r", "\n")


def _show(verbose, values):
    # The arguments Keras' ProgbarLogger uses for `fit`.
    bar = keras.utils.Progbar(2, verbose=verbose, unit_name="step", stateless_metrics=set())
    bar.update(1, values)
    bar.update(2, values, finalize=True)


@pytest.mark.parametrize("verbose", [1, 2])
def test_progbar_prints_counts_as_ints_and_thresholds_with_three_digits(verbose, capsys):
    _show(verbose, [("num_pruned", CountLog(266)), ("threshold", ThresholdLog(0.00395)),
                            ("tiny", ThresholdLog(1.5625e-05)), ("none", ThresholdLog(float("nan")))])
    out = _plain(capsys.readouterr().out)
    assert "num_pruned: 266 " in out and "266.0" not in out
    assert "threshold: 0.00395 " in out
    assert "tiny: 1.56e-05 " in out
    assert "none: nan" in out


def test_log_values_are_plain_floats_elsewhere():
    count, threshold = CountLog(266), ThresholdLog(0.00395)
    assert count == 266 and isinstance(count, float)
    assert count / 2 == 133.0 and type(count / 2) is float
    assert count + 1 == 267 and type(count + 1) is float
    assert json.loads(json.dumps({"n": count, "t": threshold})) == {"n": 266.0, "t": 0.00395}
    assert np.array([count, threshold]).dtype == np.float64
    assert repr(threshold) == "0.00395" and str(count) == "266.0"


def _model():
    x = np.random.default_rng(0).normal(size=(10 * STEPS_PER_EPOCH, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), tf_dsr.SparseDense(16, sparsity=0.5, seed=0,
                                                                     activation="relu"),
                              tf_dsr.SparseDense(2, sparsity=0.5, seed=1)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def test_fit_shows_the_initial_threshold_from_the_first_step(capsys):
    model, x, y = _model()
    # No reallocation in this run: the threshold in force is the initial one.
    reparam = tf_dsr.DynamicReparam(prune_target=4, period=100, initial_threshold=0.00395, seed=0)
    history = model.fit(x, y, batch_size=10, epochs=1, callbacks=[reparam], verbose=1)
    out = _plain(capsys.readouterr().out)
    first = next(line for line in out.splitlines() if line.startswith("1/5"))
    assert "threshold: 0.00395 " in first
    assert "num_pruned: 0 " in first
    assert "nan" not in out
    assert history.history["threshold"] == [pytest.approx(0.00395)]
    assert history.history["num_pruned"] == [0]


def test_fit_shows_the_threshold_the_state_holds(capsys):
    model, x, y = _model()
    reparam = tf_dsr.DynamicReparam(prune_target=4, period=100, seed=0)
    reparam.set_model(model)
    reparam.state.threshold.assign(0.0625)  # as restored from a checkpoint
    model.fit(x, y, batch_size=10, epochs=1, callbacks=[reparam], verbose=1)
    first = next(line for line in _plain(capsys.readouterr().out).splitlines()
                 if line.startswith("1/5"))
    assert "threshold: 0.0625 " in first


def test_fit_shows_pruned_count_and_adapted_threshold_after_a_reallocation(capsys):
    model, x, y = _model()
    reparam = tf_dsr.DynamicReparam(prune_target=4, period=2, seed=0)
    history = model.fit(x, y, batch_size=10, epochs=1, callbacks=[reparam], verbose=2)
    line = _plain(capsys.readouterr().out).strip().splitlines()[-1]
    report = reparam.last_report
    assert f"num_pruned: {report.total_pruned} " in line
    assert f"threshold: {report.info['threshold']:.3g} " in line
    assert history.history["num_pruned"] == [report.total_pruned]
