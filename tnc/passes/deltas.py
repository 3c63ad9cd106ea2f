"""Delta elimination: an identity between two legs disappears by renaming one leg to the other.

Rule: in a product, ``delta[a, b]`` with ``a`` summed (not a result leg) and carried by another
factor equals that product with ``a`` renamed to ``b`` (sum over a of delta[a, b] f(a) = f(b)).
A delta whose legs are both result legs must stay: it is the block-diagonal structure of a
Jacobian, which code generation emits as a diagonal embedding.
"""

from __future__ import annotations

from tnc.ir.network import Factor, Kind, Network, Product, Term, Window
from tnc.ir.program import Program

DELTA = "delta"


def delta(a: str, b: str) -> Factor:
    return Factor(DELTA, Kind.DELTA, ((a,), (b,)))


def ones(a: str) -> Factor:
    """The one-leg copy tensor: 1 everywhere on ``a``; broadcasting a term over ``a`` multiplies by it."""
    return Factor(DELTA, Kind.DELTA, ((a,),))


def axis_deltas(mine: tuple[str, ...], theirs: tuple[str, ...], regrouped: bool = False) -> list[Factor]:
    """Identities between two storage axes: one per leg where both are grouped alike, else one
    delta between the two groups (the same storage read with another grouping)."""
    if len(mine) == len(theirs) and not regrouped:
        return [delta(a, b) for a, b in zip(mine, theirs)]
    return [Factor(DELTA, Kind.DELTA, (tuple(mine), tuple(theirs)))]


def _regroup_away(product, node, single: str, group: tuple[str, ...]):
    """``delta[(single), (group)]`` with ``single`` summed: every other carrier reads ``group`` in its place."""
    rest = product.copy()
    rest.remove(node)
    return Product(f.regrouped(single, group) for f in rest.factors)


def eliminate_one(program: Program, term: Term, result_legs: set[str]) -> Term | None:
    """The term with one delta renamed away, or None if none can go."""
    product = term.product
    for node in product.nodes():
        factor = product.graph.nodes[node]["factor"]
        if factor.kind is not Kind.DELTA:
            continue
        if len(factor.axes) == 1:
            simpler = _without_ones(program, product, node, factor, result_legs, term.coefficient)
            if simpler is not None:
                return simpler
            continue
        if len(factor.axes) != 2:
            continue
        if any(len(axis) != 1 for axis in factor.axes):
            for one, group in ((factor.axes[0], factor.axes[1]), (factor.axes[1], factor.axes[0])):
                if len(one) != 1:
                    continue
                single = one[0]
                carriers = [product.graph.nodes[n]["factor"] for n in product.carriers(single) if n != node]
                if single not in result_legs and carriers and not any(isinstance(a, Window) and single in a for f in carriers for a in f.axes):
                    return Term(term.coefficient, _regroup_away(product, node, single, tuple(group)))
            continue
        a, b = factor.legs
        elsewhere = {leg: len(product.carriers(leg)) > 1 for leg in (a, b)}
        if (a == b or not (elsewhere[a] or elsewhere[b])) and a not in program.index_sizes:
            continue  # a trace needs the size, which is not known yet (while checking a file)
        if a == b:
            if a in result_legs or elsewhere[a]:
                continue
            rest = product.copy()
            rest.remove(node)
            return Term(term.coefficient * program.index_sizes[a], rest.copy())
        for gone, kept in ((a, b), (b, a)):
            if gone not in result_legs and elsewhere[gone]:
                rest = product.copy()
                rest.remove(node)
                return Term(term.coefficient, rest.renamed({gone: kept}))
        if a not in result_legs and b not in result_legs and not elsewhere[a] and not elsewhere[b]:
            rest = product.copy()
            rest.remove(node)
            return Term(term.coefficient * program.index_sizes[a], rest.copy())
    return None


def _without_ones(program: Program, product: Product, node, factor: Factor, result_legs: set[str], coefficient) -> Term | None:
    """``ones[a]`` goes where another factor carries ``a`` (times 1), or where ``a`` is summed and
    carried by nothing else (the size of ``a``); a broadcast over a result leg stays."""
    (a,) = factor.legs
    elsewhere = len(product.carriers(a)) > 1
    if not elsewhere and (a in result_legs or a not in program.index_sizes):
        return None
    rest = product.copy()
    rest.remove(node)
    return Term(coefficient if elsewhere else coefficient * program.index_sizes[a], rest.copy())  # nodes renumbered


def eliminate_deltas(program: Program, network: Network) -> Network:
    """Remove every delta that a rename can replace; keep those between two result legs."""
    result_legs = set(network.legs)
    terms = []
    for term in network.terms:
        while (simpler := eliminate_one(program, term, result_legs)) is not None:
            term = simpler
        terms.append(term)
    return Network(network.axes, terms)


