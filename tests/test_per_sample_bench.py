"""The per-sample benchmark (benchmarks/per_sample.py): its ``.tn`` programs compute torch.func's
per-sample quantities, and its driver writes a report whose values agree with BackPACK's.

BackPACK is the optional extra ``backpack`` (in ``bench``, not ``dev``: it requires torchvision,
which would replace the pinned CPU torch where it is installed unconstrained), so the driver test
is skipped where it is not importable; the programs are checked either way.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.baselines import make_tensors
from benchmarks.layers import select
from benchmarks.per_sample import QUANTITIES, compiled, func_references, main, tolerance

LAYERS = [layer.scaled(0.2) for layer in select("24,110")]  # a 1x1 stride-2 layer; depthwise, both spellings


@pytest.mark.parametrize("quantity", list(QUANTITIES))
@pytest.mark.parametrize("layer", LAYERS, ids=[f"{l.id}-{l.spelling}" for l in LAYERS])
def test_programs_compute_torch_func_quantities(layer, quantity):
    t = make_tensors(layer, 2)
    reference = func_references(layer, t)[quantity]
    function, _ = compiled(layer, quantity, 2)
    result = function(X=t["X"], V=t["V"]).reshape(reference.shape)
    scale = reference.abs().max().item()
    torch.testing.assert_close(result, reference, rtol=tolerance(quantity), atol=tolerance(quantity) * scale)


def test_driver_report_agrees_with_backpack(tmp_path):
    pytest.importorskip("backpack", reason="BackPACK (the optional extra 'backpack') is not installed")
    assert main(["--quick", "--layers", "24,92", "--budget", "0.05", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "per_sample.json").read_text())
    records = results["records"]
    assert {r["quantity"] for r in records} == set(QUANTITIES)
    assert len(records) == 2 * len(QUANTITIES)
    for r in records:
        assert r["ok"], r  # within float32 tolerance of BackPACK (ungrouped layers)
        assert r["func_errors"]["tnc-func"] <= tolerance(r["quantity"])
        assert set(r["time_s"]) == {"tnc", "BackPACK", "plain backward"} and r["ratio"] > 0
    text = (tmp_path / "per_sample.md").read_text()
    assert all(f"## {q}" in text for q in QUANTITIES) and "tnc/BackPACK" in text
