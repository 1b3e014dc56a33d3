"""`tf_dsr.app.compare` and the `tf-dsr compare` command."""

import json
import re

import pytest

from tf_dsr.app import cli
from tf_dsr.app import compare
from tf_dsr.app import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPARSITY = 0.9


def _result(method, sparsity, seed, accuracy, epochs=10):
    return {"method": method, "sparsity": sparsity, "seed": seed,
            "test_accuracy": accuracy, "epochs": epochs}


# ----- summaries from hand values ---------------------------------------------
def test_summarize_gives_mean_and_sample_std():
    results = [_result("dsr", 0.9, s, a) for s, a in enumerate((0.90, 0.92, 0.94))]
    mean, std, num_runs, epochs = report.summarize(results)[("dsr", 0.9)]
    # Deviations -0.02, 0, 0.02: sample variance 0.0008 / 2 = 0.0004.
    assert mean == pytest.approx(0.92) and std == pytest.approx(0.02)
    assert (num_runs, epochs) == (3, 10)


def test_single_run_has_zero_std():
    assert report.summarize([_result("set", 0.5, 0, 0.5)])[("set", 0.5)][:2] == (0.5, 0.0)


def test_format_cell_is_percent_with_two_decimals():
    assert report.format_cell(0.92, 0.02) == "92.00 ± 2.00"
    assert report.format_cell(0.98765, 0.001234) == "98.77 ± 0.12"


def test_markdown_table_rows_from_hand_values():
    results = (
        [_result("dsr", 0.9, s, a) for s, a in enumerate((0.90, 0.92, 0.94))]
        + [_result("dsr", 0.99, s, a) for s, a in enumerate((0.50, 0.60, 0.70))]
        + [_result("static", 0.9, s, a, epochs=20) for s, a in enumerate((0.8, 0.8, 0.8))]
        + [_result("dense", None, s, a) for s, a in enumerate((0.97, 0.98, 0.99))]
    )
    text = report.format_markdown(results, title="### digits")
    lines = text.splitlines()
    assert lines[0] == "### digits"
    assert "Test accuracy (%), mean ± std over 3 seed(s)." in lines
    assert "Full dense: 98.00 ± 1.00 (10 epochs, 3 runs)." in lines
    # Columns in the paper's order: highest sparsity first.
    assert "| method | epochs | s = 0.99 | s = 0.9 |" in lines
    assert "| DSR | 10 | 60.00 ± 10.00 | 92.00 ± 2.00 |" in lines
    # No static run at 0.99: a dash, not a made-up number.
    assert "| static sparse | 20 | – | 80.00 ± 0.00 |" in lines
    assert "| full dense | 10 | 98.00 ± 1.00 | 98.00 ± 1.00 |" in lines
    # Rows follow the registry's order: DSR, static, dense.
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| ")][2:]
    assert rows == ["DSR", "static sparse", "full dense"]


# ----- validation --------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: compare.validate_methods(["dsr", "deepr"]), "Unknown method"),
    (lambda: compare.validate_methods([]), "at least one"),
    (lambda: compare.validate_methods(["dsr", "dsr"]), "once"),
    (lambda: compare.validate_sparsities([0.9, 1.0]), r"\[0, 1\)"),
    (lambda: compare.validate_sparsities([-0.1]), r"\[0, 1\)"),
    (lambda: compare.validate_sparsities([]), "at least one"),
    (lambda: compare.validate_num_seeds(0), ">= 1"),
    (lambda: compare.grid(["dsr"], [0.9], 0), ">= 1"),
])
def test_bad_values_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_grid_runs_dense_once_per_seed_and_doubles_static_epochs():
    assert compare.grid(["dense", "dsr", "static"], [0.9, 0.99], 2) == [
        ("dense", None, 0), ("dsr", 0.9, 0), ("static", 0.9, 0),
        ("dsr", 0.99, 0), ("static", 0.99, 0),
        ("dense", None, 1), ("dsr", 0.9, 1), ("static", 0.9, 1),
        ("dsr", 0.99, 1), ("static", 0.99, 1),
    ]
    assert [compare.method_epochs(m, 5) for m in compare.METHODS] == [5, 5, 5, 5, 10, 5, 5, 10]
    assert compare.method_epochs("static", 5, double_static_epochs=False) == 5


