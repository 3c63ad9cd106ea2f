"""Derivatives on the graph of definitions: reverse mode (grad, vjp) and forward mode (jvp).

Instead of expanding every definition into one product (``tnc.passes.derive``), the chain rule
runs over the defined tensors of the program. The forward intermediates stay as they are and
are computed once; each step of the derivative is a new defined tensor:

- reverse: ``dL_dT`` for every defined ``T`` between the differentiated tensor ``L`` and the
  variables, in reverse order of definition; ``dL_dU`` sums, over every occurrence of ``U`` in
  every term of a ``T`` that reads it, the term with that occurrence cut out times ``dL_dT``
  (the local VJP, lowered like any network: a convolution's input VJP is a transpose
  convolution, its weight VJP the native weight gradient);
- forward: ``jvp_T_W`` for every defined ``T`` that depends on the variable, in order of
  definition, each occurrence of a ``U`` replaced in turn by its tangent ``jvp_U_W``.

An element-wise application ``f(A)`` passes the step on to ``A`` times ``f'(A)`` on the same
legs (a diagonal factor, never a dense identity); a constant ``f'`` scales, a zero one drops.
"""

from __future__ import annotations

import re

import sympy

from tnc.ir import functions
from tnc.ir.network import Axes, Factor, Kind, Network, Product, Term, Window, flatten
from tnc.ir.program import Program, Tensor
from tnc.passes.deltas import axis_deltas, eliminate_deltas
from tnc.passes.fresh import Fresh, tidy


class ReverseError(ValueError):
    """A step of the chain rule on definitions that cannot be taken (the message says why)."""


def name_for(program: Program, base: str) -> str:
    """``base`` as an identifier (``relu(Z)`` -> ``relu_Z``) that no tensor of ``program`` has."""
    base = re.sub(r"\W+", "_", base).strip("_")
    name, number = base, 2
    while name in program.tensors:
        name, number = f"{base}_{number}", number + 1
    return name


def depth(program: Program, of: str, wrt: str) -> int:
    """The most defined tensors (applications not counted) on a chain of uses from ``of`` to ``wrt``."""
    uses, best = program.uses(), {}
    for name in uses.defined_order(of):
        reads = uses.reads.get(name, ())
        below = [best[u] for u in reads if u in best]
        if wrt in reads or below:
            best[name] = (0 if program.tensors[name].function else 1) + max(below, default=0)
    return best.get(of, 0)


def _relevant(program: Program, of: str, wrts: list[str]) -> set[str]:
    """The variables and the defined tensors that ``of`` needs and that reach one of them."""
    uses = program.uses()
    return set(wrts) | {t for t in uses.defined_order(of) if set(uses.dependencies(t)) & set(wrts)}


def _slope(program: Program, name: str, axes: Axes) -> tuple[sympy.Expr, list[Factor]] | None:
    """``f'(A)`` of an application ``name = f(A)`` on ``axes``: (scale, factors); None where 0."""
    function, argument = functions.application(program, name)
    slope = functions.value(functions.derivative(function))
    if slope.constant == 0:
        return None
    if slope.constant is not None:
        return slope.constant, []
    if function == "relu":  # relu'(Z) = relu'(relu(Z)): read the output, so Z need not be kept
        argument = _alias(program, name) or argument
    derivative = functions.apply(program, functions.derivative(function), argument)
    return sympy.Integer(1), [Factor(derivative, Kind.DEFINED, axes)]


def _alias(program: Program, name: str) -> str | None:
    """A defined tensor that is exactly ``name`` on its own legs (``A[n, c] = relu(Z[n, c])``)."""
    for defined, network in program.definitions.items():
        if len(network.terms) == 1 and network.terms[0].coefficient == 1:
            factors = network.terms[0].product.factors
            if len(factors) == 1 and factors[0].tensor == name and factors[0].axes == network.axes:
                return defined
    return None


def named(program: Program, network: Network, axes: Axes, fresh: Fresh) -> Network:
    """``network`` with its result legs renamed to ``axes`` (summed legs moved out of the way),
    summed legs tidied."""
    target = flatten(axes)
    rename = dict(zip(network.legs, target))
    terms = []
    for term in network.terms:
        clash = {leg: fresh(leg) for leg in term.product.indices() - set(network.legs) if leg in target}
        terms.append(Term(term.coefficient, term.product.renamed({**clash, **rename})))
    sizes = program.index_sizes
    return _merged(tidy(Network(axes, terms), lambda a, b: a in sizes and sizes[a] == sizes[b]))


def _merged(network: Network) -> Network:
    """Terms with the same factors on the same legs as one, their coefficients summed
    (``0.5 * Y + 0.5 * Y``, the two occurrences in ``Y * Y``, is ``Y``)."""
    merged: dict[tuple, Term] = {}
    for term in network.terms:
        key = tuple(sorted(repr(f) for f in term.product.factors))
        if key in merged:
            merged[key] = Term(merged[key].coefficient + term.coefficient, merged[key].product)
        else:
            merged[key] = term
    return Network(network.axes, [t for t in merged.values() if t.coefficient != 0], network.cut)


def _key(network: Network) -> tuple:
    terms = sorted((str(t.coefficient), sorted(repr(f) for f in t.product.factors)) for t in network.terms)
    return network.axes, repr(terms)


def _definitions(program: Program) -> dict[tuple, str]:
    """The program's definitions by what they compute, for :func:`_define`."""
    return {_key(network): name for name, network in reversed(program.definitions.items())}


