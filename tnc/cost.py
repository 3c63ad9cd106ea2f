"""``tnc cost``: FLOPs and memory of each term, one-shot (naive) and as planned, symbolic in free sizes.

The planned path is the one the PyTorch target uses (opt_einsum, free sizes counted as 16 while
choosing it); its FLOPs and intermediate sizes are then written as sympy expressions in the size
symbols, and evaluated where every size is bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from tnc.codegen.names import TooManyIndices
from tnc.codegen.plan import PLANNING_SIZE, plan, planning_size
from tnc.ir.program import Program


@dataclass(frozen=True)
class TermCost:
    naive_flops: sympy.Expr
    planned_flops: sympy.Expr
    path: tuple[tuple[str, sympy.Expr], ...]  # (equation, FLOPs) per pairwise step
    largest: sympy.Expr  # elements of the largest intermediate (or result)
    operands: sympy.Expr  # elements read (every factor once)


def _flops(program: Program, legs: set[str], summed: bool) -> sympy.Expr:
    return sympy.Mul(*(program.size(leg) for leg in sorted(legs))) * (2 if summed else 1)


def term_cost(program: Program, factors, output: tuple[str, ...]) -> TermCost:
    numeric = {leg: planning_size(program, leg) for factor in factors for leg in factor.legs}
    planned = plan([f.legs for f in factors], output, numeric)
    every = {leg for f in factors for leg in f.legs}
    steps, largest = [], sympy.Integer(0)
    for step in planned.steps:
        involved = {leg for legs in step.inputs for leg in legs}
        try:
            equation = step.equation()
        except TooManyIndices:  # no einsum can take it; --target torch says so where it compiles
            equation = f"({len(involved)} indices, more than einsum's 52 letters)"
        steps.append((equation, _flops(program, involved, bool(involved - set(step.result)))))
        size = sympy.Mul(*(program.size(leg) for leg in step.result))
        largest = size if largest == 0 else sympy.Max(largest, size)
    operands = sympy.Add(*(sympy.Mul(*(program.size(leg) for leg in f.legs)) for f in factors))
    return TermCost(
        _flops(program, every, bool(every - set(output))),
        sympy.Add(*(flops for _, flops in steps)),
        tuple(steps),
        sympy.simplify(largest),
        operands,
    )


def _show(expr: sympy.Expr) -> str:
    expr = sympy.simplify(expr)
    if expr.is_number:
        return f"{int(expr):,}"
    at = {s: PLANNING_SIZE for s in expr.free_symbols}
    return f"{sympy.factor(expr)}  (= {int(expr.subs(at)):,} at {', '.join(f'{s}={PLANNING_SIZE}' for s in sorted(at, key=str))})"


def report(program: Program, title: str) -> list[str]:
    lines = [f"== {title}"]
    for name, network in program.definitions.items():
        for number, term in enumerate(network.terms, start=1):
            factors = term.product.factors
            cost = term_cost(program, factors, network.legs)
            lines.append(f"{name}, term {number}: {' * '.join(f.tensor for f in factors)}")
            lines.append(f"  one-shot einsum:   {_show(cost.naive_flops)} FLOPs")
            lines.append(f"  planned:           {_show(cost.planned_flops)} FLOPs")
            for equation, flops in cost.path:
                lines.append(f"    {equation:<40} {_show(flops)}")
            lines.append(f"  largest intermediate: {_show(cost.largest)} elements; operands read: {_show(cost.operands)} elements")
        if not network.terms:
            lines.append(f"{name}: 0 (no work)")
    return lines


def cost_text(program: Program) -> str:
    """The report before and after simplification (the program is simplified in place)."""
    from tnc.passes.simplify import simplify

    lines = report(program, "as written")
    log = simplify(program)
    lines.append("")
    lines.extend(report(program, f"simplified ({len(log)} rewrite{'s' if len(log) != 1 else ''}: {', '.join(sorted({a.rule for a in log})) or 'none'})"))
    return "\n".join(lines) + "\n"


__all__ = ["TermCost", "cost_text", "report", "term_cost"]
