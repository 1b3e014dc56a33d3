"""Pure TensorFlow algorithms: no Keras, no variables, no assignment."""

from tf_dsr.core.counts import count_active
from tf_dsr.core.drop import Dropped
from tf_dsr.core.growth import GROWTH
from tf_dsr.core.reallocation import adapt_threshold
from tf_dsr.core.reallocation import grow
from tf_dsr.core.reallocation import prune
from tf_dsr.core.reallocation import reallocate
from tf_dsr.core.rigl import drop_fraction_at
from tf_dsr.core.rigl import rigl_update
from tf_dsr.core.seeds import layer_seeds
from tf_dsr.core.selection import random_subset
from tf_dsr.core.sharing import share_out
from tf_dsr.core.update import Update
from tf_dsr.core.update import sparse_update
