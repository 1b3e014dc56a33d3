"""examples/second_finding.py: static copies of DSR's final masks."""

import json
import os
import sys

from absl import flags
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from examples import second_finding  # noqa: E402
from tf_dsr.app import data as digits  # noqa: E402

SPARSITY = 0.9
STATIC = ("static_fresh_init", "static_dsr_init")


@pytest.fixture(scope="module")
def one_seed():
    data = digits.load_digits(seed=0)
    (x_train, y_train), test = data
    data = ((x_train[:300], y_train[:300]), test)
    # 2 epochs of 6 steps, a reallocation every 3 steps: DSR moves masks.
    return second_finding.run_seed(0, data, SPARSITY, epochs=2, period=3)


def test_dsr_moved_the_masks_and_conserved_their_total(one_seed):
    result, arrays = one_seed
    initial, final = arrays["dsr_initial_masks"], arrays["dsr_final_masks"]
    assert any(not np.array_equal(initial[name], final[name]) for name in final)
    assert sum(m.sum() for m in final.values()) == sum(m.sum() for m in initial.values())
    assert result["dsr"]["num_reallocations"] >= 3
    assert 0.0 < result["final_mask_overlap_with_initial"] < 1.0


@pytest.mark.parametrize("variant", STATIC)
def test_static_runs_use_dsr_final_masks_and_never_change_them(one_seed, variant):
    result, arrays = one_seed
    final = arrays["dsr_final_masks"]
    for name, mask in final.items():
        np.testing.assert_array_equal(arrays[f"{variant}_masks_before"][name], mask)
        np.testing.assert_array_equal(arrays[f"{variant}_masks_after"][name], mask)
        # Inactive entries stay exactly zero before and after training;
        # active ones were trained.
        for when in ("before", "after"):
            kernel = arrays[f"{variant}_kernels_{when}"][name]
            assert np.all(kernel[mask == 0] == 0)
        assert not np.array_equal(arrays[f"{variant}_kernels_before"][name],
                                  arrays[f"{variant}_kernels_after"][name])
    assert result[variant]["masks_unchanged"] is True


def test_dsr_init_starts_where_dsr_started_and_fresh_init_does_not(one_seed):
    _, arrays = one_seed
    initial_masks = arrays["dsr_initial_masks"]
    for name, final in arrays["dsr_final_masks"].items():
        dsr_start = arrays["dsr_initial_kernels"][name]
        same = arrays["static_dsr_init_kernels_before"][name]
        fresh = arrays["static_fresh_init_kernels_before"][name]
        kept = (final * initial_masks[name]) == 1
        # Where DSR's final mask overlaps its initial one: DSR's own start.
        np.testing.assert_array_equal(same[kept], dsr_start[kept])
        assert np.all(same[final == 1] != 0)
        # The fresh start shares no kernel value with DSR's.
        assert not np.any(fresh[kept] == dsr_start[kept])
        assert np.all(fresh[final == 1] != 0)


def test_run_writes_json_and_table(tmp_path):
    output = tmp_path / "second.json"
    flag_values = flags.FlagValues()
    second_finding.define_flags(flag_values)
    flag_values(["prog", f"--output={output}", "--epochs=1", "--seeds=1", "--num_train=200",
                 "--period=2", f"--sparsity={SPARSITY}"])
    returned = second_finding.run(flag_values)
    saved = json.loads(output.read_text())
    assert saved["summary"] == returned["summary"]
    assert [run["seed"] for run in saved["runs"]] == [0]
    for variant in second_finding.VARIANTS:
        entry = saved["summary"][variant]
        assert entry["num_runs"] == 1 and 0.0 <= entry["mean"] <= 1.0 and entry["std"] == 0.0
        assert f"| {second_finding.LABELS[variant]} | 1 |" in saved["table"]


def test_summary_and_table_from_hand_values():
    runs = [{v: {"test_accuracy": a, "epochs": 5} for v in second_finding.VARIANTS}
            for a in (0.90, 0.92, 0.94)]
    summary = second_finding.summarize(runs)
    assert summary["dsr"]["mean"] == pytest.approx(0.92)
    assert summary["dsr"]["std"] == pytest.approx(0.02)  # sample std
    assert "| DSR | 5 | 92.00 ± 2.00 |" in second_finding.format_table(summary, runs)


def test_bad_sparsity_raises(tmp_path):
    flag_values = flags.FlagValues()
    second_finding.define_flags(flag_values)
    flag_values(["prog", "--sparsity=1.0"])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        second_finding.run(flag_values)
