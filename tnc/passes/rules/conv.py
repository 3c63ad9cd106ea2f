"""Convolution rules: where the structure of an index pattern Π[i, o, k] makes it unnecessary.

Each rule is decided from sizes and hyperparameters with sympy, never from tensor values, and
does not fire where its condition cannot be proven (symbolic sizes of unknown divisibility).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import sympy

from tnc.cost import model
from tnc.ir import sizes
from tnc.ir.network import Factor, Kind, Network, Product, Term, Window, axes_text
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Program, Tensor
from tnc.lowering.term import numeric_size, term_cost
from tnc.passes.rules.base import Rewrite, Rule, divides, equal, replace_term, without


def _patterns(program: Program, network: Network) -> Iterator[tuple[int, Term, tuple, Factor, ConvPattern, tuple[str, str, str]]]:
    """Every (unsummed) pattern factor: term position, term, node, factor, spec, legs (i, o, k)."""
    for position, term in enumerate(network.terms):
        for node, factor in zip(term.product.nodes(), term.product.factors):
            if factor.kind is not Kind.PATTERN or any(len(a) != 1 or isinstance(a, Window) for a in factor.axes):
                continue
            spec = program.tensors[factor.tensor].pattern
            if spec.summed or len(set(factor.legs)) != 3:
                continue
            yield position, term, node, factor, spec, factor.legs


def _plain(program: Program, spec: ConvPattern, kernel: sympy.Expr) -> bool:
    """No padding and no dilation."""
    left, right = spec.pads(kernel)
    return spec.dilation == 1 and equal(program, left, 0) and equal(program, right, 0)


def _sizes(program: Program, legs: tuple[str, str, str]) -> tuple[sympy.Expr, ...]:
    return tuple(program.size(leg) for leg in legs)


def _in_window(term: Term, leg: str) -> bool:
    return any(isinstance(a, Window) and leg in a for f in term.product for a in f.axes)


def _where(position: int, factor: Factor) -> str:
    return f"term {position + 1}, {factor.tensor}[{axes_text(factor.axes)}]"


def find_identity(program: Program, network: Network) -> Rewrite | None:
    for position, term, node, factor, spec, (i, o, k) in _patterns(program, network):
        I, O, K = _sizes(program, (i, o, k))
        if not (equal(program, K, 1) and spec.stride == 1 and _plain(program, spec, K)):
            continue
        if i in network.legs and o in network.legs or k in network.legs or _in_window(term, i) or _in_window(term, o):
            continue
        gone, kept = (o, i) if i in network.legs else (i, o)
        rest = Product(f.renamed({gone: kept}) for f in without(term.product, node))
        why = f"kernel 1, stride 1, padding 0, dilation 1: {factor.tensor} is the identity, so {gone} is renamed {kept}"
        return Rewrite(replace_term(network, position, Term(term.coefficient, rest)), _where(position, factor), why)
    return None


def find_dense(program: Program, network: Network) -> Rewrite | None:
    for position, term, node, factor, spec, (i, o, k) in _patterns(program, network):
        I, O, K = _sizes(program, (i, o, k))
        if not (equal(program, K, spec.stride) and _plain(program, spec, K) and divides(program, K, I)):
            continue
        if _in_window(term, i) or (i in network.legs and (len(network.terms) != 1 or o in network.legs or k in network.legs)):
            continue
        others = without(term.product, node)
        if i not in network.legs and not any(i in f.legs for f in others):
            continue  # summed over i alone, the pattern is all ones on (o, k): no reshape carries k
        rest = Product(f.regrouped(i, (o, k)) for f in others)
        axes = tuple(a if isinstance(a, Window) else tuple(n for leg in a for n in ((o, k) if leg == i else (leg,))) for a in network.axes)
        why = (
            f"kernel {K} = stride {spec.stride}, padding 0, dilation 1, and {K} divides the input size {program.size(i)}: "
            f"{i} is ({o} {k}) grouped, so {factor.tensor} is a reshape"
        )
        return Rewrite(replace_term(network, position, Term(term.coefficient, rest), axes), _where(position, factor), why)
    return None


def find_downsample(program: Program, network: Network) -> Rewrite | None:
    for position, term, node, factor, spec, (i, o, k) in _patterns(program, network):
        I, O, K = _sizes(program, (i, o, k))
        if i in network.legs or not _plain(program, spec, K):
            continue
        stride_gt_kernel = sizes.is_positive(sympy.Integer(spec.stride) - program.concrete(K))
        trims = equal(program, K, spec.stride) and sizes.is_positive(sympy.Mod(program.concrete(I), spec.stride))
        if not (stride_gt_kernel or trims):
            continue
        others = without(term.product, node)
        carriers = [f for f in others if i in f.legs]
        if not carriers or any(
            f.kind in (Kind.PATTERN, Kind.DELTA) or f.legs.count(i) != 1 or (i,) not in [tuple(a) for a in f.axes if not isinstance(a, Window)]
            for f in carriers
        ):
            continue
        window = Window(o, k, spec.stride)
        rest = Product(
            Factor(f.tensor, f.kind, tuple(window if not isinstance(a, Window) and tuple(a) == (i,) else a for a in f.axes)) if i in f.legs else f
            for f in others
        )
        if stride_gt_kernel:
            why = f"stride {spec.stride} > kernel {K}, padding 0, dilation 1, {i} summed: a strided slice {window.text()} replaces {factor.tensor}"
        else:
            why = (
                f"kernel {K} = stride {spec.stride} but {spec.stride} does not divide the input size {I}: the trailing "
                f"inputs are unused, so the trimmed input is read as {window.text()}"
            )
        return Rewrite(replace_term(network, position, Term(term.coefficient, rest)), _where(position, factor), why)
    return None


def _summed_pattern(program: Program, name: str) -> str:
    """The declared pattern ``name`` summed over its output leg, declared once, right after it."""
    source = program.tensors[name]
    for tensor in program.tensors.values():
        if tensor.pattern == replace(source.pattern, summed=True) and tensor.axes == (source.axes[0], source.axes[2]):
            return tensor.name
    new = f"{name}_sum"
    while new in program.tensors:
        new += "_"
    summed = Tensor(new, Kind.PATTERN, (source.axes[0], source.axes[2]), None, replace(source.pattern, summed=True))
    items = list(program.tensors.items())
    at = [n for n, _ in items].index(name) + 1
    program.tensors.clear()
    program.tensors.update(items[:at] + [(new, summed)] + items[at:])
    return new


def find_presum(program: Program, network: Network) -> Rewrite | None:
    for position, term, node, factor, spec, (i, o, k) in _patterns(program, network):
        if o in network.legs or len(term.product.carriers(o)) != 1:
            continue
        name = _summed_pattern(program, factor.tensor)
        rest = without(term.product, node) + [Factor(name, Kind.PATTERN, ((i,), (k,)))]
        why = f"{o} is carried by {factor.tensor} alone and summed: {factor.tensor} summed over {o} is the {program.size(i)}x{program.size(k)} matrix {name}"
        return Rewrite(replace_term(network, position, Term(term.coefficient, Product(rest))), _where(position, factor), why)
    return None


IDENTITY = Rule(
    "identity",
    "K = 1, stride 1, padding 0, dilation 1 (so I = O), k not a result leg, and not both i and o result legs",
    "Π[i, o, 0] = [i = o]: summing over one of the two legs renames it to the other",
    find_identity,
)
DENSE = Rule(
    "dense",
    "K = stride, padding 0, dilation 1, K divides I (provably, for symbolic sizes), i not read through a window "
    "and carried by another factor or a result leg; if i is a result leg, the network has one term and o, k are "
    "not result legs",
    "Π[i, o, k] = [i = K*o + k] with I = O*K: i is the row-major group (o k), a reshape",
    find_dense,
)
DOWNSAMPLE = Rule(
    "downsample",
    "padding 0, dilation 1, i summed and a plain axis of every other carrier, and stride > K (or K = stride with I not a multiple of it)",
    "sum_i Π[i, o, k] X[i] = X[stride*o + k]: a strided slice of X (a view), which is dense in (o, k)",
    find_downsample,
)
PRESUM = Rule(
    "presum",
    "the output leg o is carried by the pattern alone and is summed",
    "sum_o Π[i, o, k] does not depend on the data: it is a small precomputed I x K matrix",
    find_presum,
)


def _pattern_components(term: Term, result_legs: tuple[str, ...]) -> list[list[tuple]]:
    """Groups of two or more pattern factors joined by summed legs that only patterns carry."""
    nodes = [(n, f) for n, f in zip(term.product.nodes(), term.product.factors) if f.kind is Kind.PATTERN]
    private = {
        leg
        for leg in term.product.indices() - set(result_legs)
        if all(term.product.graph.nodes[n]["factor"].kind is Kind.PATTERN for n in term.product.carriers(leg))
    }
    components, seen = [], set()
    for start, _ in nodes:
        if start in seen:
            continue
        component, stack = [], [start]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            factor = term.product.graph.nodes[node]["factor"]
            component.append((node, factor))
            stack.extend(n for leg in set(factor.legs) & private for n in term.product.carriers(leg))
        if len(component) > 1:
            components.append(sorted(component))
    return components


def find_fold(program: Program, network: Network) -> Rewrite | None:
    for position, term in enumerate(network.terms):
        for component in _pattern_components(term, network.legs):
            nodes = {n for n, _ in component}
            inside = [f for _, f in component]
            outside = [f for n, f in zip(term.product.nodes(), term.product.factors) if n not in nodes]
            carried = set(network.legs) | {leg for f in outside for leg in f.legs}
            legs = tuple(dict.fromkeys(leg for f in inside for leg in f.legs if leg in carried))
            name = _declare_constant(program, legs, inside)
            rest = Product(outside + [Factor(name, Kind.DEFINED, tuple((leg,) for leg in legs))])
            # the price of the code generated for the term, before and after (the constant is built once)
            numeric = numeric_size(program)
            before = term_cost(program, term, network.legs, size=numeric)
            after = term_cost(program, Term(term.coefficient, rest), network.legs, size=numeric)
            if FOLD_GAIN * model.time(after) > model.time(before) or model.number(after.largest) > model.number(before.largest):
                del program.tensors[name], program.definitions[name]
                continue  # only a clear win, and no larger tensor
            why = (
                f"{', '.join(f.tensor for f in inside)} depend on no data and are joined by legs only they carry: "
                f"their product {name} is a constant"
            )
            return Rewrite(replace_term(network, position, Term(term.coefficient, rest)), f"term {position + 1}", why)
    return None


def _declare_constant(program: Program, legs: tuple[str, ...], factors: list[Factor]) -> str:
    """A defined tensor for a product of patterns, placed before every network that uses it."""
    name = "C_" + "_".join(f.tensor for f in factors)
    while name in program.tensors:
        name += "_"
    tensor = Tensor(name, Kind.DEFINED, tuple((leg,) for leg in legs))
    first_defined = next(n for n, t in program.tensors.items() if t.kind is Kind.DEFINED)
    items = list(program.tensors.items())
    at = [n for n, _ in items].index(first_defined)
    program.tensors.clear()
    program.tensors.update(items[:at] + [(name, tensor)] + items[at:])
    definitions = dict(program.definitions)
    program.definitions.clear()
    program.definitions.update({name: Network(tensor.axes, [Term(sympy.Integer(1), Product(factors))]), **definitions})
    return name


FOLD_GAIN = 2.0  # a folded constant is one more tensor to build and hold: fold only for a clear win

FOLD = Rule(
    "fold-constants",
    "two or more patterns joined by summed legs that only patterns carry, when the priced generated code at least halves and its largest tensor does not grow",
    "a product of patterns depends on no data: computed once, it is a constant factor",
    find_fold,
    FOLD_GAIN,
)
