"""Smoke runs of the reproduction scripts in examples/ on mocked data.

Each script runs a few steps on `tensorflow_datasets.testing.mock_data`
(random examples, no download) through its own `--mock_data` flag, and the
tests check the results JSON against what the model and flags imply.
"""

import json
import os
import subprocess
import sys

from absl import flags
import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from examples import common  # noqa: E402
from examples import lenet300_mnist  # noqa: E402
from examples import resnet50_imagenet  # noqa: E402
from examples import wrn_cifar10  # noqa: E402
import tf_dsr  # noqa: E402

RESULT_KEYS = {
    "method", "model", "dataset", "sparsity", "width_multiplier", "seed", "epochs", "steps_per_epoch", "steps",
    "test", "params", "initial_params", "layers", "sparsity_history", "reallocation",
    "train_history", "wall_time_seconds", "flags", "versions", "devices",
}
# Sparse weights, dense trainable weights and sparse layers of each model
# (the paper's experiments; dense counts by hand: biases, BatchNorm, dense convs).
LENET = dict(sparse=266_200, dense=410 + 2 * (300 + 100), layers=3)
WRN_28_2 = dict(sparse=1_451_520, dense=432 + 512 + 2048 + 8192 + 2 * 1808 + 1290, layers=24)
WRN_10_1 = dict(sparse=2 * 2304 + 4608 + 9216 + 18_432 + 36_864,
                dense=432 + 512 + 2048 + 2 * 240 + 650, layers=6)
RESNET50 = dict(sparse=22_724_608, dense=9408 + 2_768_896 + 2 * 26_560 + 1000, layers=49)


def parse(module, *args):
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    flag_values(["prog", *args])
    return flag_values


def run_script(module, tmp_path, *args):
    output = tmp_path / "results.json"
    flag_values = parse(module, f"--output={output}", "--mock_data=6", "--verbose=0", *args)
    returned = module.run(flag_values)
    with open(output) as f:
        results = json.load(f)
    assert results["flags"]["output"] == str(output)
    assert results["method"] == returned["method"]
    return results


def num_active_at_init(layers, sparsity):
    return sum(int(round((1 - sparsity) * row["num_weights"])) for row in layers.values())


def check_results(results, model, *, method, sparsity, epochs, steps_per_epoch):
    assert set(results) == RESULT_KEYS
    assert results["method"] == method
    assert results["width_multiplier"] == 1.0
    assert results["sparsity"] == pytest.approx(sparsity)
    assert results["epochs"] == epochs
    assert results["steps_per_epoch"] == steps_per_epoch
    assert results["steps"] == epochs * steps_per_epoch
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert np.isfinite(results["test"]["loss"])

    params, layers = results["params"], results["layers"]
    assert len(layers) == model["layers"]
    assert params["sparse_weights"] == model["sparse"]
    assert sum(row["num_weights"] for row in layers.values()) == model["sparse"]
    assert params["dense_trainable"] == model["dense"]
    assert params["active_sparse"] == sum(row["num_active"] for row in layers.values())
    assert params["num_params"] == params["active_sparse"] + params["dense_trainable"]
    assert params["nonzero_trainable"] <= params["num_params"]
    # Inactive entries stay exactly zero through momentum, L1 or weight
    # decay and reallocation.
    assert params["inactive_nonzero"] == 0
    # Every method ends at the budget `--sparsity` sets (gradual prunes
    # down to it; the others conserve it exactly).
    assert params["active_sparse"] == num_active_at_init(layers, sparsity)

    history = results["sparsity_history"]
    assert history["step"] == [i * steps_per_epoch for i in range(epochs + 1)]
    assert history["epoch"] == list(range(epochs + 1))
    assert set(history["layers"]) == set(layers)
    for name, values in history["layers"].items():
        assert len(values) == epochs + 1
        assert values[-1] == pytest.approx(layers[name]["sparsity"])
    assert len(results["train_history"]["loss"]) == epochs
    assert results["wall_time_seconds"]["total"] > 0
    return history


