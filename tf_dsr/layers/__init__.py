"""Keras layers whose kernels carry a 0/1 mask."""

from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.conv import SparseConv2D
from tf_dsr.layers.dense import SparseDense
