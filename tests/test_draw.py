"""`tnc draw`'s layout: deterministic, in columns, and the same with or without Graphviz on PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

import tnc
from tnc.draw import (
    COLUMNS,
    SWAY,
    _layout,
    arrange,
    canvas,
    half_size,
    label_box,
    panels,
    render,
    to_dot,
)
from tnc.ir.network import Kind

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
                assert abs(positions[node][0] - COLUMNS[data["kind"]]) <= SWAY + 1e-9, node
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


def _cases():
    """Every example, every derived example, and each output of each example derived wrt each param."""
    cases = [(p.stem, tnc.load(p)) for p in EXAMPLES + sorted((ROOT / "examples" / "derived").glob("*.tn"))]
    for path in EXAMPLES:
        network = tnc.load(path)
        for of in network.outputs:
            for name, tensor in network.program.tensors.items():
                if tensor.kind is Kind.PARAM:
                    cases.append((f"{path.stem}/d{of}/d{name}", network.derive(name, of=of)))
    return cases


def _inside(point, box) -> bool:
    return abs(point[0] - box[0]) < box[2] and abs(point[1] - box[1]) < box[3]


def _overlap(a, b) -> bool:
    return abs(a[0] - b[0]) < a[2] + b[2] and abs(a[1] - b[1]) < a[3] + b[3]


CASES = _cases()


@pytest.mark.parametrize("name,network", CASES, ids=[c[0] for c in CASES])
def test_layout_has_no_overlaps_and_stays_on_the_canvas(name, network):
    """Checked by sampling each segment at 400 points (independent of the layout's own clipping)."""
    for panel in panels(network.program):
        graph = panel.graph
        positions = _layout(graph)
        nodes = {n: (*positions[n], *half_size(graph, n)) for n in graph.nodes}
        labels = [(a, b, label_box(positions, a, b, k, d["label"])) for a, b, k, d in graph.edges(keys=True, data=True)]
        left, right, bottom, top = canvas(graph, positions)
        for node, box in nodes.items():
            for a, b, _ in graph.edges(data=True):
                if node in (a, b):
                    continue
                (x0, y0), (x1, y1) = positions[a], positions[b]
                samples = [(x0 + t / 400 * (x1 - x0), y0 + t / 400 * (y1 - y0)) for t in range(401)]
                assert not any(_inside(p, box) for p in samples), f"{panel.title}: edge {a}-{b} under {node}"
            for other, second in nodes.items():
                assert other == node or not _overlap(box, second), f"{panel.title}: {node} on {other}"
            for a, b, label in labels:
                assert node in (a, b) or not _overlap(box, label), f"{panel.title}: label of {a}-{b} on {node}"
        for i, (a, b, first) in enumerate(labels):
            assert all(not _overlap(first, second) for _, _, second in labels[i + 1:]), f"{panel.title}: labels"
        for x, y, w, h in [*nodes.values(), *(label for _, _, label in labels)]:
            assert left <= x - w and x + w <= right and bottom <= y - h and y + h <= top, panel.title


def test_network_shows_its_diagram_in_a_notebook():
    network = tnc.load(ROOT / "examples" / "kfc.tn")
    svg = network._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert svg == render(network.program, "svg").decode()


MIRRORED = ["kfc", "kfc_bias", "kfac_reduce", "ggn_gram", "ggn_diagonal", "grad_norms"]


@pytest.mark.parametrize("name", MIRRORED)
def test_a_copy_of_a_tensor_is_drawn_as_the_mirror_image_of_the_first(name):
    """Each tensor read twice in a term: same x, and the y's of all pairs reflect about one horizontal axis."""
    for panel in panels(_program(ROOT / "examples" / f"{name}.tn")):
        positions = _layout(panel.graph)
        copies: dict[str, list] = {}
        for node, data in panel.graph.nodes(data=True):
            if node[0] == "t":
                copies.setdefault(data["text"].split("[")[0], []).append(positions[node])
        pairs = [found for found in copies.values() if len(found) == 2]
        assert pairs, "no tensor is read twice"
        axes = {round((a[1] + b[1]) / 2, 9) for a, b in pairs}
        assert len(axes) == 1 and all(a[0] == b[0] and a[1] != b[1] for a, b in pairs), (panel.title, pairs)


def test_a_term_without_two_copies_is_not_mirrored():
    for panel in panels(_program(ROOT / "examples" / "conv2d.tn")):
        assert panel.graph.graph["mirror"] == {}


@pytest.mark.parametrize("name,network", CASES, ids=[c[0] for c in CASES])
def test_every_grouped_leg_leaves_as_one_thick_leg_to_a_bracket(name, network):
    for panel in panels(network.program):
        graph = panel.graph
        for node, data in graph.nodes(data=True):
            if node[0] != "t":
                continue
            axes = data["text"][data["text"].index("[") + 1:-1]
            groups = axes.count("(")
            brackets = [b for b in graph.neighbors(node) if b[0] == "j" and b[1] == node[1]]
            assert len(brackets) == groups, (panel.title, data["text"])
            for bracket in brackets:
                fused = [d for d in graph.get_edge_data(node, bracket).values()]
                assert len(fused) == 1 and fused[0]["group"] and fused[0]["label"].startswith("(")
                members = fused[0]["label"][1:-1].split()
                assert graph.degree(bracket) == 1 + len(set(members)), (panel.title, fused[0]["label"])


@pytest.mark.parametrize("path", [ROOT / "examples" / "hessian_quadratic.tn", ROOT / "examples" / "two_layer_relu.tn",
                                  ROOT / "examples" / "derived" / "kfc_input_vjp.tn"], ids=lambda p: p.stem)
def test_terms_are_a_row_of_panels_that_do_not_overlap(path):
    program = _program(path)
    placed, texts = arrange(panels(program))
    boxes = [item.box() for item in [*placed, *texts]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2], (a, b)
    terms = sum(len(program.definitions[o].terms) for o in program.outputs)
    assert len(placed) == terms
    for first, second in zip(placed, placed[1:]):
        if first.panel.title == second.panel.title:  # one output: side by side, left to right
            assert first.box()[1] < second.box()[0]
    words = [t.text for t in texts]
    assert sum(w.startswith(("+", "−")) for w in words) == terms - len(program.outputs), words
