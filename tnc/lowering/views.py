"""How a factor's storage becomes its logical view: reshapes for grouped legs, windows for ``S*o + D*k - P``.

Both targets use :func:`operand_view`: the PyTorch module runs the expression, the einsum target
prints it next to its equation. A window is a zero-copy ``unfold`` when it stays inside the
axis; padding (and only then a copy) is added where it reads outside: F.pad with zeros, or for a
window with another padding mode an ``index_select`` of the positions that mode reads.
"""

from __future__ import annotations

from typing import Callable

import sympy

from tnc.ir.network import Factor, Window
from tnc.ir.program import Program
from tnc.ir.sizes import canonical, is_zero

Show = Callable[[sympy.Expr], str]


def _right_padding(window: Window, outer: sympy.Expr, inner: sympy.Expr, extent: sympy.Expr, show: Show) -> tuple[str | None, sympy.Expr | None]:
    """The right padding a window needs (code, or None for none), and the axis length after
    padding (None where it depends on free sizes)."""
    span = window.dilation * (inner - 1) + 1
    missing = canonical((outer - 1) * window.stride + span - window.padding - extent)
    if missing.is_number:
        right = max(missing, 0)
        return (show(right) if right or window.padding else None), canonical(extent + window.padding + right)
    return f"max(0, {show(missing)})", None


def _mode_index(window: Window, extent: sympy.Expr, total: sympy.Expr, variable: str) -> str:
    """The positions of the axis (concrete ``extent``) that F.pad's ``window.mode`` reads at the
    padded positions ``-padding .. total - padding - 1``: an index for ``index_select``."""
    last = int(extent) - 1
    at = f"torch.arange({-window.padding}, {int(total) - window.padding}, device={variable}.device)"
    if window.mode == "reflect":
        return f"({last} - ({last} - {at}.abs()).abs())"
    if window.mode == "replicate":
        return f"{at}.clamp(0, {last})"
    return f"{at}.remainder({last + 1})"


def _window(expr: str, dim: int, window: Window, outer: sympy.Expr, inner: sympy.Expr, total: sympy.Expr | None, show: Show) -> str:
    """``expr``'s (padded) axis ``dim`` read at ``stride*o + dilation*k``: axes o, k at dim, dim+1.
    A ``total`` of None (a length that depends on free sizes) is narrowed to what the window reads."""
    span = window.dilation * (inner - 1) + 1
    length = (outer - 1) * window.stride + span
    if total is None or not is_zero(sympy.floor((total - span) / window.stride) + 1 - outer):  # unfold alone would give more windows than needed
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
    position_of = {}  # window position -> its axis in the reshaped tensor
    for position, _ in windows:
        position_of[position] = sum(len(axis) if not isinstance(axis, Window) else 1 for axis in factor.axes[:position])
    pads, totals, selects = ["0, 0"] * len(dims), {}, []
    for position, window in windows:  # pad every window's axis once, before any view is taken
        outer, inner = (program.size(leg) for leg in window)
        extent = program.axis_size(declared[position])
        right, totals[position] = _right_padding(window, outer, inner, extent, show)
        if right is not None and window.mode != "zeros":
            selects.append(f".index_select({position_of[position]}, {_mode_index(window, extent, totals[position], variable)})")
        elif right is not None:
            pads[len(dims) - 1 - position_of[position]] = f"{window.padding}, {right}"
    if any(p != "0, 0" for p in pads):
        while pads and pads[-1] == "0, 0":
            pads.pop()
        expr = f"torch.nn.functional.pad({expr}, ({', '.join(pads)}))"
    expr += "".join(selects)
    for position, window in reversed(windows):
        outer, inner = (program.size(leg) for leg in window)
        expr = _window(expr, position_of[position], window, outer, inner, totals[position], show)
    return expr
