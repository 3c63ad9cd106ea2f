"""How a factor's storage becomes its logical view: reshapes for grouped legs, windows for ``S*o + D*k - P``.

Both targets use :func:`operand_view`: the PyTorch module runs the expression, the einsum target
prints it next to its equation. A window is a zero-copy ``unfold`` when it stays inside the
axis; padding (and only then a copy) is added where it reads outside.
"""

from __future__ import annotations

from typing import Callable

import sympy

from tnc.ir.network import Factor, Window
from tnc.ir.program import Program

Show = Callable[[sympy.Expr], str]


def _window(expr: str, dim: int, ndim: int, window: Window, outer: sympy.Expr, inner: sympy.Expr, extent: sympy.Expr, show: Show) -> str:
    """``expr``'s axis ``dim`` (of ``ndim``) read at ``stride*o + dilation*k - padding``: axes o, k."""
    span = window.dilation * (inner - 1) + 1
    length = (outer - 1) * window.stride + span
    right = sympy.simplify(length - window.padding - extent)
    if window.padding or not (right.is_number and right <= 0):
        amount = show(right) if right.is_number else f"max(0, {show(right)})"
        pads = ", ".join(["0, 0"] * (ndim - 1 - dim) + [f"{window.padding}, {amount}"])
        expr = f"torch.nn.functional.pad({expr}, ({pads}))"
        total = extent + window.padding + (right if right.is_number else sympy.Max(0, right))
    else:
        total = extent
    windows = sympy.floor((total - span) / window.stride) + 1
    if sympy.simplify(windows - outer) != 0:  # unfold alone would give more windows than needed
        expr += f".narrow({dim}, 0, {show(length)})"
    expr += f".unfold({dim}, {show(span)}, {window.stride})"
    if window.dilation > 1:
        expr += f"[..., ::{window.dilation}]"
    return expr + f".movedim(-1, {dim + 1})"


def operand_view(program: Program, factor: Factor, variable: str, show: Show) -> str | None:
    """An expression for ``factor``'s view with one axis per leg, or None if storage already is."""
    declared = program.tensors[factor.tensor].axes if factor.tensor in program.tensors else factor.axes
    windows = [(i, axis) for i, axis in enumerate(factor.axes) if isinstance(axis, Window)]
    if not windows and len(factor.legs) == len(factor.axes):
        return None
    dims: list[sympy.Expr] = []
    for axis, storage in zip(factor.axes, declared):
        if isinstance(axis, Window):
            dims.append(program.axis_size(storage))
        else:
            dims.extend(program.size(leg) for leg in axis)
    expr = variable
    if len(dims) != len(factor.axes):
        expr += "." + "reshape(" + ", ".join(show(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
    for position, window in reversed(windows):
        dim = sum(len(axis) if not isinstance(axis, Window) else 1 for axis in factor.axes[:position])
        outer, inner = (program.size(leg) for leg in window)
        extent = program.axis_size(declared[position])
        expr = _window(expr, dim, len(dims) + len([w for p, w in windows if p > position]), window, outer, inner, extent, show)
    return expr
