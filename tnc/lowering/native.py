"""Lowering strategies for one product, tried in order (the cost model of the PyTorch target):

1. ``native``: the product is exactly a standard operation (convolution, transpose convolution /
   input VJP, weight VJP, unfold, fold, sum pooling) of any dimension and groups: call the native
   PyTorch kernel, which does the same arithmetic without any index-pattern work.
2. ``window``: a pattern whose input leg is summed and read by plain axes of data tensors is
   contracted by reading those tensors through a window (pad once, ``Tensor.unfold``), so no
   multiplication by the zeros of the 0/1 pattern happens.
3. ``einsum``: pairwise contractions in the order opt_einsum planned (``torch.einsum`` uses
   mm/bmm for each step).

The generated file says which strategy each term took, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy

from tnc.ir.network import Factor, Kind, Window
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Program

Show = Callable[[sympy.Expr], str]


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a convolution-like product: its pattern and legs. An axis that a rewrite
    already simplified has no pattern: a group or window (no ``i``) or a 1x1 identity (no ``k``;
    the one leg plays ``o`` on the input side, ``i`` on the output side)."""

    spec: ConvPattern
    i: str | None
    o: str | None
    k: str | None
    sizes: tuple[int, int, int]  # I, O, K
    pads: tuple[int, int]
    from_pattern: bool = True


@dataclass(frozen=True)
class Native:
    """A native call: ``lines`` compute ``value`` (in the product's result-leg order)."""

    lines: list[str]
    value: str
    why: str


def _concrete(program: Program, expr: sympy.Expr) -> int | None:
    value = program.concrete(expr)
    return int(value) if value.is_number else None


def _spatial(program: Program, factors: list[Factor]) -> tuple[list[Factor], dict[str, Axis]] | None:
    """The non-pattern factors, and each 3-leg pattern by its input leg (concrete sizes only)."""
    others, axes = [], {}
    for factor in factors:
        if factor.kind is not Kind.PATTERN:
            if factor.kind is Kind.DELTA:
                return None
            others.append(factor)
            continue
        spec = program.tensors[factor.tensor].pattern
        if spec.summed or len(set(factor.legs)) != 3:
            return None
        i, o, k = factor.legs
        sizes = tuple(_concrete(program, program.size(leg)) for leg in (i, o, k))
        pads = tuple(_concrete(program, p) for p in spec.pads(program.size(k)))
        if None in sizes or None in pads or i in axes:
            return None
        axes[i] = Axis(spec, i, o, k, sizes, pads)
    return others, axes


def _read_axis(program: Program, axis: tuple[str, ...], storage: tuple[str, ...]) -> Axis | None:
    """A spatial axis that simplification already rewrote: a group ``(o k)`` (kernel = stride) or a
    window ``S*o + D*k - P``, read as the convolution axis it is (concrete sizes only)."""
    if len(axis) != 2 or axis[0] == axis[1]:
        return None
    o, k = axis
    I = _concrete(program, program.axis_size(storage))
    O, K = (_concrete(program, program.size(leg)) for leg in (o, k))
    if None in (I, O, K):
        return None
    if not isinstance(axis, Window):
        return Axis(ConvPattern(stride=K), None, o, k, (I, O, K), (0, 0), False)
    span = axis.dilation * (K - 1) + 1
    right = max(0, (O - 1) * axis.stride + span - axis.padding - I)
    if (I + axis.padding + right - span) // axis.stride + 1 != O:
        return None  # the window reads fewer outputs than the axis allows: not a plain convolution
    spec = ConvPattern(stride=axis.stride, dilation=axis.dilation, padding=(axis.padding, right))
    return Axis(spec, None, o, k, (I, O, K), (axis.padding, right), False)


