"""Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras 3."""

from tf_dsr import models
from tf_dsr.callbacks import SET
from tf_dsr.callbacks import DynamicReparam
from tf_dsr.callbacks import GradualPruning
from tf_dsr.callbacks import ReallocationReport
from tf_dsr.callbacks import ReparamCallback
from tf_dsr.callbacks import ReparamState
from tf_dsr.callbacks import SparsityHistory
from tf_dsr.convert import sparsify
from tf_dsr.convert import strip
from tf_dsr.distribution import erk_sparsities
from tf_dsr.export import export
from tf_dsr.export import to_tflite
from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseDense
from tf_dsr.layers import SparseLayer
from tf_dsr.saving import load_model
from tf_dsr.summary import sparsity_summary

__version__ = "0.1.0"

__all__ = [
    "DynamicReparam",
    "GradualPruning",
    "ReallocationReport",
    "ReparamCallback",
    "ReparamState",
    "SET",
    "SparseConv2D",
    "SparseDense",
    "SparseLayer",
    "SparsityHistory",
    "erk_sparsities",
    "export",
    "load_model",
    "models",
    "sparsify",
    "sparsity_summary",
    "strip",
    "to_tflite",
]
