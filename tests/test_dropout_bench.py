"""benchmarks/dropout.py on one layer, few draws and steps: the report has every data kind (noise,
digits untrained and trained), leg and keep, the timing rows and the training table."""

from __future__ import annotations

import json

from benchmarks import dropout


def test_dropout_benchmark_runs_and_reports(tmp_path):
    argv = ["--rows", "9", "--draws", "2", "--steps", "3", "--train-steps", "2", "--batch", "4", "--out", str(tmp_path)]
    assert dropout.main(argv) == 0
    results = json.loads((tmp_path / "dropout.json").read_text())
    assert [(r["data"], r["row"]) for r in results["layers"]] == [("noise", 9), ("digits", 9), ("digits, trained", 9)]
    for entry in results["layers"]:
        errors = entry["errors"]
        assert set(errors) == set(dropout.LEGS) and all(set(v) == {str(k) for k in dropout.KEEPS} for v in errors.values())
        assert all(0 < e < 100 for v in errors.values() for e in v.values())
    trained, untrained = results["layers"][2]["errors"], results["layers"][1]["errors"]
    assert trained != untrained  # the trained weights gave other inputs and gradients
    report = (tmp_path / "dropout.md").read_text()
    assert "| digits, trained | 9 | spatial |" in report and "| 9 | autograd |" in report
    assert set(results["training"]) == {"exact", "sampled, keep 0.5", "sampled, keep 0.25"}
