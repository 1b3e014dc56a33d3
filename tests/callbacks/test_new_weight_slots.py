"""After an update through `fit`, every new weight starts with fresh
optimizer slots, and every carried-over weight keeps its own.

The models are nearly dense (sparsity 0.05), so DSR and SET run out of
empty positions and regrow where weights were just dropped: those are new
weights (value 0) and must not inherit the dropped weight's momentum.
RigL's weights dropped and regrown at once are carried over and keep it.
"""

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_kernels
from tf_dsr.optimizer_slots import kernel_slots

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
}

CALLBACKS = {
    "dsr": lambda: tf_dsr.DynamicReparam(prune_target=0.3, period=1000, seed=0,
                                         initial_threshold=0.3),
    "set": lambda: tf_dsr.SET(prune_fraction=0.3, period=1000, seed=0),
}


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(64, 8)).astype("float32"),
            rng.normal(size=(64, 16)).astype("float32"))


def _model(optimizer, block_shape=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        tf_dsr.SparseDense(16, sparsity=0.05, block_shape=block_shape, seed=1, name="a"),
        tf_dsr.SparseDense(16, sparsity=0.05, block_shape=block_shape, seed=2, name="b"),
    ])
    model.compile(OPTIMIZERS[optimizer](), "mse")
    return model


def _snapshot(model):
    """Per kernel: kernel, mask and slot values (copies)."""
    return [
        (pair.kernel.numpy().copy(), pair.mask.numpy().copy(),
         [slot.variable.numpy().copy() for slot in kernel_slots(model.optimizer, pair.kernel)])
        for _, pair in find_sparse_kernels(model)
    ]


@pytest.mark.parametrize("method, optimizer, block_shape", [
    ("dsr", "sgd", None),
    ("dsr", "adam", None),
    ("set", "sgd", None),
    ("set", "adam", None),
    ("dsr", "sgd", (4, 1)),
    ("set", "adam", (2, 2)),
])
def test_weights_regrown_where_just_dropped_get_fresh_slots(method, optimizer, block_shape):
    model = _model(optimizer, block_shape)
    x, y = _data()
    callback = CALLBACKS[method]()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    before = _snapshot(model)

    report = callback.reallocate()

    assert report.total_pruned > 0
    regrown_where_dropped = 0
    for (kernel, mask, slots), (new_kernel, new_mask, new_slots) in zip(
            before, _snapshot(model)):
        assert slots and all(np.count_nonzero(s[mask == 1]) for s in slots)
        active, new_active = mask == 1, new_mask == 1
        # Training left no active weight at exactly 0: a zero is a new weight.
        assert (kernel[active] != 0).all()
        new = new_active & (new_kernel == 0)
        carried = new_active & ~new
        regrown_where_dropped += int((new & active).sum())
        np.testing.assert_array_equal(new_kernel[carried], kernel[carried])
        for slot, new_slot in zip(slots, new_slots):
            assert (new_slot[new] == 0).all()
            assert (new_slot[~new_active] == 0).all()
            np.testing.assert_array_equal(new_slot[carried], slot[carried])
    # The case under test occurred: weights regrown where ones were dropped.
    assert regrown_where_dropped > 0


def test_rigl_weights_dropped_and_regrown_at_once_keep_their_slots():
    model = _model("adam")
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    rigl = tf_dsr.RigL(drop_fraction=0.3, period=1, end_step=1000, seed=0)
    rigl.set_model(model)
    rigl.request_gradients()
    model.train_on_batch(x[:16], y[:16])
    before = _snapshot(model)

    rigl.reallocate(step=1)

    revived_total = 0
    for (kernel, mask, slots), (new_kernel, new_mask, new_slots) in zip(
            before, _snapshot(model)):
        active, new_active = mask == 1, new_mask == 1
        # RigL's drop: the floor(f * active) smallest magnitudes (f(1) is
        # 0.3 to within 1e-6, and no count sits at a rounding boundary).
        num_drop = int(np.floor(0.3 * active.sum()))
        order = np.argsort(np.where(active, np.abs(kernel), np.inf), axis=None)
        dropped = np.zeros(mask.size, bool)
        dropped[order[:num_drop]] = True
        dropped = dropped.reshape(mask.shape)
        revived = dropped & new_active
        revived_total += int(revived.sum())
        # Every weight active before and after is carried over (survivors
        # and revived ones): value and slots kept; the rest start at 0.
        both = active & new_active
        np.testing.assert_array_equal(new_kernel[both], kernel[both])
        assert (new_kernel[new_active & ~active] == 0).all()
        for slot, new_slot in zip(slots, new_slots):
            assert np.count_nonzero(slot[revived]) == revived.sum()
            np.testing.assert_array_equal(new_slot[both], slot[both])
            assert (new_slot[new_active & ~active] == 0).all()
            assert (new_slot[~new_active] == 0).all()
    assert revived_total > 0
