"""Models built from sparse layers."""

from tf_dsr.models.lenet import lenet_300_100
from tf_dsr.models.lenet import small_convnet