def _split(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str | None, str | None, str | None] | None:
    """Two channel axes that may share a leading group leg: ``(g c)`` and ``(g d)`` give (g, c, d).

    A leg of size 1 may have been squeezed out of a group, so ``(g)`` with ``(g d)`` gives (g, None, d),
    and ``(c)`` with ``(d)`` gives (None, c, d)."""
    if isinstance(first, Window) or isinstance(second, Window) or not (1 <= len(first) <= 2 and 1 <= len(second) <= 2):
        return None
    if first[0] == second[0]:
        g, c, d = first[0], first[1] if len(first) == 2 else None, second[1] if len(second) == 2 else None
        return None if c is not None and c == d else (g, c, d)
    if len(first) == len(second) == 1:
        return None, first[0], second[0]
    return None


def _tuple(values) -> str:
    values = list(values)
    return f"({', '.join(map(str, values))}{',' if len(values) == 1 else ''})"


def _pad(expr: str, spatial: list[Axis], extra: Callable[[Axis], tuple[int, int]]) -> str:
    """``F.pad`` of the trailing spatial axes by ``extra(axis)`` = (left, right), if any is non-zero."""
    pads = [p for axis in reversed(spatial) for p in extra(axis)]
    return f"torch.nn.functional.pad({expr}, {_tuple(pads)})" if any(pads) else expr


def _layout(program: Program, data: Factor, spatial_of: str, axes: dict[str, Axis]) -> tuple[str, list[Axis]] | None:
    """Match ``data[n, channels, s1..sD]``, where every spatial axis is a pattern's ``spatial_of``
    leg ("i" or "o"), or (for "i") a group or window a rewrite left; returns (n, ordered axes)."""
    if len(data.axes) < 3 or len(data.axes[0]) != 1 or isinstance(data.axes[0], Window):
        return None
    by_leg = {getattr(a, spatial_of): a for a in axes.values()}
    ordered = []
    storage = program.tensors[data.tensor].axes
    pattern_legs = {leg for a in axes.values() for leg in (a.i, a.o, a.k)}
    for axis, stored in zip(data.axes[2:], storage[2:]):
        if len(axis) == 1 and not isinstance(axis, Window) and axis[0] in by_leg:
            ordered.append(by_leg[axis[0]])
        elif len(axis) == 1 and not isinstance(axis, Window) and axis[0] not in pattern_legs:
            size = _concrete(program, program.size(axis[0]))  # a 1x1 stride-1 axis the identity rule renamed
            if size is None:
                return None
            legs = (None, axis[0]) if spatial_of == "i" else (axis[0], None)
            ordered.append(Axis(ConvPattern(), *legs, None, (size, size, 1), (0, 0), False))
        elif spatial_of == "i" and (read := _read_axis(program, axis, stored)) is not None:
            ordered.append(read)
        else:
            return None
    if sum(a.from_pattern for a in ordered) != len(axes) or not 1 <= len(ordered) <= 3:
        return None
    return data.axes[0][0], ordered


def _kernel_axes(program: Program, kernel: Factor, ordered: list[Axis], elsewhere: set[str]) -> bool:
    """The kernel's spatial axes are the axes' kernel legs; a 1x1 axis pairs with a size-1 leg
    that nothing else carries."""
    if len(kernel.axes) != 2 + len(ordered):
        return False
    for axis, a in zip(kernel.axes[2:], ordered):
        if isinstance(axis, Window) or len(axis) != 1:
            return False
        if a.k is None:
            if axis[0] in elsewhere or _concrete(program, program.size(axis[0])) != 1:
                return False
        elif axis[0] != a.k:
            return False
    return True


def _distinct(*legs) -> bool:
    present = [leg for leg in legs if leg is not None]
    return len(set(present)) == len(present)


def _spatial_legs(ordered: list[Axis]) -> list[str]:
    return [leg for a in ordered for leg in (a.i, a.o, a.k)]


def _group_count(program: Program, g: str | None) -> int | None:
    return 1 if g is None else _concrete(program, program.size(g))


def native(program: Program, factors: list[Factor], result: tuple[str, ...], name: Callable[[Factor], str], temp: Callable[[], str], show: Show) -> Native | None:
    """A native PyTorch call for the whole product, or None."""
    found = _spatial(program, factors)
    if found is None:
        return None
    others, axes = found
    for matcher in (_forward, _input_vjp, _weight_vjp, _unfold, _fold, _pool):
        call = matcher(program, others, axes, result, name, temp, show)
        if call is not None:
            return call
    return None


