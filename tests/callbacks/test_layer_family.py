"""Every method over one model that mixes every sparse layer type."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.layers import SPARSE_CLASSES
from tf_dsr.layers import find_sparse_kernels

VOCAB, STEPS = 30, 6


def mixed_model(sparsity=0.6, seed=0):
    """Three inputs (tokens, an image, a volume), one sparse layer of each type."""
    s = dict(sparsity=sparsity)
    tokens = keras.Input((STEPS,), dtype="int32", name="tokens")
    # Masking of padded steps is tested with the recurrent layers alone
    # (test_recurrent.py): here a mask would reach the convolutions.
    h = tf_dsr.SparseEmbedding(VOCAB, 8, seed=seed, **s)(tokens)
    h = keras.layers.Bidirectional(
        tf_dsr.SparseLSTM(6, return_sequences=True, seed=seed + 1, **s))(h)
    h = tf_dsr.SparseGRU(6, return_sequences=True, seed=seed + 2, **s)(h)
    h = tf_dsr.SparseSimpleRNN(6, return_sequences=True, seed=seed + 3, **s)(h)
    h = keras.layers.RNN(
        tf_dsr.SparseLSTMCell(6, seed=seed + 4, **s), return_sequences=True)(h)
    h = keras.layers.RNN(
        tf_dsr.SparseGRUCell(6, seed=seed + 5, **s), return_sequences=True)(h)
    h = keras.layers.RNN(
        tf_dsr.SparseSimpleRNNCell(6, seed=seed + 6, **s), return_sequences=True)(h)
    h = keras.layers.TimeDistributed(tf_dsr.SparseDense(8, seed=seed + 7, **s))(h)
    h = tf_dsr.SparseConv1D(8, 3, padding="same", seed=seed + 8, **s)(h)
    h = tf_dsr.SparseSeparableConv1D(8, 3, padding="same", seed=seed + 9, **s)(h)
    h = tf_dsr.SparseDepthwiseConv1D(3, padding="same", seed=seed + 10, **s)(h)
    h = tf_dsr.SparseConv1DTranspose(8, 3, padding="same", seed=seed + 11, **s)(h)
    h = tf_dsr.SparseEinsumDense("abc,cd->abd", (None, 8), bias_axes="d",
                                 seed=seed + 12, **s)(h)
    # A language model's output head: vectors to token logits through the
    # (tied) token table.
    h = tf_dsr.SparseReversibleEmbedding(VOCAB, 8, seed=seed + 20, **s)(h, reverse=True)
    text = keras.layers.GlobalAveragePooling1D()(h)

    image = keras.Input((6, 6, 2), name="image")
    g = tf_dsr.SparseConv2D(6, 3, padding="same", seed=seed + 13, **s)(image)
    g = tf_dsr.SparseDepthwiseConv2D(3, padding="same", seed=seed + 14, **s)(g)
    g = tf_dsr.SparseSeparableConv2D(6, 3, padding="same", seed=seed + 15, **s)(g)
    g = tf_dsr.SparseConv2DTranspose(6, 3, padding="same", seed=seed + 16, **s)(g)
    picture = keras.layers.GlobalAveragePooling2D()(g)

    volume = keras.Input((4, 4, 4, 1), name="volume")
    v = tf_dsr.SparseConv3D(4, 2, padding="same", seed=seed + 17, **s)(volume)
    v = tf_dsr.SparseConv3DTranspose(4, 2, padding="same", seed=seed + 18, **s)(v)
    cube = keras.layers.GlobalAveragePooling3D()(v)

    merged = keras.layers.Concatenate()([text, picture, cube])
    logits = tf_dsr.SparseDense(3, seed=seed + 19, **s)(merged)
    return keras.Model([tokens, image, volume], logits)


def mixed_data(n=64):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, size=(n, STEPS)).astype("int32")
    tokens[:, -2:] = 0  # padded steps
    x = (tokens, rng.normal(size=(n, 6, 6, 2)).astype("float32"),
         rng.normal(size=(n, 4, 4, 4, 1)).astype("float32"))
    return x, rng.integers(0, 3, size=n)


def active_counts(model):
    return {name: int(pair.mask.numpy().sum()) for name, pair in find_sparse_kernels(model)}


def layer_types(names, model):
    kinds = {name: type(pair.layer).__name__ for name, pair in find_sparse_kernels(model)}
    return {kinds[name] for name in names}


def assert_inactive_kernels_are_zero(model):
    for name, pair in find_sparse_kernels(model):
        kernel, mask = pair.kernel.numpy(), pair.mask.numpy()
        assert np.all(kernel[mask == 0] == 0.0), name


def test_the_model_has_every_sparse_layer_type():
    model = mixed_model()
    owners = {type(pair.layer) for _, pair in find_sparse_kernels(model)}
    # Recurrent layers own no kernel (their cells do); attention, whose
    # projections are SparseEinsumDense, is tested in test_attention.py.
    expected = {cls for cls in SPARSE_CLASSES.values() if cls.sparse_kernel_names}
    assert owners == expected
    # 13 one-kernel layers, 2 separable convolutions with 2 kernels each,
    # 7 cells (the LSTM once per direction) with 2 kernels each.
    assert len(find_sparse_kernels(model)) == 13 + 2 * 2 + 7 * 2


@pytest.fixture(scope="module")
def dsr_run():
    """The mixed model (Adam) trained one epoch without a method, then two
    with DSR and a SparsityHistory: one trace of its train step serves both
    fits (DSR needs no gradient, so `fit` does not retrace)."""
    keras.utils.set_random_seed(1)
    model = mixed_model()
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = mixed_data()
    initial = {name: (pair.mask.numpy().copy(), pair.kernel.numpy().copy())
               for name, pair in find_sparse_kernels(model)}
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    static = {name: (pair.mask.numpy().copy(), pair.kernel.numpy().copy())
              for name, pair in find_sparse_kernels(model)}
    before = active_counts(model)
    dsr = tf_dsr.DynamicReparam(prune_target=0.1, period=2, seed=3)
    history = tf_dsr.SparsityHistory()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[dsr, history])
    return model, dsr, history, before, (initial, static)


def test_dsr_conserves_the_count_and_moves_weights_between_layer_types(dsr_run):
    model, dsr, _, before, _ = dsr_run
    after = active_counts(model)

    assert int(dsr.state.num_reallocations.numpy()) >= 3
    assert sum(after.values()) == sum(before.values())
    gained = [name for name in after if after[name] > before[name]]
    lost = [name for name in after if after[name] < before[name]]
    # Weights moved, and not only between layers of one type.
    assert len(layer_types(gained, model) | layer_types(lost, model)) >= 3
    assert layer_types(gained, model) and layer_types(lost, model)
    assert_inactive_kernels_are_zero(model)


def test_dsr_moves_weights_between_a_cells_input_and_recurrent_kernels(dsr_run):
    model, _, _, before, _ = dsr_run
    after = active_counts(model)
    cells = [name[: -len("/recurrent_kernel")] for name in after
             if name.endswith("/recurrent_kernel")]
    change = lambda name: after[name] - before[name]

    assert len(cells) == 7
    # The two kernels of a cell are two tensors of the pool: their counts
    # change independently.
    assert any(change(c + "/kernel") != change(c + "/recurrent_kernel") for c in cells)


def test_optimizer_slots_are_reset_for_every_kernel(dsr_run):
    model, dsr, _, _, _ = dsr_run
    dsr.reallocate()

    for name, pair in find_sparse_kernels(model):
        slots = tf_dsr.optimizer_slots.kernel_slots(model.optimizer, pair.kernel)
        assert len(slots) == 2, name  # Adam's two moments
        for slot in slots:
            assert np.all(slot.variable.numpy()[pair.mask.numpy() == 0] == 0.0), name


def test_summary_and_history_list_every_kernel(dsr_run):
    model, _, history, _, _ = dsr_run
    names = [name for name, _ in find_sparse_kernels(model)]

    assert len(set(names)) == len(names)
    assert [row.name for row in tf_dsr.sparsity_summary(model).layers] == names
    assert sorted(history.history["layers"]) == sorted(names)
    bidirectional = model.layers[2]
    assert isinstance(bidirectional, keras.layers.Bidirectional)
    assert (f"{bidirectional.name}/{bidirectional.forward_layer.name}/lstm_cell/recurrent_kernel"
            in names)


def test_saves_reloads_and_exports(dsr_run, tmp_path):
    model = dsr_run[0]
    x, _ = mixed_data(8)
    expected = keras.ops.convert_to_numpy(model(x))

    model.save(tmp_path / "m.keras")
    loaded = tf_dsr.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)
    assert active_counts(loaded) == active_counts(model)

    plain = tf_dsr.strip(model)
    assert not tf_dsr.layers.find_sparse_layers(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), expected, atol=1e-6)

    tf_dsr.export(model, tmp_path / "saved", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    outputs = served.serve([tf.constant(a) for a in x])
    np.testing.assert_allclose(outputs.numpy(), expected, atol=1e-5)
    assert not any("mask" in v.name for v in served.variables)


def test_set_keeps_every_kernel_count_and_changes_masks():
    keras.utils.set_random_seed(1)
    model = mixed_model()
    before = active_counts(model)
    masks = {name: pair.mask.numpy().copy() for name, pair in find_sparse_kernels(model)}
    set_ = tf_dsr.SET(prune_fraction=0.3, period=2, seed=1)
    set_.set_model(model)
    for step in (2, 4):
        set_.reallocate(step)

    assert active_counts(model) == before
    changed = [name for name, pair in find_sparse_kernels(model)
               if not np.array_equal(pair.mask.numpy(), masks[name])]
    assert len(changed) >= len(masks) - 2
    assert_inactive_kernels_are_zero(model)


def test_static_training_changes_no_mask(dsr_run):
    # The fit without a method that `dsr_run` runs before DSR.
    initial, static = dsr_run[-1]
    assert sorted(static) == sorted(initial) and len(static) == 13 + 2 * 2 + 7 * 2
    for name, (mask, kernel) in static.items():
        np.testing.assert_array_equal(mask, initial[name][0])
        assert not np.array_equal(kernel, initial[name][1])  # it trained
        assert np.all(kernel[mask == 0] == 0.0), name


def test_gradual_pruning_reaches_its_target_on_every_kernel():
    keras.utils.set_random_seed(1)
    model = mixed_model(sparsity=0.0)
    rng = np.random.default_rng(0)
    for _, pair in find_sparse_kernels(model):
        pair.kernel.assign(rng.normal(size=pair.kernel.shape))
    pruning = tf_dsr.GradualPruning(final_sparsity=0.5, begin_step=0, end_step=4, period=2)
    pruning.set_model(model)
    for step in (2, 4):
        pruning.reallocate(step)

    for row in tf_dsr.sparsity_summary(model).layers:
        assert row.num_active == round(0.5 * row.num_weights), row.name
    assert_inactive_kernels_are_zero(model)


def test_xla_reallocation_equals_the_graph_one_on_every_kernel_rank():
    """Kernels of rank 2 (cells, Dense), 3 (Conv1D), 4 (Conv2D), 5 (Conv3D)."""
    def small(seed=0):
        inputs = keras.Input((4, 4, 4, 2))
        h = tf_dsr.SparseConv3D(3, 2, sparsity=0.5, seed=seed)(inputs)
        h = keras.layers.Reshape((27, 3))(h)
        h = tf_dsr.SparseConv1D(4, 2, sparsity=0.5, seed=seed + 1)(h)
        h = keras.layers.Reshape((26, 2, 2))(h)
        h = tf_dsr.SparseDepthwiseConv2D(2, sparsity=0.5, seed=seed + 2)(h)
        h = keras.layers.Reshape((25, 2))(h)
        h = tf_dsr.SparseLSTM(3, sparsity=0.5, seed=seed + 3)(h)
        return keras.Model(inputs, h)

    results = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = small()
        rng = np.random.default_rng(0)
        for _, pair in find_sparse_kernels(model):
            pair.kernel.assign(rng.normal(0, 0.01, pair.kernel.shape) * pair.mask.numpy())
        dsr = tf_dsr.DynamicReparam(prune_target=0.2, period=1, seed=5, jit_compile=jit_compile)
        dsr.set_model(model)
        report = dsr.reallocate(step=7)
        results.append((report, [p.mask.numpy() for _, p in find_sparse_kernels(model)]))

    (graph, graph_masks), (xla, xla_masks) = results
    assert graph.total_pruned > 0
    # The two models' layer names differ (Keras numbers them): compare values.
    assert list(graph.num_pruned.values()) == list(xla.num_pruned.values())
    assert list(graph.num_grown.values()) == list(xla.num_grown.values())
    for a, b in zip(graph_masks, xla_masks):
        np.testing.assert_array_equal(a, b)
