"""Pure TensorFlow algorithms: no Keras, no variables, no assignment."""

from tf_dsr.core.growth import GROWTH
from tf_dsr.core.reallocation import Pruned
from tf_dsr.core.reallocation import adapt_threshold
from tf_dsr.core.reallocation import grow
from tf_dsr.core.reallocation import layer_seed
from tf_dsr.core.reallocation import prune
from tf_dsr.core.reallocation import reallocate
from tf_dsr.core.reallocation import share_out
from tf_dsr.core.rigl import drop_fraction_at
from tf_dsr.core.rigl import rigl_update
from tf_dsr.core.selection import random_subset
from tf_dsr.core.update import Update
from tf_dsr.core.update import sparse_update
