"""benchmarks/transformer_inference.py --quick: every row is there and parses.

No speed is asserted (tiny models, two rounds): only that every variant
of both keras-hub models was trained, converted, run and reported; that
the sparse variants run on sparse FULLY_CONNECTED kernels (all of them:
the int8 LM's logits projection on its tied token table too, the float
LM's on its dense table excepted) with no DENSIFY op; that
every output is within tolerance of Keras; and that the accuracy mode
reports the three mask kinds.
"""

import math
import re

import pytest

from benchmark_scripts import load

pytest.importorskip("keras_hub")


# About a minute (some 27 TFLite conversions): kept out of the default run.
# tests/saving/test_tflite.py covers the same conversions (EinsumDense and
# keras-hub blocks on sparse FULLY_CONNECTED kernels, int8, outputs).
@pytest.mark.slow
def test_quick_run_reports_every_variant(capsys):
    benchmark = load("transformer_inference")
    rows = benchmark.main(["--quick"])["rows"]
    out = capsys.readouterr().out

    by = {(r["model"], r["variant"]): r for r in rows}
    names = [v[0] for v in benchmark.VARIANTS]
    for model in ("BERT classifier", "GPT-2 LM"):
        assert [v for m, v in by if m == model] == names
    assert [v for m, v in by if m == "GPT-2 backbone (no logits)"] == list(
        benchmark.BACKBONE_VARIANTS)
    fc = [(m, v) for m, v in by if m.startswith("FC ")]
    logits = [v for m, v in fc if m.startswith(benchmark.LOGITS)]
    shapes = len(benchmark.fc_shapes(benchmark.parse_args(["--quick"]))) - 1
    assert len(fc) - len(logits) == shapes * len(benchmark.KERNEL_VARIANTS)
    assert sorted(logits) == sorted(benchmark.KERNEL_VARIANTS)
    attention = [(m, v) for m, v in by if m.startswith(benchmark.ATTENTION)]
    assert len(attention) == 2 * len(benchmark.ATTENTION_VARIANTS)
    for key in attention:  # unfolded: FULLY_CONNECTEDs, no BATCH_MATMUL
        unfolded = benchmark.unfolds(key[1])
        assert (" 0 BMM" if unfolded else " 0 FC of computed operands, 1 BMM") in by[key]["ops"]
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("ms", "speedup", "bytes"))
        assert r["ok"], r  # within tolerance of the Keras model
        if r["model"] in ("BERT classifier", "GPT-2 LM"):
            attention_ops = ", 0 BMM" if benchmark.unfolds(r["variant"]) else (
                " 0 FC of computed operands")
            assert attention_ops in r["ops"]
        assert "DENSIFY" not in r["ops"] and r["num_densified"] == 0
        fc_sparse, fc = map(int, re.match(r"(\d+)/(\d+) sparse FC", r["ops"]).groups())
        if not r["sparse"]:
            assert fc_sparse == 0
        elif r["model"] == "GPT-2 LM" and r["quantize"] is None:
            assert fc_sparse == fc - 1  # the float LM keeps its token table dense
        else:
            assert fc_sparse == fc
    for key in by:
        if key[1] in (by[key]["twin"],):
            assert by[key]["speedup"] == 1.0

    table = out[out.index("| model | variant |"):]
    assert len([l for l in table.splitlines() if l.startswith("| ")]) == 2 + len(rows)
    assert re.search(r"BERT classifier: float sparse 1x4 [\d.]+x its dense twin "
                     r"\(target >= 2\.5x: (met|MISSED)\)", out)
    assert re.search(r"dynamic int8 sparse 1x16 [\d.]+x its dense twin "
                     r"\(target >= 1\.8x: (met|MISSED)\)", out)
    assert re.search(r"GPT-2 LM float sparse 1x4: [\d.]+ ms = backbone [\d.]+ ms "
                     r"\+ logits projection .*; the logits FC alone: [\d.]+ ms", out)
    assert re.search(r"float dense: the attention's matmuls \(unfolded\) alone", out)
    assert re.search(r"float dense, BATCH_MATMUL kept: the attention's BATCH_MATMULs", out)
    assert re.search(r"float dense XNNPack: the attention's BATCH_MATMULs", out)
    assert re.search(r"BERT classifier: dynamic int8 sparse 1x16 [\d.]+x its dense twin "
                     r"\(target >= 1\.8x: (met|MISSED)\); [\d.]+x dynamic int8 dense on "
                     r"XNNPack\n", out)
    assert re.search(r"BERT classifier: float sparse 1x4 .*; on the default resolver "
                     r"\(XNNPack\) sparse is [\d.]+x dense\n", out)


def test_quick_accuracy_reports_the_three_masks(capsys):
    benchmark = load("transformer_inference")
    results = benchmark.main(["--quick", "--accuracy"])["accuracy"]
    out = capsys.readouterr().out
    assert set(results) == {label for label, _ in benchmark.BLOCKS}
    assert all(0.0 <= a <= 1.0 for accs in results.values() for a in accs)
    for label, _ in benchmark.BLOCKS:
        assert re.search(rf"\| {re.escape(label)} \| [\d.]+ \+- [\d.]+ % \|", out)
