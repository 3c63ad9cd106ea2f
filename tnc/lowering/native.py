"""Lowering strategies for one product, tried in order (the cost model of the PyTorch target):

1. ``native``: the product is exactly a standard operation (convolution, transpose convolution /
   input VJP, weight VJP, unfold, fold, sum pooling) of any dimension and groups, or a Gram
   matrix U U^T: call the native PyTorch kernel, which does the same arithmetic without any
   index-pattern work; or an identity (sums over size-1 legs, 1x1 patterns): a view, no call.
   A weight VJP (per-sample or summed) is also tried as one convolution with the batch folded
   into its groups (``folded``, :mod:`tnc.lowering.folded`), the cheaper taken.
2. ``window``: a pattern whose input leg is summed and read by plain axes of data tensors is
   contracted by reading those tensors through a window (pad once, ``Tensor.unfold``), so no
   multiplication by the zeros of the 0/1 pattern happens.
3. ``einsum``: pairwise contractions in the order opt_einsum planned (``torch.einsum`` uses
   mm/bmm for each step).

The generated file says which strategy each term took, and why.

Native matching works on a canonical form of the product, so that every spelling of an operation
reaches its kernel: legs of size 1 (outside patterns) are dropped, and deltas between them; a
factor is read as its sequence of legs, whatever its grouping; each leg's role (batch, group,
input or output channel, spatial) follows from where it occurs, not from its position. An operand
is then arranged into the kernel's layout (a reshape, a view where storage order already agrees,
else a permute), and the kernel's result into the product's result legs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Callable

import sympy

from tnc.ir.network import Factor, Kind, Window
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Program
from tnc.lowering.views import operand_view

Show = Callable[[sympy.Expr], str]
Name = Callable[[Factor], str]
VALUE = "_native_value"  # the matchers' name for their result; native() gives it a temporary's name


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
    """A native call: ``lines`` compute ``value`` (in the product's result-leg order, one axis per
    leg). ``copies`` names the operands the call reads through a copy (a permute that no view
    gives), and ``"result"`` where its result is a permuted view, for a cost model to price."""

    lines: list[str]
    value: str
    why: str
    copies: tuple[str, ...] = ()
    channels: tuple[str, ...] | None = None  # a forward convolution's output channel legs, in order
    bias: str | None = None  # the tensor the kernel adds as its bias (tnc.lowering.bias)
    slow: bool = False  # a kernel slower per FLOP than the model's rate (tnc.cost.model.SLOW_KERNEL)
    view: bool = False  # ``value`` is a view of the operand (an identity): no computation, not to scale in place


def _concrete(program: Program, expr: sympy.Expr) -> int | None:
    value = program.concrete(expr)
    return int(value) if value.is_number else None


def _read_axis(program: Program, axis: tuple[str, ...], storage: tuple[str, ...]) -> Axis | None:
    """A spatial axis that simplification already rewrote: a group ``(o k)`` (kernel = stride) or a
    window ``S*o + D*k - P``, read as the convolution axis it is (concrete sizes only)."""
    if len(axis) != 2 or axis[0] == axis[1] or getattr(axis, "mode", "zeros") != "zeros":
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


# --------------------------------------------------------------------------- canonical form
@dataclass(frozen=True)
class Slot:
    """One dimension of an operand's canonical view: a leg, or a whole storage axis that a rewrite
    left as a group ``(o k)`` or a window, with ``read``, the convolution axis it is."""

    legs: tuple[str, ...]
    size: sympy.Expr
    read: Axis | None = None
    window: bool = False  # a window cannot be split into its legs


@dataclass(frozen=True)
class Operand:
    """A data factor as its slots in storage order (legs of size 1 dropped)."""

    factor: Factor
    slots: tuple[Slot, ...]

    @property
    def legs(self) -> list[str]:
        return [leg for slot in self.slots for leg in slot.legs]

    def split(self, program: Program, keep: Callable[[Slot], bool] = lambda slot: False) -> "Operand":
        """The operand with each rewritten group that ``keep`` rejects read as its legs again."""
        slots: list[Slot] = []
        for slot in self.slots:
            if slot.read is None or slot.window or keep(slot):
                slots.append(slot)
            else:
                slots += [Slot((leg,), program.size(leg)) for leg in slot.legs]
        return Operand(self.factor, tuple(slots))


@dataclass(frozen=True)
class Canonical:
    """A product in canonical form: data operands, the 3-leg patterns by input leg, the result
    legs without the size-1 legs (``full``: all of them)."""

    operands: tuple[Operand, ...]
    axes: dict[str, Axis]
    result: tuple[str, ...]
    full: tuple[str, ...]
    dropped: tuple[str, ...]  # the size-1 legs left out


def _canonical(program: Program, factors: list[Factor], result: tuple[str, ...]) -> Canonical | None:
    """The canonical form, or None where a pattern is summed, has a repeated or symbolic leg, or a
    delta joins legs that are not all of size 1."""
    axes: dict[str, Axis] = {}
    data, deltas = [], []
    for factor in factors:
        if factor.kind is Kind.DELTA:
            deltas.append(factor)
        elif factor.kind is not Kind.PATTERN:
            data.append(factor)
            continue
        else:
            spec = program.tensors[factor.tensor].pattern
            if spec.summed or len(set(factor.legs)) != 3 or any(len(a) != 1 for a in factor.axes):
                return None
            i, o, k = factor.legs
            sizes = tuple(_concrete(program, program.size(leg)) for leg in (i, o, k))
            pads = tuple(_concrete(program, p) for p in spec.pads(program.size(k)))
            if None in sizes or None in pads or i in axes:
                return None
            axes[i] = Axis(spec, i, o, k, sizes, pads)
    keep = {leg for a in axes.values() for leg in (a.i, a.o, a.k)}
    reads: dict[tuple[int, int], Axis | None] = {}
    for n, factor in enumerate(data):
        declared = program.tensors[factor.tensor].axes
        for m, (axis, storage) in enumerate(zip(factor.axes, declared)):
            if isinstance(axis, Window) or (len(storage) == 1 and len(axis) == 2):
                reads[n, m] = _read_axis(program, axis, storage)
                if isinstance(axis, Window) and reads[n, m] is None:
                    return None
                keep |= set(axis)
    legs = {leg for f in factors for leg in f.legs} | set(result)
    ones = {leg for leg in legs - keep if _concrete(program, program.size(leg)) == 1}
    if any(not set(d.legs) <= ones for d in deltas):
        return None
    operands = []
    for n, factor in enumerate(data):
        slots: list[Slot] = []
        declared = program.tensors[factor.tensor].axes
        for m, (axis, storage) in enumerate(zip(factor.axes, declared)):
            if reads.get((n, m)) is not None:
                slots.append(Slot(tuple(axis), program.axis_size(storage), reads[n, m], isinstance(axis, Window)))
            else:
                slots += [Slot((leg,), program.size(leg)) for leg in axis if leg not in ones]
        operands.append(Operand(factor, tuple(slots)))
    kept = tuple(leg for leg in result if leg not in ones)
    return Canonical(tuple(operands), axes, kept, tuple(result), tuple(sorted(ones)))


def _places(sides: dict[str, list[str]], axes: dict[str, Axis]) -> dict[str, tuple[str, ...]] | None:
    """Where each leg occurs (sorted side names, ``P`` for a pattern); None for a leg that occurs
    twice on one side (a diagonal)."""
    places: dict[str, list[str]] = {}
    for side, legs in sides.items():
        if len(set(legs)) != len(legs):
            return None
        for leg in legs:
            places.setdefault(leg, []).append(side)
    for a in axes.values():
        for leg in (a.i, a.o, a.k):
            places.setdefault(leg, []).append("P")
    return {leg: tuple(sorted(where)) for leg, where in places.items()}


def _size(program: Program, legs) -> sympy.Expr:
    return program.concrete(sympy.Mul(*(program.size(leg) for leg in legs)))


def _arrange(program: Program, operand: Operand, groups: list[list[str]], variable: str, show: Show) -> tuple[str, bool] | None:
    """``variable`` (the operand's storage) as a tensor with one axis per group of legs (an empty
    group: an axis of size 1): a view where the storage order agrees, else a permute; whether it
    copies. None where a slot's legs fall into different groups."""
    slot_of = {leg: slot for slot in operand.slots for leg in slot.legs}
    target: list[list[Slot]] = []
    for group in groups:
        slots = list(dict.fromkeys(slot_of[leg] for leg in group))
        if [leg for slot in slots for leg in slot.legs] != list(group):
            return None
        target.append(slots)
    order = [slot for slots in target for slot in slots]
    if sorted(map(id, order)) != sorted(map(id, operand.slots)):
        return None
    declared = program.tensors[operand.factor.tensor].axes
    storage = [program.axis_size(axis) for axis in declared]
    sizes = [slot.size for slot in operand.slots]
    dims = [program.concrete(sympy.Mul(*(s.size for s in slots))) for slots in target]
    if order == list(operand.slots):
        same = len(dims) == len(storage) and all(sympy.expand(a - b) == 0 for a, b in zip(dims, storage))
        return (variable if same else f"{variable}.reshape{_shape(dims, show)}"), False
    expr = variable
    if len(sizes) != len(storage) or any(sympy.expand(a - b) != 0 for a, b in zip(sizes, storage)):
        expr += f".reshape{_shape(sizes, show)}"
    expr += f".permute{_tuple(list(operand.slots).index(slot) for slot in order)}"
    if any(len(slots) > 1 for slots in target):
        return expr + f".reshape{_shape(dims, show)}", True
    if any(not slots for slots in target):  # axes of size 1 for empty groups: still a view
        expr += "[" + ", ".join(":" if slots else "None" for slots in target) + "]"
    return expr, False


