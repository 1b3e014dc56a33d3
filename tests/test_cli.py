"""The tf-dsr command line."""

import re

import pytest

from tf_dsr import cli


def test_train_prints_accuracy_nonzero_count_and_table(tmp_path, capsys):
    export_dir = tmp_path / "saved"
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
    assert "reallocations: " in out
    assert (export_dir / "saved_model.pb").exists()


def test_train_stops_reallocating_after_the_stop_fraction(capsys):
    # 29 steps per epoch, a reallocation every 10 steps; stopping at epoch
    # round(0.5 * 3) = 2 leaves those at steps 10, 20, ..., 50.
    code = cli.main(["train", "--epochs", "3", "--period", "10", "--verbose", "0",
                     "--stop-fraction", "0.5"])
    assert code == 0
    assert re.search(r"^reallocations: 5,", capsys.readouterr().out, re.M)


def test_conv_model_runs(capsys):
    assert cli.main(["train", "--model", "conv", "--epochs", "1", "--verbose", "0"]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["train", "--sparsity", "1.0"],
    ["train", "--prune-target", "0"],
    ["train", "--prune-target", "1.5"],
    ["train", "--epochs", "0"],
    ["train", "--stop-fraction", "0"],
    ["train", "--model", "resnet"],
    [],
])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    assert "usage: tf-dsr" in capsys.readouterr().err
