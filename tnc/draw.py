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
import sympy

from tnc.ir.network import (
    Factor,
    Kind,
    Network,
    Product,
    Term,
    Window,
    axes_text,
    axis_text,
    rename_axis,
)
from tnc.ir.program import Program

SHAPES = {Kind.INPUT: "o", Kind.PARAM: "s", Kind.DEFINED: "D", Kind.PATTERN: "^", Kind.DELTA: "."}
COLOURS = {Kind.INPUT: "#cfe2f3", Kind.PARAM: "#fce5cd", Kind.DEFINED: "#d9ead3", Kind.PATTERN: "#ead1dc", Kind.DELTA: "black"}
DOT_SHAPES = {Kind.INPUT: "circle", Kind.PARAM: "box", Kind.DEFINED: "diamond", Kind.PATTERN: "triangle", Kind.DELTA: "point"}


@dataclass(frozen=True)
class Panel:
    """One term of one network, as a graph of tensors, hyperedge dots, group brackets and open-leg ends.

    ``graph.graph["mirror"]`` maps each node to its mirror image when the term is two copies of one
    subnetwork (``X`` and ``X'``): the second copy is drawn reflected about a horizontal axis.
    """

    title: str  # the output, e.g. ``A[g, (c k1 k2)]``
    coefficient: sympy.Expr
    graph: nx.Graph  # ("t", k) tensors, ("j", k, i) brackets, ("h", leg) hyperedges, ("open", leg) ends
    cut: frozenset[str]


def _leg_mirror(product: Product, open_legs: tuple[str, ...]) -> dict[str, str] | None:
    """The involution of legs that swaps the two occurrences of every tensor read twice, if it maps
    the product onto itself (each other factor onto itself, open legs onto open legs); else None."""
    nodes: dict[str, list[Factor]] = {}
    for factor in product.factors:
        nodes.setdefault(factor.tensor, []).append(factor)
    pairs = [found for found in nodes.values() if len(found) == 2]
    sigma: dict[str, str] = {}
    for first, second in pairs:
        shape = [(isinstance(axis, Window), len(axis)) for axis in first.axes]
        if shape != [(isinstance(axis, Window), len(axis)) for axis in second.axes]:
            return None
        for a, b in zip(first.legs, second.legs):
            if sigma.setdefault(a, b) != b or sigma.setdefault(b, a) != a:
                return None
    if not pairs:
        return None
    mapped = {leg: sigma.get(leg, leg) for leg in product.indices()}
    for found in nodes.values():
        images = [factor.renamed(mapped) for factor in found]
        if (len(found) == 2 and images[::-1] != found) or (len(found) != 2 and images != found):
            return None
    return mapped if {mapped[leg] for leg in open_legs if leg in mapped} <= set(open_legs) else None


def _node_mirror(product: Product, sigma: dict[str, str]) -> dict:
    """The mirror image of every drawn node, given the involution of legs."""
    mirror: dict = {}
    seen: dict[str, list[int]] = {}
    for node, factor in zip(product.nodes(), product.factors):
        seen.setdefault(factor.tensor, []).append(node[1])
    for numbers in seen.values():
        pairs = [(numbers[0], numbers[1]), (numbers[1], numbers[0])] if len(numbers) == 2 else [(k, k) for k in numbers]
        for k, image in pairs:
            mirror[("t", k)] = ("t", image)
            axes = product.graph.nodes[("f", image)]["factor"].axes
            for i, axis in enumerate(product.graph.nodes[("f", k)]["factor"].axes):
                mirror[("j", k, i)] = ("j", image, axes.index(rename_axis(axis, sigma)))
    for leg, image in sigma.items():
        mirror[("h", leg)], mirror[("open", leg)] = ("h", image), ("open", image)
    return mirror


def _grouped(axis: tuple[str, ...]) -> bool:
    return len(axis) > 1 and not isinstance(axis, Window)


