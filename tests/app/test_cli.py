"""The tf-dsr command line."""

import os
import re
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_dsr.app import cli
from tf_dsr.app import data
from tf_dsr.app import train

LENET_KERNEL_WEIGHTS = 64 * 300 + 300 * 100 + 100 * 10  # 50,200


def _tables(out):
    """The initial and final sparsity tables: {layer: active} each."""
    tables = []
    for block in re.findall(r"^layer .*?\n-+\n(.*?)\n-+\n", out, re.M | re.S):
        tables.append({
            line.split()[0]: int(line.split()[3]) for line in block.splitlines()
        })
    return tables


def test_train_prints_accuracy_nonzero_count_and_table(tmp_path, capsys):
    export_dir = tmp_path / "new" / "saved"
    code = cli.main(["train", "--epochs", "3", "--period", "10", "--verbose", "0",
                     "--sparsity", "0.9", "--export", str(export_dir)])
    assert code == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    nonzero, total = map(int, re.search(
        r"non-zero trainable parameters: (\d+) of (\d+)", out).groups())
    # 10% of the 50,200 kernel weights, plus biases and BatchNorm.
    assert 5020 <= nonzero <= 5020 + 410 + 800 and total == 50200 + 410 + 800
    assert re.search(r"^total\s+50200\s+5020\s+0\.9000$", out, re.M)
    # 3 epochs of 29 steps, stopping at epoch round(0.9 * 3) = 3: steps 10..80.
    assert re.search(r"^reallocations: 8, final threshold: ", out, re.M)
    initial, final = _tables(out)
    assert initial == {"dense_300": 1920, "dense_100": 3000, "logits": 100}
    assert sum(final.values()) == 5020 and final != initial  # DSR moved weights

    # The export is the trained model, masks folded in.
    served = tf.saved_model.load(str(export_dir))
    _, (x_test, y_test) = data.load_digits(seed=0)
    logits = served.serve(tf.constant(x_test)).numpy()
    assert abs(np.mean(logits.argmax(axis=1) == y_test) - accuracy) <= 1 / len(y_test)
    kernels = [v.numpy() for v in served.variables if v.name.endswith("/kernel:0")]
    assert sum(k.size for k in kernels) == LENET_KERNEL_WEIGHTS
    assert sum(int(np.count_nonzero(k)) for k in kernels) <= 5020


def test_train_stops_reallocating_after_the_stop_fraction(capsys):
    # 29 steps per epoch, a reallocation every 10 steps; stopping at epoch
    # round(0.5 * 3) = 2 leaves those at steps 10, 20, ..., 50.
    code = cli.main(["train", "--epochs", "3", "--period", "10", "--verbose", "0",
                     "--stop-fraction", "0.5"])
    assert code == 0
    assert re.search(r"^reallocations: 5,", capsys.readouterr().out, re.M)


