"""Differentiation as cutting (contract §4): Jacobians, VJPs and JVPs of networks.

``jacobian`` removes each occurrence of the variable from each term of the expanded network
(product rule: one term per occurrence); every leg of the removed factor is joined to a new
result leg by a delta, and deltas that a rename can replace are eliminated. Terms without the
variable contribute nothing, so a network that does not depend on it becomes the empty sum (0).
"""

from __future__ import annotations

from tnc.ir.network import Axes, Factor, Kind, Network, Product, Term, flatten
from tnc.ir.program import Program
from tnc.passes.deltas import delta, eliminate_deltas
from tnc.passes.expand import ExpansionError, expand
from tnc.passes.fresh import Fresh


class DerivativeError(ValueError):
    """A derivative that cannot be taken (the message says why)."""


def variable_axes(program: Program, wrt: str, fresh: Fresh) -> Axes:
    """New result legs for the variable: a fresh copy of each of its declared legs."""
    return tuple(tuple(fresh(leg) for leg in axis) for axis in program.tensors[wrt].axes)


def _cut(program: Program, network: Network, wrt: str, new_axes: Axes) -> list[Term]:
    declared = program.tensors[wrt]
    terms = []
    for term in network.terms:
        for node in term.product.nodes():
            factor: Factor = term.product.graph.nodes[node]["factor"]
            if factor.tensor != wrt or factor.kind is Kind.DELTA:
                continue
            if [len(a) for a in factor.axes] != [len(a) for a in declared.axes]:
                raise DerivativeError(f"'{wrt}' is used with a grouping of legs other than its declaration's")
            rest = [f for n, f in zip(term.product.nodes(), term.product.factors) if n != node]
            deltas = [delta(old, new) for old, new in zip(factor.legs, flatten(new_axes))]
            terms.append(Term(term.coefficient, Product(rest + deltas)))
    return terms


def jacobian(program: Program, network: Network, wrt: str, fresh: Fresh) -> Network:
    """d network / d wrt: result legs are the network's, then a fresh copy of ``wrt``'s."""
    if program.tensors[wrt].kind not in (Kind.INPUT, Kind.PARAM):
        raise DerivativeError(f"can only differentiate with respect to an input or param, and '{wrt}' is neither")
    try:
        expanded = expand(program, network, fresh)
    except ExpansionError as error:
        raise DerivativeError(str(error)) from None
    new_axes = variable_axes(program, wrt, fresh)
    result = Network(network.axes + new_axes, _cut(program, expanded, wrt, new_axes))
    return eliminate_deltas(program, result)


def vjp(program: Program, network: Network, wrt: str, seed: str, fresh: Fresh) -> Network:
    """The Jacobian contracted with ``seed`` (legs of the network) over the network's legs."""
    full = jacobian(program, network, wrt, fresh)
    own = full.axes[: len(network.axes)]
    seed_factor = Factor(seed, program.tensors[seed].kind, own)
    terms = [Term(t.coefficient, Product(t.product.factors + [seed_factor])) for t in full.terms]
    return eliminate_deltas(program, Network(full.axes[len(network.axes) :], terms))


def jvp(program: Program, network: Network, wrt: str, seed: str, fresh: Fresh) -> Network:
    """The Jacobian contracted with ``seed`` (legs of ``wrt``) over the variable's legs."""
    full = jacobian(program, network, wrt, fresh)
    new = full.axes[len(network.axes) :]
    seed_factor = Factor(seed, program.tensors[seed].kind, new)
    terms = [Term(t.coefficient, Product(t.product.factors + [seed_factor])) for t in full.terms]
    return eliminate_deltas(program, Network(network.axes, terms))
