"""Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras 3."""

from tf_dsr import counting
from tf_dsr import methods
from tf_dsr import models
from tf_dsr.methods import SET
from tf_dsr.methods import DynamicReparam
from tf_dsr.methods import GradualPruning
from tf_dsr.methods import RigL
from tf_dsr.training.report import ReallocationReport
from tf_dsr.training.callback import ReparamCallback
from tf_dsr.training.history import SparsityHistory
from tf_dsr.convert import sparsify
from tf_dsr.stripping import strip
from tf_dsr.distribution import erk_sparsities
from tf_dsr.layers import SparseConv1D
from tf_dsr.layers import SparseConv1DTranspose
from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseConv2DTranspose
from tf_dsr.layers import SparseConv3D
from tf_dsr.layers import SparseConv3DTranspose
from tf_dsr.layers import SparseDense
from tf_dsr.layers import SparseDepthwiseConv1D
from tf_dsr.layers import SparseDepthwiseConv2D
from tf_dsr.layers import SparseEinsumDense
from tf_dsr.layers import SparseEmbedding
from tf_dsr.layers import SparseGRU
from tf_dsr.layers import SparseGRUCell
from tf_dsr.layers import SparseKernel
from tf_dsr.layers import SparseLSTM
from tf_dsr.layers import SparseLSTMCell
from tf_dsr.layers import SparseLayer
from tf_dsr.layers import SparseMultiHeadAttention
from tf_dsr.layers import SparseReversibleEmbedding
from tf_dsr.layers import SparseSeparableConv1D
from tf_dsr.layers import SparseSeparableConv2D
from tf_dsr.layers import SparseSimpleRNN
from tf_dsr.layers import SparseSimpleRNNCell
from tf_dsr.saving.keras_file import load_model
from tf_dsr.saving.savedmodel import export
from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import ModelState
from tf_dsr.saving.tflite import to_tflite
from tf_dsr.summary import sparsity_summary

__version__ = "0.1.0"

__all__ = [
    "DynamicReparam",
    "GradualPruning",
    "ReallocationReport",
    "ReparamCallback",
    "MethodState",
    "ModelState",
    "RigL",
    "SET",
    "SparseConv1D",
    "SparseConv1DTranspose",
    "SparseConv2D",
    "SparseConv2DTranspose",
    "SparseConv3D",
    "SparseConv3DTranspose",
    "SparseDense",
    "SparseDepthwiseConv1D",
    "SparseDepthwiseConv2D",
    "SparseEinsumDense",
    "SparseEmbedding",
    "SparseGRU",
    "SparseGRUCell",
    "SparseKernel",
    "SparseLSTM",
    "SparseLSTMCell",
    "SparseLayer",
    "SparseMultiHeadAttention",
    "SparseReversibleEmbedding",
    "SparseSeparableConv1D",
    "SparseSeparableConv2D",
    "SparseSimpleRNN",
    "SparseSimpleRNNCell",
    "SparsityHistory",
    "counting",
    "erk_sparsities",
    "export",
    "load_model",
    "methods",
    "models",
    "sparsify",
    "sparsity_summary",
    "strip",
    "to_tflite",
]
