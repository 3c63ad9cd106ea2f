"""How the PyTorch target computes one term, and what that costs: the one description that code
generation emits and that the cost model prices.

A term is lowered to a native kernel where its product is exactly a standard operation
(:mod:`tnc.lowering.native`: one call that multiplies no zeros of a pattern; a weight VJP also
as the folded convolution of :mod:`tnc.lowering.folded`, the cheaper of the two), else to the
cheapest by :func:`tnc.cost.model.time` of the folded convolution (where one applies) and

1. ``window``: patterns whose input leg data reads are contracted as windows of the data
   (:mod:`tnc.lowering.window`), then pairwise einsum steps;
2. ``einsum``: pairwise einsum steps in the order opt_einsum plans (:mod:`tnc.lowering.plan`).

Identities between two result legs are split off first and emitted as diagonal embeddings. A
term embedded into blocks of concatenated axes is also tried without its 0/1 embeddings, on the
blocks' legs, then copied into its slice (``block``, :mod:`tnc.lowering.blocks`); where every term
of a network fills its own block and that is cheaper, the terms are copied into one result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Callable

import sympy

from tnc.cost import model
from tnc.cost.model import Cost, Size
from tnc.ir.network import Factor, Kind, Term, Window
from tnc.ir.program import Program
from tnc.lowering.bias import Lowering, with_bias
from tnc.lowering.blocks import Block, assemble, opened, split_blocks, tiled
from tnc.lowering.elementwise import application_cost
from tnc.lowering.folded import Folded, folded
from tnc.lowering.folded import price as folded_price
from tnc.lowering.native import Native, native
from tnc.lowering.plan import Plan, plan, planning_size
from tnc.lowering.views import operand_view
from tnc.lowering.window import windowed

STRATEGIES = ("native", "window", "block")  # the lowerings tried besides plain einsum steps


@dataclass(frozen=True)
class Lowered:
    """One term as the generated code computes it."""

    strategy: str  # "native", "folded", "window", "einsum", "embed" (identities alone) or "scalar" (no factor)
    coefficient: sympy.Expr
    embeds: tuple[tuple[str, str], ...]  # identities emitted as diagonal embeddings
    target: tuple[str, ...]  # the legs the contraction produces (embedded pairs folded to one)
    legs: tuple[str, ...]  # the term's result legs
    factors: tuple[Factor, ...]  # what is contracted (patterns read as windows are gone)
    native: Native | None = None
    windows: tuple[str, ...] = ()  # the patterns read as windows
    plan: Plan | None = None
    broadcast: tuple[str, ...] = ()  # result legs the term is broadcast over (a view, no copy)
    blocks: tuple[Block, ...] = ()  # embeddings into blocks of concatenated axes, done by copying into a slice
    into: str | None = None  # with blocks: None (copied into zeros of its own), or copied into the network's
    # result, which this term makes ("empty" or "zeros") or an earlier term made ("result")

    @property
    def carried(self) -> tuple[str, ...]:
        """The target legs some factor carries (the contraction's output)."""
        legs = {leg for f in self.factors for leg in f.legs}
        return tuple(leg for leg in self.target if leg in legs)

    @property
    def placed(self) -> tuple[str, ...]:
        """With blocks: the legs of the tensor the value is copied into (of its slice, unflattened:
        :func:`tnc.lowering.blocks.opened`): the term's target with its concatenated axes, or the
        network's result legs where the terms are assembled into one result."""
        return tuple(leg for leg in self.legs if leg not in self.broadcast) if self.into is None else self.legs


def split_deltas(factors: list[Factor], result_legs: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[Factor]]:
    """Deltas between two result legs (emitted as diagonal embeddings), and the other factors.

    For an embedded ``delta[a, b]`` the rest is computed with ``a`` only; where the rest also
    carries ``b``, the delta makes ``b`` equal to ``a``, so ``b`` is renamed to ``a`` there.
    """
    embeds: list[tuple[str, str]] = []
    rest = list(factors)
    for factor in factors:
        if factor.kind is not Kind.DELTA or len(factor.axes) != 2 or any(len(axis) != 1 for axis in factor.axes):
            continue
        a, b = factor.legs
        if a == b or a not in result_legs or b not in result_legs:
            continue
        rest.remove(factor)
        carried = {leg for f in rest for leg in f.legs}
        if b in carried and a not in carried:
            a, b = b, a
        rest = [f.renamed({b: a}) for f in rest]
        embeds.append((a, b))
    return embeds, rest


def split_broadcast(factors: list[Factor], legs: tuple[str, ...]) -> tuple[tuple[str, ...], list[Factor]]:
    """The result legs only a ones factor carries (the term is broadcast over them), and the rest."""
    def only(factor: Factor) -> bool:
        return factor.kind is Kind.DELTA and len(factor.axes) == 1 and factor.legs[0] in legs and all(
            factor.legs[0] not in f.legs for f in factors if f is not factor
        )

    broadcast = tuple(leg for leg in legs if any(only(f) and f.legs[0] == leg for f in factors))
    return broadcast, [f for f in factors if not only(f)]


def _planned(program: Program, factors: list[Factor], target: tuple[str, ...]) -> Plan:
    carried = {leg for f in factors for leg in f.legs}
    sizes = {leg: planning_size(program, leg) for leg in carried}
    return plan([f.legs for f in factors], tuple(leg for leg in target if leg in carried), sizes)


def candidates(
    program: Program,
    term: Term,
    legs: tuple[str, ...],
    strategies: tuple[str, ...] = STRATEGIES,
    name: Callable[[Factor], str] = lambda f: f.tensor,
    temp: Callable[[], str] = lambda: "_t",
    show: Callable[[sympy.Expr], str] = str,
) -> list[Lowered]:
    """Every way the PyTorch target can compute ``term`` (result ``legs``); a native kernel, where
    one matches, is the only one. ``name``, ``temp`` and ``show`` spell a native call."""
    embeds, rest = split_deltas(list(term.product.factors), legs)
    broadcast, rest = split_broadcast(rest, legs) if not embeds else ((), rest)
    target = [leg for leg in legs if leg not in broadcast]
    for a, b in embeds:
        target = [leg for leg in target if leg not in (a, b)] + [a]
    base = dict(coefficient=program.concrete(term.coefficient), embeds=tuple(embeds), legs=legs, broadcast=broadcast)
    found = []
    blocks, inner = split_blocks(program, rest, tuple(target)) if "block" in strategies and not embeds else ((), rest)
    if blocks:  # the term without its embeddings, on the blocks' legs (tnc.lowering.blocks)
        open_target = opened(tuple(target), blocks)
        carried = {leg for f in inner for leg in f.legs}  # a native kernel's value has every target leg
        allowed = strategies if set(open_target) <= carried else tuple(s for s in strategies if s != "native")
        ways = _ways(program, inner, open_target, (), allowed, base, name, temp, show)
        found += [replace(way, blocks=blocks) for way in ways]
    return found + _ways(program, rest, tuple(target), tuple(embeds), strategies, base, name, temp, show)


def _ways(program: Program, rest: list[Factor], target: tuple[str, ...], embeds, strategies, base, name, temp, show) -> list[Lowered]:
    """The lowerings of the product ``rest`` into ``target`` (a native kernel alone where one matches)."""
    base = dict(base, target=target)
    if not rest:
        return [Lowered("embed" if embeds else "scalar", factors=(), **base)]
    found = []
    if not embeds and "native" in strategies:
        call = native(program, rest, target, name, temp, show)
        fold = folded(program, rest, target, name, show)
        if fold is not None:  # named as the native call would be: the two are alternatives
            value = call.value if call is not None else temp()
            fold = replace(fold, lines=[line.replace(fold.value, value) for line in fold.lines], value=value)
        found = [Lowered(way, factors=tuple(rest), native=c, **base) for way, c in (("native", call), ("folded", fold)) if c]
        if call is not None:  # one kernel call that multiplies no zeros: windows are no cheaper
            return found
    if "window" in strategies:
        windowed_factors, lowered = windowed(program, rest, target)
        if lowered:
            plan_ = _planned(program, windowed_factors, target)
            found.append(Lowered("window", factors=tuple(windowed_factors), windows=tuple(lowered), plan=plan_, **base))
    found.append(Lowered("einsum", factors=tuple(rest), plan=_planned(program, rest, target), **base))
    return found


def lower(program: Program, term: Term, legs: tuple[str, ...], strategies: tuple[str, ...] = STRATEGIES, *spelling) -> Lowered:
    """The cheapest of :func:`candidates` by :func:`tnc.cost.model.time` (the first of equals)."""
    return _cheapest(program, candidates(program, term, legs, strategies, *spelling))


def _cheapest(program: Program, found: list[Lowered]) -> Lowered:
    numeric = numeric_size(program)
    return min(found, key=lambda c: model.time(price(program, c, numeric)))


def numeric_size(program: Program) -> Size:
    return lambda leg: planning_size(program, leg)


def _storage(program: Program, factor: Factor) -> tuple[tuple[str, ...], ...]:
    return program.tensors[factor.tensor].axes if factor.tensor in program.tensors else factor.axes


def _view_copies(program: Program, factor: Factor, size: Size) -> Cost:
    """A windowed operand (:func:`tnc.lowering.views.operand_view`): padded once where a window
    has padding or may read past the axis, then copied out of its strided view by the
    contraction that reads it."""
    stored = _storage(program, factor)
    if not any(isinstance(axis, Window) for axis in factor.axes):
        return Cost()
    extents, padded = [], False
    for axis, legs in zip(factor.axes, stored):
        extent = model.elements(legs, size)
        if isinstance(axis, Window):
            outer, inner = axis
            span = axis.dilation * (size(inner) - 1) + 1
            right = (size(outer) - 1) * axis.stride + span - axis.padding - extent
            if axis.padding or not (isinstance(right, int) and right <= 0):
                padded = True
                extent = extent + axis.padding + model.larger(right, 0)
        extents.append(extent)
    view = model.copy(model.elements(factor.legs, size))
    return view + model.copy(prod(extents, start=1)) if padded else view


def price(program: Program, lowered: Lowered, size: Size | None = None) -> Cost:
    """What the code for ``lowered`` costs (symbolic in free sizes unless ``size`` says otherwise)."""
    size = size or program.size
    cost = Cost()
    if isinstance(lowered.native, Folded):
        cost = folded_price(program, lowered.native, lowered.target, size)
    elif lowered.native is not None:
        patterns = [f for f in lowered.factors if f.kind is Kind.PATTERN]
        data = [f for f in lowered.factors if f.kind is not Kind.PATTERN]
        inputs = {f.legs[0] for f in patterns}  # each pattern's i is a function of its o and k
        loops = {leg for f in lowered.factors for leg in f.legs} - inputs
        summed = bool(set(loops) - set(lowered.target))
        work = 2 if len(data) > 1 else 1 if summed else 0
        # a view (an identity) computes nothing
        cost = Cost() if lowered.native.view else model.kernel(loops, [_stored_legs(program, f) for f in data], lowered.target, work, size)
        if lowered.native.slow:
            cost = replace(cost, slow=cost.flops)
        if lowered.native.bias is not None:  # one add per output entry, inside the kernel's call
            cost = cost + Cost(model.elements(lowered.target, size), 0, 0, 0)
        # F.pad, and the index_select of a padding mode's window: each a copy of the (padded) input
        pads = sum(line.count("torch.nn.functional.pad(") + line.count(".index_select(") for line in lowered.native.lines)
        for _ in range(pads):
            cost = cost + model.copy(model.elements(_stored_legs(program, data[0]), size))
        for copied in lowered.native.copies:  # operands permuted into the kernel's layout
            legs = lowered.target if copied == "result" else _stored_legs(program, next(f for f in data if f.tensor == copied))
            cost = cost + model.copy(model.elements(legs, size))
    elif lowered.plan is not None:
        views = set()  # generated code takes the same view of a tensor once (tnc.lowering.views)
        for factor in lowered.factors:
            if factor.kind is Kind.DELTA:
                cost = cost + model.copy(model.elements(factor.legs, size))  # torch.eye
                continue
            view = operand_view(program, factor, factor.tensor, str)
            if view not in views:
                views.add(view)
                cost = cost + _view_copies(program, factor, size)
        cost = cost + _steps(lowered.factors, lowered.plan, size)
    if lowered.blocks:
        return cost + _placing(lowered, size)
    out = model.elements(lowered.target if lowered.broadcast else lowered.legs, size)
    if lowered.embeds:
        cost = cost + model.copy(out)
    elif lowered.coefficient != 1:
        cost = cost + model.elementwise(out)
    return cost


def _placing(lowered: Lowered, size: Size) -> Cost:
    """A term with blocks (:mod:`tnc.lowering.blocks`): its value scaled (filled with the
    coefficient where no factor is left), then copied into its slice of the tensor it is placed
    in, which it makes unless an earlier term of the network did: zeros, or uninitialised where
    the terms fill every entry."""
    value = model.elements(lowered.target, size)
    region = model.elements(opened(lowered.placed, lowered.blocks), size)  # the slice, broadcast legs included
    if lowered.strategy == "scalar":
        cost = Cost(0, region, 0, 1)  # fill_
    else:
        cost = model.elementwise(value) if lowered.coefficient != 1 else Cost()
        cost = cost + Cost(0, value + region, 0, 1)  # copy_
    made = model.elements(lowered.placed, size)
    if lowered.into in (None, "zeros"):
        cost = cost + Cost(0, made, made, 1)  # torch.zeros
    elif lowered.into == "empty":
        cost = cost + Cost(0, 0, made, 1)  # torch.empty: allocated, nothing written
    return cost


def _steps(factors: tuple[Factor, ...], plan_: Plan, size: Size) -> Cost:
    """The planned einsum steps; a step that repeats an earlier one (the same equation on the same
    operands, such as the two halves of a KFAC factor) is computed once."""
    cost, variables, seen = Cost(), [(f.tensor, f.axes) for f in factors], set()
    for step in plan_.steps:
        key = (step.inputs, step.result, tuple(variables[p] for p in step.operands))
        variables = [v for p, v in enumerate(variables) if p not in step.operands] + [key]
        if key not in seen:
            seen.add(key)
            cost = cost + model.contraction(step.inputs, step.result, size)
    return cost


def _stored_legs(program: Program, factor: Factor) -> tuple[str, ...]:
    return tuple(leg for axis in _storage(program, factor) for leg in axis)


def lower_network(program: Program, network, strategies: tuple[str, ...] = STRATEGIES, *spelling) -> list[Lowering]:
    """Every term lowered, then a bias term folded into a convolution's kernel (``None`` for it)."""
    found = [candidates(program, term, network.legs, strategies, *spelling) for term in network.terms]
    lowered = with_bias(program, [(term, _cheapest(program, ways)) for term, ways in zip(network.terms, found)], *spelling[:1])
    return _assembled(program, network, found, lowered) or lowered


def _assembled(program: Program, network, found: list[list[Lowered]], lowered: list[Lowering]) -> list[Lowering] | None:
    """The terms copied into one result (:func:`tnc.lowering.blocks.assemble`) where each fills
    its own block and that is cheaper than summing the terms as lowered one by one."""
    if not network.terms or any(way is None for _, way in lowered) or not all(any(c.blocks for c in ways) for ways in found):
        return None
    numeric = numeric_size(program)
    chosen = [_cheapest(program, [replace(c, into="result") for c in ways if c.blocks]) for ways in found]
    if not assemble(chosen):
        return None
    first = "empty" if tiled(program, chosen) else "zeros"
    chosen = [replace(c, into=first) if n == 0 else c for n, c in enumerate(chosen)]
    summed = [price(program, way, numeric) for _, way in lowered]
    summed += [model.elementwise(model.elements(network.legs, numeric))] * (len(summed) - 1)
    if model.time(model.total(price(program, c, numeric) for c in chosen)) > model.time(model.total(summed)):
        return None
    return [(term, way) for (term, _), way in zip(lowered, chosen)]


def term_cost(program: Program, term: Term, legs: tuple[str, ...], strategies: tuple[str, ...] = STRATEGIES, size: Size | None = None) -> Cost:
    return price(program, lower(program, term, legs, strategies), size)


def network_cost(program: Program, name: str, strategies: tuple[str, ...] = STRATEGIES, size: Size | None = None) -> Cost:
    """A defined tensor's terms, lowered and priced, plus the additions that sum them."""
    network = program.definitions[name]
    size = size or program.size
    lowerings = [lowered for _, lowered in lower_network(program, network, strategies) if lowered is not None]
    costs = [price(program, lowered, size) for lowered in lowerings]
    out = model.elements(network.legs, size)
    summed = [lowered for lowered in lowerings if lowered.into is None]  # assembled terms are not added
    additions = [model.elementwise(out)] * max(len(summed) - 1, 0)
    return model.total(costs + additions + [application_cost(program, name, size)])


def describe(lowered: Lowered | None) -> str:
    """The strategy, as generated code and ``tnc cost`` state it."""
    parts = []
    if lowered is None:
        return "added by a convolution's kernel as its bias (bias=)"
    if lowered.native is not None:
        parts.append(f"strategy {lowered.native.why}")
    elif lowered.strategy == "window":
        parts.append(f"strategy window: {', '.join(lowered.windows)} read as windows of the data (pad once, unfold), not multiplied as 0/1 tensors")
    elif lowered.plan is not None:
        parts.append("strategy einsum: pairwise steps in the order opt_einsum planned")
    if lowered.plan is not None:
        parts.append(f"path [{', '.join(str(p) for p in lowered.plan.path())}]")
    if lowered.broadcast:
        how = "(a view)" if lowered.into is None else "(by the copy into its slice)"
        parts.append(f"broadcast over {', '.join(lowered.broadcast)} {how}")
    if lowered.strategy == "scalar":
        parts.append("a scalar")
    for block in lowered.blocks:
        parts.append(
            f"block ({' '.join(block.inner)}) copied into {block.leg}[{block.offset}:{block.offset + block.size}]"
            " (a slice), not multiplied by its 0/1 embedding"
        )
    if lowered.into in ("empty", "zeros"):
        parts.append(f"every term fills its own block of one result (torch.{lowered.into}, no additions)")
    if lowered.embeds:
        parts.append(f"the identities {', '.join(f'delta[{a}, {b}]' for a, b in lowered.embeds)} as a diagonal embedding")
    return "; ".join(parts)
