"""Keras callbacks that move the masks of sparse layers during training."""

from tf_dsr.callbacks.base import ReallocationReport
from tf_dsr.callbacks.base import ReparamCallback
from tf_dsr.callbacks.dsr import DynamicReparam
from tf_dsr.callbacks.rigl import RigL
from tf_dsr.callbacks.state import MethodState
from tf_dsr.callbacks.state import ModelState
from tf_dsr.callbacks.gradual import GradualPruning
from tf_dsr.callbacks.set import SET
from tf_dsr.callbacks.history import SparsityHistory
from tf_dsr.layers.find import find_sparse_layers  # noqa: F401 (kept for users)
