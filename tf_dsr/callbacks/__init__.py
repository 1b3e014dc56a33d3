"""Method state (moving to `tf_dsr.saving`)."""

from tf_dsr.callbacks.state import MethodState
from tf_dsr.callbacks.state import ModelState
from tf_dsr.layers.find import find_sparse_layers  # noqa: F401 (kept for users)