def _define(program: Program, name: str, network: Network, known: dict[tuple, str]) -> str:
    """``network`` as the defined tensor ``name``, or the name of a definition in ``known`` that
    is the same (a step that the file's own ``grad(L, W)`` already defined)."""
    key = _key(network)
    if key in known:
        return known[key]
    known[key] = name
    program.tensors[name] = Tensor(name, Kind.DEFINED, network.axes)
    program.definitions[name] = network
    return name


def backward(program: Program, of: str, wrts: list[str], seed: str | None, fresh: Fresh) -> dict[str, Network]:
    """Reverse mode: define ``d{of}_d{T}`` for the defined tensors between ``of`` and ``wrts``;
    return each variable's gradient network on its declared legs (not yet defined).

    ``seed`` holds ``d/d of`` (legs of ``of``); without one, ``of`` must be a scalar."""
    if seed is None and program.tensors[of].axes:
        raise ReverseError(f"grad of '{of}' in reverse mode needs a scalar or a vjp seed")
    relevant, uses = _relevant(program, of, wrts), program.uses()
    targets: dict[str, Axes] = {}  # the result legs every step into a tensor is written on

    def target(name: str) -> Axes:
        applied = functions.application(program, name)
        if applied is not None:  # f(A) has A's legs: its step goes on to A, on A's legs
            return target(applied[1])
        if name not in targets:
            targets[name] = tuple(tuple(fresh(leg) for leg in axis) for axis in program.tensors[name].axes)
        return targets[name]

    steps: dict[str, list[Term]] = {}
    known = _definitions(program)
    first = Factor(seed, program.tensors[seed].kind, program.definitions[of].axes) if seed else None
    error: dict[str, Factor | None] = {of: first}
    for name in reversed(uses.defined_order(of)):
        if name not in relevant:
            continue
        network = program.definitions[name]
        if name != of:
            if not steps.get(name):
                continue
            if program.tensors[name].function:  # f(A): A's step is f'(A) times this one
                argument = functions.application(program, name)[1]
                slope = _slope(program, name, target(name))
                if slope is not None:
                    scale, factors = slope
                    steps.setdefault(argument, []).extend(
                        Term(scale * t.coefficient, Product(t.product.factors + factors)) for t in steps[name]
                    )
                continue
            collected = Network(target(name), steps[name])
            step = named(program, eliminate_deltas(program, collected), program.tensors[name].axes, fresh)
            step_name = _define(program, name_for(program, f"d{of}_d{name}"), step, known)
            error[name] = Factor(step_name, Kind.DEFINED, network.axes)
        for term in network.terms:
            nodes = term.product.nodes()
            for node, factor in zip(nodes, term.product.factors):
                if factor.kind is Kind.DELTA or factor.tensor not in relevant:
                    continue
                if any(isinstance(axis, Window) for axis in factor.axes):
                    raise ReverseError(f"'{factor.tensor}' is read through a window leg here; differentiate before simplifying")
                declared, new = program.tensors[factor.tensor].axes, target(factor.tensor)
                rest = [f for n, f in zip(nodes, term.product.factors) if n != node]
                deltas = [d for a, b, c in zip(factor.axes, new, declared) for d in axis_deltas(a, b, program.regrouped(a, c))]
                seeded = [error[name]] if error[name] is not None else []
                steps.setdefault(factor.tensor, []).append(Term(term.coefficient, Product(rest + deltas + seeded)))
    gradients = {}
    for wrt in wrts:
        collected = Network(target(wrt), steps.get(wrt, []))
        gradients[wrt] = named(program, eliminate_deltas(program, collected), program.tensors[wrt].axes, fresh)
    return gradients


def forward(program: Program, of: str, wrt: str, seed: str, fresh: Fresh) -> Network:
    """Forward mode: define ``jvp_T_{wrt}`` for the defined tensors between ``wrt`` and ``of``
    (``of`` excepted); return ``of``'s tangent network on its own legs (not yet defined)."""
    relevant, uses = _relevant(program, of, [wrt]), program.uses()
    tangent: dict[str, str] = {wrt: seed}
    known = _definitions(program)
    result = Network(program.definitions[of].axes, [])
    for name in uses.defined_order(of):
        if name not in relevant:
            continue
        network = program.definitions[name]
        terms = []
        if program.tensors[name].function:  # (f(A))' = f'(A) * A'
            argument = functions.application(program, name)[1]
            slope = _slope(program, name, network.axes)
            if slope is not None and argument in tangent:
                scale, factors = slope
                dot = Factor(tangent[argument], program.tensors[tangent[argument]].kind, network.axes)
                terms.append(Term(scale, Product(factors + [dot])))
        else:
            for term in network.terms:
                nodes = term.product.nodes()
                for node, factor in zip(nodes, term.product.factors):
                    if factor.kind is Kind.DELTA or factor.tensor not in tangent:
                        continue
                    if any(isinstance(axis, Window) for axis in factor.axes):
                        raise ReverseError(f"'{factor.tensor}' is read through a window leg here; differentiate before simplifying")
                    dot = Factor(tangent[factor.tensor], program.tensors[tangent[factor.tensor]].kind, factor.axes)
                    rest = [f if n != node else dot for n, f in zip(nodes, term.product.factors)]
                    terms.append(Term(term.coefficient, Product(rest)))
        if not terms:
            continue
        step = Network(network.axes, terms)
        if name == of:
            result = step
        else:
            tangent[name] = _define(program, name_for(program, f"jvp_{name}_{wrt}"), step, known)
    return result
