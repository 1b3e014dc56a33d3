"""benchmarks/inference.py at a tiny size: every row is there and parses.

No timing is asserted: only that each configuration was exported, run
and reported, and that the TFLite ops column says what the converter
did (no DENSIFY for 1x4 blocks; DENSIFY for unstructured 0.9).
"""

import math
import re

from benchmark_scripts import load


def test_tiny_run_reports_every_configuration():
    inference = load("inference")
    rows = inference.run(tiny=True, rounds=1, chunk_seconds=0.001)
    table = inference.format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + len(inference.LENET_ROWS) + len(inference.CONV_ROWS)
    parsed = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 12
        numbers = [float(c.rstrip("x")) for c in cells[4:]]
        assert all(math.isfinite(n) and n > 0 for n in numbers)
        parsed[(cells[0], cells[1], cells[2])] = cells[3]
    # Dense rows are their own reference.
    assert re.search(r"\| dense \| - \| [^|]* \| [\d.]+ \| 1\.00x", table)
    assert "no DENSIFY" in parsed[("LeNet-300-100", "1x4 blocks", "0.9")]
    assert "no DENSIFY" in parsed[("LeNet-300-100", "1x4 blocks", "0.95")]
    assert "3 DENSIFY" in parsed[("LeNet-300-100", "unstructured", "0.9")]
    assert "DENSIFY" in parsed[("MobileNet-style", "1x1 convs in blocks of 4 outputs", "0.9")]
