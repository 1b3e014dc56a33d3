"""A keras-hub GPT-2 learns Python from Python's own source: dense, DSR, static.

A small `keras_hub.models.GPT2CausalLM`, built from its classes (no preset
download), is trained as a byte-level language model on the standard
library's own `.py` files (the `*.py` files next to `os.py`, in sorted
order, up to `--corpus_kb` kilobytes; offline, no download). Tokens are
bytes: token id = byte + 3, ids 0, 1 and 2 are padding, start and end (a
259-token vocabulary; only padding is used), so no tokenizer is needed: the script builds the
`{"token_ids", "padding_mask"}` inputs itself and the model has no
preprocessor (`preprocessor=None`). The corpus is cut into windows of
`--sequence_length + 1` bytes; the last 10% of the corpus (whole files
at the end of the sorted list) is the validation set.

Three models start from the same initial weights and see the same
batches:

- dense: the model as keras-hub builds it;
- DSR: `tf_dsr.sparsify(model, 0.9)` in place, trained with
  `tf_dsr.DynamicReparam`;
- static: the same `sparsify`, trained without a callback.

`sparsify`'s default rule for a transformer makes the token embedding
(`ReversibleEmbedding`, tied to the output layer) and every attention and
feed-forward kernel sparse; the position embedding, norms and biases stay
dense, and `sparsify` warns with that list. The table gives the
validation loss (nats per byte), its perplexity and bits per byte, and
the parameters (non-zero trainable ones, and all trainable ones). The DSR
model, still a `GPT2CausalLM`, then writes Python from a prompt with
`generate()` (top-k sampling, seeded).

Needs keras-hub (`pip install ".[hub]"`).

Usage (from the repository root):

    python examples/gpt2_python_source.py                 # 10 epochs, 10-25 minutes on 2 CPU cores
    python examples/gpt2_python_source.py --epochs=4 --corpus_kb=600
    python examples/gpt2_python_source.py --quick         # a few steps, to check the set-up
"""

import glob
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_dsr  # noqa: E402
from examples import hub_common  # noqa: E402

METHODS = hub_common.METHODS
LABELS = hub_common.LABELS
PAD, START, END = 0, 1, 2  # special tokens (START, END: reserved)
OFFSET = 3  # token id = byte + OFFSET
VOCABULARY_SIZE = 256 + OFFSET


def parse_args(argv=None):
    parser = hub_common.parser(__doc__.split("\n\n")[0], epochs=10, period=25)
    parser.add_argument("--corpus_kb", type=int, default=300,
                        help="Kilobytes of standard-library source to read.")
    parser.add_argument("--sequence_length", type=int, default=128,
                        help="Tokens (bytes) per training window.")
    parser.add_argument("--num_layers", type=int, default=2, help="Transformer blocks.")
    parser.add_argument("--hidden_dim", type=int, default=128, help="Width of the tokens.")
    parser.add_argument("--num_heads", type=int, default=4, help="Attention heads.")
    parser.add_argument("--intermediate_dim", type=int, default=512,
                        help="Width of the blocks' feed-forward layers.")
    parser.add_argument("--prompt", default="def ", help="What generate() continues.")
    parser.add_argument("--generate_length", type=int, default=120,
                        help="Bytes generate() writes after the prompt.")
    parser.add_argument("--quick", action="store_true",
                        help="Check the set-up in seconds: a tiny model, 12 KB of "
                             "source, 1 epoch (overrides the flags above).")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.corpus_kb, args.sequence_length = 1, 12, 32
        args.num_layers, args.hidden_dim, args.num_heads, args.intermediate_dim = 1, 16, 2, 32
        args.period, args.generate_length = 4, 16
    return args


# ----- data ---------------------------------------------------------------


def read_corpus(num_bytes):
    """The first `num_bytes` bytes of the standard library's top-level `.py`
    files (those next to `os.py`), in sorted file order; and the files read."""
    paths = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    chunks, size, used = [], 0, []
    for path in paths:
        with open(path, "rb") as file:
            chunk = file.read()
        chunks.append(chunk)
        used.append(os.path.basename(path))
        size += len(chunk)
        if size >= num_bytes:
            break
    return b"".join(chunks)[:num_bytes], used


