"""Invariants of a checked program; every pass can run :func:`validate` on its result."""

from __future__ import annotations

from typing import Container, Iterable

import sympy

from tnc.ir.network import Kind, Window
from tnc.ir.program import Program
from tnc.ir.sizes import same


class InvalidIR(AssertionError):
    """A pass produced a program that breaks an IR invariant (a bug in tnc, not in the input)."""


def _same(program: Program, a: sympy.Expr, b: sympy.Expr) -> bool:
    return same(program.concrete(a), program.concrete(b))


def validate(program: Program, names: Iterable[str] | None = None, checked: Container[int] = ()) -> Program:
    """Raise :class:`InvalidIR` naming the first broken invariant; return the program otherwise.

    ``names`` limits the check to those tensors and their networks, and ``checked`` skips terms
    (by ``id``) already checked against the same result legs: what a rewrite changed, so a pass
    that checks after every step stays linear in the size of the program.
    """
    problems: list[str] = []
    position = {name: n for n, name in enumerate(program.tensors)}
    for name in program.tensors if names is None else [n for n in names if n in position]:
        tensor = program.tensors[name]
        if tensor.kind is Kind.PATTERN and (
            tensor.pattern is None or [len(a) for a in tensor.axes] != [1] * (2 if tensor.pattern.summed else 3)
        ):
            problems.append(f"pattern {name} needs a conv spec and three plain legs (two if summed)")
        if tensor.kind is Kind.DEFINED and name not in program.definitions:
            problems.append(f"defined tensor {name} has no network")
        network = program.definitions.get(name)
        if network is None:
            continue
        if len(network.axes) != len(tensor.axes) or not all(
            _same(program, program.axis_size(mine), program.axis_size(theirs)) for mine, theirs in zip(network.axes, tensor.axes)
        ):
            problems.append(f"{name}: its network's result axes differ in number or size from the tensor's")
        if len(set(network.legs)) != len(network.legs):
            problems.append(f"{name}: a result leg is repeated")
        for number, term in enumerate(network.terms, start=1):
            if id(term) in checked:
                continue
            carried = term.product.indices()
            missing = set(network.legs) - carried
            if missing:
                problems.append(f"{name}, term {number}: result legs {sorted(missing)} carried by no factor")
            for node in term.product.nodes():
                factor = term.product.graph.nodes[node]["factor"]
                edges = sorted((key, index[1]) for _, index, key in term.product.graph.edges(node, keys=True))
                if edges != list(enumerate(factor.legs)):
                    problems.append(f"{name}, term {number}: the graph's legs of {factor.tensor} disagree with its factor")
                for leg in factor.legs:
                    if leg not in program.index_sizes:
                        problems.append(f"{name}, term {number}: index {leg} has no size")
                if factor.kind is Kind.DELTA:
                    known = all(leg in program.index_sizes for leg in factor.legs)
                    if factor.axes == ((factor.legs[0],),):
                        continue  # ones: the one-leg copy tensor
                    if len(factor.axes) != 2 or known and not _same(program, *(program.axis_size(a) for a in factor.axes)):
                        problems.append(f"{name}, term {number}: a delta needs two or more legs of one size")
                    continue
                used = program.tensors.get(factor.tensor)
                if used is None or position[factor.tensor] >= position[name]:
                    problems.append(f"{name}, term {number}: {factor.tensor} is not defined before it is used")
                    continue
                if used.kind is not factor.kind or len(used.axes) != len(factor.axes):
                    problems.append(f"{name}, term {number}: {factor.tensor} is used with the wrong kind or legs")
                    continue
                if all(leg in program.index_sizes for leg in factor.legs):
                    for mine, theirs in zip(factor.axes, used.axes):
                        if isinstance(mine, Window):
                            continue  # a window reads any axis, with zeros outside it
                        if not _same(program, program.axis_size(mine), program.axis_size(theirs)):
                            problems.append(f"{name}, term {number}: an axis of {factor.tensor} has the wrong size")
    for output in program.outputs if names is None else ():
        if output not in program.definitions:
            problems.append(f"output {output} has no definition")
    if problems:
        raise InvalidIR("; ".join(problems))
    return program
