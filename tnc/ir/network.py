"""Tensor networks as graphs: a product is a bipartite networkx multigraph, a network a weighted sum.

Factor nodes ``("f", k)`` carry a :class:`Factor`; index nodes ``("i", name)`` are the hyperedges
that join every leg with that index name; an edge per leg, keyed by its position in the factor.
A product's open legs are not stored in the graph: they are the network's result legs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Iterator

import networkx as nx
import sympy

Axes = tuple[tuple[str, ...], ...]


class Kind(str, Enum):
    INPUT = "input"
    PARAM = "param"
    PATTERN = "pattern"
    DEFINED = "defined"
    DELTA = "delta"  # identity / copy tensor: 1 where all its legs agree
    SAMPLED = "sampled"  # the kept slices of a tensor (tensor dropout), drawn by the generated code


class Window(tuple):
    """A storage axis read through a sliding window: the pair of legs ``(outer, inner)`` reads
    position ``stride*outer + dilation*inner - padding`` of the axis, and zero outside it.

    Written ``S*o + D*k - P`` in a factor; it is what an index pattern becomes when the rewrite
    passes contract it away (a reshape when kernel = stride, a strided slice when stride > kernel).
    Lowering alone (never a rewrite, so never printed) makes windows with another padding
    ``mode`` (reflect, replicate, circular): outside the axis they read what F.pad's mode reads.
    """

    def __new__(cls, outer: str, inner: str, stride: int, dilation: int = 1, padding: int = 0, mode: str = "zeros") -> "Window":
        window = super().__new__(cls, (outer, inner))
        window.stride, window.dilation, window.padding, window.mode = stride, dilation, padding, mode
        return window

    def key(self) -> tuple:
        return (tuple(self), self.stride, self.dilation, self.padding, self.mode)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Window) and self.key() == other.key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"Window({self[0]!r}, {self[1]!r}, stride={self.stride}, dilation={self.dilation}, padding={self.padding})"

    def text(self) -> str:
        outer, inner = self
        parts = [f"{self.stride}*{outer}" if self.stride != 1 else outer]
        parts.append(f" + {self.dilation}*{inner}" if self.dilation != 1 else f" + {inner}")
        if self.padding:
            parts.append(f" - {self.padding}")
        return "".join(parts)


def rename_axis(axis: tuple[str, ...], mapping: dict[str, str]) -> tuple[str, ...]:
    """An axis with its legs renamed; a window stays a window."""
    if isinstance(axis, Window):
        return Window(mapping.get(axis[0], axis[0]), mapping.get(axis[1], axis[1]), axis.stride, axis.dilation, axis.padding, axis.mode)
    return tuple(mapping.get(n, n) for n in axis)


def axis_text(axis: tuple[str, ...]) -> str:
    if isinstance(axis, Window):
        return axis.text()
    return axis[0] if len(axis) == 1 else f"({' '.join(axis)})"


def axes_text(axes: Axes) -> str:
    return ", ".join(axis_text(axis) for axis in axes)


@dataclass(frozen=True)
class Factor:
    """One occurrence of a tensor in a product, with its legs grouped into storage axes."""

    tensor: str
    kind: Kind
    axes: Axes

    @property
    def legs(self) -> tuple[str, ...]:
        return tuple(name for axis in self.axes for name in axis)

    def regrouped(self, leg: str, legs: tuple[str, ...]) -> "Factor":
        """``leg`` replaced by the row-major group ``legs`` inside whichever axis holds it (the
        same storage, read with finer legs); a window axis is left as it is."""
        axes = tuple(
            axis if isinstance(axis, Window) else tuple(n for name in axis for n in (legs if name == leg else (name,)))
            for axis in self.axes
        )
        return Factor(self.tensor, self.kind, axes)

    def renamed(self, mapping: dict[str, str]) -> "Factor":
        return Factor(self.tensor, self.kind, tuple(rename_axis(axis, mapping) for axis in self.axes))


def flatten(axes: Axes) -> tuple[str, ...]:
    return tuple(name for axis in axes for name in axis)


class Product:
    """A product of factors; hyperedges (index nodes) join every leg that shares an index name."""

    def __init__(self, factors: Iterable[Factor] = ()) -> None:
        self.graph = nx.MultiGraph()
        self._next = 0
        self._nodes: list[tuple[str, int]] | None = None  # memo of nodes(), reset by add/remove
        self.memo: dict = {}  # what rules compute from the product alone, reset by add/remove
        for factor in factors:
            self.add(factor)

    def add(self, factor: Factor) -> tuple[str, int]:
        self._nodes, self.memo = None, {}
        node = ("f", self._next)
        self._next += 1
        self.graph.add_node(node, factor=factor)
        for position, name in enumerate(factor.legs):
            self.graph.add_node(("i", name), name=name)
            self.graph.add_edge(node, ("i", name), key=position)
        return node

    def remove(self, node: tuple[str, int]) -> Factor:
        self._nodes, self.memo = None, {}
        factor = self.graph.nodes[node]["factor"]
        self.graph.remove_node(node)
        for name in set(factor.legs):
            if self.graph.degree(("i", name)) == 0:
                self.graph.remove_node(("i", name))
        return factor

    def nodes(self) -> list[tuple[str, int]]:
        """Factor nodes in the order they were added."""
        if self._nodes is None:
            self._nodes = sorted(n for n in self.graph.nodes if n[0] == "f")
        return list(self._nodes)

    @property
    def factors(self) -> list[Factor]:
        return [self.graph.nodes[n]["factor"] for n in self.nodes()]

    def __iter__(self) -> Iterator[Factor]:
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.nodes())

    def indices(self) -> set[str]:
        return {data["name"] for n, data in self.graph.nodes(data=True) if n[0] == "i"}

    def carriers(self, index: str) -> list[tuple[str, int]]:
        """The factor nodes with a leg on ``index`` (a hyperedge's endpoints), once each."""
        node = ("i", index)
        return sorted(set(self.graph.neighbors(node))) if node in self.graph else []

    def copy(self) -> "Product":
        return Product(self.factors)

    def renamed(self, mapping: dict[str, str]) -> "Product":
        return Product(f.renamed(mapping) for f in self.factors)


@dataclass
class Term:
    coefficient: sympy.Expr
    product: Product


@dataclass
class Network:
    """``sum_t coefficient_t * product_t`` with result legs ``axes`` (grouped as stored)."""

    axes: Axes
    terms: list[Term] = field(default_factory=list)
    cut: tuple[str, ...] = ()  # result legs a derivative cut open (drawn in red); not printed

    @property
    def legs(self) -> tuple[str, ...]:
        return flatten(self.axes)

    def tensors(self) -> set[str]:
        return {f.tensor for term in self.terms for f in term.product if f.kind is not Kind.DELTA}

    def reads_no_data(self) -> bool:
        """Whether it is 0 or a constant of deltas and patterns (no input, param or definition)."""
        return all(f.kind in (Kind.DELTA, Kind.PATTERN) for term in self.terms for f in term.product)