def _native_call(value: str, call: str, after: list[str], groups: int | None, axis: int, why: str) -> Native:
    """``value = call``, then ``after``, then the grouped channel axis ``axis`` split as (groups, -1)."""
    lines = [f"{value} = {call}", *after]
    if groups:
        lines.append(f"{value} = {value}.unflatten({axis}, ({groups}, -1))")
    return Native(lines, value, why)


def _conv_args(ordered: list[Axis], groups: int, padding: bool = False) -> str:
    """Keyword arguments of a native convolution; ``padding`` passes symmetric padding along."""
    pads = f"padding={_tuple(a.pads[0] for a in ordered)}, " if padding else ""
    return (
        f"stride={_tuple(a.spec.stride for a in ordered)}, {pads}dilation={_tuple(a.spec.dilation for a in ordered)}, "
        f"groups={groups}"
    )


def _padded_input(expr: str, ordered: list[Axis]) -> tuple[str, bool]:
    """The input, padded with F.pad only where the padding is asymmetric (else the kernel pads)."""
    if all(a.pads[0] == a.pads[1] for a in ordered):
        return expr, True
    return _pad(expr, ordered, lambda a: a.pads), False


def _forward(program, others, axes, result, name, temp, show) -> Native | None:
    """Y[n, (g d), o..] = X[n, (g c), i..] * P.. * W[(g d), c, k..]: F.conv{D}d."""
    if len(others) != 2:
        return None
    for data, kernel in (others, others[::-1]):
        layout = _layout(program, data, "i", axes)
        if layout is None or len(kernel.axes) != len(data.axes) or isinstance(kernel.axes[1], Window):
            continue
        n, ordered = layout
        split = _split(data.axes[1], kernel.axes[0])
        if split is None or len(kernel.axes[1]) != 1 or not _kernel_axes(program, kernel, ordered, set(data.legs) | set(result)):
            continue
        g, c, d = split
        inner = kernel.axes[1][0]  # the kernel's input channel: c, or a size-1 leg where c was squeezed
        if (c is not None and inner != c) or (c is None and _concrete(program, program.size(inner)) != 1):
            continue
        if d is None or not _distinct(n, g, inner, d, *_spatial_legs(ordered)):
            continue
        if list(result) != [n] + ([g] if g else []) + [d] + [a.o for a in ordered]:
            continue
        groups = _group_count(program, g)
        if groups is None:
            return None
        dims = len(ordered)
        x, symmetric = _padded_input(name(data), ordered)
        call = f"torch.nn.functional.conv{dims}d({x}, {name(kernel)}, {_conv_args(ordered, groups, symmetric)})"
        why = f"native conv{dims}d: the product is exactly a convolution of {data.tensor} with {kernel.tensor}"
        return _native_call(temp(), call, [], g and groups, 1, why)
    return None


