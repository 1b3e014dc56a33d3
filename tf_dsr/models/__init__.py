"""Models of the paper built from sparse layers, with its dense/sparse split."""

from tf_dsr.models.lenet import lenet_300_100
from tf_dsr.models.lenet import small_convnet
from tf_dsr.models.resnet import resnet50
from tf_dsr.models.wrn import wide_resnet
