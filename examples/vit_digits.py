"""A keras-hub Vision Transformer on the digits: dense, DSR and static sparse.

A small `keras_hub.models.ViTImageClassifier`, built from its classes (no
preset download: `ViTBackbone` with a tiny config, 8x8x1 images cut into
2x2 patches), is trained three times on scikit-learn's bundled handwritten
digits (offline; 1,438 training and 359 test images of 8x8 pixels):

- dense: the model as keras-hub builds it;
- DSR: `tf_dsr.sparsify(model, 0.9)` in place, trained with
  `tf_dsr.DynamicReparam` (weights move between layers);
- static: the same `sparsify`, trained without a callback (the masks
  never change).

All three start from the same initial weights (the same seed builds them;
`sparsify` only zeroes kernel entries) and see the same batches. The model
stays a `ViTImageClassifier`. `sparsify`'s default rule for a network with
convolutions keeps the patch embedding (a `Conv2D`, the first convolution)
and the classifier head (the last `Dense`) dense; the attention
projections and MLP kernels become sparse, and so does the position
embedding (a plain Keras `Embedding`, which the rule makes sparse in
transformers). The class token has no sparse class and stays dense;
`sparsify` warns with the list of what stays dense. The table gives the
test accuracy and the parameters: non-zero trainable ones (the paper's
count) and all trainable ones, and DSR's number of reallocations.

Needs keras-hub and scikit-learn (`pip install ".[hub,demo]"`).

Usage (from the repository root):

    python examples/vit_digits.py                 # 30 epochs, a few minutes on 2 CPU cores
    python examples/vit_digits.py --epochs=60 --seed=1
    python examples/vit_digits.py --quick         # a few steps, to check the set-up
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_dsr  # noqa: E402
from examples import hub_common  # noqa: E402
from tf_dsr.app.data import load_digits  # noqa: E402
from tf_dsr.app.data import subsample  # noqa: E402

METHODS = hub_common.METHODS
LABELS = hub_common.LABELS


def parse_args(argv=None):
    parser = hub_common.parser(__doc__.split("\n\n")[0], epochs=30, period=20)
    parser.add_argument("--patch_size", type=int, default=2, choices=(2, 4),
                        help="Side of the square patches (8x8 images).")
    parser.add_argument("--num_layers", type=int, default=3, help="Transformer blocks.")
    parser.add_argument("--hidden_dim", type=int, default=64, help="Width of the tokens.")
    parser.add_argument("--num_heads", type=int, default=4, help="Attention heads.")
    parser.add_argument("--mlp_dim", type=int, default=128, help="Width of the blocks' MLPs.")
    parser.add_argument("--quick", action="store_true",
                        help="Check the set-up in seconds: a tiny model, 128 training "
                             "images, 1 epoch (overrides the flags above).")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.num_layers, args.hidden_dim, args.mlp_dim = 1, 1, 16, 32
        args.num_heads, args.patch_size, args.period = 2, 4, 2
    return args


def build_model(args):
    """A `ViTImageClassifier` for 8x8x1 images and 10 classes, from its classes."""
    keras.utils.set_random_seed(args.seed)  # the same initial weights every time
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 1),
        patch_size=args.patch_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        mlp_dim=args.mlp_dim,
    )
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=10, preprocessor=None)


def train(method, args, data):
    """Builds, (sparsifies,) trains and evaluates one model; returns its row."""
    (x, y), (x_test, y_test) = data
    model = build_model(args)
    dense_report = hub_common.sparsify(model, method, args)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # --quick: a few steps, faster eagerly than traced.
        run_eagerly=args.quick,
    )
    reallocations = hub_common.fit(model, method, args, x, y)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    counts = tf_dsr.counting.parameter_counts(model)
    return {
        "method": method,
        "model": model,
        "accuracy": float(accuracy),
        "nonzero": counts.num_params,
        "trainable": counts.num_trainable,
        "sparse_share": counts.sparse_share,
        "dense_report": dense_report,
        "reallocations": reallocations,
    }


def format_table(rows):
    lines = [
        "| method | test accuracy | non-zero params | trainable params | reallocations |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {LABELS[row['method']]} | {row['accuracy']:.3f} | {row['nonzero']:,} "
            f"| {row['trainable']:,} | {row['reallocations']} |")
    return "\n".join(lines)


def main(argv=None):
    """Runs the three trainings and prints the table; returns the rows."""
    args = parse_args(argv)
    (x, y), test = load_digits(seed=args.seed, flat=False)
    if args.quick:
        x, y = subsample(x, y, 128, seed=args.seed)
        test = subsample(*test, 128, seed=args.seed)
    data = ((x, y), test)
    rows = []
    for method in METHODS:
        row = train(method, args, data)
        rows.append(row)
        print(f"{LABELS[method]}: test accuracy {row['accuracy']:.3f}", flush=True)
        if row["dense_report"] and method == "dsr":
            print(row["dense_report"])
    print(f"\nViTImageClassifier ({args.num_layers} layers, hidden {args.hidden_dim}, "
          f"patch {args.patch_size}) on the digits, sparsity {args.sparsity}, "
          f"{args.epochs} epoch(s), seed {args.seed}, {len(x):,} training and "
          f"{len(data[1][0])} test images:")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
