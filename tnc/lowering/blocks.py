"""The block strategy: a term embedded into a block of a concatenated axis is computed without
its 0/1 embedding and copied into its slice of the axis.

Applies to every factor ``E[(j..), cat, z]`` of a term (the embedding that
:mod:`tnc.frontend.concat` multiplies in) that is a pattern ``conv(padding=(left, right))`` with
stride 1 and dilation 1, whose kernel leg ``z`` has size 1 and whose output leg ``cat`` is a
result leg; neither leg occurs in another factor and the input legs ``j..`` (the block's legs,
flattened row-major into one storage axis) are no result legs. Legs of the block that no other
factor carries must have size 1.

Correct because ``E[j, cat, 0] = 1`` exactly when ``cat = j + left`` (and ``0 <= j < |j..|``,
``|cat| = left + |j..| + right``): summing the rest of the term ``V[.., j..]`` against ``E`` over
``j..`` puts ``V`` at entries ``left .. left + |j..| - 1`` of ``cat`` and zeros elsewhere. So the
rest is computed with the block's legs kept open (no multiplication by the embedding's zeros),
then copied into ``narrow(cat, left, |j..|)`` of the result, unflattened into the block's legs.

Where every term of a network fills a different block (:func:`assemble`), the terms are copied
into one result tensor (a ``torch.cat`` of the blocks, made by slices: no zeros to add, no sums);
otherwise each term is copied into zeros of its own and the terms are summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from tnc.ir.network import Factor, Kind, Window
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Program


@dataclass(frozen=True)
class Block:
    """A term's block of one concatenated axis: ``inner`` (row-major) fills ``leg`` at ``offset``."""

    leg: str  # the concatenated axis (a result leg)
    inner: tuple[str, ...]  # the block's legs
    offset: int
    size: int  # the block's size, the product of the inner legs' sizes
    pattern: str  # the embedding no longer multiplied


def _integer(program: Program, leg: str) -> int | None:
    value = program.concrete(program.size(leg))
    return int(value) if value.is_Integer else None


def _block(program: Program, factor: Factor, others: list[Factor], legs: tuple[str, ...]) -> Block | None:
    """``factor`` as an embedding into a block of a result leg, or None."""
    tensor = program.tensors.get(factor.tensor)
    if factor.kind is not Kind.PATTERN or tensor is None or len(factor.axes) != 3:
        return None
    spec = tensor.pattern
    if not isinstance(spec, ConvPattern) or spec.summed or spec.stride != 1 or spec.dilation != 1 or spec.output_padding:
        return None
    if spec.padding_mode != "zeros":  # a mode's pattern reads the input on the border: no embedding
        return None
    if not isinstance(spec.padding, tuple) or any(isinstance(axis, Window) for axis in factor.axes):
        return None
    inner, out, kernel = (tuple(axis) for axis in factor.axes)
    if len(out) != 1 or len(kernel) != 1 or len(set(inner + out + kernel)) != len(inner) + 2:
        return None
    (cat,), (z,) = out, kernel
    carried = {leg for f in others for leg in f.legs}
    if cat not in legs or z in legs or cat in carried or z in carried or set(inner) & set(legs) or _integer(program, z) != 1:
        return None
    sizes = [_integer(program, leg) for leg in inner]
    if any(s is None for s in sizes) or any(s != 1 for leg, s in zip(inner, sizes) if leg not in carried):
        return None
    size, (left, right) = prod(sizes), spec.padding
    if _integer(program, cat) != left + size + right:
        return None
    return Block(cat, inner, left, size, factor.tensor)


def split_blocks(program: Program, factors: list[Factor], legs: tuple[str, ...]) -> tuple[tuple[Block, ...], list[Factor]]:
    """The block embeddings among ``factors`` (result ``legs``), and the other factors."""
    blocks, rest = [], list(factors)
    for factor in factors:
        others = [f for f in rest if f is not factor]
        block = _block(program, factor, others, legs)
        if block is not None and all(b.leg != block.leg for b in blocks):
            blocks.append(block)
            rest = others
    return tuple(blocks), rest


def opened(legs: tuple[str, ...], blocks: tuple[Block, ...]) -> tuple[str, ...]:
    """``legs`` with each concatenated axis replaced by its block's legs."""
    inner = {b.leg: b.inner for b in blocks}
    return tuple(leg for outer in legs for leg in inner.get(outer, (outer,)))


def assemble(lowerings: list) -> bool:
    """Whether a network's terms (lowered) are copied into one result: every term has blocks, on
    the same concatenated axes, and no two fill the same block."""
    if not lowerings or any(lowered is None or not lowered.blocks for lowered in lowerings):
        return False
    axes = {tuple(sorted(b.leg for b in lowered.blocks)) for lowered in lowerings}
    places = [tuple(sorted((b.leg, b.offset) for b in lowered.blocks)) for lowered in lowerings]
    return len(axes) == 1 and len(set(places)) == len(places)


def tiled(program: Program, lowerings: list) -> bool:
    """Whether assembled terms fill every entry of the result (then it needs no zeros): the blocks
    they fill are every combination of the blocks each axis is cut into, which tile that axis."""
    per_axis: dict[str, set[tuple[int, int]]] = {}
    for lowered in lowerings:
        for b in lowered.blocks:
            per_axis.setdefault(b.leg, set()).add((b.offset, b.size))
    for leg, pieces in per_axis.items():
        end = 0
        for offset, size in sorted(pieces):
            if offset != end:
                return False
            end += size
        if end != _integer(program, leg):
            return False
    return len(lowerings) == prod(len(pieces) for pieces in per_axis.values())


def slice_text(variable: str, legs: tuple[str, ...], blocks: tuple[Block, ...], inner_shape) -> str:
    """``variable`` (one axis per leg of ``legs``) narrowed to the blocks and unflattened into
    their legs (a view); ``inner_shape(block)`` spells the block's legs' sizes."""
    expr = variable
    for b in blocks:
        expr += f".narrow({legs.index(b.leg)}, {b.offset}, {b.size})"
    for b in sorted(blocks, key=lambda b: -legs.index(b.leg)):
        if len(b.inner) != 1:
            expr += f".unflatten({legs.index(b.leg)}, {inner_shape(b)})"
    return expr