def test_stop_epoch_is_the_papers_ninety_percent():
    assert compare.stop_epoch(100, 0.9) == 90
    assert compare.stop_epoch(30, 0.9) == 27
    assert compare.stop_epoch(30, 1.0) is None
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        compare.stop_epoch(30, 0.0)


@pytest.mark.parametrize("argv", [
    ["compare", "--methods", "dsr", "deepr"],
    ["compare", "--stop-fraction", "0"],
    ["compare", "--stop-fraction", "1.5"],
    ["compare", "--sparsities", "1.0"],
    ["compare", "--sparsities", "-0.5"],
    ["compare", "--sparsities", "0.9", "0.9"],
    ["compare", "--seeds", "0"],
    ["compare", "--epochs", "0"],
    ["compare", "--prune-target", "600"],
    ["compare", "--sparsities", "0.9", "--history-sparsity", "0.5"],
])
def test_bad_compare_arguments_exit_with_usage(argv, capsys, tmp_path):
    with pytest.raises(SystemExit) as error:
        cli.main(argv + ["--output-dir", str(tmp_path)])
    assert error.value.code == 2
    assert "usage: tf-dsr" in capsys.readouterr().err


# ----- the command, end to end at a tiny size ----------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    argv = ["compare", "--methods", "dsr", "static", "dense", "thin",
            "--sparsities", str(SPARSITY), "--seeds", "1", "--epochs", "2",
            "--num-train", "300", "--period", "4", "--output-dir", str(out)]
    assert cli.main(argv) == 0
    return out, argv


def _runs(out):
    return json.loads((out / "digits_comparison.json").read_text())


def test_markdown_has_a_row_per_method(tiny_run):
    out, _ = tiny_run
    lines = (out / "digits_comparison.md").read_text().splitlines()
    cell = r"\d{1,3}\.\d\d ± 0\.00"
    assert "| method | epochs | s = 0.9 |" in lines
    for label, epochs in (("DSR", 2), ("static sparse", 4), ("full dense", 2),
                          ("thin dense", 4)):
        assert any(re.fullmatch(rf"\| {label} \| {epochs} \| {cell} \|", line)
                   for line in lines), label
    assert re.search(r"^Full dense: " + cell, "\n".join(lines), re.M)


def test_json_records_command_epochs_and_accuracies(tiny_run):
    out, argv = tiny_run
    payload = _runs(out)
    assert payload["command"] == "tf-dsr " + " ".join(argv)
    assert payload["finished"] is True
    assert payload["config"]["stop_fraction"] == 0.9
    assert payload["epochs_per_method"] == {"dsr": 2, "static": 4, "dense": 2, "thin": 4}
    results = payload["results"]
    assert sorted(r["method"] for r in results) == ["dense", "dsr", "static", "thin"]
    for result in results:
        assert 0.0 <= result["test_accuracy"] <= 1.0
        assert result["epochs"] == payload["epochs_per_method"][result["method"]]


