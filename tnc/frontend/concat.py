"""Concatenated axes, ``A[n, (c k | 1)] = U[n, c, k] + 1``: blocks joined along one storage axis.

The axis becomes one index (``cat``) of size the sum of the blocks' sizes; each term lands in
the block whose legs it carries (a term that carries none lands in the block ``1``), embedded by
a 0/1 pattern ``conv(padding=(offset, rest))`` with a kernel of size 1: ``E[j, cat, z] = 1``
exactly when ``cat = j + offset``, so the block fills entries ``offset .. offset + size - 1``.
The patterns are ordinary index patterns, so derivatives, rewrites and code generation treat
them as any other; their padding is set once the blocks' sizes are inferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy

from tnc.frontend import ast
from tnc.ir.network import Factor, Kind, Term
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Tensor

if TYPE_CHECKING:
    from tnc.frontend.checker import Checker


@dataclass
class _Block:
    pattern: str  # the embedding pattern's tensor name
    legs: tuple[ast.Name, ...]  # () for the block 1
    inner: str  # the pattern's input leg (the block's flattened index)
    kernel: str  # the pattern's size-1 kernel leg


@dataclass
class _Axis:
    index: str  # the concatenated axis' one index
    axis: ast.Axis
    blocks: list[_Block]
    sized: bool = False


def _text(axis: ast.Axis) -> str:
    return "(" + " | ".join(" ".join(n.text for n in block) or "1" for block in axis.blocks) + ")"


class Concatenation:
    """The concatenated axes of a file's left sides, and their sizes once the blocks' are known."""

    def __init__(self, checker: "Checker") -> None:
        self.checker = checker
        self.axes_: list[_Axis] = []
        self.failed = False

    def _index(self, base: str) -> str:
        """``base1``, ``base2``, ...: the first that the file does not use."""
        number = 1
        while f"{base}{number}" in self.checker.names_in_file:
            number += 1
        self.checker.names_in_file.add(f"{base}{number}")
        return f"{base}{number}"

    def _tensor(self, base: str) -> str:
        taken = set(self.checker.program.tensors) | set(self.checker.defined_at)
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}{number}"
        return name

    def axes(self, eq: ast.Equation, terms: list[Term] | None) -> tuple[ast.Axis, ...]:
        """The left side with each concatenated axis as one index; each term (None: some term
        was already reported) gets the pattern that embeds it in its block."""
        from tnc.frontend.checker import _Origin, _Slot

        checker, unifier = self.checker, self.checker.unifier
        self.failed = terms is None
        result = []
        lhs = {leg.text: leg.span for axis in eq.axes if not axis.blocks for leg in axis.names}
        for position, axis in enumerate(eq.axes, start=1):
            if not axis.blocks:
                result.append(axis)
                continue
            if sum(1 for block in axis.blocks if not block) > 1:
                checker.error(axis.span, f"the concatenated axis {_text(axis)} has the block 1 twice")
                self.failed = True
            for leg in axis.names:
                if leg.text in lhs:
                    checker.error(leg.span, f"index '{leg.text}' appears twice in '{eq.name.text}[...]'")
                    self.failed = True
                lhs[leg.text] = leg.span
            index = self._index("cat")
            unifier.use(index, axis.span)
            entry = _Axis(index, axis, [])
            for number, legs in enumerate(axis.blocks, start=1):
                name = self._tensor(f"{eq.name.text}_block{position}_{number}")
                inner, kernel = self._index("block" if legs else "one"), self._index("one")
                for leg in (inner, kernel):
                    unifier.use(leg, axis.span)
                unifier.assign(kernel, _Origin(sympy.Integer(1), axis.span, "the kernel leg of a block"))
                if not legs:
                    unifier.assign(inner, _Origin(sympy.Integer(1), axis.span, "the block 1"))
                else:
                    checker.slots.append(_Slot(legs, (inner,), name, axis.span))
                checker.program.tensors[name] = Tensor(name, Kind.PATTERN, ((inner,), (index,), (kernel,)), axis.span, ConvPattern())
                entry.blocks.append(_Block(name, legs, inner, kernel))
            self.axes_.append(entry)
            for number, term in enumerate(terms or (), start=1):
                self._embed(eq.rhs[number - 1], number, term, entry)
            result.append(ast.Axis((ast.Name(index, axis.span),), False, axis.span))
        return tuple(result)

    def _embed(self, written: ast.Term, number: int, term: Term, entry: _Axis) -> None:
        """Put ``term`` into the block whose legs it carries (the block 1 if it carries none)."""
        carried = term.product.indices()
        named = [b for b in entry.blocks if b.legs]
        full = [b for b in named if all(leg.text in carried for leg in b.legs)]
        partial = [b for b in named if b not in full and any(leg.text in carried for leg in b.legs)]
        where = _text(entry.axis)
        one = next((b for b in entry.blocks if not b.legs), None)
        if partial:
            block = partial[0]
            missing = ", ".join(leg.text for leg in block.legs if leg.text not in carried)
            problem = f"term {number} carries only part of the block ({' '.join(l.text for l in block.legs)}) of {where} (missing {missing})"
        elif len(full) > 1:
            problem = f"term {number} carries the legs of {len(full)} blocks of {where}; a term fills one block"
        elif not full and one is None:
            problem = f"term {number} carries the legs of no block of {where}; add a block 1 for a constant term, (... | 1)"
        else:
            block = full[0] if full else one
            axis = tuple(leg.text for leg in block.legs) or (block.inner,)
            term.product.add(Factor(block.pattern, Kind.PATTERN, (axis, (entry.index,), (block.kernel,))))
            return
        self.checker.error(written.span, problem)
        self.failed = True

    def size(self) -> bool:
        """Give each concatenated axis (whose blocks' sizes are all known) its size and its
        patterns their padding; True if a size was new."""
        from tnc.frontend.checker import _Origin

        checker, unifier, changed = self.checker, self.checker.unifier, False
        for entry in self.axes_:
            if entry.sized:
                continue
            sizes = [sympy.Mul(*(unifier.size(l.text) or sympy.nan for l in b.legs)) if b.legs else sympy.Integer(1) for b in entry.blocks]
            if any(s.has(sympy.nan) for s in sizes):
                continue
            entry.sized = True
            concrete = [checker.program.concrete(s) for s in sizes]
            free = next((b for b, c in zip(entry.blocks, concrete) if not c.is_Integer), None)
            if free is not None:
                legs = " ".join(l.text for l in free.legs)
                checker.error(entry.axis.span, f"a block of a concatenated axis needs a concrete size, but ({legs}) has size {unifier.show(sympy.Mul(*(unifier.size(l.text) for l in free.legs)))}")
                continue
            total, offset = sum(int(c) for c in concrete), 0
            for block, size in zip(entry.blocks, concrete):
                checker.program.tensors[block.pattern].pattern = ConvPattern(padding=(offset, total - offset - int(size)))
                if block.legs:
                    changed = unifier.assign(block.inner, _Origin(size, entry.axis.span, "the size of a block")) or changed
                offset += int(size)
            changed = unifier.assign(entry.index, _Origin(sympy.Integer(total), entry.axis.span, f"the sum of the blocks of {_text(entry.axis)}")) or changed
        return changed