def test_flag_defaults_are_the_papers():
    lenet = parse(lenet300_mnist)
    assert (lenet.epochs, lenet.batch_size, lenet.prune_target, lenet.stop_epoch) == (
        100, 100, 600, 90)
    assert common.parse_schedule(lenet.lr_schedule, float) == {
        0: 0.1, 25: 0.02, 50: 0.004, 75: 0.0008}
    assert common.parse_schedule(lenet.period, int) == {0: 100, 25: 200, 50: 400, 75: 800}
    assert (lenet.l1, lenet.sparsity, lenet.momentum, lenet.method) == (1e-4, 0.9, 0.9, "dsr")

    wrn = parse(wrn_cifar10)
    assert (wrn.epochs, wrn.batch_size, wrn.prune_target, wrn.stop_epoch) == (
        200, 100, 20_000, 190)
    assert common.parse_schedule(wrn.lr_schedule, float) == {
        0: 0.1, 60: 0.02, 120: 0.004, 160: 0.0008}
    assert common.parse_schedule(wrn.period, int) == {0: 100, 25: 200, 80: 400, 140: 800}
    assert (wrn.weight_decay, wrn.depth, wrn.width) == (5e-4, 28, 2)

    resnet = parse(resnet50_imagenet)
    assert (resnet.epochs, resnet.batch_size, resnet.prune_target, resnet.stop_epoch) == (
        100, 256, 400_000, 95)
    assert common.parse_schedule(resnet.lr_schedule, float) == {
        0: 0.1, 30: 0.01, 60: 0.001, 90: 0.0001}
    assert common.parse_schedule(resnet.period, int) == {
        0: 1000, 25: 2000, 50: 4000, 75: 8000}
    assert (resnet.weight_decay, resnet.image_size) == (1e-4, 224)


def test_parse_schedule():
    assert common.parse_schedule("100", int) == {0: 100}
    assert common.parse_schedule("0:1,5:2", int) == {0: 1, 5: 2}
    for text in ("5:2", "0:1,x:2", "0-1", "0:1,-3:2"):
        with pytest.raises(ValueError):
            common.parse_schedule(text, int)


def test_learning_rate_changes_on_the_first_step_of_an_epoch():
    lr = common.EpochPiecewiseConstant({0: 0.1, 25: 0.02, 50: 0.004}, steps_per_epoch=600)
    steps = [0, 14_999, 15_000, 29_999, 30_000, 10**6]
    values = [float(lr(step)) for step in steps]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.02, 0.02, 0.004, 0.004], rtol=1e-6)


def test_weight_decay_is_pytorch_coupled_l2_on_every_trainable_weight():
    model = keras.Sequential([keras.Input((4,)), tf_dsr.SparseDense(3, sparsity=0.5, seed=0),
                              keras.layers.BatchNormalization()])
    common.add_weight_decay(model, 5e-4, on="all")
    assert len(model.losses) == len(model.trainable_variables) == 4
    kernel = model.layers[0].kernel_variable
    # PyTorch adds wd * w to the gradient: the L2 coefficient is wd / 2.
    assert kernel.regularizer.l2 == pytest.approx(2.5e-4)

    model = keras.Sequential([keras.Input((4,)), tf_dsr.SparseDense(3, sparsity=0.5, seed=0),
                              keras.layers.BatchNormalization()])
    common.add_weight_decay(model, 5e-4, on="kernels")
    assert len(model.losses) == 1


def test_l1_is_on_the_sparse_kernels_only():
    flag_values = parse(lenet300_mnist, "--l1=3e-4")
    data = common.Data(None, None, None, input_shape=(6,), num_classes=3)
    model = lenet300_mnist.build_model(flag_values, 0.5, data)
    regularized = [v for v in model.trainable_variables if v.regularizer is not None]
    assert {id(v) for v in regularized} == {id(k) for k in common.sparse_kernels(model)}
    assert len(model.losses) == 3
    assert float(regularized[0].regularizer.l1) == pytest.approx(3e-4)


