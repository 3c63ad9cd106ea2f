"""The cost model: what one piece of generated code costs, in FLOPs, elements moved and the
largest tensor it creates.

The lowering (:mod:`tnc.lowering.term`) composes these prices from exactly the calls it emits, and
everything else reads that one price: the rewrite engine (a rewrite may not make the generated
code costlier), the lowering's choice of strategy, ``tnc cost`` and the comments in generated code.

Prices are generic in the size arithmetic: with sympy sizes they are symbolic in the free sizes
(for reports), with integers (free sizes counted as :data:`PLANNING_SIZE`) they are numbers (for
decisions). "Moved" counts elements read and written once each; bytes are that times the dtype's
item size. :func:`time` folds a cost into one number, a FLOP and an element moved weighted as on
a machine that does :data:`FLOPS_PER_ELEMENT` FLOPs in the time it moves one element, and
:data:`FLOPS_PER_CALL` in the fixed overhead of one torch call.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Iterable, Union

import sympy

from tnc.ir.sizes import at

Count = Union[int, sympy.Expr]
Size = Callable[[str], Count]  # the size of a leg

PLANNING_SIZE = 16  # what a free size counts as when a contraction order is chosen or costs compared
FLOPS_PER_ELEMENT = 16  # a float32 element moved (4 bytes) takes about as long as 16 FLOPs
FLOPS_PER_CALL = 0  # the fixed overhead of one torch call, in FLOPs (not counted yet: see the design notes)
# A FLOP of a kernel known to run slower than the rest (Cost.slow) counts this many times: PyTorch's CPU
# weight gradient of a grouped convolution with a kernel wider than 3 (oneDNN has fast depthwise code
# for 3x3 only; tnc.lowering.native._weight_vjp). Measured, one thread, batch 8, float32: a depthwise
# 7x7 at 56x56 (ConvNeXt) runs at 1.5-2 GFLOP/s there, and at 11-28 GFLOP/s as the folded
# convolution of tnc.lowering.folded (which the model would otherwise rate no faster).
SLOW_KERNEL = 4


def larger(a: Count, b: Count) -> Count:
    """The larger count, compared at the planning size where sizes are free."""
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return a if number(a) >= number(b) else b


@dataclass(frozen=True)
class Cost:
    flops: Count = 0
    moved: Count = 0  # elements read and written
    largest: Count = 0  # elements of the largest tensor the code creates (the largest at the planning size)
    calls: int = 0  # torch calls that compute (views are free)
    slow: Count = 0  # of the FLOPs, those of kernels that run slower (SLOW_KERNEL)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(
            self.flops + other.flops, self.moved + other.moved, larger(self.largest, other.largest), self.calls + other.calls,
            self.slow + other.slow,
        )


def total(costs: Iterable[Cost]) -> Cost:
    out = Cost()
    for cost in costs:
        out = out + cost
    return out


def elements(legs: Iterable[str], size: Size) -> Count:
    return prod((size(leg) for leg in legs), start=1)


def contraction(inputs: Iterable[tuple[str, ...]], result: tuple[str, ...], size: Size) -> Cost:
    """One ``torch.einsum`` step: a multiply-add per point of the joint index space (an add where
    one operand is summed, nothing where it is only permuted: a view); it reads the inputs and
    writes the result."""
    inputs = list(inputs)
    involved = {leg for legs in inputs for leg in legs}
    summed = bool(involved - set(result))
    if len(inputs) == 1 and not summed:
        return Cost()  # a permutation: einsum returns a view
    work = 2 if len(inputs) > 1 and summed else 1
    out = elements(result, size)
    read = sum((elements(legs, size) for legs in inputs), start=0)
    return Cost(work * elements(sorted(involved), size), read + out, out, 1)


def kernel(loops: Iterable[str], reads: Iterable[tuple[str, ...]], result: tuple[str, ...], work: int, size: Size) -> Cost:
    """A native kernel (convolution, its VJPs, unfold, fold, pooling): ``work`` FLOPs per point of
    its loop space (2 for a multiply-add, 1 for an add, 0 for a copy), reading the data once and
    writing the result."""
    out = elements(result, size)
    read = sum((elements(legs, size) for legs in reads), start=0)
    return Cost(work * elements(sorted(set(loops)), size), read + out, out, 1)


def copy(count: Count) -> Cost:
    """A copy that makes a new tensor of ``count`` elements (a padded input, a contiguous view)."""
    return Cost(0, 2 * count, count, 1)


def elementwise(count: Count, flops_each: int = 1) -> Cost:
    """An element-wise operation that writes a new (or in-place) tensor of ``count`` elements."""
    return Cost(flops_each * count, 2 * count, count, 1)


def number(count: Count) -> int:
    """A count as an integer, free sizes counted as :data:`PLANNING_SIZE`."""
    return count if isinstance(count, int) else at(sympy.sympify(count), PLANNING_SIZE)


def time(cost: Cost) -> int:
    """One number to compare costs by: FLOPs (those of slow kernels weighted) plus the moved elements
    and the calls weighted."""
    flops = number(cost.flops) + (SLOW_KERNEL - 1) * number(cost.slow)
    return flops + FLOPS_PER_ELEMENT * number(cost.moved) + FLOPS_PER_CALL * cost.calls


def show(count: Count) -> str:
    """A count as people read it: ``1,024``, or a polynomial in the free sizes, ``6912*N + 288``."""
    if isinstance(count, int):
        return f"{count:,}"
    count = sympy.expand(count)
    return f"{int(count):,}" if count.is_number else str(count)


def summary(cost: Cost) -> str:
    """The one-line price written in generated code and in ``tnc cost``."""
    calls = f"{cost.calls} call{'s' if cost.calls != 1 else ''}"
    return f"{show(cost.flops)} FLOPs, {show(cost.moved)} elements moved, largest {show(cost.largest)}, {calls}"
