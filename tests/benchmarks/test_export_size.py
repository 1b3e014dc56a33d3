"""benchmarks/export_size.py compares a dense model with a sparse twin.

`sparsify` changes a model in place; the script once passed its dense
model to it and then compared the sparse model with itself (ratio 1.0x).
"""

import numpy as np

import tf_dsr

from benchmark_scripts import load


def test_the_twins_are_a_dense_model_and_a_sparse_one_with_its_weights():
    dense, sparse = load("export_size").twins(0.9)
    assert dense is not sparse
    assert not any(isinstance(layer, tf_dsr.SparseLayer) for layer in dense.layers)
    dense_kernels = [layer.kernel.numpy() for layer in dense.layers]
    assert all(np.count_nonzero(k) == k.size for k in dense_kernels)
    summary = tf_dsr.sparsity_summary(sparse)
    assert summary.num_weights == sum(k.size for k in dense_kernels)
    assert abs(summary.num_active / summary.num_weights - 0.1) < 0.01
    for kept, original in zip((layer.kernel.numpy() for layer in sparse.layers), dense_kernels):
        nonzero = kept != 0
        np.testing.assert_array_equal(kept[nonzero], original[nonzero])