def test_lenet_dsr_from_the_command_line(tmp_path):
    output = tmp_path / "lenet.json"
    command = [
        sys.executable, os.path.join("examples", "lenet300_mnist.py"), "--mock_data=6",
        "--epochs=2", "--steps_per_epoch=3", "--batch_size=4", "--period=2",
        "--eval_steps=1", "--verbose=0", "--sparsity=0.9", "--validation_freq=1",
        f"--output={output}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(output) as f:
        results = json.load(f)
    history = check_results(results, LENET, method="dsr", sparsity=0.9, epochs=2,
                            steps_per_epoch=3)
    assert (results["model"], results["dataset"]) == ("lenet_300_100", "mnist")
    # Period 2 over 6 steps: reallocations at steps 2, 4 and 6.
    reallocation = results["reallocation"]
    assert reallocation["method"] == "DynamicReparam"
    assert reallocation["num_reallocations"] == 3
    assert reallocation["last_step"] == 6
    assert reallocation["threshold"] > 0
    assert results["initial_params"]["active_sparse"] == results["params"]["active_sparse"]
    # DSR moves weights between layers; the total stays.
    assert any(values[-1] != values[0] for values in history["layers"].values())
    assert history["sparsity"][-1] == pytest.approx(history["sparsity"][0])
    assert results["flags"]["period"] == "2"
    assert results["flags"]["l1"] == 1e-4
    assert len(results["train_history"]["val_accuracy"]) == 2


@pytest.mark.parametrize("method", ["static", "set", "rigl", "gradual", "dense"])
def test_lenet_baselines(tmp_path, method):
    results = run_script(lenet300_mnist, tmp_path, f"--method={method}", "--epochs=2",
                         "--steps_per_epoch=2", "--batch_size=4", "--period=2",
                         "--eval_steps=1", "--sparsity=0.95", "--gradual_end_epoch=1",
                         "--run_eagerly")
    sparsity = 0.0 if method == "dense" else 0.95
    history = check_results(results, LENET, method=method, sparsity=sparsity, epochs=2,
                            steps_per_epoch=2)
    initial = results["initial_params"]["active_sparse"]
    if method in ("static", "dense"):
        assert results["reallocation"] is None
        assert all(len(set(values)) == 1 for values in history["layers"].values())
    elif method in ("set", "rigl"):
        # RigL: T_end is the 4 steps of the run, so it updates at step 2 only.
        assert results["reallocation"]["num_reallocations"] == (2 if method == "set" else 1)
        assert results["reallocation"]["threshold"] is None  # only DSR has one
        # SET and RigL keep every layer's count.
        assert all(len(set(values)) == 1 for values in history["layers"].values())
    else:
        # Dense start, pruned to the target by the end of epoch 1.
        assert initial == LENET["sparse"]
        assert history["sparsity"][0] == 0.0
        assert history["sparsity"][1] == pytest.approx(0.95, abs=1e-4)


def test_lenet_thin_dense_matches_the_sparse_non_zero_count(tmp_path):
    results = run_script(lenet300_mnist, tmp_path, "--method=thin", "--epochs=1",
                         "--steps_per_epoch=2", "--batch_size=4", "--eval_steps=1",
                         "--sparsity=0.9", "--run_eagerly")
    width = results["width_multiplier"]
    assert 0.05 < width < 0.2
    params = results["params"]
    # Dense layers throughout (sparse layers with full masks), narrowed until
    # their parameters match the 0.9-sparse network's non-zeros:
    # 26,620 active kernel weights + 1,210 biases and BatchNorm parameters.
    assert params["active_sparse"] == params["sparse_weights"]
    assert params["num_params"] == pytest.approx(26_620 + 1_210, rel=0.02)
    assert results["layers"]["dense_300"]["shape"][1] == round(300 * width)
    assert results["reallocation"] is None


def test_wrn_dsr(tmp_path):
    # WRN-10-1, not 28-2: tracing the reallocation graph of WRN-28-2's 24
    # sparse convs takes ~40 s on a loaded 2-core CPU (6 convs: ~6 s).
    # The paper's N_prune (20,000) is above WRN-10-1's 14,746 active weights,
    # which DynamicReparam refuses.
    results = run_script(wrn_cifar10, tmp_path, "--depth=10", "--width=1", "--epochs=2",
                         "--steps_per_epoch=2", "--batch_size=4", "--period=2",
                         "--prune_target=700", "--eval_steps=1", "--sparsity=0.8",
                         "--seed=3", "--run_eagerly")
    history = check_results(results, WRN_10_1, method="dsr", sparsity=0.8, epochs=2,
                            steps_per_epoch=2)
    assert (results["model"], results["dataset"], results["seed"]) == ("wrn_28_2", "cifar10", 3)
    assert results["reallocation"]["num_reallocations"] == 2
    assert history["sparsity"][0] == pytest.approx(0.8, abs=1e-4)
    assert history["sparsity"][-1] == history["sparsity"][0]
    assert results["flags"]["weight_decay"] == 5e-4


def test_resnet50_small_images(tmp_path):
    # Tracing ResNet-50's reallocation graph takes ~45 s on a loaded 2-core
    # CPU (and its train step ~25 s, hence --run_eagerly): the default
    # period (1000 steps) keeps reallocation out of this smoke run; the
    # LeNet and WRN runs cover it inside `fit`.
    results = run_script(resnet50_imagenet, tmp_path, "--image_size=64", "--batch_size=2",
                         "--epochs=1", "--steps_per_epoch=1", "--eval_steps=1",
                         "--run_eagerly")
    check_results(results, RESNET50, method="dsr", sparsity=0.9, epochs=1, steps_per_epoch=1)
    assert (results["model"], results["dataset"]) == ("resnet50", "imagenet2012")
    test = results["test"]
    assert 0.0 <= test["accuracy"] <= test["top5_accuracy"] <= 1.0
    assert results["reallocation"]["num_reallocations"] == 0
    assert results["reallocation"]["threshold"] == pytest.approx(1e-3)


def test_wrn_28_2_counts_and_weight_decay():
    flag_values = parse(wrn_cifar10)
    data = common.Data(None, None, None, input_shape=(32, 32, 3), num_classes=10)
    model = wrn_cifar10.build_model(flag_values, 0.9, data)
    params = common.parameter_counts(model)
    assert params["sparse_weights"] == WRN_28_2["sparse"]
    assert params["dense_trainable"] == WRN_28_2["dense"]
    assert len(common.layer_table(model)) == WRN_28_2["layers"]
    assert params["active_sparse"] == num_active_at_init(common.layer_table(model), 0.9)
    # Weight decay on every trainable weight, PyTorch-style: L2(wd / 2).
    assert len(model.losses) == len(model.trainable_variables)
    coefficients = {float(v.regularizer.l2) for v in model.trainable_variables}
    assert len(coefficients) == 1 and coefficients.pop() == pytest.approx(2.5e-4)


def test_backup_dir_keeps_two_backups(tmp_path, monkeypatch):
    # A kill during the end-of-epoch save truncates the latest backup; with
    # double_checkpoint Keras restores the previous one instead of failing
    # (tests/callbacks/test_resume.py kills a worker to show it).
    made = []

    class Recording(common.ResumableBackup):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(common, "ResumableBackup", Recording)
    backup = tmp_path / "backup"
    run_script(lenet300_mnist, tmp_path, "--method=static", "--epochs=1",
               "--steps_per_epoch=2", "--batch_size=4", "--eval_steps=1",
               f"--backup_dir={backup}", "--run_eagerly")
    assert len(made) == 1
    assert made[0].backup_dir == str(backup) and made[0].double_checkpoint is True


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range_is_a_flag_error(seed):
    with pytest.raises(flags.IllegalFlagValueError, match="seed"):
        parse(lenet300_mnist, f"--seed={seed}")


# ----- keras-hub examples (vit_digits.py, gpt2_python_source.py) ----------


def _table_methods(out):
    """The method column of the results table the example printed."""
    rows = [line for line in out.splitlines() if line.startswith("| ")][2:]
    return [row.split("|")[1].strip() for row in rows]


def test_vit_digits_quick(capsys):
    pytest.importorskip("keras_hub")
    pytest.importorskip("sklearn")
    from examples import vit_digits

    rows = vit_digits.main(["--quick"])
    out = capsys.readouterr().out
    assert _table_methods(out) == ["dense", "DSR", "static sparse"]
    dense, dsr, static = rows
    # sparsify keeps the task model's class.
    assert all(type(row["model"]).__name__ == "ViTImageClassifier" for row in rows)
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in rows)
    assert dense["nonzero"] == dense["trainable"] == dsr["trainable"] == static["trainable"]
    # DSR conserves the non-zero count the static masks keep.
    assert dsr["nonzero"] == static["nonzero"] < dense["nonzero"]
    # 128 images in batches of 32, --period=2 in --quick: steps 2 and 4.
    assert (dsr["reallocations"], static["reallocations"]) == (2, 0)
    # What stays dense is printed: the patch conv, the head, the class token.
    assert "patch_embedding (Conv2D" in out and "predictions (Dense" in out


