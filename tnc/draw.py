"""``tnc draw``: tensor-network diagrams in the style of the literature, as SVG, PNG or DOT.

Tensors are labelled shapes (inputs circles, params squares, defined tensors diamonds, index
patterns triangles, identities small black dots), every leg is a line labelled with its index,
a leg joining three or more tensors meets at a black hyperedge dot, and open legs dangle to the
border. Legs a derivative cut open are drawn in red. Layout: Graphviz when ``dot`` is on the
PATH, else a seeded spring layout (networkx), so the same file always gives the same picture.
"""

from __future__ import annotations

import math
import shutil
import subprocess
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


def _layout(graph: nx.Graph) -> dict:
    if shutil.which("dot"):
        try:
            return _graphviz_layout(graph)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    positions, offset = {}, 0.0
    simple = nx.Graph(graph)
    components = sorted(nx.connected_components(simple), key=lambda c: (-len(c), sorted(map(str, c))))
    for component in components:  # each piece laid out on its own, then side by side
        piece = nx.Graph()  # in the graph's node order: a subgraph view would iterate the set's (hash) order
        piece.add_nodes_from(node for node in simple if node in component)
        piece.add_edges_from(edge for edge in simple.edges if edge[0] in component)
        if len(piece) == 1:
            local = {next(iter(component)): (0.0, 0.0)}
        else:
            local = nx.spring_layout(piece, seed=7, k=1.6 / math.sqrt(len(piece)), iterations=200)
        xs = [p[0] for p in local.values()]
        ys = [p[1] for p in local.values()]
        scale = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9) if len(piece) > 1 else 1.0
        width = (max(xs) - min(xs)) / scale if len(piece) > 1 else 0.0
        size = math.sqrt(len(piece) / len(simple))  # bigger pieces get more room
        for node, (x, y) in local.items():
            positions[node] = (offset + (x - min(xs)) / scale * size, (y - (min(ys) + max(ys)) / 2) / scale * size)
        offset += width * size + 0.35
    return positions


def _graphviz_layout(graph: nx.Graph) -> dict:
    ids = {node: f"n{number}" for number, node in enumerate(sorted(graph.nodes, key=str))}
    lines = ["graph G {", "  layout=neato; overlap=false;"]
    lines += [f"  {ids[node]};" for node in graph.nodes]
    lines += [f"  {ids[a]} -- {ids[b]};" for a, b in graph.edges()]
    plain = subprocess.run(["dot", "-Kneato", "-Tplain"], input="\n".join(lines + ["}"]), capture_output=True, text=True, timeout=20, check=True).stdout
    back = {v: k for k, v in ids.items()}
    positions = {}
    for line in plain.splitlines():
        parts = line.split()
        if parts and parts[0] == "node":
            positions[back[parts[1]]] = (float(parts[2]), float(parts[3]))
    if len(positions) != len(graph):
        raise ValueError("graphviz dropped nodes")
    return positions


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
    graph = panel.graph
    positions = _layout(graph)
    ax.set_title(panel.title, fontsize=10)
    ax.axis("off")
    ax.set_aspect("equal")
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    for a, b, data in graph.edges(data=True):
        (x0, y0), (x1, y1) = positions[a], positions[b]
        colour = "red" if data["label"] in panel.cut else "0.25"
        ax.plot([x0, x1], [y0, y1], color=colour, linewidth=1.4, zorder=1)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, data["label"], fontsize=8, color=colour, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"), zorder=3)
    for node, data in graph.nodes(data=True):
        x, y = positions[node]
        kind = data.get("kind")
        if kind == "hyper":
            ax.scatter([x], [y], s=30, color="black", zorder=4)
        elif kind is None:  # the end of an open leg
            ax.text(x, y, data["label"], fontsize=9, style="italic", ha="center", va="center", zorder=4,
                    color="red" if data["label"] in panel.cut else "black")
        else:
            size = 60 if kind is Kind.DELTA else 900
            ax.scatter([x], [y], s=size, marker=SHAPES[kind], color=COLOURS[kind], edgecolors="black", linewidths=1.0, zorder=4)
            if kind is not Kind.DELTA:
                ax.text(x, y - 0.0 * span, data["label"], fontsize=9, ha="center", va="center", zorder=5)
    pad = 0.15 * span
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
