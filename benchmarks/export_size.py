"""Sizes of exported artifacts: LeNet-300-100 dense vs sparsified.

Builds a dense LeNet-300-100 (784-300-100-10 Dense layers), makes a sparse twin
with `tf_dsr.sparsify` (every kernel sparse, as in the paper), and prints
raw and gzip-compressed sizes of the SavedModel written by
`tf_dsr.export` (the directory as a .tar.gz) and of the TFLite flatbuffer
from `tf_dsr.to_tflite`, with and without TFLite's sparse weight encoding.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/export_size.py [--sparsity 0.9]
"""

import argparse
import gzip
import io
import os
import tarfile
import tempfile
import warnings

import keras

import tf_dsr


def lenet_300_100():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="lenet_300_100",
    )


def directory_size(path):
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def tar_gz_size(path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(path, arcname=os.path.basename(path))
    return len(buffer.getvalue())


def sizes(model, tmp):
    path = os.path.join(tmp, model.name)
    tf_dsr.export(model, path, verbose=False)
    rows = {"SavedModel": (directory_size(path), tar_gz_size(path))}
    for sparse_weights in (False, True):
        flatbuffer = tf_dsr.to_tflite(model, sparse_weights=sparse_weights)
        key = "TFLite, sparse encoding" if sparse_weights else "TFLite"
        rows[key] = (len(flatbuffer), len(gzip.compress(flatbuffer)))
    return rows


def twins(sparsity):
    """A dense LeNet-300-100 and a second model with the same weights made
    sparse (`sparsify` changes a model in place, so it cannot be one model)."""
    dense = lenet_300_100()
    sparse = lenet_300_100()
    sparse.set_weights(dense.get_weights())
    tf_dsr.sparsify(sparse, sparsity, seed=0)
    if any(isinstance(layer, tf_dsr.SparseLayer) for layer in dense.layers):
        raise RuntimeError("the dense model was made sparse: the table would compare it with itself")
    return dense, sparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    dense, sparse = twins(args.sparsity)
    summary = tf_dsr.sparsity_summary(sparse)
    print(
        f"LeNet-300-100: {summary.num_weights} kernel weights, "
        f"{summary.num_active} non-zero at sparsity {args.sparsity}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        dense_sizes = sizes(dense, os.path.join(tmp, "dense"))
        sparse_sizes = sizes(sparse, os.path.join(tmp, "sparse"))
    header = ("artifact", "dense raw", "dense gzip", "sparse raw", "sparse gzip", "gzip ratio")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for key, (dense_raw, dense_gz) in dense_sizes.items():
        sparse_raw, sparse_gz = sparse_sizes[key]
        print(
            f"{key} | {dense_raw:,} | {dense_gz:,} | {sparse_raw:,} | "
            f"{sparse_gz:,} | {dense_gz / sparse_gz:.1f}x"
        )


if __name__ == "__main__":
    main()
