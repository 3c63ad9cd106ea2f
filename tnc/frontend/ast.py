"""The typed syntax tree of a ``.tn`` file; every node keeps the span it was parsed from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from tnc.errors import Span


@dataclass(frozen=True)
class Name:
    text: str
    span: Span


# Scalar (size and coefficient) expressions.
@dataclass(frozen=True)
class Number:
    text: str
    span: Span


@dataclass(frozen=True)
class Symbol:
    name: str
    span: Span


@dataclass(frozen=True)
class IndexSize:
    """``|o1|``: the size of an index, inferred or declared."""

    index: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / **
    left: "Scalar"
    right: "Scalar"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Scalar"
    span: Span


Scalar = Union[Number, Symbol, IndexSize, BinOp, Neg]


@dataclass(frozen=True)
class Axis:
    """One storage axis: a single index, or a parenthesised group ``(g c)`` flattened row-major."""

    names: tuple[Name, ...]
    grouped: bool
    span: Span
    window: tuple[int, int, int] | None = None  # (stride, dilation, padding) of ``S*o + D*k - P``
    blocks: tuple[tuple[Name, ...], ...] | None = None  # ``(c k | 1)``: each block's legs; () is the block 1


@dataclass(frozen=True)
class Factor:
    tensor: Name
    axes: tuple[Axis, ...]
    span: Span


@dataclass(frozen=True)
class Apply:
    """An element-wise function of a tensor, ``relu(Z[n, c])``; ``argument`` is the expression
    written inside (the checker requires one factor)."""

    function: Name
    argument: tuple["Term", ...]
    span: Span


@dataclass(frozen=True)
class Term:
    """``sign * item (op item)*``: ``items`` pairs each item with ``*`` or ``/`` (the first with ``*``)."""

    sign: int
    items: tuple[tuple[str, Union[Factor, Apply, Scalar]], ...]
    span: Span


@dataclass(frozen=True)
class Call:
    """A derivative form such as ``grad(Y, W)``; arguments are tensor names or nested calls."""

    function: Name
    args: tuple[Union[Name, "Call"], ...]
    span: Span


@dataclass(frozen=True)
class SizeDecl:
    name: Name
    value: Scalar | None


@dataclass(frozen=True)
class IndexDecl:
    name: Name
    size: Scalar


@dataclass(frozen=True)
class TensorDecl:
    kind: str  # "input" or "param"
    name: Name
    axes: tuple[Axis, ...]
    span: Span


@dataclass(frozen=True)
class PatternArg:
    name: Name
    value: Union[Scalar, tuple[Scalar, Scalar]]
    span: Span


@dataclass(frozen=True)
class PatternDecl:
    name: Name
    axes: tuple[Axis, ...]
    function: Name
    args: tuple[PatternArg, ...]
    span: Span


@dataclass(frozen=True)
class Equation:
    output: bool
    name: Name
    axes: tuple[Axis, ...]
    rhs: Union[tuple[Term, ...], Call]
    span: Span


@dataclass(frozen=True)
class SampleDecl:
    """``sample LEG in TENSOR with keep=P[, by=OPERAND]``."""

    leg: Name
    tensor: Name
    args: tuple[PatternArg, ...]
    span: Span
    words: tuple[Name, Name]  # "in" and "with", read as names


Statement = Union[SizeDecl, IndexDecl, TensorDecl, PatternDecl, SampleDecl, Equation]


@dataclass(frozen=True)
class Module:
    statements: tuple[Statement, ...]


def factors_of(item: object) -> list[Factor]:
    """The factors written in a term's item, inside function applications too."""
    if isinstance(item, Factor):
        return [item]
    if isinstance(item, Apply):
        return [f for term in item.argument for _, inner in term.items for f in factors_of(inner)]
    return []
