"""The window strategy: a pattern whose input leg is summed and read by plain axes of data tensors
is contracted by reading those tensors through a window (pad once, ``Tensor.unfold``), so no
multiplication by the zeros of the 0/1 pattern happens."""

from __future__ import annotations

from tnc.ir.network import Factor, Kind, Window
from tnc.ir.program import Program


def _concrete(program: Program, expr) -> int | None:
    value = program.concrete(expr)
    return int(value) if value.is_number else None


def windowed(program: Program, factors: list[Factor], result: tuple[str, ...]) -> tuple[list[Factor], list[str]]:
    """Contract every pattern whose input leg is summed and read only by plain axes of data
    tensors through a window on those tensors; returns the new factors and the patterns lowered."""
    factors = list(factors)
    lowered = []
    changed = True
    while changed:
        changed = False
        for factor in factors:
            if factor.kind is not Kind.PATTERN or len(factor.axes) != 3 or len(set(factor.legs)) != 3:
                continue
            spec = program.tensors[factor.tensor].pattern
            i, o, k = factor.legs
            if spec.summed or i in result:
                continue
            carriers = [f for f in factors if f is not factor and i in f.legs]
            if not carriers or any(
                f.kind in (Kind.PATTERN, Kind.DELTA) or f.legs.count(i) != 1 or (i,) not in [tuple(a) for a in f.axes if not isinstance(a, Window)]
                for f in carriers
            ):
                continue
            left = _concrete(program, spec.pads(program.size(k))[0])
            moded = spec.moded(program.size(k))
            if left is None or moded and None in (_concrete(program, program.size(leg)) for leg in (i, o, k)):
                continue  # a mode's pad is an index_select over concrete positions
            window = Window(o, k, spec.stride, spec.dilation, left, spec.padding_mode if moded else "zeros")
            factors = [
                Factor(f.tensor, f.kind, tuple(window if not isinstance(a, Window) and tuple(a) == (i,) else a for a in f.axes)) if f in carriers else f
                for f in factors
                if f is not factor
            ]
            lowered.append(factor.tensor)
            changed = True
            break
    return factors, lowered