def _to_result(program: Program, value: str, groups: list[list[str]], canonical: Canonical, show: Show) -> list[str]:
    """Lines that turn ``value`` (one axis per group of legs) into the product's result legs (a
    permuted view where their order differs: see :func:`_permutes`)."""
    legs = [leg for group in groups for leg in group]
    lines = []
    views = ""
    for position in reversed(range(len(groups))):  # from the last, so that positions stay valid
        if not groups[position]:
            views += f".squeeze({position})"
        elif len(groups[position]) > 1:
            views += f".unflatten({position}, {_shape([program.size(leg) for leg in groups[position]], show)})"
    if views:
        lines.append(f"{value} = {value}{views}")
    if list(canonical.result) != legs:
        lines.append(f"{value} = {value}.permute{_tuple(legs.index(leg) for leg in canonical.result)}")
    if canonical.full != canonical.result:
        index = ", ".join("None" if leg in canonical.dropped else ":" for leg in canonical.full)
        lines.append(f"{value} = {value}[{index}]")
    return lines


def _shape(values: list[sympy.Expr], show: Show) -> str:
    return "(" + ", ".join(show(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def _permutes(groups: list[list[str]], canonical: Canonical) -> list[str]:
    """``["result"]`` where the kernel's result reaches the result legs only through a permute
    (which whatever reads it next copies), else nothing: counted with the copied operands."""
    return ["result"] if [leg for group in groups for leg in group] != list(canonical.result) else []


def _tuple(values) -> str:
    values = list(values)
    return f"({', '.join(map(str, values))}{',' if len(values) == 1 else ''})"


def _mode(axis: Axis) -> str:
    """The padding mode the axis pads with: zeros where it pads nothing."""
    return axis.spec.padding_mode if any(axis.pads) else "zeros"


def _moded(spatial: list[Axis]) -> bool:
    return any(_mode(a) != "zeros" for a in spatial)


def _pad(expr: str, spatial: list[Axis], extra: Callable[[Axis], tuple[int, int]]) -> str:
    """``F.pad`` of the trailing spatial axes by ``extra(axis)`` = (left, right), if any is non-zero:
    one call per padding mode (the axes pad independently, so in any order)."""
    for mode in dict.fromkeys(_mode(a) for a in spatial):
        pads = [p for axis in reversed(spatial) for p in (extra(axis) if _mode(axis) == mode else (0, 0))]
        if any(pads):
            expr = f"torch.nn.functional.pad({expr}, {_tuple(pads)}{'' if mode == 'zeros' else f', mode={mode!r}'})"
    return expr


def native(program: Program, factors: list[Factor], result: tuple[str, ...], name: Name, temp: Callable[[], str], show: Show) -> Native | None:
    """A native PyTorch call for the whole product, or None. A Gram matrix is taken wherever it
    applies (X X^T is no convolution of X with X); where several other readings apply (a 1x1
    convolution is also a transpose convolution, and roles may be read more than one way), the
    one that copies fewest operands, then the first in the order forward, input VJP, weight VJP,
    unfold, fold, pooling."""
    canonical = _canonical(program, factors, result)
    if canonical is None:
        return None
    found = []
    for matcher in (_identity, _gram, _forward, _input_vjp, _weight_vjp, _unfold, _fold, _pool):
        call = matcher(program, canonical, name, show)
        if call is not None:
            found.append(call)
            if not call.copies or matcher in (_identity, _gram):
                break
    if not found:
        return None
    best = min(found, key=lambda call: len(call.copies))
    value = temp()
    return replace(best, lines=[line.replace(VALUE, value) for line in best.lines], value=value)


def _identity(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """R[..] = X[..] * P.., every pattern a 1x1 identity (K = 1, stride 1, no padding, O = I), the
    other summed legs of size 1: the result is X's storage, each pattern's input leg read as its
    output leg, so a view (a reshape, a permute where the order differs, None for size-1 legs),
    no computation. Correct because such a pattern is the delta of i and o (i = o exactly), and
    a sum over a size-1 leg has one summand."""
    if len(canonical.operands) != 1:
        return None
    if any(a.sizes[2] != 1 or a.spec.stride != 1 or a.pads != (0, 0) or a.sizes[0] != a.sizes[1] for a in canonical.axes.values()):
        return None
    operand = canonical.operands[0].split(program)
    if any(slot.read is not None for slot in operand.slots):
        return None  # a window or a rewritten group that is not its legs
    inputs = {a.i: a.o for a in canonical.axes.values()}
    kernels = {a.k for a in canonical.axes.values()}
    read = [inputs.get(leg, leg) for leg in operand.legs]
    others = set(inputs.values()) | kernels
    if any(leg in others for leg in operand.legs) or set(canonical.result) & kernels:
        return None  # a pattern's output or kernel leg on the operand, or a kernel leg in the result
    if len(set(read)) != len(read) or len(canonical.result) != len(set(canonical.result)) or set(read) != set(canonical.result):
        return None  # a diagonal, or a leg summed that is not of size 1
    back = {o: i for i, o in inputs.items()}
    arranged = _arrange(program, operand, [[back.get(leg, leg)] for leg in canonical.result], name(operand.factor), show)
    if arranged is None:
        return None
    lines = [f"{VALUE} = {arranged[0]}", *_to_result(program, VALUE, [[leg] for leg in canonical.result], canonical, show)]
    why = f"native view: the product is an identity of {operand.factor.tensor}, no computation{_notes(canonical, [])}"
    return Native(lines, VALUE, why, view=True)  # a permuted view is priced as einsum's would be: nothing


# --------------------------------------------------------------------------- convolutions
# The three sides of a convolution: input X[batch, (g c), x..], kernel W[(g d), c, w..], output
# Y[batch, (g d), y..]. A leg's role follows from the sides it occurs on; pattern legs i, o, k
# occur on X, Y, W respectively.
ROLES = {("W", "X", "Y"): "g", ("W", "X"): "c", ("W", "Y"): "d", ("X", "Y"): "b"}
PATTERN_PLACES = {"i": ("P", "X"), "o": ("P", "Y"), "k": ("P", "W")}


@dataclass(frozen=True)
class Spatial:
    """A spatial axis of a convolution and the legs that name it on X, Y and W: a pattern's
    (i), (o), (k); a rewritten input axis (o, k), (o), (k); a rewritten transpose output axis
    (o, k), (o), (k) with stride = kernel; a 1x1 axis (b), (b), ()."""

    axis: Axis
    x: tuple[str, ...]
    y: tuple[str, ...]
    w: tuple[str, ...]


@dataclass(frozen=True)
class ConvMatch:
    """A product read as a convolution: operands by side, each side's groups of legs (one per axis
    of its native layout), the spatial axes in order and the group count."""

    operands: dict[str, Operand]
    groups: dict[str, list[list[str]]]
    spatial: list[Spatial]
    count: int | None  # None: the groups' size is free (only with free_groups)
    roles: dict[str, list[str]]  # the batch ("b"), group, input and output channel legs, in order


def _one_by_one(program: Program, leg: str) -> Spatial | None:
    size = _concrete(program, program.size(leg))
    return None if size is None else Spatial(Axis(ConvPattern(), None, leg, None, (size, size, 1), (0, 0), False), (leg,), (leg,), ())


def _conv(program: Program, canonical: Canonical, sides: tuple[str, str, str], free_groups: bool = False) -> ConvMatch | None:
    """The product as a convolution whose first operand is side ``sides[0]`` (X or Y: the one that
    orders the spatial axes), the second ``sides[1]``, the result ``sides[2]``; ``free_groups``
    also allows group legs of free size (a kernel's ``groups=`` must be a number).

    Applies when every leg occurs on exactly the sides its role needs (so no diagonal, no leg
    summed on one side alone), every pattern is a spatial axis, and the first operand's legs
    come as batch legs, then channels and spatial axes in any order. Correct because such a
    product is, leg for leg, the kernel's sum: batch legs are independent, groups select blocks,
    c (and pattern k) are summed, a rewritten group (o k) is the input axis of a convolution with
    kernel = stride, a batch-like leg behind the channels a 1x1 spatial axis.
    """
    if len(canonical.operands) != 2:
        return None
    data_side, other_side, result_side = sides
    for first, second in (canonical.operands, canonical.operands[::-1]):
        data = first.split(program, lambda slot: data_side == "X")
        other = second.split(program)
        legs = {data_side: data.legs, other_side: other.legs, result_side: list(canonical.result)}
        places = _places(legs, canonical.axes)
        if places is None:
            continue
        roles = {leg: ROLES.get(where) for leg, where in places.items() if "P" not in where}
        if None in roles.values() or any(places[getattr(a, r)] != p for a in canonical.axes.values() for r, p in PATTERN_PLACES.items()):
            continue
        match = _conv_layout(program, canonical, data, other, sides, roles, legs, free_groups)
        if match is not None:
            return match
    return None


def _conv_layout(
    program: Program, canonical: Canonical, data: Operand, other: Operand, sides: tuple[str, str, str], roles: dict, legs: dict,
    free_groups: bool = False,
) -> ConvMatch | None:
    """The layout of a product whose roles agree with a convolution (see :func:`_conv`)."""
    data_side, other_side, _ = sides
    operands = {data_side: data, other_side: other}
    by_leg = {(a.i if data_side == "X" else a.o): a for a in canonical.axes.values()}
    batch: list[str] = []
    spatial: list[Spatial] = []
    for slot in data.slots:
        if slot.read is not None:
            if [roles.get(leg) for leg in slot.legs] != ["b", "c"]:
                return None
            o, k = slot.legs
            spatial.append(Spatial(slot.read, slot.legs, (o,), (k,)))
            continue
        (leg,) = slot.legs
        if leg in by_leg:
            a = by_leg[leg]
            spatial.append(Spatial(a, (a.i,), (a.o,), (a.k,)))
        elif roles.get(leg) == "b" and not spatial and all(roles.get(before) == "b" for before in data.legs[: data.legs.index(leg)]):
            batch.append(leg)
        elif roles.get(leg) == "b":
            if (axis := _one_by_one(program, leg)) is None:
                return None
            spatial.append(axis)
        elif leg not in roles:
            return None
    if data_side == "Y":  # a transpose convolution's output axis that a rewrite grouped as (o k)
        spatial = [_output_group(program, s, canonical.result, legs["W"], roles) or s for s in spatial]
    kernel_legs = canonical.full if (kernel := operands.get("W")) is None else kernel.factor.legs
    if not 1 <= len(spatial) <= 3 or sum(not s.w for s in spatial) > len(set(kernel_legs) & set(canonical.dropped)):
        return None  # a 1x1 axis needs the size-1 kernel leg it had (else a matmul is no convolution)
    if {s.axis.i for s in spatial if s.axis.from_pattern} != set(canonical.axes):
        return None
    taken = set(batch) | {leg for s in spatial for leg in s.x + s.y + s.w}
    order = list(dict.fromkeys(data.legs + other.legs + list(canonical.result)))
    g, c, d = ([leg for leg in order if roles.get(leg) == role and leg not in taken] for role in "gcd")
    if any(roles.get(leg) == "b" and leg not in taken for leg in order):
        return None
    count = _concrete(program, _size(program, g))
    if count is None and not free_groups:
        return None
    groups = {
        "X": [batch, g + c] + [list(s.x) for s in spatial],
        "Y": [batch, g + d] + [list(s.y) for s in spatial],
        "W": [g + d, c] + [list(s.w) for s in spatial],
    }
    return ConvMatch(operands, groups, spatial, count, {"b": batch, "g": g, "c": c, "d": d})


def _output_group(program: Program, s: Spatial, result: tuple[str, ...], kernel: list[str], roles: dict) -> Spatial | None:
    """A 1x1 axis ``o`` of a transpose convolution's input that the result follows by a kernel
    leg ``k``: the output axis (o k), kernel = stride (what the dense rule leaves)."""
    if s.w or s.y[0] not in result:
        return None
    o = s.y[0]
    at = result.index(o)
    if at + 1 == len(result) or roles.get(k := result[at + 1]) != "c" or k not in kernel:
        return None
    O, K = (_concrete(program, program.size(leg)) for leg in (o, k))
    if None in (O, K):
        return None
    return Spatial(Axis(ConvPattern(stride=K), None, o, k, (O * K, O, K), (0, 0), False), (o, k), (o,), (k,))


def _arranged(program: Program, match: ConvMatch, side: str, name: Name, show: Show, copies: list[str]) -> str | None:
    operand = match.operands[side]
    arranged = _arrange(program, operand, match.groups[side], name(operand.factor), show)
    if arranged is None:
        return None
    if arranged[1]:
        copies.append(operand.factor.tensor)
    return arranged[0]


def _notes(canonical: Canonical, copies: list[str]) -> str:
    notes = []
    if canonical.dropped:
        notes.append(f"legs of size 1 dropped: {', '.join(canonical.dropped)}")
    if copies:
        notes.append(f"{', '.join(copies)} copied into the kernel's layout")
    return f" ({'; '.join(notes)})" if notes else ""


def _conv_args(ordered: list[Axis], groups: int, padding: bool = False) -> str:
    """Keyword arguments of a native convolution; ``padding`` passes symmetric padding along."""
    pads = f"padding={_tuple(a.pads[0] for a in ordered)}, " if padding else ""
    return (
        f"stride={_tuple(a.spec.stride for a in ordered)}, {pads}dilation={_tuple(a.spec.dilation for a in ordered)}, "
        f"groups={groups}"
    )


def _padded_input(expr: str, ordered: list[Axis]) -> tuple[str, bool]:
    """The input, padded with F.pad only where the padding is asymmetric or has a mode other than
    zeros (else the kernel pads)."""
    if all(a.pads[0] == a.pads[1] for a in ordered) and not _moded(ordered):
        return expr, True
    return _pad(expr, ordered, lambda a: a.pads), False


def _matched(program: Program, canonical: Canonical, sides: str, name: Name, show: Show) -> tuple[ConvMatch, list[str], str, str] | None:
    """A convolution-like match whose operands are ``sides[:2]`` and result ``sides[2]``, with both
    operands arranged in the kernel's layout; ``copies`` collects those that needed a copy."""
    match = _conv(program, canonical, tuple(sides))
    if match is None:
        return None
    copies: list[str] = []
    first, second = (_arranged(program, match, side, name, show, copies) for side in sides[:2])
    if first is None or second is None:
        return None
    return match, copies, first, second


def _native_conv(program: Program, canonical: Canonical, match: ConvMatch, side: str, lines: list[str], why: str, copies: list[str], show: Show) -> Native:
    """``lines`` compute the kernel's result, then it is arranged as the product's result ``side``."""
    lines = lines + _to_result(program, VALUE, match.groups[side], canonical, show)
    return Native(lines, VALUE, why + _notes(canonical, copies), tuple(copies + _permutes(match.groups[side], canonical)))


def _forward(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """Y[batch, (g d), o..] = X[batch, (g c), i..] * P.. * W[(g d), c, k..]: F.conv{D}d."""
    found = _matched(program, canonical, "XWY", name, show)
    if found is None:
        return None
    match, copies, x, w = found
    ordered = [s.axis for s in match.spatial]
    dims = len(ordered)
    x, symmetric = _padded_input(x, ordered)
    value = VALUE
    call = f"torch.nn.functional.conv{dims}d({x}, {w}, {_conv_args(ordered, match.count, symmetric)})"
    tensors = [match.operands[side].factor.tensor for side in "XW"]
    why = f"native conv{dims}d: the product is exactly a convolution of {tensors[0]} with {tensors[1]}"
    native = _native_conv(program, canonical, match, "Y", [f"{value} = {call}"], why, copies, show)
    return replace(native, channels=tuple(match.groups["Y"][1]))


def _input_vjp(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """X[batch, (g c), i..] = Y[batch, (g d), o..] * P.. * W[(g d), c, k..]: F.conv_transpose{D}d."""
    found = _matched(program, canonical, "YWX", name, show)
    if found is None:
        return None
    match, copies, y, w = found
    ordered = [s.axis for s in match.spatial]
    if _moded(ordered):
        return None  # the adjoint of a mode's pad folds the border back: no transpose convolution
    dims = len(ordered)
    value = VALUE
    # the transpose convolution, with the padding and output padding that make its output the
    # axis of size I; where no such arguments exist (asymmetric padding), the full transpose
    # convolution, then its part [left, left + I) (padded on the right where it is shorter)
    full = [(a.sizes[1] - 1) * a.spec.stride + a.spec.dilation * (a.sizes[2] - 1) + 1 for a in ordered]
    extra = [a.sizes[0] + 2 * a.pads[0] - f for a, f in zip(ordered, full)]
    direct = all(a.pads[0] == a.pads[1] and 0 <= e < max(a.spec.stride, a.spec.dilation) for a, e in zip(ordered, extra))
    args = _conv_args(ordered, match.count, direct) + (f", output_padding={_tuple(extra)}" if direct and any(extra) else "")
    lines = [f"{value} = torch.nn.functional.conv_transpose{dims}d({y}, {w}, {args})"]
    for position, (a, f) in enumerate(zip(ordered, full)):
        if direct:
            break
        left, size = a.pads[0], a.sizes[0]
        if f < left + size:
            lines.append(f"{value} = torch.nn.functional.pad({value}, {_tuple([0, 0] * (dims - 1 - position) + [0, left + size - f])})")
        if left or f > left + size:
            lines.append(f"{value} = {value}.narrow({2 + position}, {left}, {size})")
    tensors = [match.operands[side].factor.tensor for side in "YW"]
    why = f"native conv_transpose{dims}d: the product is exactly the transpose convolution of {tensors[0]} with {tensors[1]}"
    return _native_conv(program, canonical, match, "X", lines, why, copies, show)


def _weight_vjp(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """W[(g d), c, k..] = X[batch, (g c), i..] * P.. * Y[batch, (g d), o..]: the weight gradient."""
    found = _matched(program, canonical, "XYW", name, show)
    if found is None:
        return None
    match, copies, x, y = found
    ordered = [s.axis for s in match.spatial]
    dims = len(ordered)
    x, symmetric = _padded_input(x, ordered)
    out, inner = (_size(program, group) for group in match.groups["W"][:2])
    shape = _tuple([show(out), show(inner)] + [a.sizes[2] for a in ordered])
    value = VALUE
    call = f"torch.nn.grad.conv{dims}d_weight({x}, {shape}, {y}, {_conv_args(ordered, match.count, symmetric)})"
    why = f"native conv{dims}d weight gradient: the product is exactly the weight VJP of a convolution"
    found = _native_conv(program, canonical, match, "W", [f"{value} = {call}"], why, copies, show)
    return replace(found, slow=match.count > 1 and any(a.sizes[2] > SLOW_KERNEL_SIZE for a in ordered))


SLOW_KERNEL_SIZE = 3  # a grouped weight gradient's kernel wider than this is slow (tnc.cost.model.SLOW_KERNEL)


# --------------------------------------------------------------------------- unfold, fold, pooling
def _single(program: Program, canonical: Canonical, places: dict[str, tuple[str, ...]], spatial_leg: str) -> tuple[Operand, list[str], list[Axis]] | None:
    """The one operand of an unfold, fold or pooling: its batch legs (every non-pattern leg, on
    the operand and the result; all before the spatial axes) and its pattern axes in the order of
    their ``spatial_leg`` ("i" or "o") on the operand. ``places`` gives where each pattern leg
    must occur."""
    if len(canonical.operands) != 1:
        return None
    operand = canonical.operands[0].split(program)
    where = _places({"X": operand.legs, "R": list(canonical.result)}, canonical.axes)
    if where is None or any(where[getattr(a, r)] != p for a in canonical.axes.values() for r, p in places.items()):
        return None
    by_leg = {getattr(a, spatial_leg): a for a in canonical.axes.values()}
    pattern_legs = {leg for a in canonical.axes.values() for leg in (a.i, a.o, a.k)}
    batch, ordered = [], []
    for leg in operand.legs:
        if leg in by_leg:
            ordered.append(by_leg[leg])
        elif leg in pattern_legs:
            continue  # placed by the caller
        elif where[leg] == ("R", "X") and not ordered:
            batch.append(leg)
        else:
            return None
    return operand, batch, ordered


def _unfold(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """U[batch, k1, k2, o1, o2] = X[batch, i1, i2] * P1 * P2 (in any result order): F.unfold
    (im2col) of X as [batch, 1, I1, I2]. Correct because unfold reads every channel alike."""
    found = _single(program, canonical, {"i": ("P", "X"), "o": ("P", "R"), "k": ("P", "R")}, "i")
    if found is None or len(found[2]) != 2:
        return None
    operand, batch, ordered = found
    x = _arrange(program, operand, [batch[:1]] + [batch[1:]] + [[a.i] for a in ordered], name(operand.factor), show)
    if x is None:
        return None
    value = VALUE
    lines = [
        f"{value} = torch.nn.functional.unfold({_pad(x[0], ordered, lambda a: a.pads)}, {_tuple(a.sizes[2] for a in ordered)}, "
        f"dilation={_tuple(a.spec.dilation for a in ordered)}, stride={_tuple(a.spec.stride for a in ordered)})",
        *_to_result(program, value, [batch[:1]] + [batch[1:] + [a.k for a in ordered], [a.o for a in ordered]], canonical, show),
    ]
    return Native(lines, value, f"native unfold: the product is exactly im2col{_notes(canonical, [])}")


def _fold(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """X[batch, i1, i2] = U[batch, k1, k2, o1, o2] * P1 * P2: F.fold (col2im) of U as
    [batch, K1*K2, O1*O2]."""
    found = _single(program, canonical, {"i": ("P", "R"), "o": ("P", "X"), "k": ("P", "X")}, "o")
    if found is None:
        return None
    operand, batch, _ = found
    ordered = [a for leg in operand.legs for a in canonical.axes.values() if a.o == leg]
    if len(ordered) != 2 or _moded(ordered):  # col2im of a mode's pad would fold the border back
        return None
    u = _arrange(program, operand, [batch[:1]] + [batch[1:] + [a.k for a in ordered], [a.o for a in ordered]], name(operand.factor), show)
    if u is None:
        return None
    symmetric = all(a.pads[0] == a.pads[1] for a in ordered)
    size = _tuple(a.sizes[0] + (0 if symmetric else sum(a.pads)) for a in ordered)
    padding = _tuple(a.pads[0] if symmetric else 0 for a in ordered)
    value = VALUE
    lines = [
        f"{value} = torch.nn.functional.fold({u[0]}, {size}, {_tuple(a.sizes[2] for a in ordered)}, "
        f"dilation={_tuple(a.spec.dilation for a in ordered)}, padding={padding}, stride={_tuple(a.spec.stride for a in ordered)})"
    ]
    lines += [f"{value} = {value}.narrow({2 + n}, {a.pads[0]}, {a.sizes[0]})" for n, a in enumerate(ordered) if not symmetric and sum(a.pads)]
    lines += _to_result(program, value, [batch[:1]] + [batch[1:]] + [[a.i] for a in ordered], canonical, show)
    return Native(lines, value, f"native fold: the product is exactly col2im{_notes(canonical, [])}")


def _pool(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """S[batch, o..] = X[batch, i..] * P..: sum pooling, as average pooling times the window size,
    of X as [batch, 1, I..]; undilated, left padding at most K // 2 (what avg_pool takes)."""
    found = _single(program, canonical, {"i": ("P", "X"), "o": ("P", "R"), "k": ("P",)}, "i")
    if found is None or not 1 <= len(found[2]) <= 3:
        return None
    operand, batch, ordered = found
    if any(a.spec.dilation != 1 or a.pads[0] > a.sizes[2] // 2 for a in ordered):
        return None
    x = _arrange(program, operand, [batch[:1]] + [batch[1:]] + [[a.i] for a in ordered], name(operand.factor), show)
    if x is None:
        return None
    dims = len(ordered)
    symmetric = all(a.pads[0] == a.pads[1] for a in ordered) and not _moded(ordered)
    padded = x[0] if symmetric else _pad(x[0], ordered, lambda a: a.pads)
    padding = _tuple(a.pads[0] if symmetric else 0 for a in ordered)
    value = VALUE
    lines = [
        f"{value} = {prod(a.sizes[2] for a in ordered)} * torch.nn.functional.avg_pool{dims}d({padded}, {_tuple(a.sizes[2] for a in ordered)}, "
        f"stride={_tuple(a.spec.stride for a in ordered)}, padding={padding}, count_include_pad=True)",
        *_to_result(program, value, [batch[:1]] + [batch[1:]] + [[a.o] for a in ordered], canonical, show),
    ]
    return Native(lines, value, f"native avg_pool{dims}d: the product is exactly sum pooling{_notes(canonical, [])}")


# --------------------------------------------------------------------------- Gram matrices
def _expanded(operand: Operand, axes: dict[str, Axis]) -> tuple[list[str], list[Axis | None]]:
    """The operand's legs with each pattern input leg replaced by its window (o, k), and per slot
    the pattern read there (None for a plain leg)."""
    legs, read = [], []
    for leg in operand.legs:
        a = axes.get(leg)
        legs += [a.o, a.k] if a else [leg]
        read.append(a)
    return legs, read


def _gram(program: Program, canonical: Canonical, name: Name, show: Show) -> Native | None:
    """A[batch, f, f'] = X[.. f ..] * P.. * X[.. f' ..] * P'.. summed over the legs the two copies
    share and the result lacks (a KFC factor): ``U @ U^T``, with U[batch, f, s] one copy of X,
    read through windows where patterns index it, where torch.einsum would copy X into matmul
    layout once per operand. Applies to two factors of one tensor, leg for leg the same or
    renamed (a renamed pair: a leg of the result each), each pattern on an input leg of one copy
    matched by one of equal parameters on the other copy, sharing its output leg; correct because
    then the product is, entry for entry, sum_s U[b, f, s] U[b, f', s]."""
    if len(canonical.operands) != 2:
        return None
    first, second = (operand.split(program) for operand in canonical.operands)
    if first.factor.tensor != second.factor.tensor or len(first.slots) != len(second.slots):
        return None
    if any(slot.window for slot in first.slots + second.slots) or [s.size for s in first.slots] != [s.size for s in second.slots]:
        return None
    (one, reads), (two, reads_two) = _expanded(first, canonical.axes), _expanded(second, canonical.axes)
    if sum(a is not None for a in reads + reads_two) != len(canonical.axes):
        return None  # a pattern not read by either copy
    for a, b in zip(reads, reads_two):
        if (a is None) != (b is None) or (a and (a.spec, a.sizes, a.pads) != (b.spec, b.sizes, b.pads)):
            return None
    result = set(canonical.result)
    legs = first.legs + second.legs + list(canonical.result) + [leg for a in canonical.axes.values() for leg in (a.i, a.o, a.k)]
    if len(set(one)) != len(one) or len(set(two)) != len(two) or len(result) != len(canonical.result):
        return None
    batch, free, summed = [], [], []
    for a, b in zip(one, two):
        if a == b:
            (batch if a in result else summed).append(a)
        elif a in result and b in result and a not in two and b not in one:
            free.append((a, b))
        else:
            return None
    counts = {leg: legs.count(leg) for leg in legs}
    if any(counts[a.i] != 2 or counts[a.k] != 2 for a in canonical.axes.values()):
        return None  # an input leg read elsewhere, or a kernel leg that is not a result leg alone
    if not summed or not free or result != set(batch) | {leg for pair in free for leg in pair}:
        return None
    mine, theirs = [a for a, _ in free], [b for _, b in free]
    raw = _raw_axis(program, [a for a in reads if a is not None], mine)
    windows = tuple(
        Window(a.o, a.k, a.spec.stride, a.spec.dilation, a.pads[0], _mode(a)) if (a := canonical.axes.get(axis[0])) and len(axis) == 1 and a is not raw else axis
        for axis in first.factor.axes
    )
    if raw is not None:  # the raw axis: its input legs i, i' stand for k, k' until the end
        other = next(b for a, b in zip(reads, reads_two) if a is raw)
        mine, theirs, summed = [raw.i if leg == raw.k else leg for leg in mine], [other.i if leg == other.k else leg for leg in theirs], [leg for leg in summed if leg != raw.o]
        one = [leg for leg in one if leg not in (raw.o, raw.k)] + [raw.i]
    view = operand_view(program, Factor(first.factor.tensor, first.factor.kind, windows), name(first.factor), show) if canonical.axes else None
    legs_view = [leg for axis in windows for leg in axis]  # with the size-1 legs, moved last
    u = VALUE + "_u"
    if view is None:
        arranged = _arrange(program, first, [batch, mine, summed], name(first.factor), show)
        if arranged is None:
            return None
        expr, copied = arranged
    else:  # the window view has one axis per leg: permute to [batch, mine, summed], copy once
        sizes = [_size(program, group) for group in (batch, mine, summed)]
        order = batch + mine + summed + [leg for leg in legs_view if leg not in one]
        expr = f"{view}.permute{_tuple(legs_view.index(leg) for leg in order)}.reshape{_shape(sizes, show)}"
        copied = True
    lines = [f"{u} = {expr}", f"{VALUE} = torch.matmul({u}, {u}.mT)"]
    if not batch:  # an axis of size 1 stands for the empty batch group: the matmul kept it
        lines.append(f"{VALUE} = {VALUE}.squeeze(0)")
    if raw is not None:
        groups = [[leg] for leg in batch + mine + theirs]
        split = tuple(leg for group in groups for leg in group)
        lines += _to_result(program, VALUE, ([batch] if batch else []) + [mine, theirs], Canonical((), {}, split, split, ()), show)
        lines += _diagonal_sum(raw, [leg for g in groups for leg in g], mine, theirs, other, show)
        mine, theirs = [raw.k if leg == raw.i else leg for leg in mine], [other.k if leg == other.i else leg for leg in theirs]
        lines += _to_result(program, VALUE, [[leg] for leg in batch + mine + theirs], canonical, show)
    else:
        lines += _to_result(program, VALUE, ([batch] if batch else []) + [mine, theirs], canonical, show)
    why = f"native Gram matrix: the product is U U^T, U = {first.factor.tensor} as [batch, kept, summed]{' read through windows' if view else ''}"
    if raw is not None:
        why += f", {raw.i} read whole and the diagonals of U U^T along {raw.i}, {other.i} summed"
    why += _notes(canonical, [])
    return Native(lines, VALUE, why, (first.factor.tensor,) if copied else ())


RAW_FLOPS = 1.5  # a raw axis may cost this many times the FLOPs of windows on every axis ...
RAW_ROWS = 64  # ... where U has at most this many rows (a product bound by the copy, not FLOPs)


def _raw_axis(program: Program, reads: list[Axis], mine: list[str]) -> Axis | None:
    """The pattern axis of a windowed Gram matrix to read whole (not through a window), or None.

    With the axis read whole, U holds its span L = (O-1)*S + D*(K-1) + 1 instead of O*K
    entries per row, and U U^T has L x L blocks whose diagonals (shifted by S) give the K x K
    entries: sum_o B[S*o + D*k, S*o + D*k']. That costs L^2 / (K^2 O) times the FLOPs but
    copies L / (K O) times the data; taken where U has few rows (the product is then bound by
    the copy, not by FLOPs: depthwise layers), for the axis with the smallest FLOP ratio, if
    K > 1 and the ratio is at most RAW_FLOPS (large kernels on small inputs, depthwise 7x7).
    Measured on the benchmark layers: 1.8x faster on ConvNeXt's 7x7 depthwise at 56x56; slower
    where U has many rows (InceptionV3's 1x7 with 128 channels), so not taken there."""
    rows = _concrete(program, _size(program, mine))
    if rows is None or rows > RAW_ROWS:
        return None
    best = None
    for a in reads:
        if _mode(a) != "zeros":
            continue  # its diagonals would be padded with zeros
        _, O, K = a.sizes
        span = (O - 1) * a.spec.stride + a.spec.dilation * (K - 1) + 1
        ratio = span * span / (K * K * O)
        if K > 1 and ratio <= RAW_FLOPS and (best is None or ratio < best[0]):
            best = (ratio, a)
    return best and best[1]


def _diagonal_sum(raw: Axis, legs: list[str], mine: list[str], theirs: list[str], other: Axis, show: Show) -> list[str]:
    """Lines that turn ``VALUE`` (one axis per leg of ``legs``, the raw axis as ``raw.i`` and
    ``other.i``) into the sums of its shifted diagonals: axes ``raw.k`` and ``other.k`` in their
    places. The raw axes are padded to the span the windows read (zeros outside the input)."""
    (I, O, K), (left, _) = raw.sizes, raw.pads
    S, D = raw.spec.stride, raw.spec.dilation
    span = (O - 1) * S + D * (K - 1) + 1
    p, q = legs.index(raw.i), legs.index(other.i)
    lines = []
    if left or span - left - I:
        pads = [0, 0] * (len(legs) - min(p, q))
        for position in (p, q):
            at = 2 * (len(legs) - 1 - position)
            pads[at : at + 2] = [left, max(0, span - left - I)]
        lines.append(f"{VALUE} = torch.nn.functional.pad({VALUE}, {_tuple(pads)})")
    sizes, strides = [], []
    for position in range(len(legs)):
        if position == p:
            sizes += [str(O), str(K)]
            strides += [f"{S} * (_s[{p}] + _s[{q}])", f"{D} * _s[{p}]" if D != 1 else f"_s[{p}]"]
        elif position == q:
            sizes.append(str(K))
            strides.append(f"{D} * _s[{q}]" if D != 1 else f"_s[{q}]")
        else:
            sizes.append(f"{VALUE}.shape[{position}]")
            strides.append(f"_s[{position}]")
    lines.append(f"_s = {VALUE}.stride()")
    lines.append(f"{VALUE} = {VALUE}.as_strided(({', '.join(sizes)}), ({', '.join(strides)})).sum({p})")
    return lines