def _panel(name: str, network: Network, term: Term, cut: frozenset[str]) -> Panel:
    graph = nx.MultiGraph()
    product = term.product
    ends: dict[str, list] = {}  # leg -> the nodes its line leaves from: a tensor, or its group's bracket
    for node, factor in zip(product.nodes(), product.factors):
        tensor = ("t", node[1])
        label = "δ" if factor.kind is Kind.DELTA else factor.tensor
        graph.add_node(tensor, label=label, kind=factor.kind, text=f"{factor.tensor}[{axes_text(factor.axes)}]")
        for i, axis in enumerate(factor.axes):
            end = tensor
            if _grouped(axis):
                end = ("j", node[1], i)
                graph.add_node(end, label="", kind="bracket")
                graph.add_edge(tensor, end, label=axis_text(axis), group=True)
            for leg in axis:
                if end not in ends.setdefault(leg, []) and tensor not in ends[leg]:
                    ends[leg].append(end)
    for leg in sorted(product.indices()):
        legs = ends[leg] + ([("open", leg)] if leg in network.legs else [])
        if leg in network.legs:
            graph.add_node(("open", leg), label=leg, kind=None)
        if len(legs) == 2:
            graph.add_edge(legs[0], legs[1], label=leg)
        else:
            graph.add_node(("h", leg), label="", kind="hyper")
            for end in legs:
                graph.add_edge(("h", leg), end, label=leg)
    sigma = _leg_mirror(product, network.legs)
    graph.graph["mirror"] = {n: m for n, m in _node_mirror(product, sigma).items() if n in graph} if sigma else {}
    return Panel(f"{name}[{axes_text(network.axes)}]", term.coefficient, graph, cut)


def panels(program: Program, term: int | None = None) -> list[Panel]:
    """Every term of every output (``term``: only that one, counting from 1)."""
    found = []
    for name in program.outputs:
        network = program.definitions[name]
        cut = frozenset(getattr(network, "cut", ()))
        for number, item in enumerate(network.terms, start=1):
            if term is None or number == term:
                found.append(_panel(name, network, item, cut))
    return found


COLUMNS = {Kind.INPUT: 0.0, Kind.DEFINED: 2.0, Kind.PATTERN: 2.0, Kind.DELTA: 2.0, Kind.PARAM: 4.0}
NODE = 0.3  # half-size of a tensor's box in layout units
DOT = 0.08  # half-size of a hyperedge dot or an open leg's label height


def half_size(graph: nx.Graph, node) -> tuple[float, float]:
    """Half width and height of what is drawn at ``node`` (a tensor, a dot, a bracket, an open leg's name)."""
    kind = graph.nodes[node].get("kind")
    if kind is None:
        return 0.06 * len(graph.nodes[node]["label"]) + 0.06, DOT + 0.04
    return (DOT, DOT) if kind in ("hyper", "bracket", Kind.DELTA) else (NODE, NODE)


FRACTIONS = (0.4, 0.6, 0.25, 0.75, 0.5, 0.33, 0.67)  # where along an edge its label sits, by parallel edge
BRACKET = 1.1  # how far a group's bracket sits from its tensor


def _fused(a, b) -> bool:
    """Whether ``a``–``b`` is a group's fused leg (a tensor and its own bracket)."""
    return {a[0], b[0]} == {"t", "j"} and a[1] == b[1]


def label_box(positions: dict, a, b, key: int, leg: str) -> tuple[float, float, float, float]:
    """Centre and half sizes of the label of the ``key``-th edge ``a``–``b`` (parallel labels spread out)."""
    (x0, y0), (x1, y1) = positions[a], positions[b]
    t = 0.55 if _fused(a, b) else FRACTIONS[key % len(FRACTIONS)]
    if _fused(a, b) and a[0] == "j":
        t = 1 - t
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


