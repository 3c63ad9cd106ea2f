"""Contraction planning with opt_einsum at compile time, lowered to pairwise einsum steps."""

from __future__ import annotations

from dataclasses import dataclass

import opt_einsum

from tnc.codegen.names import einsum_letters
from tnc.cost.model import PLANNING_SIZE, contraction
from tnc.ir.sizes import at


def planning_size(program, leg: str) -> int:
    """The size of ``leg`` as a number, free sizes counted as :data:`PLANNING_SIZE`."""
    return at(program.size(leg), PLANNING_SIZE)


@dataclass(frozen=True)
class Step:
    """Contract ``operands`` (positions in the current list, removed) into one new last operand."""

    operands: tuple[int, ...]
    inputs: tuple[tuple[str, ...], ...]
    result: tuple[str, ...]
    flops: int

    def equation(self) -> str:
        letters = einsum_letters([leg for legs in self.inputs for leg in legs] + list(self.result))
        lhs = ",".join("".join(letters[leg] for leg in legs) for legs in self.inputs)
        return f"{lhs}->{''.join(letters[leg] for leg in self.result)}"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    flops: int  # of the planned pairwise contraction
    naive_flops: int  # of one contraction over all legs at once

    def path(self) -> list[tuple[int, ...]]:
        return [step.operands for step in self.steps]


def plan(operands: list[tuple[str, ...]], output: tuple[str, ...], sizes: dict[str, int]) -> Plan:
    """Plan ``einsum(operands -> output)``: dynamic programming for small networks, greedy beyond."""
    all_legs = {leg for legs in operands for leg in legs}
    naive = contraction(operands, output, sizes.__getitem__).flops
    if len(operands) == 1:
        path: list[tuple[int, ...]] = [(0,)]
    else:
        path, reduced = _reductions(operands, output, sizes)
        symbols = {leg: opt_einsum.get_symbol(i) for i, leg in enumerate(sorted(all_legs))}
        equation = ",".join("".join(symbols[l] for l in legs) for legs in reduced) + "->" + "".join(symbols[l] for l in output)
        shapes = [tuple(sizes[l] for l in legs) for legs in reduced]
        optimizer = "dp" if len(reduced) <= 16 else "greedy"
        path += opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=optimizer)[0]
    steps, current, total = [], list(operands), 0
    for number, positions in enumerate(path):
        positions = tuple(sorted(positions))
        inputs = tuple(current[p] for p in positions)
        rest = [legs for p, legs in enumerate(current) if p not in positions]
        if number == len(path) - 1:
            result = tuple(output)
        else:
            needed = set(output).union(*rest) if rest else set(output)
            result = tuple(dict.fromkeys(leg for legs in inputs for leg in legs if leg in needed))
        flops = contraction(inputs, result, sizes.__getitem__).flops
        steps.append(Step(positions, inputs, result, flops))
        total += flops
        current = rest + [result]
    return Plan(tuple(steps), total, naive)


def _reductions(
    operands: list[tuple[str, ...]], output: tuple[str, ...], sizes: dict[str, int]
) -> tuple[list[tuple[int, ...]], list[tuple[str, ...]]]:
    """Steps that first sum each operand over the legs only it carries (opt_einsum leaves them to
    the pairwise step, where they would multiply its cost), and the operands that are left. Legs
    of size 1 alone start no such step: summing them copies the operand and saves nothing (the
    pairwise step sums them at no cost)."""
    path, current = [], list(operands)
    changed = True
    while changed:
        changed = False
        for position, legs in enumerate(current):
            others = set(output).union(*(other for p, other in enumerate(current) if p != position))
            if any(sizes[leg] != 1 for leg in set(legs) - others):
                path.append((position,))
                current = current[:position] + current[position + 1 :] + [tuple(dict.fromkeys(l for l in legs if l in others))]
                changed = True
                break
    return path, current
