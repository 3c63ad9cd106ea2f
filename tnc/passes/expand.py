"""Expansion: replace every defined tensor in a network by its own (expanded) network.

This is what lets derivatives flow through equations (the chain rule): after expansion a network
mentions only inputs, params, patterns and deltas. A product of sums is multiplied out.
"""

from __future__ import annotations

from tnc.ir.network import Factor, Kind, Network, Product, Term, Window
from tnc.ir.program import Program
from tnc.passes.deltas import axis_deltas
from tnc.passes.fresh import Fresh


class ExpansionError(ValueError):
    """A defined tensor is used with a grouping of legs that expansion cannot map."""


def _instantiate(program: Program, term: Term, network: Network, use: Factor, fresh: Fresh) -> list[Factor]:
    """The factors of one term of ``use.tensor``'s network, with legs named as at ``use``."""
    mapping: dict[str, str] = {}
    split: dict[str, tuple[str, ...]] = {}
    identities: list[Factor] = []
    for defined, used in zip(network.axes, use.axes):
        if isinstance(used, Window):
            raise ExpansionError(f"'{use.tensor}' is read through a window leg; expand before simplifying")
        if len(defined) == len(used) and not program.regrouped(defined, used):
            mapping.update(zip(defined, used))
        elif len(defined) == 1:
            split[defined[0]] = used
        else:  # the use reads a grouped axis with other legs: relate the two through an identity
            copies = tuple(fresh(leg) for leg in defined)
            mapping.update(zip(defined, copies))
            identities.extend(axis_deltas(copies, used, regrouped=True))
    for leg in sorted(term.product.indices() - set(network.legs)):
        mapping[leg] = fresh(leg)
    factors = []
    for factor in term.product:
        for leg, legs in split.items():
            factor = factor.regrouped(leg, legs)
        factors.append(factor.renamed(mapping))
    return factors + identities


def expand(program: Program, network: Network, fresh: Fresh) -> Network:
    """``network`` with every defined-tensor factor replaced by its definition, multiplied out."""
    terms: list[Term] = []
    for term in network.terms:
        partial: list[tuple[object, list[Factor]]] = [(term.coefficient, [])]
        for factor in term.product:
            if factor.kind is not Kind.DEFINED or program.tensors[factor.tensor].function:  # f(A) is opaque
                partial = [(c, fs + [factor]) for c, fs in partial]
                continue
            if factor.tensor not in program.definitions:
                raise ExpansionError(f"'{factor.tensor}' has no valid definition")
            inner = expand(program, program.definitions[factor.tensor], fresh)
            partial = [
                (c * t.coefficient, fs + _instantiate(program, t, inner, factor, fresh)) for c, fs in partial for t in inner.terms
            ]
        terms.extend(Term(c, Product(fs)) for c, fs in partial)
    return Network(network.axes, terms)
