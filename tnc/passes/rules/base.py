"""What a rewrite rule is, and helpers that decide conditions symbolically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy

from tnc.ir import sizes
from tnc.ir.network import Factor, Network, Product, Term
from tnc.ir.program import Program


@dataclass(frozen=True)
class Rewrite:
    network: Network
    where: str  # e.g. "term 1, P1[i1, o1, k1]"
    why: str  # the condition, instantiated: "K1 = stride = 4, padding 0, dilation 1, I1 = 56*4"


@dataclass(frozen=True)
class Rule:
    """A named rewrite: ``find`` returns the first place where the condition holds, rewritten."""

    name: str
    condition: str  # stated symbolically, for the docs and --explain
    reason: str  # one line: why the rewrite is correct
    find: Callable[[Program, Network], Rewrite | None]
    gain: float = 1.0  # how many times cheaper the generated code must get for the rewrite to apply


def equal(program: Program, a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether two sizes are provably equal once the bound sizes are substituted."""
    return sizes.same(program.concrete(a), program.concrete(b))


def divides(program: Program, divisor: sympy.Expr, value: sympy.Expr) -> bool:
    """Whether ``divisor`` divides ``value`` whatever the free sizes are (False if undecidable)."""
    return sizes.divides(program.concrete(divisor), program.concrete(value))


def replace_term(network: Network, position: int, term: Term, axes=None) -> Network:
    terms = list(network.terms)
    terms[position] = term
    return Network(network.axes if axes is None else axes, terms)


def without(product: Product, node) -> list[Factor]:
    return [f for n, f in zip(product.nodes(), product.factors) if n != node]