def encode(text):
    """Bytes (or str, as UTF-8) -> int32 token ids (byte + OFFSET)."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return np.frombuffer(text, np.uint8).astype("int32") + OFFSET


def decode(token_ids):
    """Token ids -> text; padding and special tokens are dropped."""
    token_ids = np.asarray(token_ids)
    return bytes((token_ids[token_ids >= OFFSET] - OFFSET).astype("uint8").tolist()).decode(
        "utf-8", errors="replace")


def windows(token_ids, sequence_length):
    """Non-overlapping windows: inputs `{"token_ids", "padding_mask"}` and
    next-token labels, as keras-hub's `CausalLM` takes them without a
    preprocessor."""
    span = sequence_length + 1
    count = len(token_ids) // span
    blocks = token_ids[:count * span].reshape(count, span)
    x = {"token_ids": blocks[:, :-1],
         "padding_mask": np.ones((count, sequence_length), bool)}
    return x, blocks[:, 1:]


def load_data(args):
    corpus, files = read_corpus(args.corpus_kb * 1024)
    token_ids = encode(corpus)
    split = int(0.9 * len(token_ids))
    train = windows(token_ids[:split], args.sequence_length)
    validation = windows(token_ids[split:], args.sequence_length)
    return train, validation, files


# ----- models -------------------------------------------------------------


def build_model(args):
    """A byte-level `GPT2CausalLM` from its classes, without a preprocessor."""
    keras.utils.set_random_seed(args.seed)  # the same initial weights every time
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        max_sequence_length=args.sequence_length + args.generate_length + 8,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def train(method, args, data):
    """Builds, (sparsifies,) trains and evaluates one model; returns its row."""
    (x, y), (x_val, y_val), _ = data
    model = build_model(args)
    dense_report = hub_common.sparsify(model, method, args)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["sparse_categorical_accuracy"],
        sampler=keras_hub.samplers.TopKSampler(k=5, seed=args.seed),
        # --quick: a few steps, faster eagerly than traced.
        run_eagerly=args.quick,
    )
    reallocations = hub_common.fit(model, method, args, x, y)
    loss, accuracy = model.evaluate(x_val, y_val, batch_size=64, verbose=0)
    counts = tf_dsr.counting.parameter_counts(model)
    return {
        "method": method,
        "model": model,
        "loss": float(loss),
        "perplexity": math.exp(loss),
        "bits_per_byte": loss / math.log(2),
        "accuracy": float(accuracy),
        "nonzero": counts.num_params,
        "trainable": counts.num_trainable,
        "dense_report": dense_report,
        "reallocations": reallocations,
    }


def generate(model, prompt, length):
    """`model.generate` on a preprocessed prompt; returns the decoded text.

    Without a preprocessor, `generate` takes the backbone's inputs: the
    prompt's tokens padded to the full length, `padding_mask` True over the
    prompt. It fills the masked positions one token at a time.
    """
    prompt_ids = encode(prompt)
    total = len(prompt_ids) + length
    token_ids = np.full((1, total), PAD, "int32")
    token_ids[0, :len(prompt_ids)] = prompt_ids
    padding_mask = np.zeros((1, total), bool)
    padding_mask[0, :len(prompt_ids)] = True
    output = model.generate({"token_ids": token_ids, "padding_mask": padding_mask},
                            stop_token_ids=None)
    return decode(output["token_ids"][0])


def format_table(rows):
    lines = [
        "| method | val loss (nats/byte) | perplexity | bits/byte | next-byte accuracy "
        "| non-zero params | trainable params | reallocations |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {LABELS[row['method']]} | {row['loss']:.3f} | {row['perplexity']:.2f} "
            f"| {row['bits_per_byte']:.2f} | {row['accuracy']:.3f} | {row['nonzero']:,} "
            f"| {row['trainable']:,} | {row['reallocations']} |")
    return "\n".join(lines)


def main(argv=None):
    """Trains the three models, prints the table and the DSR model's text.

    Returns:
        `(rows, text)`: one dict per method, and what `generate` wrote.
    """
    args = parse_args(argv)
    data = load_data(args)
    (x, _), (x_val, _), files = data
    num_train, num_val = len(x["token_ids"]), len(x_val["token_ids"])
    print(f"corpus: {args.corpus_kb} KB from {len(files)} standard-library files "
          f"({files[0]} ... {files[-1]}); {num_train} training and {num_val} "
          f"validation windows of {args.sequence_length} bytes", flush=True)
    rows = []
    for method in METHODS:
        row = train(method, args, data)
        rows.append(row)
        print(f"{LABELS[method]}: validation loss {row['loss']:.3f}", flush=True)
        if row["dense_report"] and method == "dsr":
            print(row["dense_report"])
    print(f"\nGPT2CausalLM ({args.num_layers} layers, hidden {args.hidden_dim}, "
          f"byte-level) on Python's standard library, sparsity {args.sparsity}, "
          f"{args.epochs} epoch(s), seed {args.seed}:")
    print(format_table(rows))
    dsr = next(row["model"] for row in rows if row["method"] == "dsr")
    text = generate(dsr, args.prompt, args.generate_length)
    print(f"\nDSR model ({type(dsr).__name__}), generate({args.prompt!r}):\n{text}")
    return rows, text


if __name__ == "__main__":
    main()