def test_conv_model_trains_with_dsr(capsys):
    assert cli.main(["train", "--model", "conv", "--epochs", "1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^tf-dsr: small_convnet on digits", out, re.M)
    initial, final = _tables(out)
    # conv1 and logits stay dense, as `sparsify` keeps them (the paper's rule).
    assert list(initial) == ["conv2", "dense"]
    # round(0.1 * 3*3*32*64) + round(0.1 * 1024*128) = 1843 + 13107.
    assert sum(initial.values()) == sum(final.values()) == 14950
    assert final != initial
    # 29 steps, period 25, stop at epoch round(0.9) = 1: one reallocation.
    assert re.search(r"^reallocations: 1,", out, re.M)
    assert 0.0 <= float(re.search(r"test accuracy: ([0-9.]+)", out).group(1)) <= 1.0


@pytest.mark.parametrize("argv", [
    ["train", "--sparsity", "1.0"],
    ["train", "--prune-target", "0"],
    ["train", "--prune-target", "1.5"],
    ["train", "--epochs", "0"],
    ["train", "--stop-fraction", "0"],
    ["train", "--model", "resnet"],
    ["train", "--seed", "-1"],
    ["train", "--seed", str(2**32)],
    ["train", "--seed", "1.5"],
    [],
])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    assert "usage: tf-dsr" in capsys.readouterr().err


def test_unwritable_export_target_fails_before_training(capsys):
    started = time.monotonic()
    with pytest.raises(SystemExit) as error:
        cli.main(["train", "--export", "/proc/tf_dsr_forbidden/saved"])
    assert error.value.code == 2
    captured = capsys.readouterr()
    assert "--export /proc/tf_dsr_forbidden/saved: cannot write" in captured.err
    assert "Initial masks" not in captured.out  # no model was built
    assert time.monotonic() - started < 10
    assert not os.path.exists("/proc/tf_dsr_forbidden")


def test_export_target_that_is_a_file_fails_and_keeps_the_file(tmp_path, capsys):
    target = tmp_path / "model"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as error:
        cli.main(["train", "--export", str(target)])
    assert error.value.code == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_export_probe_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "saved"
    assert train.check_export_target(str(target)) is None
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "existing"
    existing.mkdir()
    assert train.check_export_target(str(existing)) is None
    assert list(existing.iterdir()) == []
    (tmp_path / "file").write_text("")
    assert "is not a directory" in train.check_export_target(str(tmp_path / "file" / "sub"))


def test_train_with_blocks_exports_a_tflite_file_and_prints_its_latency(tmp_path, capsys):
    path = tmp_path / "model.tflite"
    code = cli.main(["train", "--epochs", "1", "--period", "10", "--verbose", "0",
                     "--block-shape", "4x1", "--export-tflite", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "sparsity 0.9, blocks of 4x1" in out
    initial, _ = _tables(out)
    assert initial == {"dense_300": 1920, "dense_100": 3000, "logits": 100}
    assert path.stat().st_size > 0
    assert re.search(r"ops: FULLY_CONNECTED, FULLY_CONNECTED, FULLY_CONNECTED$", out, re.M)
    assert re.search(r"^TFLite latency, batch 1, one thread .*: [\d.]+ us vs [\d.]+ us "
                     r"for the dense architecture: [\d.]+x$", out, re.M)


@pytest.mark.parametrize("text", ["4", "4x", "4x0", "axb", "4x1x1"])
def test_bad_block_shapes_are_refused_before_training(text, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--block-shape", text])
    assert "--block-shape must be INPUTSxOUTPUTS" in capsys.readouterr().err


def test_a_block_that_does_not_tile_the_model_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--block-shape", "1x4", "--epochs", "1"])
    assert "logits" in capsys.readouterr().err  # 100x10: 10 outputs, not a multiple of 4


def test_an_unwritable_tflite_path_fails_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--export-tflite", str(tmp_path / "missing" / "m.tflite")])
    assert "is not an existing directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "dsr", "--drop-fraction", "0.2"],
     "--drop-fraction 0.2: not used by dsr; it is for rigl."),
    (["train", "--method", "rigl", "--prune-target", "0.1"],
     "--prune-target 0.1: not used by rigl; it is for dsr, dsr-gradient, set."),
    (["train", "--method", "static", "--prune-target", "7"],
     "--prune-target 7: not used by static"),
    (["compare", "--methods", "dsr", "set", "--drop-fraction", "0.2"],
     "--drop-fraction 0.2: not used by dsr, set; it is for rigl."),
])
def test_an_option_the_chosen_methods_ignore_is_refused_before_training(
        argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(argv + (["--output-dir", str(tmp_path)] if argv[0] == "compare" else []))
    assert message in capsys.readouterr().err


def test_train_prints_the_settings_its_method_reads(capsys):
    assert cli.main(["train", "--method", "rigl", "--epochs", "1", "--period", "10",
                     "--verbose", "0"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("RigL, sparsity 0.9, drop fraction 0.3, period 10"), first
    assert "N_prune" not in first
