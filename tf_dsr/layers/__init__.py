"""Keras layers whose kernels carry a 0/1 mask, and how to find them."""

from tf_dsr.layers.attention import SparseMultiHeadAttention
from tf_dsr.layers.base import SparseKernel
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.conv import SparseConv1D
from tf_dsr.layers.conv import SparseConv1DTranspose
from tf_dsr.layers.conv import SparseConv2D
from tf_dsr.layers.conv import SparseConv2DTranspose
from tf_dsr.layers.conv import SparseConv3D
from tf_dsr.layers.conv import SparseConv3DTranspose
from tf_dsr.layers.conv import SparseDepthwiseConv1D
from tf_dsr.layers.conv import SparseDepthwiseConv2D
from tf_dsr.layers.conv import SparseSeparableConv1D
from tf_dsr.layers.conv import SparseSeparableConv2D
from tf_dsr.layers.dense import SparseDense
from tf_dsr.layers.dense import SparseEinsumDense
from tf_dsr.layers.dense import SparseEmbedding
from tf_dsr.layers.find import find_dense_kernels
from tf_dsr.layers.find import find_sparse_kernels
from tf_dsr.layers.find import find_sparse_layers
from tf_dsr.layers.rnn import SparseGRU
from tf_dsr.layers.rnn import SparseGRUCell
from tf_dsr.layers.rnn import SparseLSTM
from tf_dsr.layers.rnn import SparseLSTMCell
from tf_dsr.layers.rnn import SparseSimpleRNN
from tf_dsr.layers.rnn import SparseSimpleRNNCell

# Every sparse class, keyed by the Keras class it masks (exact types: a
# user's subclass of Dense may compute something else with its kernel).
SPARSE_CLASSES = {
    cls.keras_class(): cls
    for cls in (
        SparseDense, SparseEinsumDense, SparseEmbedding,
        SparseConv1D, SparseConv2D, SparseConv3D,
        SparseConv1DTranspose, SparseConv2DTranspose, SparseConv3DTranspose,
        SparseDepthwiseConv1D, SparseDepthwiseConv2D,
        SparseSeparableConv1D, SparseSeparableConv2D,
        SparseSimpleRNNCell, SparseGRUCell, SparseLSTMCell,
        SparseSimpleRNN, SparseGRU, SparseLSTM,
        SparseMultiHeadAttention,
    )
}
