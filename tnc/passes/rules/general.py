"""General tensor-network rules: zero terms, identities, equal terms, size-1 legs, fused legs."""

from __future__ import annotations

import networkx as nx
import sympy

from tnc.ir.network import Factor, Kind, Network, Product, Term, Window, axes_text
from tnc.ir.program import Program
from tnc.ir.sizes import is_zero
from tnc.passes.deltas import eliminate_one
from tnc.passes.fresh import primed
from tnc.passes.rules.base import Rewrite, Rule, equal, replace_term


def find_zero_terms(program: Program, network: Network) -> Rewrite | None:
    for position, term in enumerate(network.terms):
        if is_zero(program.concrete(term.coefficient)):
            terms = network.terms[:position] + network.terms[position + 1 :]
            return Rewrite(Network(network.axes, terms), f"term {position + 1}", "its coefficient is 0")
    return None


def _has_delta(product: Product) -> bool:
    if "delta" not in product.memo:
        product.memo["delta"] = any(f.kind is Kind.DELTA for f in product.factors)
    return product.memo["delta"]


def find_deltas(program: Program, network: Network) -> Rewrite | None:
    legs = set(network.legs)
    for position, term in enumerate(network.terms):
        if not _has_delta(term.product):
            continue
        simpler = eliminate_one(program, term, legs)
        if simpler is not None:
            gone = [f for f in term.product if f.kind is Kind.DELTA]
            return Rewrite(
                replace_term(network, position, simpler),
                f"term {position + 1}, delta[{axes_text(gone[0].axes)}]" if gone else f"term {position + 1}",
                "a delta with a summed leg that another factor carries is a renaming",
            )
    return None


def _shape(factor: Factor) -> tuple:
    return (factor.tensor, factor.kind, tuple((type(a).__name__, len(a), getattr(a, "stride", 0), getattr(a, "dilation", 0), getattr(a, "padding", 0)) for a in factor.axes))


def _labelled(program: Program, product: Product, result_legs: tuple[str, ...]) -> nx.MultiGraph:
    graph = product.graph.copy()
    for node, data in graph.nodes(data=True):
        if node[0] == "f":
            data["label"] = _shape(data["factor"])
        else:
            name = data["name"]
            data["label"] = ("open", name) if name in result_legs else ("summed", program.size(name))
    return graph


def _shapes(product: Product) -> tuple:
    """The factors' shapes, sorted: equal for products that :func:`same_product` may match."""
    if "shapes" not in product.memo:
        product.memo["shapes"] = tuple(sorted(map(_shape, product.factors)))
    return product.memo["shapes"]


def same_product(program: Program, a: Product, b: Product, result_legs: tuple[str, ...]) -> bool:
    """Equal up to renaming summed legs of equal sizes: an isomorphism of the labelled graphs
    (factors by tensor and grouping, legs by position)."""
    if _shapes(a) != _shapes(b):
        return False
    return nx.is_isomorphic(
        _labelled(program, a, result_legs),
        _labelled(program, b, result_legs),
        node_match=lambda x, y: x["label"] == y["label"],
        edge_match=lambda x, y: set(x) == set(y),
    )


def find_merge_terms(program: Program, network: Network) -> Rewrite | None:
    alike: dict[tuple, list[int]] = {}  # terms by the shapes of their factors, which a match needs
    for position, term in enumerate(network.terms):
        alike.setdefault(_shapes(term.product), []).append(position)
    for first, a in enumerate(network.terms):
        # every later term equal to this one joins it at once (isomorphism is an equivalence)
        equal = [
            n for n in alike[_shapes(a.product)]
            if n > first and same_product(program, a.product, network.terms[n].product, network.legs)
        ]
        if equal:
            merged = Term(sympy.Add(a.coefficient, *(network.terms[n].coefficient for n in equal)), a.product)
            gone = set(equal)
            terms = [merged if n == first else t for n, t in enumerate(network.terms) if n not in gone]
            numbers = [str(n + 1) for n in (first, *equal)]
            return Rewrite(
                Network(network.axes, terms),
                f"terms {', '.join(numbers[:-1])} and {numbers[-1]}",
                f"the {'two' if len(numbers) == 2 else len(numbers)} products are equal up to the names of summed legs (isomorphic graphs)",
            )
    return None


