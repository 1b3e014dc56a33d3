"""Block-sparse layers, `sparsify(block_shape=)` and the builders."""

import warnings

import keras
import numpy as np
import pytest

import tf_dsr
from tf_dsr.core import blocks
from tf_dsr.core.blocks import is_block_mask


def _whole_blocks(pair):
    return bool(blocks.is_block_mask(pair.mask, pair.block_shape))


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_dense_mask_is_whole_blocks_with_the_exact_block_count(sparsity):
    layer = tf_dsr.SparseDense(300, sparsity=sparsity, block_shape=(4, 1), seed=0)
    layer(np.ones((1, 784), "float32"))
    pair = layer.sparse_kernels()[0]
    assert pair.block_shape == (4, 1)
    assert _whole_blocks(pair)
    assert int(layer.mask.numpy().sum()) == 4 * round((1 - sparsity) * 196 * 300)
    # The kernel starts at zero outside the mask, as without blocks.
    assert np.all(layer.kernel_variable.numpy()[layer.mask.numpy() == 0] == 0)


def test_one_by_one_conv_blocks_group_output_channels():
    layer = tf_dsr.SparseConv2D(16, 1, sparsity=0.75, block_shape=(1, 4), seed=1)
    layer(np.ones((1, 4, 4, 8), "float32"))
    mask = layer.mask.numpy()  # (1, 1, 8, 16)
    groups = mask.reshape(8, 4, 4)  # input channel, block of 4 outputs, offset
    assert np.all(groups.min(-1) == groups.max(-1))
    assert int(mask.sum()) == 4 * round(0.25 * 32)
    assert layer.sparse_kernels()[0].block_shape == (1, 1, 1, 4)


def test_3x3_conv_blocks_sit_at_one_spatial_tap():
    layer = tf_dsr.SparseConv2D(8, 3, sparsity=0.5, block_shape=(2, 2), seed=0)
    layer(np.ones((1, 5, 5, 4), "float32"))
    pair = layer.sparse_kernels()[0]
    assert pair.block_shape == (1, 1, 2, 2) and _whole_blocks(pair)
    assert int(pair.mask.numpy().sum()) == 4 * round(0.5 * 9 * 2 * 4)


def test_config_and_keras_file_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((8,)),
                              tf_dsr.SparseDense(8, sparsity=0.5, block_shape=(4, 2), seed=0)])
    layer = model.layers[0]
    assert layer.get_config()["block_shape"] == [4, 2]
    assert tf_dsr.SparseDense.from_config(layer.get_config()).block_shape == (4, 2)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].block_shape == (4, 2)
    np.testing.assert_array_equal(loaded.layers[0].mask.numpy(), layer.mask.numpy())
    # Layers without blocks keep their config as before.
    assert tf_dsr.SparseDense(4).get_config()["block_shape"] is None
    assert "block_shape" not in tf_dsr.SparseEmbedding(10, 4).get_config()


def test_dimensions_that_are_not_multiples_of_the_block_raise_at_build():
    layer = tf_dsr.SparseDense(10, sparsity=0.5, block_shape=(1, 4))
    with pytest.raises(ValueError, match=r"axis 1 has 10 entries, not a multiple of 4"):
        layer(np.ones((1, 8), "float32"))


@pytest.mark.parametrize("block_shape,error,match", [
    ("4x1", TypeError, "pair of positive ints"),
    ((4,), ValueError, "pair of positive ints"),
    ((4, 0), ValueError, "pair of positive ints"),
    ((4.0, 1), ValueError, "pair of positive ints"),
])
def test_bad_block_shapes_are_refused(block_shape, error, match):
    with pytest.raises(error, match=match):
        tf_dsr.SparseDense(8, block_shape=block_shape)


@pytest.mark.parametrize("make", [
    lambda: tf_dsr.SparseEmbedding(10, 4, block_shape=(4, 1)),
    lambda: tf_dsr.SparseDepthwiseConv2D(3, block_shape=(1, 4)),
    lambda: tf_dsr.SparseConv2DTranspose(8, 3, block_shape=(1, 4)),
    lambda: tf_dsr.SparseLSTM(8, block_shape=(4, 1)),
])
def test_layers_without_an_input_output_pair_refuse_blocks(make):
    with pytest.raises(ValueError, match="SparseDense, SparseEinsumDense, SparseConv1D"):
        make()


