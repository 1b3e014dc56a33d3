"""The training methods: one callback class each, and their registry."""

from tf_dsr.methods.dsr import DynamicReparam
from tf_dsr.methods.gradual import GradualPruning
from tf_dsr.methods.registry import DENSE
from tf_dsr.methods.registry import DENSE_START
from tf_dsr.methods.registry import METHODS
from tf_dsr.methods.registry import REGISTRY
from tf_dsr.methods.registry import SPARSE
from tf_dsr.methods.registry import THIN
from tf_dsr.methods.registry import Method
from tf_dsr.methods.registry import Run
from tf_dsr.methods.registry import get
from tf_dsr.methods.registry import is_full_dense
from tf_dsr.methods.registry import make_callback
from tf_dsr.methods.registry import option_help
from tf_dsr.methods.registry import options
from tf_dsr.methods.rigl import RigL
from tf_dsr.methods.set import SET