def test_gpt2_python_source_quick(capsys):
    pytest.importorskip("keras_hub")
    from examples import gpt2_python_source as gpt2

    # Byte-level tokens: ids are bytes + 3, windows predict the next byte.
    text = "def f(x):\n    return 'é'\n"
    assert gpt2.decode(gpt2.encode(text)) == text
    x, y = gpt2.windows(gpt2.encode(text * 4), 8)
    assert x["token_ids"].shape == y.shape == (len(gpt2.encode(text * 4)) // 9, 8)
    np.testing.assert_array_equal(x["token_ids"][:, 1:], y[:, :-1])

    rows, generated = gpt2.main(["--quick"])
    out = capsys.readouterr().out
    assert _table_methods(out) == ["dense", "DSR", "static sparse"]
    dense, dsr, static = rows
    assert all(type(row["model"]).__name__ == "GPT2CausalLM" for row in rows)
    assert all(np.isfinite(row["loss"]) and row["perplexity"] > 1 for row in rows)
    assert dsr["nonzero"] == static["nonzero"] < dense["nonzero"] == dense["trainable"]
    assert (dsr["reallocations"], static["reallocations"]) == (2, 0)
    # The position embedding stays dense and is reported.
    assert "position_embedding (PositionEmbedding" in out
    # generate() continued the prompt with --generate_length=16 bytes.
    assert generated.startswith("def ") and len(generated) > len("def ")
    assert f"generate('def '):\n{generated}" in out
