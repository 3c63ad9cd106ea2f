"""Delta elimination: an identity between two legs disappears by renaming one leg to the other.

Rule: in a product, ``delta[a, b]`` with ``a`` summed (not a result leg) and carried by another
factor equals that product with ``a`` renamed to ``b`` (sum over a of delta[a, b] f(a) = f(b)).
A delta whose legs are both result legs must stay: it is the block-diagonal structure of a
Jacobian, which code generation emits as a diagonal embedding.
"""

from __future__ import annotations


from tnc.ir.network import Factor, Kind, Network, Product, Term
from tnc.ir.program import Program

DELTA = "delta"


def delta(a: str, b: str) -> Factor:
    return Factor(DELTA, Kind.DELTA, ((a,), (b,)))


def eliminate_one(program: Program, term: Term, result_legs: set[str]) -> Term | None:
    """The term with one delta renamed away, or None if none can go."""
    product = term.product
    for node in product.nodes():
        factor = product.graph.nodes[node]["factor"]
        if factor.kind is not Kind.DELTA or any(len(axis) != 1 for axis in factor.axes) or len(factor.axes) != 2:
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
            return Term(term.coefficient * program.index_sizes[a], rest)
        for gone, kept in ((a, b), (b, a)):
            if gone not in result_legs and elsewhere[gone]:
                rest = product.copy()
                rest.remove(node)
                return Term(term.coefficient, rest.renamed({gone: kept}))
        if a not in result_legs and b not in result_legs and not elsewhere[a] and not elsewhere[b]:
            rest = product.copy()
            rest.remove(node)
            return Term(term.coefficient * program.index_sizes[a], rest)
    return None


def eliminate_deltas(program: Program, network: Network) -> Network:
    """Remove every delta that a rename can replace; keep those between two result legs."""
    result_legs = set(network.legs)
    terms = []
    for term in network.terms:
        while (simpler := eliminate_one(program, term, result_legs)) is not None:
            term = simpler
        terms.append(term)
    return Network(network.axes, terms)