def _grouped_everywhere(term: Term, leg: str) -> bool:
    """``leg`` sits only inside groups of two or more legs (never alone, never in a window)."""
    return all(
        not isinstance(a, Window) and any(n != leg for n in a) for f in term.product for a in f.axes if leg in a
    )


def find_squeeze(program: Program, network: Network) -> Rewrite | None:
    for position, term in enumerate(network.terms):
        for leg in sorted(term.product.indices() - set(network.legs)):
            if equal(program, program.size(leg), 1) and _grouped_everywhere(term, leg):
                factors = [
                    Factor(f.tensor, f.kind, tuple(a if isinstance(a, Window) else tuple(n for n in a if n != leg) for a in f.axes))
                    for f in term.product
                ]
                why = f"{leg} has size 1 and is summed: dropping it from its groups changes no storage"
                return Rewrite(replace_term(network, position, Term(term.coefficient, Product(factors))), f"term {position + 1}, {leg}", why)
    return None


def _pairs(term: Term, result_legs: tuple[str, ...]) -> list[tuple[str, str]]:
    """Summed legs (a, b) that stand next to each other, in this order, in every group holding either."""
    found = []
    for factor in term.product:
        for axis in factor.axes:
            if isinstance(axis, Window):
                continue
            for a, b in zip(axis, axis[1:]):
                if a != b and a not in result_legs and b not in result_legs and (a, b) not in found:
                    found.append((a, b))

    def together(a: str, b: str) -> bool:
        for factor in term.product:
            for axis in factor.axes:
                if a not in axis and b not in axis:
                    continue
                if isinstance(axis, Window) or list(axis).count(a) != 1 or list(axis).count(b) != 1:
                    return False
                if list(axis).index(b) != list(axis).index(a) + 1:
                    return False
        return True

    return [(a, b) for a, b in found if together(a, b)]


def find_merge_legs(program: Program, network: Network) -> Rewrite | None:
    for position, term in enumerate(network.terms):
        for a, b in _pairs(term, network.legs):
            base = f"{a}_{b}".replace("'", "_")
            fused = primed(base, program.index_sizes.keys()) if base in program.index_sizes else base
            program.index_sizes[fused] = program.size(a) * program.size(b)
            factors = [
                Factor(f.tensor, f.kind, tuple(a_ if isinstance(a_, Window) else _fuse(a_, a, b, fused) for a_ in f.axes))
                for f in term.product
            ]
            why = f"{a} and {b} are summed and always stand together as ({a} {b}): one leg {fused} of size {program.size(fused)}"
            return Rewrite(replace_term(network, position, Term(term.coefficient, Product(factors))), f"term {position + 1}", why)
    return None


def _fuse(axis: tuple[str, ...], a: str, b: str, fused: str) -> tuple[str, ...]:
    if a not in axis:
        return axis
    at = axis.index(a)
    return axis[:at] + (fused,) + axis[at + 2 :]


ZERO_TERMS = Rule("zero-terms", "a term's coefficient is 0", "0 * anything = 0", find_zero_terms)
DELTAS = Rule(
    "deltas",
    "delta[a, b] where a is summed and carried by another factor (or a trace of a summed leg)",
    "sum_a delta[a, b] f(a) = f(b): the identity is a renaming",
    find_deltas,
)
MERGE_TERMS = Rule(
    "merge-terms",
    "two or more terms whose products are isomorphic (same factors and groupings, summed legs of equal sizes, result legs fixed)",
    "c1 * T + c2 * T + ... = (c1 + c2 + ...) * T; the product rule often produces equal terms",
    find_merge_terms,
)
SQUEEZE = Rule(
    "squeeze",
    "a summed leg of size 1 that sits only inside groups with other legs",
    "a size-1 leg takes one value: dropping it from a group leaves the storage unchanged",
    find_squeeze,
)
MERGE_LEGS = Rule(
    "merge-legs",
    "two summed legs that stand together, in order, in every group that holds either",
    "legs that always travel together are one leg of the product size: fewer, larger contraction indices",
    find_merge_legs,
)