def test_too_high_a_sparsity_for_the_blocks_raises():
    layer = tf_dsr.SparseDense(4, sparsity=0.9, block_shape=(4, 1))
    with pytest.raises(ValueError, match="no active block"):
        layer(np.ones((1, 4), "float32"))


def _plain_convnet():
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, name="first"),
        keras.layers.Conv2D(16, 1, name="pointwise"), keras.layers.Flatten(),
        keras.layers.Dense(64, name="hidden"), keras.layers.Dense(10, name="out"),
    ])


def test_sparsify_with_blocks_and_strip():
    model = _plain_convnet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = tf_dsr.sparsify(model, 0.75, block_shape=(4, 1), seed=0)
    found = tf_dsr.layers.find_sparse_kernels(sparse)
    assert [name for name, _ in found] == ["pointwise", "hidden"]
    for _, pair in found:
        assert pair.layer.block_shape == (4, 1) and _whole_blocks(pair)
        num_blocks = pair.size // 4
        assert int(pair.mask.numpy().sum()) == 4 * round(0.25 * num_blocks)
    plain = tf_dsr.strip(sparse)
    assert "block_shape" not in plain.get_layer("hidden").get_config()
    np.testing.assert_allclose(plain(np.ones((2, 8, 8, 3))), sparse(np.ones((2, 8, 8, 3))),
                               atol=1e-6)


def test_sparsify_refuses_every_layer_the_block_cannot_tile_and_changes_nothing():
    model = _plain_convnet()
    with pytest.raises(ValueError) as error:
        tf_dsr.sparsify(model, 0.9, block_shape=(1, 4), include=["first", "out"])
    message = str(error.value)
    assert "out (Dense, kernel (64, 10))" in message and "axis 1" in message
    assert "keep_dense" in message
    assert "first (" not in message  # its 3x3x3x8 kernel takes (1, 4) blocks
    assert not tf_dsr.layers.find_sparse_layers(model)


def test_sparsify_refuses_layer_types_without_blocks():
    tokens = keras.Input((5,), dtype="int32")
    model = keras.Model(tokens, keras.layers.Dense(4)(keras.layers.Embedding(20, 8)(tokens)))
    with pytest.raises(ValueError, match=r"embedding \(Embedding\): no block shape"):
        tf_dsr.sparsify(model, 0.5, block_shape=(4, 1), include=["embedding"])


def test_builders_take_block_shape():
    model = tf_dsr.models.lenet_300_100((64,), 10, sparsity=0.9, seed=0, block_shape=(4, 1))
    found = tf_dsr.layers.find_sparse_kernels(model)
    assert len(found) == 3
    for _, pair in found:
        assert pair.block_shape == (4, 1) and _whole_blocks(pair)
    dense = tf_dsr.models.lenet_300_100((64,), 10, sparsity=None, block_shape=(4, 1))
    assert not tf_dsr.layers.find_sparse_layers(dense)
    conv = tf_dsr.models.small_convnet(sparsity=0.9, seed=0, block_shape=(1, 4))
    assert all(_whole_blocks(pair) for _, pair in tf_dsr.layers.find_sparse_kernels(conv))


@pytest.mark.parametrize("make,x_shape,full", [
    (lambda: tf_dsr.SparseConv1D(8, 3, sparsity=0.5, block_shape=(2, 4), seed=0),
     (1, 6, 4), (1, 2, 4)),
    (lambda: tf_dsr.SparseConv3D(8, 1, sparsity=0.5, block_shape=(1, 4), seed=0),
     (1, 3, 3, 3, 4), (1, 1, 1, 1, 4)),
])
def test_conv1d_and_conv3d_take_blocks_at_one_tap(make, x_shape, full):
    layer = make()
    layer(np.ones(x_shape, "float32"))
    pair = layer.sparse_kernels()[0]
    assert pair.block_shape == full and _whole_blocks(pair)
    num_blocks = pair.size // (full[-2] * full[-1])
    assert int(pair.mask.numpy().sum()) == full[-2] * full[-1] * round(0.5 * num_blocks)


