"""``tnc draw``: tensor-network diagrams in the style of the literature, as SVG, PNG or DOT.

Tensors are labelled shapes (inputs circles, params squares, defined tensors diamonds, index
patterns triangles, identities small black dots), every leg is a line labelled with its index,
a leg joining three or more tensors meets at a black hyperedge dot, and open legs dangle to the
border. Legs a derivative cut open are drawn in red. The layout is computed here, without any
system tool (Graphviz is only an output format), so the same file always gives the same picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from tnc.ir.network import Kind, Network, Term, axes_text
from tnc.ir.program import Program

SHAPES = {Kind.INPUT: "o", Kind.PARAM: "s", Kind.DEFINED: "D", Kind.PATTERN: "^", Kind.DELTA: "."}
COLOURS = {Kind.INPUT: "#cfe2f3", Kind.PARAM: "#fce5cd", Kind.DEFINED: "#d9ead3", Kind.PATTERN: "#ead1dc", Kind.DELTA: "black"}
DOT_SHAPES = {Kind.INPUT: "circle", Kind.PARAM: "box", Kind.DEFINED: "diamond", Kind.PATTERN: "triangle", Kind.DELTA: "point"}


@dataclass(frozen=True)
class Panel:
    """One term of one network, as a graph of tensors, hyperedge dots and open-leg ends."""

    title: str
    graph: nx.Graph  # nodes: ("t", k) tensors, ("h", leg) hyperedges, ("open", leg) dangling ends
    cut: frozenset[str]


def _panel(name: str, network: Network, number: int, term: Term, cut: frozenset[str]) -> Panel:
    graph = nx.MultiGraph()
    product = term.product
    for node, factor in zip(product.nodes(), product.factors):
        label = "δ" if factor.kind is Kind.DELTA else factor.tensor
        graph.add_node(("t", node[1]), label=label, kind=factor.kind, text=f"{factor.tensor}[{axes_text(factor.axes)}]")
    for leg in sorted(product.indices()):
        carriers = [("t", n[1]) for n in product.carriers(leg)]
        ends = carriers + ([("open", leg)] if leg in network.legs else [])
        if leg in network.legs:
            graph.add_node(("open", leg), label=leg, kind=None)
        if len(ends) == 2:
            graph.add_edge(ends[0], ends[1], label=leg)
        else:
            graph.add_node(("h", leg), label="", kind="hyper")
            for end in ends:
                graph.add_edge(("h", leg), end, label=leg)
    coefficient = "" if term.coefficient == 1 else f"  ×  {term.coefficient}"
    return Panel(f"{name}[{axes_text(network.axes)}], term {number}{coefficient}", graph, cut)


def panels(program: Program, term: int | None = None) -> list[Panel]:
    """Every term of every output (``term``: only that one, counting from 1)."""
    found = []
    for name in program.outputs:
        network = program.definitions[name]
        cut = frozenset(getattr(network, "cut", ()))
        for number, item in enumerate(network.terms, start=1):
            if term is None or number == term:
                found.append(_panel(name, network, number, item, cut))
    return found


COLUMNS = {Kind.INPUT: 0.0, Kind.DEFINED: 2.0, Kind.PATTERN: 2.0, Kind.DELTA: 2.0, Kind.PARAM: 4.0}
NODE = 0.3  # half-size of a tensor's box in layout units
DOT = 0.08  # half-size of a hyperedge dot or an open leg's label height


def half_size(graph: nx.Graph, node) -> tuple[float, float]:
    """Half width and height of what is drawn at ``node`` (a tensor, a dot, an open leg's name)."""
    kind = graph.nodes[node].get("kind")
    if kind is None:
        return 0.06 * len(graph.nodes[node]["label"]) + 0.06, DOT + 0.04
    return (DOT, DOT) if kind in ("hyper", Kind.DELTA) else (NODE, NODE)


FRACTIONS = (0.4, 0.6, 0.25, 0.75, 0.5, 0.33, 0.67)  # where along an edge its label sits, by parallel edge


def label_box(positions: dict, a, b, key: int, leg: str) -> tuple[float, float, float, float]:
    """Centre and half sizes of the label of the ``key``-th edge ``a``–``b`` (parallel labels spread out)."""
    (x0, y0), (x1, y1) = positions[a], positions[b]
    t = FRACTIONS[key % len(FRACTIONS)]
    return x0 + t * (x1 - x0), y0 + t * (y1 - y0), 0.05 * len(leg) + 0.04, 0.09


def segment_hits_box(p, q, centre, half) -> bool:
    """Whether the segment ``p``–``q`` meets the open box ``centre`` ± ``half`` (Liang–Barsky clip)."""
    (x0, y0), (x1, y1) = p, q
    low, high = 0.0, 1.0
    for d, start, lo, hi in ((x1 - x0, x0, centre[0] - half[0], centre[0] + half[0]),
                             (y1 - y0, y0, centre[1] - half[1], centre[1] + half[1])):
        if abs(d) < 1e-12:
            if not lo < start < hi:
                return False
            continue
        t0, t1 = sorted(((lo - start) / d, (hi - start) / d))
        low, high = max(low, t0), min(high, t1)
    return high - low > 1e-9


def _boxes_overlap(a, b) -> bool:
    return abs(a[0] - b[0]) < a[2] + b[2] and abs(a[1] - b[1]) < a[3] + b[3]


def problems(graph: nx.Graph, positions: dict) -> list:
    """Nodes that an edge runs under or that a label covers: what the layout must not have."""
    found = []
    boxes = {n: (*positions[n], *half_size(graph, n)) for n in graph.nodes}
    labels = [(a, b, label_box(positions, a, b, k, d["label"])) for a, b, k, d in graph.edges(keys=True, data=True)]
    for node, box in boxes.items():
        for a, b, _ in graph.edges(data=True):
            if node not in (a, b) and segment_hits_box(positions[a], positions[b], box[:2], box[2:]):
                found.append(node)
        for other, second in boxes.items():
            if str(other) < str(node) and _boxes_overlap(box, second):
                found.append(node)
        for a, b, label in labels:
            if _boxes_overlap(box, label) and node not in (a, b):
                found.append(node)
    for i, (a, b, first) in enumerate(labels):
        for c, d, second in labels[i + 1:]:
            if _boxes_overlap(first, second):
                found.append(b if graph.nodes[b].get("kind") is not None else a)
    return found


def _layout(graph: nx.Graph) -> dict:
    """Columns in the style of the literature: fixed coordinates, no randomness, no system tool.

    Inputs on the left, index patterns, identities and defined tensors in the middle, params on
    the right; a primed copy (``X'``) sits mirrored below its original; hyperedge dots between the
    columns they join; open legs at the left and right borders. A deterministic local search then
    moves what an edge runs under or a label covers (tensors stay within ``SWAY`` of their column).
    """
    tensors = sorted((n for n in graph.nodes if n[0] == "t"), key=lambda n: n[1])
    rows: dict[float, int] = {}
    positions = {}
    for node in tensors:
        column = COLUMNS[graph.nodes[node]["kind"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        positions[node] = (column, -2.0 * row - 0.5 * column)
    for number, node in enumerate(sorted((n for n in graph.nodes if n[0] == "h"), key=str)):
        ends = [positions[m] for m in graph.neighbors(node) if m in positions]
        x = sum(p[0] for p in ends) / len(ends) if ends else 1.0
        x = x + 1.0 if abs(x - round(x / 2) * 2) < 0.5 else x
        y = sum(p[1] for p in ends) / len(ends) if ends else 0.0
        positions[node] = (x, y + 0.23 * number)
    taken: set[tuple[float, float]] = set()
    for node in sorted((n for n in graph.nodes if n[0] == "open"), key=str):
        ends = [positions[m] for m in graph.neighbors(node) if m in positions]
        x, y = ends[0] if ends else (0.0, 0.0)
        spot = (-1.6 if x < 2.0 else 5.6, y)  # level with its tensor, at the nearer border
        while spot in taken:
            spot = (spot[0], spot[1] - 0.6)
        taken.add(spot)
        positions[node] = spot
    return _repair(graph, positions)


SWAY = 0.6  # how far a tensor may leave its column to clear an edge
STEPS = [(dx, dy) for dy in (0.0, -0.5, 0.5, -1.0, 1.0, -1.5, 1.5, -2.5, 2.5, -3.5, 3.5) for dx in (0.0, -SWAY, SWAY)][1:]


def _repair(graph: nx.Graph, positions: dict, rounds: int = 60) -> dict:
    """Greedy: move one node (a hit one, else any) to the spot that lowers the number of problems most."""
    home = dict(positions)
    score = len(problems(graph, positions))
    while score and rounds:
        rounds -= 1
        hit = sorted(set(problems(graph, positions)), key=str)
        move = _best_move(graph, positions, home, hit, score) or _best_move(
            graph, positions, home, sorted(set(graph.nodes) - set(hit), key=str), score)
        if move is None:
            break
        score, node, spot = move
        positions = {**positions, node: spot}
    return positions


def _best_move(graph: nx.Graph, positions: dict, home: dict, nodes: list, score: int):
    """The (problems, node, spot) of the best single move of one of ``nodes``, if any improves."""
    best = None
    for node in nodes:
        x, y = positions[node]
        for dx, dy in STEPS:
            if (node[0] == "open" and dx) or (node[0] == "t" and abs(x + dx - home[node][0]) > SWAY + 1e-9):
                continue
            count = len(problems(graph, {**positions, node: (x + dx, y + dy)}))
            if count < (best[0] if best else score):
                best = (count, node, (x + dx, y + dy))
    return best


def to_dot(program: Program, term: int | None = None) -> str:
    """Graphviz source: one cluster per term."""
    lines = ["graph tnc {", '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];']
    for index, panel in enumerate(panels(program, term)):
        lines.append(f'  subgraph cluster_{index} {{ label="{panel.title}";')
        ids = {node: f"p{index}_{n}" for n, node in enumerate(sorted(panel.graph.nodes, key=str))}
        for node, data in sorted(panel.graph.nodes(data=True), key=lambda item: str(item[0])):
            kind = data.get("kind")
            if kind == "hyper":
                lines.append(f'    {ids[node]} [shape=point, width=0.08, label=""];')
            elif kind is None:
                lines.append(f'    {ids[node]} [shape=plaintext, label="{data["label"]}"];')
            else:
                lines.append(f'    {ids[node]} [shape={DOT_SHAPES[kind]}, label="{data["label"] if kind is not Kind.DELTA else ""}"];')
        for a, b, data in sorted(panel.graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1]), e[2]["label"])):
            colour = ', color="red", fontcolor="red"' if data["label"] in panel.cut else ""
            lines.append(f'    {ids[a]} -- {ids[b]} [label="{data["label"]}"{colour}];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(program: Program, format: str, term: int | None = None) -> bytes:
    """An SVG or PNG (``format`` is ``"svg"`` or ``"png"``) with one panel per term."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = panels(program, term)
    if not chosen:
        raise ValueError("there is no term to draw" + (f" with number {term}" if term else ""))
    columns = min(len(chosen), 2)
    rows = math.ceil(len(chosen) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 5.5 * rows), squeeze=False)
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, chosen):
        _draw_panel(ax, panel)
    figure.tight_layout()
    metadata = {"Date": None} if format == "svg" else {"Software": None}
    plt.rcParams["svg.hashsalt"] = "tnc"
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, metadata=metadata, dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _draw_panel(ax, panel: Panel) -> None:
    import matplotlib.patches as patches

    graph = panel.graph
    positions = _layout(graph)
    ax.set_title(panel.title, fontsize=10)
    ax.axis("off")
    ax.set_aspect("equal")
    for a, b, key, data in graph.edges(keys=True, data=True):
        (x0, y0), (x1, y1) = positions[a], positions[b]
        colour = "red" if data["label"] in panel.cut else "0.25"
        ax.plot([x0, x1], [y0, y1], color=colour, linewidth=1.4, zorder=1)
        x, y, _, _ = label_box(positions, a, b, key, data["label"])
        ax.text(x, y, data["label"], fontsize=8, color=colour, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"), zorder=3)
    for node, data in graph.nodes(data=True):
        x, y = positions[node]
        kind = data.get("kind")
        if kind is None:  # the end of an open leg, at the border
            ax.text(x, y, data["label"], fontsize=9, style="italic", ha="center", va="center", zorder=4,
                    color="red" if data["label"] in panel.cut else "black")
        elif kind in ("hyper", Kind.DELTA):
            ax.add_patch(patches.Circle((x, y), DOT, color="black", zorder=4))
        else:
            shape = {"o": patches.Circle((x, y), NODE), "s": patches.Rectangle((x - NODE, y - NODE), 2 * NODE, 2 * NODE),
                     "D": patches.RegularPolygon((x, y), 4, radius=NODE), "^": patches.RegularPolygon((x, y), 3, radius=NODE)}
            patch = shape[SHAPES[kind]]
            patch.set(facecolor=COLOURS[kind], edgecolor="black", linewidth=1.0, zorder=4)
            ax.add_patch(patch)
            ax.text(x, y, data["label"], fontsize=8 if len(data["label"]) <= 4 else 6, ha="center", va="center", zorder=5)
    left, right, bottom, top = canvas(graph, positions)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)


def canvas(graph: nx.Graph, positions: dict, margin: float = 0.3) -> tuple[float, float, float, float]:
    """Left, right, bottom, top of a panel: every node's box plus ``margin``."""
    xs = [positions[n][0] + s * half_size(graph, n)[0] for n in graph.nodes for s in (-1, 1)]
    ys = [positions[n][1] + s * half_size(graph, n)[1] for n in graph.nodes for s in (-1, 1)]
    return min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin
