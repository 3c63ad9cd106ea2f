"""A convolution plus a bias: the bias term is added by the kernel (``F.conv{D}d(..., bias=b)``).

Applies to two terms of one network, both with coefficient 1: one lowered to a native forward
convolution, the other a single data tensor ``b`` with one storage axis whose legs are exactly
the convolution's output channels, in the kernel's order (``(g d)``; legs of size 1 aside),
broadcast over every other result leg. Correct because the kernel adds ``b[(g d)]`` to every
batch and output position, which is that broadcast.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from tnc.ir.network import Factor, Kind, Term, Window
from tnc.ir.program import Program
from tnc.lowering.native import Native

if TYPE_CHECKING:
    from tnc.lowering.term import Lowered

Lowering = tuple[Term, "Lowered | None"]  # None: the term is added by another term's kernel


def _bias_factor(program: Program, lowered) -> Factor | None:
    """The one data factor of a broadcast term with coefficient 1, read on one plain axis."""
    if (lowered.native is not None and not lowered.native.view) or lowered.embeds or lowered.coefficient != 1 or len(lowered.factors) != 1:
        return None
    (factor,) = lowered.factors
    declared = program.tensors.get(factor.tensor)
    if factor.kind not in (Kind.INPUT, Kind.PARAM, Kind.DEFINED) or declared is None or declared.function:
        return None
    if len(factor.axes) != 1 or isinstance(factor.axes[0], Window) or len(declared.axes) != 1:
        return None
    if set(lowered.legs) - set(lowered.broadcast) != set(factor.legs) or len(set(factor.legs)) != len(factor.legs):
        return None
    return factor


def _fused(program: Program, native: Native, factor: Factor, name: Callable[[Factor], str]) -> Native | None:
    if native.channels is None or "bias=" in "".join(native.lines):
        return None
    legs = tuple(leg for leg in factor.legs if program.concrete(program.size(leg)) != 1)
    if legs != native.channels:
        return None
    call = native.lines[0]
    marker = "torch.nn.functional.conv"
    if not call.startswith(f"{native.value} = {marker}") or not call.endswith(")"):
        return None
    lines = [call[:-1] + f", bias={name(factor)})", *native.lines[1:]]
    return replace(native, lines=lines, why=native.why + f"; the bias {factor.tensor} added by the kernel (bias=)", bias=factor.tensor)


def with_bias(program: Program, lowerings: list[Lowering], name: Callable[[Factor], str] = lambda f: f.tensor) -> list[Lowering]:
    """``lowerings`` with each bias term that a convolution term's kernel adds folded into it."""
    result = list(lowerings)
    for b, (term, lowered) in enumerate(result):
        factor = _bias_factor(program, lowered) if lowered is not None else None
        if factor is None:
            continue
        for c, (conv_term, conv) in enumerate(result):
            if conv is None or conv.native is None or conv.coefficient != 1 or conv.broadcast:
                continue
            native = _fused(program, conv.native, factor, name)
            if native is not None:
                result[c] = (conv_term, replace(conv, native=native, factors=conv.factors + (factor,)))
                result[b] = (term, None)
                break
    return result