def _input_vjp(program, others, axes, result, name, temp, show) -> Native | None:
    """Y[n, (g c), i..] = V[n, (g d), o..] * P.. * W[(g d), c, k..]: a transpose convolution."""
    if len(others) != 2:
        return None
    for data, kernel in (others, others[::-1]):
        layout = _layout(program, data, "o", axes)
        if layout is None or len(kernel.axes) != len(data.axes) or isinstance(data.axes[1], Window):
            continue
        n, ordered = layout
        # kernel[(g d), c, k..]: its first axis is the data's channel axis (d may have been
        # squeezed out), its second the result's channels
        channel = tuple(data.axes[1])
        if tuple(kernel.axes[0]) != channel or len(kernel.axes[1]) != 1 or isinstance(kernel.axes[1], Window):
            continue
        c_leg = kernel.axes[1][0]
        if not _kernel_axes(program, kernel, ordered, set(data.legs) | set(result)) or not _distinct(n, c_leg, *channel, *_spatial_legs(ordered)):
            continue  # a diagonal (the same leg twice) is not a transpose convolution
        g = channel[0] if channel[0] in result else None
        if list(result) != [n] + ([g] if g else []) + [c_leg] + [a.i for a in ordered]:
            continue
        groups = _group_count(program, g)
        if groups is None:
            return None
        dims = len(ordered)
        value = temp()
        # the transpose convolution, with the padding and output padding that make its output the
        # axis of size I; where no such arguments exist (asymmetric padding), the full transpose
        # convolution, then its part [left, left + I) (padded on the right where it is shorter)
        full = [(a.sizes[1] - 1) * a.spec.stride + a.spec.dilation * (a.sizes[2] - 1) + 1 for a in ordered]
        extra = [a.sizes[0] + 2 * a.pads[0] - f for a, f in zip(ordered, full)]
        direct = all(a.pads[0] == a.pads[1] and 0 <= e < max(a.spec.stride, a.spec.dilation) for a, e in zip(ordered, extra))
        args = _conv_args(ordered, groups, direct) + (f", output_padding={_tuple(extra)}" if direct and any(extra) else "")
        call = f"torch.nn.functional.conv_transpose{dims}d({name(data)}, {name(kernel)}, {args})"
        crops = []
        for position, (a, f) in enumerate(zip(ordered, full)):
            if direct:
                break
            left, size = a.pads[0], a.sizes[0]
            if f < left + size:
                crops.append(f"{value} = torch.nn.functional.pad({value}, {_tuple([0, 0] * (dims - 1 - position) + [0, left + size - f])})")
            if left or f > left + size:
                crops.append(f"{value} = {value}.narrow({2 + position}, {left}, {size})")
        why = f"native conv_transpose{dims}d: the product is exactly the transpose convolution of {data.tensor} with {kernel.tensor}"
        return _native_call(value, call, crops, g and groups, 1, why)
    return None


def _weight_vjp(program, others, axes, result, name, temp, show) -> Native | None:
    """G[(g d), c, k..] = X[n, (g c), i..] * P.. * V[n, (g d), o..]: the weight gradient of a convolution."""
    if len(others) != 2:
        return None
    for data, seed in (others, others[::-1]):
        layout = _layout(program, data, "i", axes)
        if layout is None or len(seed.axes) != len(data.axes) or tuple(seed.axes[0]) != tuple(data.axes[0]):
            continue
        n, ordered = layout
        split = _split(data.axes[1], seed.axes[1])
        if split is None or [tuple(a) for a in seed.axes[2:]] != [(a.o,) for a in ordered]:
            continue
        g, c, d = split
        if c is None or d is None or not _distinct(n, g, c, d, *_spatial_legs(ordered)):
            continue  # a diagonal of the seed is not a weight gradient
        if list(result) != ([g] if g else []) + [d, c] + [a.k for a in ordered]:
            continue
        groups = _group_count(program, g)
        if groups is None:
            return None
        dims = len(ordered)
        x, symmetric = _padded_input(name(data), ordered)
        shape = f"({name(seed)}.shape[1], {name(data)}.shape[1] // {groups}, {', '.join(str(a.sizes[2]) for a in ordered)})"
        call = f"torch.nn.grad.conv{dims}d_weight({x}, {shape}, {name(seed)}, {_conv_args(ordered, groups, symmetric)})"
        why = f"native conv{dims}d weight gradient: the product is exactly the weight VJP of a convolution"
        return _native_call(temp(), call, [], g and groups, 0, why)
    return None


def _unfold(program, others, axes, result, name, temp, show) -> Native | None:
    """U[n, (c k1 k2), (o1 o2)] = X[n, c, i1, i2] * P1 * P2: F.unfold (im2col)."""
    if len(others) != 1 or len(axes) != 2:
        return None
    (data,) = others
    layout = _layout(program, data, "i", axes)
    if layout is None or len(data.axes[1]) != 1 or isinstance(data.axes[1], Window):
        return None
    n, ordered = layout
    g, c = None, data.axes[1][0]
    if not _distinct(n, c, *_spatial_legs(ordered)):
        return None
    if g is not None or list(result) != [n, c] + [a.k for a in ordered] + [a.o for a in ordered]:
        return None
    value = temp()
    x = _pad(name(data), ordered, lambda a: a.pads)
    kernel = _tuple(a.sizes[2] for a in ordered)
    lines = [
        f"{value} = torch.nn.functional.unfold({x}, {kernel}, dilation={_tuple(a.spec.dilation for a in ordered)}, "
        f"stride={_tuple(a.spec.stride for a in ordered)})",
        f"{value} = {value}.reshape({name(data)}.shape[0], {name(data)}.shape[1], {', '.join(str(a.sizes[2]) for a in ordered)}, "
        f"{', '.join(str(a.sizes[1]) for a in ordered)})",
    ]
    return Native(lines, value, "native unfold: the product is exactly im2col")


