"""README.md's Python blocks run as pasted, and say what they do.

Each ```python block runs in a fresh namespace, in its own working
directory, as a new user would paste it into an interpreter, and then the
claims the README makes about it are checked. A block preceded by
`<!-- excerpt: PATH -->` shows lines of that file instead (`...` stands
for lines left out): its lines must appear there, in the same order.
"""

import os
import re

import numpy as np
import pytest

import tf_dsr
from tf_dsr.layers import find_sparse_layers
from tf_dsr.data import load_digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\s*$")


def _blocks():
    """`(heading, excerpt path or None, code)` of every Python block.

    The second block under one heading is keyed `"<heading> (2)"`, and so on.
    """
    text = open(README).read()
    blocks, seen = [], {}
    for match in BLOCK.finditer(text):
        before = text[:match.start()].rstrip("\n").splitlines()
        heading = next(line for line in reversed(before) if line.startswith("## "))[3:]
        seen[heading] = seen.get(heading, 0) + 1
        if seen[heading] > 1:
            heading = f"{heading} ({seen[heading]})"
        excerpt = EXCERPT.search(before[-1]) if before else None
        blocks.append((heading, excerpt and excerpt.group(1), match.group(1)))
    return blocks


BLOCKS = _blocks()
RUNNABLE = [(heading, code) for heading, path, code in BLOCKS if path is None]
EXCERPTS = [(path, code) for _, path, code in BLOCKS if path is not None]


def _check_quickstart(namespace, out):
    assert "threshold: 0.001 " in out  # the initial threshold, from the first step
    assert re.search(r"num_pruned: \d+ ", out)
    assert tf_dsr.sparsity_summary(namespace["model"]).num_active == 5020
    assert namespace["model"].optimizer.iterations.numpy() == 10 * 29
    assert 0.9 < namespace["accuracy"] < 0.98  # "about 0.94"
    assert re.search(r"^test accuracy: 0\.9\d\d$", out, re.M)


def _check_models(namespace, out):
    count = tf_dsr.models.num_nonzero_params
    thin, erk = count(namespace["thin"]), count(namespace["erk"])
    assert 0 < namespace["w"] < 1
    assert not find_sparse_layers(namespace["thin"])
    assert abs(thin - erk) <= 0.02 * erk  # ERK keeps the uniform split's count


def _check_ship(namespace, out):
    names = [layer.name for layer in find_sparse_layers(namespace["sparse"])]
    conv_and_dense = [layer.name for layer in namespace["model"].layers
                      if hasattr(layer, "kernel")]
    # "the second conv and the 1024x128 Dense become sparse"
    assert names == [conv_and_dense[1], conv_and_dense[2]]
    assert not find_sparse_layers(namespace["plain"])
    assert os.path.exists("artifact/saved_model.pb")
    assert os.path.getsize("model.tflite") > 0


def _check_transformer(namespace, out):
    sparse = namespace["sparse"]
    names = [layer.name for layer in find_sparse_layers(sparse)]
    assert names == ["embedding", "query", "key", "value", "attention_output",
                     "ffn_1", "ffn_2", "logits"]  # the projections inside "attention"
    assert not tf_dsr.layers.find_dense_kernels(sparse)
    summary = tf_dsr.sparsity_summary(sparse)
    assert f"sparse kernels hold {summary.sparse_share:.1%}" in out
    # "become sparse, 99.1% of the trainable parameters"
    assert re.search(re.escape(f"{summary.sparse_share:.1%}") + r"\s+of\s+the\s+trainable",
                     open(README).read())
    assert summary.num_active == sum(
        round(0.1 * row.num_weights) for row in summary.layers)  # conserved by DSR
    assert sparse.optimizer.iterations.numpy() == 2 * 8
    assert os.path.exists("transformer/saved_model.pb")


def _check_layer_family(namespace, out):
    rows = tf_dsr.sparsity_summary(namespace["model"]).layers
    assert len(rows) == 5
    assert [row.name.rsplit("/", 1)[-1] for row in rows[:4]] == [
        "kernel", "recurrent_kernel"] * 2
    assert [row.num_active for row in rows[:4]] == [6554] * 4
    assert [row.shape for row in rows[:4]] == [(128, 512)] * 4


def _check_blocks(namespace, out):
    from tf_dsr.core.blocks import is_block_mask
    from tf_dsr.saving.tflite import tflite_ops

    model = namespace["model"]
    found = tf_dsr.layers.find_sparse_kernels(model)
    assert [pair.block_shape for _, pair in found] == [(4, 1)] * 3
    # "Every mask stays made of whole blocks", after 11 reallocations.
    assert model.optimizer.iterations.numpy() == 10 * 29
    assert all(bool(is_block_mask(pair.mask, pair.block_shape)) for _, pair in found)
    assert tf_dsr.sparsity_summary(model).num_active == 5020  # 1,255 blocks, conserved
    rows = tf_dsr.sparsity_summary(model).layers
    assert [row.num_active for row in rows] != [1920, 3000, 100]  # moved between layers
    # "test accuracy about 0.98"
    assert 0.96 < namespace["model"].evaluate(
        namespace["x_test"], namespace["y_test"], verbose=0)[1] < 0.995
    assert re.search(r"^test accuracy: 0\.9\d\d$", out, re.M)
    # "three sparse FULLY_CONNECTED ops and no DENSIFY"
    ops = [op for op, _, _ in tflite_ops(open("lenet_blocks.tflite", "rb").read())]
    assert ops == ["FULLY_CONNECTED"] * 3


