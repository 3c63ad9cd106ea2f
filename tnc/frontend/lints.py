"""Warnings: what a checked ``.tn`` file says that is legal but almost always a mistake.

They are looked for only in a file without errors, on its syntax tree (where every name has its
span) and its checked :class:`~tnc.ir.program.Program` (the declarations). Two are known:

* a lone index: a leg name written once in the whole file, in one factor on a right side. It is
  not on the left side, not declared with ``index`` and read by no other factor, so it is summed
  over on its own (its size comes from the tensor's declaration) -- usually a typo, ``W[d, c, k1,
  k3]`` for ``k2``. A pattern's lone leg is not one: ``P1[i1, o1', k1]`` alone sums the pattern
  over its outputs, as the KFAC-reduce factor does. The suggestion is the closest index name of the file (``difflib``), the
  leg the tensor was declared with at that place first;
* a swapped pattern: ``P[o, i, k]`` of ``pattern P[i, o, k]``, the same names with the input and
  output legs exchanged, which makes the pattern a transpose convolution of another size.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Iterator

from tnc.errors import Diagnostic
from tnc.frontend import ast
from tnc.ir.network import Kind
from tnc.ir.program import Program

CUTOFF = 0.5  # difflib's similarity from which a name is suggested: 'k3' is 0.5 from 'k2'


def lint(module: ast.Module, program: Program) -> list[Diagnostic]:
    """The warnings of a checked file, in source order."""
    counts = Counter(name.text for name in _names(module))
    known = sorted(counts)
    found: list[Diagnostic] = []
    for statement in module.statements:
        if not isinstance(statement, ast.Equation) or isinstance(statement.rhs, ast.Call):
            continue
        for term in statement.rhs:
            for _, item in term.items:
                for factor in ast.factors_of(item):
                    found += _lone_indices(factor, program, counts, known)
                    found += _swapped_pattern(factor, program)
    found.sort(key=lambda d: (d.span.line, d.span.column))
    return found


def _lone_indices(factor: ast.Factor, program: Program, counts: Counter, known: list[str]) -> Iterator[Diagnostic]:
    tensor = program.tensors.get(factor.tensor.text)
    if tensor is not None and tensor.kind is Kind.PATTERN:
        return  # P[i, o', k] alone: the pattern summed over its outputs (or inputs), on purpose
    for number, axis in enumerate(factor.axes):
        declared = tensor.axes[number] if tensor is not None and number < len(tensor.axes) else ()
        for place, leg in enumerate(axis.names):
            if counts[leg.text] != 1:
                continue
            message = f"index '{leg.text}' occurs once and is summed over on its own"
            at = declared[place] if axis.window is None and len(declared) == len(axis.names) else None
            suggestion = _closest(leg.text, known, at)
            if suggestion is not None:
                message += f"; did you mean '{suggestion}'?"
            yield Diagnostic(leg.span, message, severity="warning")


def _closest(name: str, known: list[str], declared: str | None) -> str | None:
    """The index name of the file closest to ``name``; the declared leg there if it is close."""
    matches = difflib.get_close_matches(name, [k for k in known if k != name], n=len(known), cutoff=CUTOFF)
    if declared in matches:
        return declared
    return matches[0] if matches else None


def _swapped_pattern(factor: ast.Factor, program: Program) -> Iterator[Diagnostic]:
    tensor = program.tensors.get(factor.tensor.text)
    if tensor is None or tensor.kind is not Kind.PATTERN or len(tensor.axes) != 3:
        return
    if any(len(axis.names) != 1 or axis.window is not None for axis in factor.axes):
        return
    used = tuple(axis.names[0].text for axis in factor.axes)
    i, o, k = tensor.legs
    if i != o and used == (o, i, k):
        name = tensor.name
        yield Diagnostic(
            factor.span,
            f"pattern '{name}' is used with legs [{', '.join(used)}] but declared [{i}, {o}, {k}]: its input and output "
            f"legs are swapped, which makes it a transpose convolution; write {name}[{i}, {o}, {k}] or declare it so",
            severity="warning",
        )


def _names(module: ast.Module) -> Iterator[ast.Name]:
    """Every index name written in the file: declarations, legs on both sides, ``|i|`` sizes."""
    for statement in module.statements:
        if isinstance(statement, ast.SizeDecl):
            if statement.value is not None:
                yield from _scalar_names(statement.value)
        elif isinstance(statement, ast.IndexDecl):
            yield statement.name
            yield from _scalar_names(statement.size)
        elif isinstance(statement, ast.PatternDecl):
            yield from _axes_names(statement.axes)
            for arg in statement.args:
                for value in arg.value if isinstance(arg.value, tuple) else (arg.value,):
                    yield from _scalar_names(value)
        elif isinstance(statement, (ast.TensorDecl, ast.Equation)):
            yield from _axes_names(statement.axes)
        if isinstance(statement, ast.Equation) and not isinstance(statement.rhs, ast.Call):
            for term in statement.rhs:
                yield from _term_names(term)


def _term_names(term: ast.Term) -> Iterator[ast.Name]:
    for _, item in term.items:
        if isinstance(item, ast.Factor):
            yield from _axes_names(item.axes)
        elif isinstance(item, ast.Apply):
            for inner in item.argument:
                yield from _term_names(inner)
        else:
            yield from _scalar_names(item)


def _axes_names(axes: tuple[ast.Axis, ...]) -> Iterator[ast.Name]:
    for axis in axes:
        yield from axis.names  # a concatenated axis lists the legs of all its blocks


def _scalar_names(node: ast.Scalar) -> Iterator[ast.Name]:
    if isinstance(node, ast.IndexSize):
        yield ast.Name(node.index, node.span)
    elif isinstance(node, ast.Neg):
        yield from _scalar_names(node.operand)
    elif isinstance(node, ast.BinOp):
        yield from _scalar_names(node.left)
        yield from _scalar_names(node.right)