def _toward(graph: nx.Graph, positions: dict, bracket) -> tuple[float, float]:
    """Where a group's members lead: the mean of the tensors (or borders) at their other ends."""
    tensor = ("t", bracket[1])
    x, y = positions[tensor]
    targets = []
    for other in graph.neighbors(bracket):
        if other == tensor:
            continue
        far = [m for m in graph.neighbors(other) if m not in (bracket, tensor)] if other[0] == "h" else [other]
        for m in far:
            m = ("t", m[1]) if m[0] == "j" else m
            targets.append(positions[m] if m in positions else (-1.6 if x < 2.0 else 5.6, y))
    tx = sum(p[0] for p in targets) / len(targets) - x if targets else 1.0
    ty = sum(p[1] for p in targets) / len(targets) - y if targets else 0.0
    length = math.hypot(tx, ty) or 1.0
    return (x + BRACKET * tx / length, y + BRACKET * ty / length) if math.hypot(tx, ty) else (x + BRACKET, y)


def _layout(graph: nx.Graph) -> dict:
    """Columns in the style of the literature: fixed coordinates, no randomness, no system tool.

    Inputs on the left, index patterns, identities and defined tensors in the middle, params on
    the right; a group's bracket a little way towards where its members lead; hyperedge dots
    between the columns they join; open legs at the left and right borders. When the term is two
    copies of one subnetwork, the second copy is the first's mirror image below a horizontal axis
    (what both copies share sits on the axis). A deterministic local search then moves what an
    edge runs under or a label covers (tensors stay within ``SWAY`` of their column, mirror images
    move together).
    """
    mirror = graph.graph.get("mirror", {})
    tensors = sorted((n for n in graph.nodes if n[0] == "t"), key=lambda n: n[1])
    upper = [n for n in tensors if mirror.get(n, n)[1] > n[1] or not mirror]
    rows: dict[float, int] = {}
    positions = {}
    for node in upper:
        column = COLUMNS[graph.nodes[node]["kind"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        positions[node] = (column, -2.0 * row - 0.5 * column)
    axis = min((p[1] for p in positions.values()), default=0.0) - 1.5
    on_axis: dict[float, int] = {}
    for node in tensors:
        if node not in positions and mirror.get(node) == node:
            column = COLUMNS[graph.nodes[node]["kind"]]
            count = on_axis.get(column, 0)
            on_axis[column] = count + 1
            positions[node] = (column + (0.0, -SWAY, SWAY)[count % 3], axis)
        elif node not in positions:
            x, y = positions[mirror[node]]
            positions[node] = (x, 2 * axis - y)
    for node in sorted((n for n in graph.nodes if n[0] == "j"), key=str):
        positions[node] = _toward(graph, positions, node)
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
            spot = (spot[0], spot[1] + (0.6 if mirror and y > axis else -0.6))
        taken.add(spot)
        positions[node] = spot
    if mirror:
        positions = _symmetric(graph, positions, axis)
    return _repair(graph, positions, axis)


def _symmetric(graph: nx.Graph, positions: dict, axis: float) -> dict:
    """Each node above the axis (or first by name) placed, its image reflected; what is its own
    image on the axis (open legs at the border, around the axis)."""
    mirror = graph.graph["mirror"]
    placed = dict(positions)
    on_axis: dict[float, int] = {}
    for node in sorted(graph.nodes, key=lambda n: (n[0] != "open", str(n))):
        image = mirror[node]
        x, y = positions[node]
        if image == node and node[0] != "t":  # spread along the axis (hyperedges) or the border (open legs)
            count = on_axis.get((node[0], round(x, 6)), 0)
            on_axis[(node[0], round(x, 6))] = count + 1
            step = ((count + 1) // 2) * (-1) ** count
            placed[node] = (x, axis + 0.6 * step) if node[0] == "open" else (x + 0.45 * step, axis)
            if node[0] == "h" and ("open", node[1]) in graph:  # level with its open leg
                placed[node] = (x, placed[("open", node[1])][1])
        elif y > positions[image][1] or (y == positions[image][1] and str(node) < str(image)):
            y = y if abs(y - axis) > 0.2 else axis + 0.4
            placed[node], placed[image] = (x, y), (x, 2 * axis - y)
    return placed


SWAY = 0.6  # how far a tensor may leave its column to clear an edge
STEPS = [(dx, dy) for dy in (0.0, -0.5, 0.5, -1.0, 1.0, -1.5, 1.5, -2.5, 2.5, -3.5, 3.5) for dx in (0.0, -SWAY, SWAY)][1:]


def _repair(graph: nx.Graph, positions: dict, axis: float, rounds: int = 60) -> dict:
    """Greedy: move one node (a hit one, else any) to the spot that lowers the number of problems most."""
    home = dict(positions)
    score = len(problems(graph, positions))
    while score and rounds:
        rounds -= 1
        hit = sorted(set(problems(graph, positions)), key=str)
        move = _best_move(graph, positions, home, hit, score, axis) or _best_move(
            graph, positions, home, sorted(set(graph.nodes) - set(hit), key=str), score, axis)
        if move is None:
            break
        score, positions = move
    return positions


def _on_axis(graph: nx.Graph, node) -> bool:
    """Whether a node that is its own mirror image stays on the axis (not an open leg or its hyperedge)."""
    return node[0] != "open" and not (node[0] == "h" and ("open", node[1]) in graph)


def _allowed(graph: nx.Graph, node, spot: tuple[float, float], home: dict, axis: float) -> bool:
    """Open legs stay at their border, tensors near their column, brackets near their tensor;
    what is its own mirror image stays on the axis, and nothing crosses it."""
    (x, y), (hx, hy) = spot, home[node]
    image = graph.graph.get("mirror", {}).get(node)
    if image == node and _on_axis(graph, node) and abs(y - axis) > 1e-9:
        return False
    if image is not None and image != node and (y - axis) * (hy - axis) <= 0:
        return False
    if node[0] == "open":
        return x == hx
    if node[0] == "t":
        return abs(x - COLUMNS[graph.nodes[node]["kind"]]) <= SWAY + 1e-9
    return node[0] != "j" or (abs(x - hx) <= SWAY + 1e-9 and abs(y - hy) <= SWAY + 1e-9)


def _best_move(graph: nx.Graph, positions: dict, home: dict, nodes: list, score: int, axis: float):
    """The (problems, positions) after the best single move of one of ``nodes`` (with its mirror
    image), if any improves."""
    mirror = graph.graph.get("mirror", {})
    best = None
    for node in nodes:
        x, y = positions[node]
        for dx, dy in STEPS:
            spot = (x + dx, y + dy)
            if not _allowed(graph, node, spot, home, axis):
                continue
            moved = {**positions, node: spot}
            if mirror and mirror[node] != node:
                moved[mirror[node]] = (x + dx, 2 * axis - y - dy)
            count = len(problems(graph, moved))
            if count < (best[0] if best else score):
                best = (count, moved)
    return best


def to_dot(program: Program, term: int | None = None) -> str:
    """Graphviz source: one cluster per term."""
    lines = ["graph tnc {", '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];']
    for index, panel in enumerate(panels(program, term)):
        coefficient = "" if panel.coefficient == 1 else f"  ×  {panel.coefficient}"
        lines.append(f'  subgraph cluster_{index} {{ label="{panel.title}{coefficient}";')
        ids = {node: f"p{index}_{n}" for n, node in enumerate(sorted(panel.graph.nodes, key=str))}
        for node, data in sorted(panel.graph.nodes(data=True), key=lambda item: str(item[0])):
            kind = data.get("kind")
            if kind in ("hyper", "bracket"):
                lines.append(f'    {ids[node]} [shape=point, width={0.08 if kind == "hyper" else 0.04}, label=""];')
            elif kind is None:
                lines.append(f'    {ids[node]} [shape=plaintext, label="{data["label"]}"];')
            else:
                lines.append(f'    {ids[node]} [shape={DOT_SHAPES[kind]}, label="{data["label"] if kind is not Kind.DELTA else ""}"];')
        for a, b, data in sorted(panel.graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1]), e[2]["label"])):
            colour = ', color="red", fontcolor="red"' if data["label"] in panel.cut else ""
            width = ", penwidth=3" if data.get("group") else ""
            lines.append(f'    {ids[a]} -- {ids[b]} [label="{data["label"]}"{colour}{width}];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


SCALE = 0.75  # inches per layout unit: one scale for every panel, so the boxes above fit the fonts below
GAP = 0.4  # between a panel and the text beside it, in layout units
CHAR = 0.13  # width of one character of a coefficient or an output's name, in layout units


@dataclass(frozen=True)
class Placed:
    """A panel with its layout, shifted by ``offset`` to its place in the picture."""

    panel: Panel
    positions: dict
    offset: tuple[float, float]

    def box(self) -> tuple[float, float, float, float]:
        """Left, right, bottom, top of the panel in the picture."""
        left, right, bottom, top = canvas(self.panel.graph, self.positions)
        return left + self.offset[0], right + self.offset[0], bottom + self.offset[1], top + self.offset[1]


@dataclass(frozen=True)
class Text:
    """An output's name or a coefficient, centred at ``x, y``, with its half sizes."""

    x: float
    y: float
    text: str
    half: tuple[float, float]

    def box(self) -> tuple[float, float, float, float]:
        return self.x - self.half[0], self.x + self.half[0], self.y - self.half[1], self.y + self.half[1]


def _coefficient(coefficient: sympy.Expr, first: bool) -> str:
    """``c ·`` before a term: ``+ c ·`` after the first, ``− c ·`` for a negative one, no ``1 ·``."""
    negative = coefficient.could_extract_minus_sign()
    size = -coefficient if negative else coefficient
    body = "" if size == 1 else f"{size} ·"
    sign = ("−" if negative else "") if first else ("−" if negative else "+")
    return " ".join(part for part in (sign, body) if part)


def _text(x: float, y: float, text: str) -> Text:
    return Text(x + CHAR * len(text) / 2, y, text, (CHAR * len(text) / 2, 0.2))


def arrange(chosen: list[Panel]) -> tuple[list[Placed], list[Text]]:
    """One row per output: its name above, then ``c1 · [term 1] + c2 · [term 2] ...`` side by side."""
    placed: list[Placed] = []
    texts: list[Text] = []
    top = 0.0
    rows: dict[str, list[Panel]] = {}
    for panel in chosen:
        rows.setdefault(panel.title, []).append(panel)
    for title, row in rows.items():
        texts.append(_text(0.0, top - 0.2, f"{title} ="))
        layouts = [(panel, _layout(panel.graph)) for panel in row]
        boxes = [canvas(panel.graph, positions) for panel, positions in layouts]
        height = max(box[3] - box[2] for box in boxes)
        centre = top - 0.5 - height / 2
        x = 0.0
        for number, ((panel, positions), (left, right, bottom, top_)) in enumerate(zip(layouts, boxes)):
            word = _coefficient(panel.coefficient, number == 0)
            if word:
                texts.append(_text(x, centre, word))
                x += CHAR * len(word) + GAP
            placed.append(Placed(panel, positions, (x - left, centre - (bottom + top_) / 2)))
            x += right - left + GAP
        top = centre - height / 2 - 0.6
    return placed, texts


def render(program: Program, format: str, term: int | None = None) -> bytes:
    """An SVG or PNG (``format`` is ``"svg"`` or ``"png"``): one row of panels per output."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = panels(program, term)
    if not chosen:
        raise ValueError("there is no term to draw" + (f" with number {term}" if term else ""))
    placed, texts = arrange(chosen)
    boxes = [item.box() for item in [*placed, *texts]]
    left, right = min(b[0] for b in boxes) - 0.2, max(b[1] for b in boxes) + 0.2
    bottom, top = min(b[2] for b in boxes) - 0.2, max(b[3] for b in boxes) + 0.2
    figure = plt.figure(figsize=((right - left) * SCALE, (top - bottom) * SCALE))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    for item in texts:
        ax.text(item.x, item.y, item.text, fontsize=11, ha="center", va="center")
    for item in placed:
        _draw_panel(ax, item)
    metadata = {"Date": None} if format == "svg" else {"Software": None}
    plt.rcParams["svg.hashsalt"] = "tnc"
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, metadata=metadata, dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _clipped(p: tuple[float, float], q: tuple[float, float], half: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from ``p`` enters the box ``q`` ± ``half`` (an open leg stops at its name)."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    s = min(half[0] / abs(dx) if dx else math.inf, half[1] / abs(dy) if dy else math.inf, 1.0)
    return q[0] - s * dx, q[1] - s * dy


def _draw_panel(ax, item: Placed) -> None:
    import matplotlib.patches as patches

    panel, graph = item.panel, item.panel.graph
    positions = {n: (x + item.offset[0], y + item.offset[1]) for n, (x, y) in item.positions.items()}
    for a, b, key, data in graph.edges(keys=True, data=True):
        ends = [positions[a], positions[b]]
        for i, node in enumerate((a, b)):
            if node[0] == "open":
                ends[i] = _clipped(ends[1 - i], ends[i], half_size(graph, node))
        colour = "red" if data["label"] in panel.cut else "0.25"
        ax.plot(*zip(*ends), color=colour, linewidth=4.0 if data.get("group") else 1.4, zorder=1,
                solid_capstyle="butt")
        x, y, _, _ = label_box(positions, a, b, key, data["label"])
        ax.text(x, y, data["label"], fontsize=8, color=colour, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"), zorder=3)
    for node, data in graph.nodes(data=True):
        x, y = positions[node]
        kind = data.get("kind")
        if kind is None:  # the end of an open leg, at the border
            ax.text(x, y, data["label"], fontsize=9, style="italic", ha="center", va="center", zorder=4,
                    color="red" if data["label"] in panel.cut else "black")
        elif kind == "bracket":  # a bar across the fused leg, where the group splits into its members
            tx, ty = positions[("t", node[1])]
            length = math.hypot(x - tx, y - ty) or 1.0
            nx_, ny_ = -(y - ty) / length * 0.16, (x - tx) / length * 0.16
            ax.plot([x - nx_, x + nx_], [y - ny_, y + ny_], color="black", linewidth=2.5, zorder=4,
                    solid_capstyle="butt")
        elif kind in ("hyper", Kind.DELTA):
            ax.add_patch(patches.Circle((x, y), DOT, color="black", zorder=4))
        else:
            shape = {"o": patches.Circle((x, y), NODE), "s": patches.Rectangle((x - NODE, y - NODE), 2 * NODE, 2 * NODE),
                     "D": patches.RegularPolygon((x, y), 4, radius=NODE), "^": patches.RegularPolygon((x, y), 3, radius=NODE)}
            patch = shape[SHAPES[kind]]
            patch.set(facecolor=COLOURS[kind], edgecolor="black", linewidth=1.0, zorder=4)
            ax.add_patch(patch)
            ax.text(x, y, data["label"], fontsize=8 if len(data["label"]) <= 4 else 6, ha="center", va="center", zorder=5)


def canvas(graph: nx.Graph, positions: dict, margin: float = 0.3) -> tuple[float, float, float, float]:
    """Left, right, bottom, top of a panel: every node's box plus ``margin``."""
    xs = [positions[n][0] + s * half_size(graph, n)[0] for n in graph.nodes for s in (-1, 1)]
    ys = [positions[n][1] + s * half_size(graph, n)[1] for n in graph.nodes for s in (-1, 1)]
    return min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin
