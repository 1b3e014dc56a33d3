"""What one update did, as Python values."""

from typing import NamedTuple


class ReallocationReport(NamedTuple):
    """What one update did, as Python values.

    Attributes:
        step: the method's step it ran at.
        num_pruned: dict, kernel name -> weights pruned (names as in
            `tf_dsr.layers.find_sparse_kernels`: the layer's path for a
            layer with one kernel).
        num_grown: dict, kernel name -> weights regrown.
        info: dict of the method's own figures as floats (DSR:
            `threshold`, H after adapting; RigL: `drop_fraction`, f(t);
            gradual pruning: `sparsity`, the target s_t).
        sparsity: global fraction of zeros over the sparse kernels.
        skipped: True when a kernel (or a gradient used for growth) held
            NaN/Inf and nothing changed.
    """

    step: int
    num_pruned: dict
    num_grown: dict
    info: dict
    sparsity: float
    skipped: bool

    @property
    def total_pruned(self):
        return sum(self.num_pruned.values())
