"""Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) for Keras 3."""

from tf_dsr.callbacks import DynamicReparam
from tf_dsr.callbacks import ReallocationReport
from tf_dsr.callbacks import ReparamCallback
from tf_dsr.callbacks import ReparamState
from tf_dsr.layers import SparseConv2D
from tf_dsr.layers import SparseDense
from tf_dsr.layers import SparseLayer
from tf_dsr.summary import sparsity_summary

__version__ = "0.1.0"

__all__ = [
    "DynamicReparam",
    "ReallocationReport",
    "ReparamCallback",
    "ReparamState",
    "SparseConv2D",
    "SparseDense",
    "SparseLayer",
    "sparsity_summary",
]

from tf_dsr.convert import sparsify  # noqa: E402
from tf_dsr.convert import strip  # noqa: E402
from tf_dsr.export import export  # noqa: E402
from tf_dsr.export import to_tflite  # noqa: E402

__all__ += ["export", "sparsify", "strip", "to_tflite"]

from tf_dsr import models  # noqa: E402
from tf_dsr.saving import load_model  # noqa: E402

__all__ += ["load_model", "models"]

from tf_dsr.callbacks import SET  # noqa: E402
from tf_dsr.callbacks import GradualPruning  # noqa: E402

__all__ += ["GradualPruning", "SET"]