def test_json_counts_static_fixed_dsr_conserved_thin_matched(tiny_run):
    out, _ = tiny_run
    runs = {r["method"]: r for r in _runs(out)["results"]}
    static, dsr, thin, dense = runs["static"], runs["dsr"], runs["thin"], runs["dense"]
    # Static: every layer keeps exactly round((1 - s) * size) weights.
    for name, size in static["num_weights"].items():
        expected = round((1 - SPARSITY) * size)
        assert static["num_active_initial"][name] == expected
        assert static["num_active_final"][name] == expected
    # DSR moves weights between layers but conserves the total.
    assert sum(dsr["num_active_final"].values()) == sum(dsr["num_active_initial"].values())
    assert dsr["num_kernel_active"] == static["num_kernel_active"]
    assert dsr["num_active_initial"] == static["num_active_initial"]
    assert dsr["num_active_final"] != dsr["num_active_initial"]
    history = dsr["sparsity_history"]
    assert history["step"][0] == 0 and history["step"][-1] == 12  # 300 / 50 * 2 epochs
    assert all(s == pytest.approx(SPARSITY, abs=1e-4) for s in history["sparsity"])
    # Per layer, the history follows the moves: it starts at the initial
    # counts, ends at the final ones, and changes in between.
    for name, sparsities in history["layers"].items():
        size = dsr["num_weights"][name]
        assert sparsities[0] == pytest.approx(1 - dsr["num_active_initial"][name] / size)
        assert sparsities[-1] == pytest.approx(1 - dsr["num_active_final"][name] / size)
    assert any(len(set(s)) > 1 for s in history["layers"].values())
    # Thin dense: as many parameters as the sparse net's non-zero ones.
    assert thin["num_parameters"] == thin["num_nonzero_parameters"]
    assert abs(thin["num_parameters"] - static["num_nonzero_parameters"]) <= (
        0.02 * static["num_nonzero_parameters"])
    assert 0.0 < thin["width_multiplier"] < 1.0
    assert dense["num_kernel_active"] == 64 * 300 + 300 * 100 + 100 * 10


def test_plots_are_png_files(tiny_run):
    out, _ = tiny_run
    for name in ("digits_accuracy.png", "digits_dsr_layer_sparsity.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, name


# ----- --quick: small, but the methods still update their masks ----------------------
def test_quick_run_reallocates_and_dsr_moves_weights_between_layers(tmp_path, capsys):
    argv = ["compare", "--quick", "--methods", "dsr", "set", "--sparsities", str(SPARSITY),
            "--output-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    payload = _runs(tmp_path)
    assert payload["config"]["period"] == cli.QUICK["period"]
    assert (payload["config"]["num_seeds"], payload["config"]["num_train"]) == (1, 300)
    runs = {r["method"]: r for r in payload["results"]}
    # 3 epochs of 300 digits at batch 50: 18 steps, a mask update every 4.
    steps = cli.QUICK["epochs"] * 300 // 50
    assert runs["dsr"]["num_mask_updates"] == runs["set"]["num_mask_updates"] == steps // 4 == 4
    dsr, set_ = runs["dsr"], runs["set"]
    # DSR shares regrown weights out across layers: per-layer counts move,
    # the total does not. SET regrows within each layer: counts stay put.
    assert dsr["num_active_final"] != dsr["num_active_initial"]
    assert sum(dsr["num_active_final"].values()) == sum(dsr["num_active_initial"].values())
    assert set_["num_active_final"] == set_["num_active_initial"]
    history = dsr["sparsity_history"]["layers"]
    assert any(values[-1] != values[0] for values in history.values())
    assert "mask updates=4" in capsys.readouterr().out


def test_runs_without_a_callback_record_no_mask_updates(tiny_run):
    out, _ = tiny_run
    runs = {r["method"]: r for r in _runs(out)["results"]}
    assert runs["static"]["num_mask_updates"] == runs["dense"]["num_mask_updates"] == 0
    # --period 4 over 12 steps: reallocations at steps 4, 8 and 12.
    assert runs["dsr"]["num_mask_updates"] == 3


def test_block_shape_reaches_the_sparse_methods_models():
    from tf_dsr.app import compare
    from tf_dsr.core import blocks
    from tf_dsr.layers import find_sparse_kernels

    for method in ("dsr", "set", "static", "gradual"):
        model, _ = compare.build_model(method, 0.9, 0, block_shape=(4, 1))
        found = find_sparse_kernels(model)
        assert len(found) == 3
        assert all(pair.block_shape == (4, 1) and bool(blocks.is_block_mask(
            pair.mask, pair.block_shape)) for _, pair in found)
    dense, _ = compare.build_model("dense", 0.9, 0, block_shape=(4, 1))
    assert not find_sparse_kernels(dense)
