"""Tensor dropout as a program: the sampled legs' kept slices become tensors of their own.

For each ``sample LEG in T with keep=P`` (:class:`tnc.ir.program.Sample`) the leg is renamed, in
``T``'s definition only, to a fresh index over the kept slices, whose number is a size the
generated code knows once it has drawn them. Every factor that carries the leg becomes a SAMPLED
tensor, its slices along the leg's axis that were kept (for a pattern its kept rows, from the
indices: never a dense mask), and every term is multiplied by ``w[kept] = 1 / p`` of the kept
slices. It is correct in expectation: slice ``j`` is kept with probability ``p_j``, so
``E[1{j kept} / p_j] = 1`` and the sum over the kept slices of ``w_j * term_j`` is an unbiased
estimate of the sum over all of them (with ``p_j = 1`` it is the sum). Its variance is
``sum_j (1/p_j - 1) * term_j**2`` per entry of the result (slices drawn independently), least
for a given expected number kept when ``p_j`` follows the size of ``term_j`` (``by=``).

Where a kept pattern's output leg ``o`` is summed and read by one other tensor ``D`` alone, the
two are contracted by indexing instead (:func:`_through_rows`): the kept row ``i_j`` of
``P[i, o, k]`` has a 1 only at ``o = (i_j + left - dilation*k) / stride`` (where that is a whole
number in range), so ``sum_o P[i_j, o, k] * D[..., o, ...]`` is ``D`` read at that ``o``, zero
elsewhere: a SAMPLED tensor ``D[..., j, k, ...]``, no FLOPs, and the contraction that is left
runs over the kept rows only.

Rewrites never touch a sampled definition (:func:`tnc.passes.simplify.simplify`), so the leg is
still there when code is generated; this pass runs first in the PyTorch code generator.
"""

from __future__ import annotations

import copy

import sympy

from tnc.ir.network import Factor, Kind, Network, Product, Term
from tnc.ir.program import Kept, Program, Selection, Tensor


def _safe(name: str) -> str:
    return name.replace("'", "_prime")


def _fresh(taken, base: str) -> str:
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}{number}"
    return name


def with_samples_drawn(program: Program) -> Program:
    """A copy of ``program`` whose sampled definitions read kept slices (the program itself when
    nothing is sampled)."""
    if not program.samples:
        return program
    program = copy.deepcopy(program)
    uses = program.uses()
    for output in program.outputs:  # the functions keep the arguments they took as written
        program.interfaces.setdefault(output, uses.interface(output))
    for name, samples in program.samples.items():
        kept = []
        for sample in samples:
            index = _fresh(program.index_sizes, f"kept_{_safe(sample.leg)}")
            size = sympy.Symbol(index, positive=True, integer=True)
            program.index_sizes[index] = size
            weights = _fresh(program.tensors, f"w_{index}")
            program.tensors[weights] = Tensor(weights, Kind.SAMPLED, ((index,),))
            kept.append(Kept(sample, index, size, weights))
        program.kept[name] = tuple(kept)
        program.definitions[name] = _drawn(program, program.definitions[name], kept)
    return program


def _drawn(program: Program, network: Network, kept: list[Kept]) -> Network:
    """``network`` over the kept slices: carriers replaced by SAMPLED tensors, terms weighted."""
    by_leg = {k.sample.leg: k for k in kept}
    terms = []
    for term in network.terms:
        factors = _through_rows(program, list(term.product), network.legs, by_leg)
        factors = [_selected(program, f, by_leg) for f in factors]
        factors += [Factor(k.weights, Kind.SAMPLED, ((k.index,),)) for k in kept]
        terms.append(Term(term.coefficient, Product(factors)))
    return Network(network.axes, terms, network.cut)


def _through_rows(program: Program, factors: list[Factor], open_legs: tuple[str, ...], by_leg: dict[str, Kept]) -> list[Factor]:
    """``factors`` with each pattern whose input leg is sampled and whose output leg is summed and
    carried by exactly one plain axis of one other tensor replaced, with that tensor, by the
    tensor read through the pattern's kept rows (module docstring)."""
    for pattern in [f for f in factors if f.kind is Kind.PATTERN and _readable(program, f, by_leg)]:
        (_,), (o,), (k,) = pattern.axes
        others = [f for f in factors if f is not pattern and o in f.legs]
        if o in open_legs or len(others) != 1 or others[0].kind not in (Kind.INPUT, Kind.PARAM) or (o,) not in others[0].axes:
            continue
        data = others[0]
        kept = by_leg[pattern.axes[0][0]]
        if any(leg in by_leg or leg == kept.index for leg in data.legs) or k in data.legs:
            continue
        position = data.axes.index((o,))
        axes = data.axes[:position] + ((kept.index,), (k,)) + data.axes[position + 1 :]
        declared = program.tensors[data.tensor].axes
        stored = declared[:position] + ((kept.index,), (program.tensors[pattern.tensor].axes[2][0],)) + declared[position + 1 :]
        selection = Selection(data.tensor, ((position, kept),), through=pattern.tensor)
        name = next((n for n, s in program.selections.items() if s == selection), None)
        if name is None:
            name = _fresh(program.tensors, f"{data.tensor}_through_{pattern.tensor}")
            program.tensors[name] = Tensor(name, Kind.SAMPLED, stored)
            program.selections[name] = selection
        factors = [Factor(name, Kind.SAMPLED, axes) if f is data else f for f in factors if f is not pattern]
    return factors


def _readable(program: Program, factor: Factor, by_leg: dict[str, Kept]) -> bool:
    """A plain pattern ``P[i, o, k]`` (each output reached from an input and kernel offset at most
    once, so its rows can be inverted: no padding mode, which reads an input more than once) whose
    input leg is sampled."""
    pattern = program.tensors[factor.tensor].pattern
    return not pattern.summed and pattern.padding_mode == "zeros" and len(factor.axes) == 3 and all(len(a) == 1 for a in factor.axes) and factor.axes[0][0] in by_leg


def _selected(program: Program, factor: Factor, by_leg: dict[str, Kept]) -> Factor:
    """``factor`` itself, or the SAMPLED tensor of its kept slices where it carries sampled legs
    (a grouped axis that holds one is split into its legs first, a view)."""
    if not any(leg in by_leg for leg in factor.legs):
        return factor
    axes, stored, legs, unflatten = [], [], [], []
    for axis, declared in zip(factor.axes, program.tensors[factor.tensor].axes):
        if not any(leg in by_leg for leg in axis):
            axes.append(axis)
            stored.append(declared)
            continue
        if len(axis) > 1:
            unflatten.append((len(axes), tuple(declared)))
        for leg, own in zip(axis, declared):
            if leg in by_leg:
                legs.append((len(axes), by_leg[leg]))
            kept = by_leg[leg].index if leg in by_leg else None
            axes.append((kept or leg,))
            stored.append((kept or own,))
    selection = Selection(factor.tensor, tuple(legs), tuple(unflatten))
    name = next((n for n, s in program.selections.items() if s == selection), None)
    if name is None:
        name = _fresh(program.tensors, f"{factor.tensor}_{'_'.join(k.index for _, k in legs)}")
        program.tensors[name] = Tensor(name, Kind.SAMPLED, tuple(stored))
        program.selections[name] = selection
    return Factor(name, Kind.SAMPLED, tuple(axes))
