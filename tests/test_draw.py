"""`tnc draw`'s layout: deterministic, in columns, and the same with or without Graphviz on PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from tnc.draw import COLUMNS, _layout, panels, render, to_dot
import tnc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.tn"))


def _program(path: Path):
    return tnc.load(path).program


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_layout_puts_kinds_in_columns_and_open_legs_at_the_border(path):
    for panel in panels(_program(path)):
        positions = _layout(panel.graph)
        xs = [p[0] for p in positions.values()]
        for node, data in panel.graph.nodes(data=True):
            if node[0] == "t":
                assert positions[node][0] == COLUMNS[data["kind"]], node
            if node[0] == "open":
                assert positions[node][0] in (min(xs), max(xs)), node
        tensors = [positions[n] for n in panel.graph.nodes if n[0] == "t"]
        assert len(set(tensors)) == len(tensors), "two tensors drawn on the same spot"


@pytest.mark.parametrize("name", ["conv2d", "kfc", "ggn_gram", "two_layer_relu"])
@pytest.mark.parametrize("format", ["svg", "dot"])
def test_draw_is_identical_without_graphviz_on_path(name, format, monkeypatch, tmp_path):
    program = _program(ROOT / "examples" / f"{name}.tn")
    draw = (lambda: to_dot(program).encode()) if format == "dot" else (lambda: render(program, "svg"))
    first = draw()
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` anywhere
    assert draw() == first
