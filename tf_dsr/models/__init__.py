"""Models of the paper built from sparse layers, with its dense/sparse split.

Every builder takes `sparsity=None` for the full dense network,
`width_multiplier` for narrower or wider ones, and `distribution`
("uniform" or "erk") for the initial split of `sparsity` among tensors.
`thin_dense_width` gives the width of the thin dense baseline.
"""

from tf_dsr.counting import num_nonzero_params
from tf_dsr.models.lenet import lenet5
from tf_dsr.models.lenet import lenet_300_100
from tf_dsr.models.lenet import small_convnet
from tf_dsr.models.resnet import resnet50
from tf_dsr.models.thin_dense import thin_dense_width
from tf_dsr.models.wrn import wide_resnet