@pytest.mark.parametrize("equation,output_shape,x_shape,axes", [
    ("abc,cde->abde", (None, 4, 16), (2, 3, 32), (0, 2)),   # query/key/value
    ("abcd,cde->abe", (None, 32), (2, 3, 4, 16), (1, 2)),   # attention output
    ("btd,ndh->btnh", (None, 4, 16), (2, 3, 32), (1, 2)),   # Gemma's query
    ("abc,cd->abd", (None, 16), (2, 3, 32), (0, 1)),        # a Dense on tokens
])
def test_einsum_dense_blocks_lie_along_its_innermost_input_and_output_axes(
        equation, output_shape, x_shape, axes):
    layer = tf_dsr.SparseEinsumDense(equation, output_shape, sparsity=0.75,
                                     block_shape=(4, 2), seed=0)
    layer(np.ones(x_shape, "float32"))
    (_, pair), = tf_dsr.layers.find_sparse_kernels(layer)
    expected = [1] * len(pair.kernel.shape)
    expected[axes[0]], expected[axes[1]] = 4, 2
    assert pair.block_shape == tuple(expected)
    assert bool(is_block_mask(pair.mask, pair.block_shape))
    num_blocks = pair.size // 8
    assert int(pair.mask.numpy().sum()) == 8 * round(0.25 * num_blocks)


@pytest.mark.parametrize("equation,output_shape,x_shape", [
    ("abc,bc->ab", (4,), (2, 4, 8)),   # 'b' in input and output: batched
    ("ab,c->abc", (4, 8), (2, 4)),     # no input axis in the kernel
])
def test_einsum_dense_layouts_without_a_fully_connected_block_are_refused(
        equation, output_shape, x_shape):
    layer = tf_dsr.SparseEinsumDense(equation, output_shape, sparsity=0.5,
                                     block_shape=(4, 1))
    with pytest.raises(ValueError, match="no TFLite FULLY_CONNECTED block"):
        layer(np.ones(x_shape, "float32"))


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reversible_embedding_blocks_lie_along_the_logits_projection(tie_weights):
    # Blocks of the logits matmul: (4, 1) is 4 consecutive entries of one
    # token's vector, on the tied (tokens, vector) table and on the
    # untied (vector, tokens) reverse table alike.
    layer = tf_dsr.SparseReversibleEmbedding(12, 8, sparsity=0.75, tie_weights=tie_weights,
                                             block_shape=(4, 1), seed=0)
    vectors = layer(np.array([[1, 5, 11]]))
    found = {pair.attribute: pair for _, pair in tf_dsr.layers.find_sparse_kernels(layer)}
    table = found["embeddings"]
    assert table.block_shape == (1, 4) and _whole_blocks(table)
    assert int(table.mask.numpy().sum()) == 4 * round(0.25 * 24)
    if not tie_weights:
        reverse = found["reverse_embeddings"]
        assert reverse.block_shape == (4, 1) and _whole_blocks(reverse)
    logits = layer(vectors, reverse=True)
    weight = (keras.ops.transpose(table.masked) if tie_weights
              else found["reverse_embeddings"].masked)
    np.testing.assert_allclose(logits, keras.ops.matmul(vectors, weight), atol=1e-6)
    config = layer.get_config()
    assert config["block_shape"] == [4, 1]
    assert tf_dsr.SparseReversibleEmbedding.from_config(config).block_shape == (4, 1)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reversible_embedding_blocks_must_tile_the_vector(tie_weights):
    layer = tf_dsr.SparseReversibleEmbedding(12, 6, sparsity=0.5, tie_weights=tie_weights,
                                             block_shape=(4, 1))
    with pytest.raises(ValueError, match=r"block_shape=\(4, 1\) does not tile embeddings "
                                         r"\(12, 6\).*b_in=4 must divide output_dim"):
        layer(np.array([[1, 2]]))
    too_wide = tf_dsr.SparseReversibleEmbedding(12, 8, sparsity=0.5, block_shape=(1, 5))
    with pytest.raises(ValueError, match=r"b_out=5 must divide input_dim, the vocabulary \(12\)"):
        too_wide(np.array([[1, 2]]))


def test_sparsify_gives_a_keras_hub_lm_token_table_its_blocks():
    import keras_hub_tiny

    lm = keras_hub_tiny.gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_dsr.sparsify(lm, 0.75, block_shape=(4, 1), seed=0)
    found = dict(tf_dsr.layers.find_sparse_kernels(lm))
    table = found["gpt2_backbone/token_embedding"]
    assert isinstance(table.layer, tf_dsr.SparseReversibleEmbedding)
    assert table.block_shape == (1, 4) and _whole_blocks(table)
    assert all(_whole_blocks(pair) for pair in found.values())
