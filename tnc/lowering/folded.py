"""The folded strategy: a weight-gradient-shaped product as ONE native convolution, with the batch
folded into the groups and stride and dilation swapped (the trick of the old
``torch.nn.grad.conv2d_weight``).

Applies to ``G[.., c, k..] = X[b, (g c), i..] * P[i, o, k].. * E[b, (g d), o..]`` read as a weight
VJP (:func:`tnc.lowering.native._conv` with sides X, E, G), where the legs play these roles:

- ``b``: on X and E, summed (the batch of a plain weight VJP);
- ``g``: on X, E and the result (the layer's groups; a per-sample leg ``n``, of free size);
- ``c``: on X and the result (input channels per group; none for a depthwise layer);
- ``d``: on E and the result (output channels per group; the GGN's sample leg ``v``);

and every spatial axis is a pattern ``P[i, o, k] = [i = S*o + D*k - L]``, any padding. Then

    Xf[c, (b g), j..]    = X[b, (g c), j - L..]   (padded; a view where c is empty, else a permute)
    Ef[(b g d), 1, o..]  = E[b, (g d), o..]       (a view in E's storage order)
    Z = convNd(Xf, Ef, stride=D, dilation=S, groups=|b g|)
    Z[c, (b g d), k..]   = sum_o Xf[c, (b g), D*k + S*o] * Ef[(b g d), 0, o]
                         = sum_o X[b, (g c), S*o + D*k - L] * E[b, (g d), o]

because output channel (b g d) is in group (b g) (``d`` runs fastest within a group), whose one
input channel is (b g); the batch of the convolution is ``c``. That is the product for k < K; the
convolution gives k < Kf = (I' - S*(O-1) - 1) // D + 1 >= K (I' the padded extent), narrowed to
K. Then ``b`` is summed and the axes arranged as the result's legs. The pattern reads zeros outside
[0, I), so padding more than the windows read changes nothing: the kernel's own symmetric padding
L where the windows read at most L past the end, else ``F.pad`` by (L, what they read).

Priced by :func:`price` (FLOPs of the Kf entries, the operands' copies, the pad, the sum over b);
:func:`tnc.lowering.term.lower` takes it where that is cheaper than windows or a native kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from tnc.cost import model
from tnc.cost.model import Cost, Size
from tnc.ir.network import Factor
from tnc.ir.program import Program
from tnc.lowering.native import (
    VALUE,
    Axis,
    Name,
    Native,
    Show,
    _arrange,
    _canonical,
    _conv,
    _moded,
    _notes,
    _pad,
    _permutes,
    _shape,
    _size,
    _to_result,
    _tuple,
)


@dataclass(frozen=True)
class FoldedAxis:
    """A spatial axis of the folded convolution: the pattern's legs, the input extent the kernel
    reads (padded) and the kernel extent it computes (``full`` >= K, narrowed to K)."""

    i: str
    o: str
    k: str
    read: int
    full: int


@dataclass(frozen=True)
class Folded(Native):
    """A folded convolution's call (``lines``), with what :func:`price` needs."""

    roles: tuple[tuple[str, ...], ...] = ()  # the b, g, c, d legs
    axes: tuple[FoldedAxis, ...] = ()
    padded: str | None = None  # the tensor F.pad copies (padding the kernel cannot do)


