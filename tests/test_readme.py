"""README.md's and docs/*.md's Python blocks run as pasted, and say what they do.

Each ```python block runs in a fresh namespace, in its own working
directory, as a new user would paste it into an interpreter, and then the
claims the document makes about it are checked. A block preceded by
`<!-- excerpt: PATH -->` shows lines of that file instead (`...` stands
for lines left out): its lines must appear there, in the same order.
Every relative link of these documents points to a file that exists and,
with `#anchor`, to a heading of that file.
"""

import glob
import os
import re

import numpy as np
import pytest

import tf_dsr
from tf_dsr.app.data import load_digits
from tf_dsr.layers import find_sparse_layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md"] + sorted(
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, "docs", "*.md")))
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\s*$")
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _read(document):
    with open(os.path.join(REPO, document)) as f:
        return f.read()


def _blocks(document):
    """`(key, excerpt path or None, code)` of every Python block of `document`.

    The key is `"<document>: <heading>"`, the heading being the `## `
    heading above the block; the second block under one heading is keyed
    `"<document>: <heading> (2)"`, and so on.
    """
    text = _read(document)
    blocks, seen = [], {}
    for match in BLOCK.finditer(text):
        before = text[:match.start()].rstrip("\n").splitlines()
        heading = next(line for line in reversed(before) if line.startswith("## "))[3:]
        seen[heading] = seen.get(heading, 0) + 1
        if seen[heading] > 1:
            heading = f"{heading} ({seen[heading]})"
        excerpt = EXCERPT.search(before[-1]) if before else None
        blocks.append((f"{document}: {heading}", excerpt and excerpt.group(1), match.group(1)))
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in _blocks(document)]
RUNNABLE = [(key, code) for key, path, code in BLOCKS if path is None]
EXCERPTS = [(path, code) for _, path, code in BLOCKS if path is not None]


def _document_of(key):
    return key.split(": ", 1)[0]


def _anchors(document):
    """The `#anchor` of every heading of a markdown file, as GitHub makes them."""
    anchors, seen = set(), {}
    for line in FENCE.sub("", _read(document)).splitlines():
        if not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links():
    """`(document, target)` of every relative link outside code blocks."""
    links = []
    for document in DOCUMENTS + ["examples/README.md"]:
        for target in LINK.findall(FENCE.sub("", _read(document))):
            if not re.match(r"[a-z]+:", target):
                links.append((document, target))
    return links


def _check_quickstart(namespace, out):
    assert "threshold: 0.0010 " in out  # the initial threshold, from the first step
    assert re.search(r"num_pruned: \d+\.0000 ", out)  # a plain float log
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
                     _read("docs/any_model.md"))
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
                     _read("README.md"))
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
    "README.md: Quickstart": _check_keras_hub,
    "docs/layers.md: A model built from sparse layers": _check_quickstart,
    "docs/layers.md: Sparse layers: every weight-bearing Keras layer": _check_layer_family,
    "docs/methods.md: Baselines and models": _check_models,
    "docs/methods.md: RigL and gradient growth": _check_gradient_methods,
    "docs/any_model.md: Bring your own model, ship it without tf_dsr": _check_ship,
    "docs/any_model.md: Bring your own model, ship it without tf_dsr (2)": _check_transformer,
    "docs/tflite_and_speed.md: Block sparsity: sparse models that run faster": _check_blocks,
    "docs/distribution.md: One machine: MirroredStrategy": _check_distributed,
}


def test_every_runnable_block_has_its_claims_checked():
    assert sorted(key for key, _ in RUNNABLE) == sorted(CHECKS)
    assert EXCERPTS, "the multi-worker excerpt is gone"


@pytest.mark.parametrize("key,code", RUNNABLE, ids=[key for key, _ in RUNNABLE])
def test_block_runs_as_pasted(key, code, tmp_path, monkeypatch, capsys):
    if "import keras_hub" in code:
        pytest.importorskip("keras_hub")  # pip install ".[hub]"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, key, "exec"), namespace)
    CHECKS[key](namespace, capsys.readouterr().out)


@pytest.mark.parametrize("path,code", EXCERPTS, ids=[p for p, _ in EXCERPTS])
def test_excerpt_lines_appear_in_their_file_in_order(path, code):
    source = [line.strip() for line in _read(path).splitlines()]
    position = 0
    for line in (line.strip() for line in code.splitlines()):
        if not line or line == "...":
            continue
        assert line in source[position:], f"{path} has no line {line!r} after line {position}"
        position = source.index(line, position) + 1


def _link_problem(document, target):
    """What is wrong with the relative link `target` of `document`, or None."""
    path, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(document), path)) if path else document
    if not os.path.exists(os.path.join(REPO, linked)):
        return f"{document} links to {target}: there is no file {linked}"
    if anchor and not (linked.endswith(".md") and anchor in _anchors(linked)):
        return f"{document} links to {target}: {linked} has no heading #{anchor}"
    return None


@pytest.mark.parametrize("document,target", _links(), ids=[f"{d} -> {t}" for d, t in _links()])
def test_relative_link_points_to_an_existing_file_and_heading(document, target):
    assert _link_problem(document, target) is None, _link_problem(document, target)


def test_the_readme_links_to_every_guide():
    links = {target.partition("#")[0] for document, target in _links() if document == "README.md"}
    guides = {path for path in DOCUMENTS if path.startswith("docs/")}
    assert guides <= links, f"README.md does not link to {sorted(guides - links)}"


def test_the_link_checker_catches_a_missing_file_and_a_missing_heading():
    assert _link_problem("README.md", "docs/cli.md#tf-dsr-compare") is None
    assert _link_problem("docs/cli.md", "../README.md#quickstart") is None
    assert "no file" in _link_problem("README.md", "docs/no_such_guide.md")
    assert "no heading" in _link_problem("README.md", "docs/cli.md#no-such-heading")
    assert "no heading" in _link_problem("README.md", "#no-such-heading")
    assert "no heading" in _link_problem("README.md", "docs/results/digits_accuracy.png#a")


def test_docs_state_the_digits_split_load_digits_makes():
    (x_train, _), (x_test, _) = load_digits()
    results = " ".join(_read("docs/reproducing_the_paper.md").split())
    assert f"{len(x_train):,} training and {len(x_test)} test images" in results
    assert f"8x8 digits with {len(x_test)} test images" in results
    layers = _read("docs/layers.md")
    assert f"{len(x_train):,} train, {len(x_test)} test" in layers
    for document in DOCUMENTS:
        assert not re.search(r"\b1,437\b|\b360 test\b", _read(document)), document
