"""benchmarks/transformer_cost.py --quick: both tables are printed and parse.

No cost is asserted (the sizes are tiny and the two memory children run
alongside the timing): only that the dense and the sparse GPT-2-like
model trained, that the sparse fits ran the expected reallocations, and
that every figure is a finite positive number.
"""

import math
import re

from benchmark_scripts import load


def _numbers(line):
    return [float(n.replace(",", "")) for n in re.findall(r"-?[\d,]*\.?\d+", line)]


def test_quick_run_prints_both_tables(capsys):
    benchmark = load("transformer_cost")
    results = benchmark.main(["--quick"])
    out = capsys.readouterr().out

    assert "## training step time" in out
    plain = next(l for l in out.splitlines() if l.startswith("plain (dense"))
    sparse = next(l for l in out.splitlines() if l.startswith("sparse + DynamicReparam"))
    # median, min, max, CPU ms; the sparse row adds ratio and paired ratio.
    assert all(math.isfinite(n) and n > 0 for n in _numbers(plain)[:4])
    assert all(math.isfinite(n) and n > 0 for n in _numbers(sparse.split("target")[0])[1:7])
    quick = benchmark.parse_args(["--quick"])
    expected = quick.steps // quick.period
    assert results["time"]["reallocations"] == [expected] * quick.repeats
    assert f"reallocations per fit [{expected}]" in sparse
    assert "CPU time sparse/plain: ratio" in out
    assert "reallocation alone" in out

    assert "## peak RSS" in out
    rows = {l.split()[0]: l for l in out.splitlines()
            if l.startswith(("plain ", "sparse ")) and "MB" not in l and "(dense" not in l
            and "DynamicReparam" not in l}
    assert set(rows) == {"plain", "sparse"}
    for line in rows.values():
        assert all(math.isfinite(n) for n in _numbers(line))
    assert re.search(r"peak training memory sparse/plain: x[\d.]+ \(target <= 1\.25\)", out)
    assert math.isfinite(results["memory"]["ratio"]) and results["memory"]["ratio"] > 0