def folded(program: Program, factors: list[Factor], result: tuple[str, ...], name: Name, show: Show) -> Folded | None:
    """The product as one folded convolution (see the module), or None where it is no weight VJP
    of pattern axes with non-negative left padding."""
    canonical = _canonical(program, factors, result)
    if canonical is None:
        return None
    match = _conv(program, canonical, ("X", "Y", "W"), free_groups=True)
    if match is None or not all(s.axis.from_pattern for s in match.spatial):
        return None
    b, g, c, d = (match.roles[role] for role in "bgcd")
    ordered = [s.axis for s in match.spatial]
    if any(a.pads[0] < 0 for a in ordered) or _moded(ordered):
        return None  # a padding mode's border is not the kernel's zero padding
    copies: list[str] = []
    x_operand, e_operand = match.operands["X"], match.operands["Y"]
    x = _arrange(program, x_operand, [c, b + g] + [[a.i] for a in ordered], name(x_operand.factor), show)
    e = _arrange(program, e_operand, [b + g + d, []] + [[a.o] for a in ordered], name(e_operand.factor), show)
    if x is None or e is None:
        return None
    copies += [operand.factor.tensor for operand, arranged in ((x_operand, x), (e_operand, e)) if arranged[1]]
    reads = [a.spec.stride * (a.sizes[1] - 1) + a.spec.dilation * (a.sizes[2] - 1) + 1 - a.pads[0] - a.sizes[0] for a in ordered]
    symmetric = all(right <= a.pads[0] for a, right in zip(ordered, reads))
    rights = [a.pads[0] if symmetric else max(right, 0) for a, right in zip(ordered, reads)]
    axes = tuple(_axis(a, right) for a, right in zip(ordered, rights))
    dims = len(ordered)
    groups = show(_size(program, b + g))
    padding = f"padding={_tuple(a.pads[0] for a in ordered)}, " if symmetric and any(a.pads[0] for a in ordered) else ""
    source = x[0] if symmetric else _pad(x[0], ordered, lambda a: (a.pads[0], rights[ordered.index(a)]))
    lines = [
        f"{VALUE} = torch.nn.functional.conv{dims}d({source}, {e[0]}, stride={_tuple(a.spec.dilation for a in ordered)}, "
        f"{padding}dilation={_tuple(a.spec.stride for a in ordered)}, groups={groups})"
    ]
    narrowed = [n for n, (a, axis) in enumerate(zip(ordered, axes)) if axis.full > a.sizes[2]]
    lines += [f"{VALUE} = {VALUE}.narrow({2 + n}, 0, {ordered[n].sizes[2]})" for n in narrowed]
    if b:
        lines.append(f"{VALUE} = {VALUE}.unflatten(1, {_shape([_size(program, b), _size(program, g + d)], show)}).sum(1)")
    layout = [c, g + d] + [[a.k] for a in ordered]
    lines += _to_result(program, VALUE, layout, canonical, show)
    permuted = _permutes(layout, canonical) or (["result"] if narrowed and not b else [])
    why = (
        f"folded conv{dims}d: the weight gradient as one convolution, {' '.join(b + g)} folded into its groups, "
        f"stride and dilation swapped{' and ' + ' '.join(b) + ' summed' if b else ''}"
    )
    why += _notes(canonical, copies)
    padded = None if symmetric else x_operand.factor.tensor
    roles = (tuple(b), tuple(g), tuple(c), tuple(d))
    return Folded(lines, VALUE, why, tuple(copies + permuted), roles=roles, axes=axes, padded=padded)


def _axis(a: Axis, right: int) -> FoldedAxis:
    """The folded axis of pattern axis ``a`` padded by (L, ``right``): Kf = (I' - S*(O-1) - 1) // D + 1."""
    read = a.sizes[0] + a.pads[0] + right
    return FoldedAxis(a.i, a.o, a.k, read, (read - a.spec.stride * (a.sizes[1] - 1) - 1) // a.spec.dilation + 1)


def price(program: Program, call: Folded, target: tuple[str, ...], size: Size) -> Cost:
    """What ``call`` costs: the convolution (a multiply-add per c, b, g, d, o.. and computed kernel
    entry, reading both operands and writing its result), the copies of its operands (the
    permutes into its layout, the pad), the sum over b and the result's permute."""
    b, g, c, d = (model.elements(legs, size) for legs in call.roles)
    outputs = model.elements([a.o for a in call.axes], size)
    full, kernel = prod(a.full for a in call.axes), model.elements([a.k for a in call.axes], size)
    read = c * b * g * prod(a.read for a in call.axes)
    made = c * b * g * d * full
    cost = Cost(2 * c * b * g * d * outputs * full, read + b * g * d * outputs + made, made, 1)
    for copied in call.copies:
        legs = target if copied == "result" else [leg for axis in program.tensors[copied].axes for leg in axis]
        cost = cost + model.copy(model.elements(legs, size))
    if call.padded is not None:
        cost = cost + model.copy(read)
    if call.roles[0]:  # the sum over b of the narrowed entries
        cost = cost + model.contraction([("b", "r")], ("r",), {"b": b, "r": c * g * d * kernel}.__getitem__)
    return cost