def _fold(program, others, axes, result, name, temp, show) -> Native | None:
    """X[n, c, i1, i2] = U[n, (c k1 k2), (o1 o2)] * P1 * P2: F.fold (col2im)."""
    if len(others) != 1 or len(axes) != 2:
        return None
    (data,) = others
    if len(data.axes) != 3 or any(isinstance(a, Window) for a in data.axes) or len(data.axes[0]) != 1:
        return None
    n, (c, *kernel), outputs = data.axes[0][0], data.axes[1], tuple(data.axes[2])
    by_output = {a.o: a for a in axes.values()}
    if len(kernel) != 2 or len(outputs) != 2 or any(o not in by_output for o in outputs):
        return None
    ordered = [by_output[o] for o in outputs]
    if [a.k for a in ordered] != kernel or list(result) != [n, c] + [a.i for a in ordered] or not _distinct(n, c, *_spatial_legs(ordered)):
        return None
    symmetric = all(a.pads[0] == a.pads[1] for a in ordered)
    size = _tuple(a.sizes[0] + (0 if symmetric else sum(a.pads)) for a in ordered)
    padding = _tuple(a.pads[0] if symmetric else 0 for a in ordered)
    value = temp()
    call = (
        f"torch.nn.functional.fold({name(data)}, {size}, {_tuple(a.sizes[2] for a in ordered)}, "
        f"dilation={_tuple(a.spec.dilation for a in ordered)}, padding={padding}, stride={_tuple(a.spec.stride for a in ordered)})"
    )
    crops = [
        f"{value} = {value}.narrow({2 + position}, {a.pads[0]}, {a.sizes[0]})"
        for position, a in enumerate(ordered)
        if not symmetric and sum(a.pads)
    ]
    return _native_call(value, call, crops, None, 1, "native fold: the product is exactly col2im")


def _pool(program, others, axes, result, name, temp, show) -> Native | None:
    """S[n, c, o..] = X[n, c, i..] * P..: sum pooling, as average pooling times the window size."""
    if len(others) != 1:
        return None
    (data,) = others
    layout = _layout(program, data, "i", axes)
    if layout is None or len(data.axes[1]) != 1 or isinstance(data.axes[1], Window):
        return None
    n, ordered = layout
    g, c = None, data.axes[1][0]
    if not _distinct(n, c, *_spatial_legs(ordered)):
        return None
    if g is not None or list(result) != [n, c] + [a.o for a in ordered] or any(a.spec.dilation != 1 for a in ordered):
        return None
    if any(a.pads[0] > a.sizes[2] // 2 for a in ordered) or len(ordered) > 3:
        return None
    dims = len(ordered)
    window = 1
    for a in ordered:
        window *= a.sizes[2]
    symmetric = all(a.pads[0] == a.pads[1] for a in ordered)
    x = name(data) if symmetric else _pad(name(data), ordered, lambda a: a.pads)
    padding = _tuple(a.pads[0] if symmetric else 0 for a in ordered)
    value = temp()
    lines = [
        f"{value} = {window} * torch.nn.functional.avg_pool{dims}d({x}, {_tuple(a.sizes[2] for a in ordered)}, "
        f"stride={_tuple(a.spec.stride for a in ordered)}, padding={padding}, count_include_pad=True)"
    ]
    return Native(lines, value, f"native avg_pool{dims}d: the product is exactly sum pooling")
