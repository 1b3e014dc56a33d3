"""SparsityHistory records per-layer sparsity at the start, per epoch and every N steps."""

import keras
import numpy as np
import pytest

import tf_dsr
from small_models import compile_small
from small_models import small_data
from small_models import small_model


def test_records_start_and_every_epoch_for_a_static_model():
    model = compile_small(small_model())
    history = tf_dsr.SparsityHistory()
    x, y = small_data(100)
    model.fit(x, y, epochs=3, batch_size=20, callbacks=[history], verbose=0)
    h = history.history
    assert h["step"] == [0, 5, 10, 15]
    assert h["epoch"] == [0, 1, 2, 3]
    assert set(h["layers"]) == {"a", "b"}
    # No reallocation: both layers stay at exactly half their kernel.
    for values in h["layers"].values():
        assert values == [0.5] * 4
    assert h["sparsity"] == [0.5] * 4


def test_follows_dsr_moving_weights_between_layers():
    keras.utils.set_random_seed(0)  # kernel values decide what is pruned
    model = compile_small(small_model())
    dsr = tf_dsr.DynamicReparam(prune_target=0.2, period=5, seed=0)
    history = tf_dsr.SparsityHistory(every=5)
    x, y = small_data(200)
    model.fit(x, y, epochs=2, batch_size=20, callbacks=[dsr, history], verbose=0)
    h = history.history
    assert h["step"] == [0, 5, 10, 15, 20]
    assert h["epoch"] == [0, 0, 1, 1, 2]
    # The global budget is conserved exactly; the split between layers is
    # whatever DSR made of it, and it matches the final masks.
    assert np.allclose(h["sparsity"], 0.5)
    summary = tf_dsr.sparsity_summary(model)
    for row in summary.layers:
        assert h["layers"][row.name][-1] == pytest.approx(row.sparsity)
    assert len({len(v) for v in h["layers"].values()} | {len(h["step"])}) == 1
    # DSR did move weights between the layers, and the history saw it.
    assert any(len(set(values)) > 1 for values in h["layers"].values())


@pytest.mark.parametrize("every", [0, -3, 2.5, True])
def test_rejects_bad_every(every):
    with pytest.raises(ValueError, match="every"):
        tf_dsr.SparsityHistory(every=every)


def test_rejects_a_model_without_sparse_layers():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no tf_dsr sparse layers"):
        tf_dsr.SparsityHistory().set_model(model)
