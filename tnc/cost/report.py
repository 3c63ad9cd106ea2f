"""``tnc cost``: the strategy and price of the code ``tnc compile`` emits for every term, with the
dense einsum as written beside it, before and after simplification.

Every price is the cost model's (:mod:`tnc.cost.model`) of the lowering that code generation
emits (:func:`tnc.lowering.term.lower`); generated code states the same prices in its comments.
"""

from __future__ import annotations

import sympy

from tnc.codegen.names import TooManyIndices
from tnc.cost import model
from tnc.ir.program import Program
from tnc.lowering.term import STRATEGIES, describe, lower, lower_network, price


def _at(count: model.Count) -> str:
    """A count, and its value at the planning size where it is symbolic."""
    text = model.show(count)
    if isinstance(count, int) or not sympy.sympify(count).free_symbols:
        return text
    at = ", ".join(f"{s}={model.PLANNING_SIZE}" for s in sorted(count.free_symbols, key=str))
    return f"{text}  (= {model.number(count):,} at {at})"


def _equation(step) -> str:
    try:
        return step.equation()
    except TooManyIndices:  # no einsum can take it; --target torch says so where it compiles
        legs = {leg for legs in step.inputs for leg in legs}
        return f"({len(legs)} indices, more than einsum's 52 letters)"


def _price_lines(cost: model.Cost, indent: str) -> list[str]:
    return [
        f"{indent}FLOPs:           {_at(cost.flops)}",
        f"{indent}elements moved:  {_at(cost.moved)}",
        f"{indent}largest tensor:  {_at(cost.largest)} elements",
    ]


def report(program: Program, title: str, strategies: tuple[str, ...] = STRATEGIES) -> list[str]:
    lines = [f"== {title}"]
    for name, network in program.definitions.items():
        for number, (term, lowered) in enumerate(lower_network(program, network, strategies), start=1):
            factors = term.product.factors
            lines.append(f"{name}, term {number}: {' * '.join(f.tensor for f in factors)}")
            lines.append(f"  generated: {describe(lowered)}")
            if lowered is None:
                continue
            lines.extend(_price_lines(price(program, lowered), "    "))
            if lowered.plan is not None:
                for step in lowered.plan.steps:
                    flops = model.contraction(step.inputs, step.result, program.size).flops
                    lines.append(f"      {_equation(step):<40} {_at(flops)} FLOPs")
            dense = price(program, lower(program, term, network.legs, ()))
            one_shot = model.contraction([f.legs for f in factors], network.legs, program.size).flops
            lines.append(f"  dense einsum as written (patterns as 0/1 tensors): {_at(dense.flops)} FLOPs planned")
            lines.append(f"    one-shot: {_at(one_shot)} FLOPs; largest tensor {_at(dense.largest)} elements")
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