def _check_distributed(namespace, out):
    # conftest gives this process 4 logical CPUs: 4 replicas, as on 4 GPUs.
    assert namespace["strategy"].num_replicas_in_sync == 4
    assert tf_dsr.sparsity_summary(namespace["model"]).num_active == 5020
    assert namespace["model"].optimizer.iterations.numpy() == 3 * 23  # ceil(1438 / 64)


def _check_gradient_methods(namespace, out):
    lines = [line for line in out.splitlines() if "per-layer active" in line]
    assert [line.split(":")[0] for line in lines] == ["RigL", "DynamicReparam"]
    assert "per-layer active [960, 1500, 50]" in lines[0]
    dsr_counts = [int(v) for v in re.search(r"\[(.*)\]", lines[1]).group(1).split(",")]
    assert sum(dsr_counts) == 2510 and dsr_counts != [960, 1500, 50]
    callback = namespace["callback"]
    assert callback.growth == "gradient"
    assert int(callback.state.num_reallocations.numpy()) == 5 * 29 // 25


def _check_keras_hub(namespace, out):
    import zipfile

    import keras

    lm, again = namespace["lm"], namespace["again"]
    # "in place: still a GPT2CausalLM", and so is the loaded model.
    assert type(lm).__name__ == type(again).__name__ == "GPT2CausalLM"
    names = [layer.name for layer in find_sparse_layers(lm)]
    per_block = ["query", "key", "value", "attention_output",
                 "feedforward_intermediate_dense", "feedforward_output_dense"]
    assert names == ["token_embedding"] + per_block
    # "position embeddings ... stay dense" (norms and biases are not kernels).
    dense = tf_dsr.layers.find_dense_kernels(lm)
    assert [layer.name for _, layer, _ in dense] == ["position_embedding"]
    summary = tf_dsr.sparsity_summary(lm)
    assert f"sparse kernels hold {summary.sparse_share:.1%}" in out
    # "become sparse, 92.5% of the trainable parameters"
    assert re.search(re.escape(f"{summary.sparse_share:.1%}") + r"\s+of\s+the\s+trainable",
                     open(README).read())
    assert summary.num_active == sum(round(0.1 * row.num_weights) for row in summary.layers)
    assert lm.optimizer.iterations.numpy() == 2 * 4
    # generate() kept the prompt and filled the 13 masked positions.
    generated = re.search(r"^\[\[ *5 +6 +7((?: +\d+){13})\]\]$", out, re.M)
    assert generated, out[-2000:]
    assert [layer.name for layer in find_sparse_layers(again)] == names
    x = namespace["x"]
    assert np.array_equal(np.asarray(lm(x)), np.asarray(again(x)))
    # "plain.keras loads with keras-hub alone": nothing of tf_dsr in it.
    assert b"tf_dsr" not in zipfile.ZipFile("plain.keras").read("config.json")
    plain = keras.saving.load_model("plain.keras")
    assert type(plain).__name__ == "GPT2CausalLM" and not find_sparse_layers(plain)
    np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(lm(x)), atol=1e-5)


CHECKS = {
    "Quickstart": _check_quickstart,
    "Sparse layers: every weight-bearing Keras layer": _check_layer_family,
    "Baselines and models": _check_models,
    "RigL and gradient growth": _check_gradient_methods,
    "Bring your own model, ship it without tf_dsr": _check_ship,
    "Bring your own model, ship it without tf_dsr (2)": _check_transformer,
    "Block sparsity: sparse models that run faster": _check_blocks,
    "Distributed training": _check_distributed,
    "keras-hub models": _check_keras_hub,
}


def test_every_runnable_block_has_its_claims_checked():
    assert sorted(heading for heading, _ in RUNNABLE) == sorted(CHECKS)
    assert EXCERPTS, "the multi-worker excerpt is gone"


@pytest.mark.parametrize("heading,code", RUNNABLE, ids=[h for h, _ in RUNNABLE])
def test_block_runs_as_pasted(heading, code, tmp_path, monkeypatch, capsys):
    if "import keras_hub" in code:
        pytest.importorskip("keras_hub")  # pip install ".[hub]"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, f"README.md ({heading})", "exec"), namespace)
    CHECKS[heading](namespace, capsys.readouterr().out)


@pytest.mark.parametrize("path,code", EXCERPTS, ids=[p for p, _ in EXCERPTS])
def test_excerpt_lines_appear_in_their_file_in_order(path, code):
    source = [line.strip() for line in open(os.path.join(REPO, path)).read().splitlines()]
    position = 0
    for line in (line.strip() for line in code.splitlines()):
        if not line or line == "...":
            continue
        assert line in source[position:], f"{path} has no line {line!r} after line {position}"
        position = source.index(line, position) + 1


def test_readme_states_the_digits_split_load_digits_makes():
    (x_train, _), (x_test, _) = load_digits()
    text = open(README).read()
    assert f"{len(x_train):,} training and {len(x_test)} test images" in text
    assert f"8x8 digits with {len(x_test)}\n   test images" in text
    assert not re.search(r"\b1,437\b|\b360 test\b", text)
