"""``tnc cost``: the strategy and price of the code ``tnc compile`` emits for every term, with the
dense einsum as written beside it, before and after simplification.

Every price is the cost model's (:mod:`tnc.cost.model`) of the lowering that code generation
emits (:func:`tnc.lowering.term.lower`); generated code states the same prices in its comments.
A sampled definition (``sample``) is priced as generated, over its kept slices: the formulas keep
the number kept as a size (``kept_i1``), the values take its expectation.
"""

from __future__ import annotations

import sympy

from tnc.codegen.names import TooManyIndices
from tnc.cost import model
from tnc.ir.program import Kept, Program
from tnc.lowering.term import STRATEGIES, describe, lower, lower_network, price
from tnc.passes.sampling import with_samples_drawn

Expected = dict[sympy.Symbol, sympy.Expr]  # the expected number kept of each sampled leg


def _at(count: model.Count, expected: Expected) -> str:
    """A count, and its value at the planning size (and expected numbers kept) where it is symbolic."""
    text = model.show(count)
    if isinstance(count, int) or not sympy.sympify(count).free_symbols:
        return text
    symbols = sorted(count.free_symbols, key=str)
    at = ", ".join(f"{s} expected" if s in expected else f"{s}={model.PLANNING_SIZE}" for s in symbols)
    return f"{text}  (= {model.number(sympy.sympify(count).xreplace(expected)):,} at {at})"


def _expected(program: Program, kept: Kept) -> sympy.Expr:
    """How many slices a draw keeps on average: ``min`` surely, ``keep`` of the rest."""
    size = sympy.Integer(model.number(program.size(kept.sample.leg)))
    minimum = min(sympy.Integer(kept.sample.minimum), size)
    return minimum + sympy.Rational(str(kept.sample.keep)) * (size - minimum)


def _sampled_line(program: Program, kept: Kept, expected: Expected) -> str:
    sample, size, count = kept.sample, model.show(program.size(kept.sample.leg)), expected[kept.size]
    options = f"keep={sample.keep!r}" + (f", min={sample.minimum}" if sample.minimum else "")
    value = f"{int(count)}" if count.is_Integer else f"{float(count):.4g}"
    return f"  sampled: {sample.leg} (size {size}) kept with {options}: {kept.size} = {value} expected"


def _equation(step) -> str:
    try:
        return step.equation()
    except TooManyIndices:  # no einsum can take it; --target torch says so where it compiles
        legs = {leg for legs in step.inputs for leg in legs}
        return f"({len(legs)} indices, more than einsum's 52 letters)"


def _price_lines(cost: model.Cost, indent: str, expected: Expected) -> list[str]:
    return [
        f"{indent}FLOPs:           {_at(cost.flops, expected)}",
        f"{indent}elements moved:  {_at(cost.moved, expected)}",
        f"{indent}largest tensor:  {_at(cost.largest, expected)} elements",
    ]


def report(program: Program, title: str, strategies: tuple[str, ...] = STRATEGIES) -> list[str]:
    lines = [f"== {title}"]
    program = with_samples_drawn(program)
    expected = {k.size: _expected(program, k) for kept in program.kept.values() for k in kept}
    for name, network in program.definitions.items():
        for number, (term, lowered) in enumerate(lower_network(program, network, strategies), start=1):
            factors = term.product.factors
            lines.append(f"{name}, term {number}: {' * '.join(f.tensor for f in factors)}")
            lines.extend(_sampled_line(program, k, expected) for k in program.kept.get(name, ()))
            lines.append(f"  generated: {describe(lowered)}")
            if lowered is None:
                continue
            lines.extend(_price_lines(price(program, lowered), "    ", expected))
            if lowered.plan is not None:
                for step in lowered.plan.steps:
                    flops = model.contraction(step.inputs, step.result, program.size).flops
                    lines.append(f"      {_equation(step):<40} {_at(flops, expected)} FLOPs")
            dense = price(program, lower(program, term, network.legs, ()))
            one_shot = model.contraction([f.legs for f in factors], network.legs, program.size).flops
            lines.append(f"  dense einsum as written (patterns as 0/1 tensors): {_at(dense.flops, expected)} FLOPs planned")
            lines.append(f"    one-shot: {_at(one_shot, expected)} FLOPs; largest tensor {_at(dense.largest, expected)} elements")
        if not network.terms:
            lines.append(f"{name}: 0 (no work)")
    return lines


def cost_text(program: Program) -> str:
    """The report before and after simplification (the program is simplified in place)."""
    from tnc.passes.simplify import simplify

    lines = report(program, "as written (tnc compile --no-simplify)")
    log = simplify(program)
    rules = ", ".join(sorted({a.rule for a in log})) or "none"
    lines.append("")
    lines.extend(report(program, f"simplified, as tnc compile emits it ({len(log)} rewrite{'s' if len(log) != 1 else ''}: {rules})"))
    return "\n".join(lines) + "\n"


__all__ = ["cost_text", "report"]
