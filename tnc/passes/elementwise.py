"""The chain rule through element-wise applications: d f(A)[legs] = f'(A)[legs] * dA[legs].

``f'(A)`` is another application (:mod:`tnc.ir.functions`) on the same legs as ``f(A)``, so the
derivative multiplies entry by entry: a hyperedge joins it to ``dA``, never a dense identity. A
constant derivative (``square''``) becomes the term's coefficient, a zero one (``relu''``) drops it.
"""

from __future__ import annotations

from typing import Callable

from tnc.ir import functions
from tnc.ir.network import Axes, Factor, Kind, Network, Product, Term, Window
from tnc.ir.program import Program
from tnc.passes.expand import _instantiate
from tnc.passes.fresh import Fresh

# The derivative terms of a network with respect to a variable, on given new result axes.
Derivative = Callable[[Program, Network, str, Axes, Fresh], list[Term]]


class ChainError(ValueError):
    """A derivative through an application that cannot be taken (the message says why)."""


def through_applications(program: Program, expanded: Network, wrt: str, new_axes: Axes, fresh: Fresh, derive: Derivative) -> list[Term]:
    """One term per application ``f(A)`` in a term of ``expanded`` whose ``A`` depends on ``wrt``
    (and per term of ``dA/dwrt``): the application replaced by ``f'(A) * dA/dwrt`` on its legs."""
    terms = []
    for term in expanded.terms:
        nodes = term.product.nodes()
        for node, factor in zip(nodes, term.product.factors):
            applied = functions.application(program, factor.tensor)
            if applied is None:
                continue
            function, argument = applied
            if argument != wrt and wrt not in program.dependencies(argument):
                continue
            if any(isinstance(axis, Window) for axis in factor.axes):
                raise ChainError(f"'{factor.tensor}' is read through a window leg here; differentiate before simplifying")
            used = program.tensors[argument]
            inner = derive(program, Network(used.axes, [Term(1, Product([Factor(argument, used.kind, used.axes)]))]), wrt, new_axes, fresh)
            slope = functions.value(functions.derivative(function))
            if slope.constant == 0 or not inner:
                continue
            rest = [f for n, f in zip(nodes, term.product.factors) if n != node]
            if slope.constant is None:
                rest.append(Factor(functions.apply(program, functions.derivative(function), argument), Kind.DEFINED, factor.axes))
            scale = 1 if slope.constant is None else slope.constant
            jacobian = Network(used.axes + new_axes, inner)
            use = Factor(argument, used.kind, factor.axes + new_axes)
            for piece in inner:
                terms.append(Term(term.coefficient * scale * piece.coefficient, Product(rest + _instantiate(program, piece, jacobian, use, fresh))))
    return terms
