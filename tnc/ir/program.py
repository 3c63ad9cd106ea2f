"""A checked program: sizes, indices, tensors, and a network for every defined tensor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import sympy

from tnc.errors import Diagnostic, Source, Span
from tnc.ir.network import Axes, Kind, Network, flatten
from tnc.ir.pattern import ConvPattern
from tnc.ir.sizes import substitute


@dataclass
class Tensor:
    name: str
    kind: Kind
    axes: Axes  # the declared (or left-hand-side) legs, grouped into storage axes
    span: Span | None = None
    pattern: ConvPattern | None = None
    function: str | None = None  # an element-wise application f(A): f of every entry (tnc.ir.functions)

    @property
    def legs(self) -> tuple[str, ...]:
        return flatten(self.axes)


@dataclass(frozen=True)
class Sample:
    """Tensor dropout on a summed leg of a definition (``sample LEG in T with keep=P, by=A, min=M``):
    each slice kept with probability ``keep`` (by ``A``'s slice norms, when given), rescaled;
    ``minimum`` slices kept surely (0: none)."""

    leg: str
    keep: float
    by: str | None = None
    minimum: int = 0
    span: Span | None = None


@dataclass(frozen=True)
class Kept:
    """A sampled leg once drawn (:mod:`tnc.passes.sampling`): ``index`` runs over the kept slices
    of ``sample.leg``, ``size`` many; ``weights`` is the tensor of their 1/p."""

    sample: Sample
    index: str
    size: sympy.Symbol
    weights: str


@dataclass(frozen=True)
class Selection:
    """A SAMPLED tensor: the slices of ``source`` kept along each ``(storage axis, Kept)`` of its
    view with the grouped axes that hold a sampled leg split (``unflatten``: position, legs).
    With ``through``, the one axis is the pattern's output leg instead, read through the pattern's
    kept rows: it becomes two axes, the kept rows and the kernel leg (:mod:`tnc.passes.sampling`)."""

    source: str
    legs: tuple[tuple[int, Kept], ...]
    unflatten: tuple[tuple[int, tuple[str, ...]], ...] = ()
    through: str | None = None  # a pattern: its one leg's axis (output) read through the kept rows


@dataclass
class Program:
    """Everything a ``.tn`` file says, checked; sizes are sympy expressions in the size symbols.

    ``symbols`` holds every size symbol in declaration order; ``bindings`` the values of the
    bound ones (expressions in earlier symbols). A symbol without a binding is free.
    """

    source: Source
    symbols: dict[str, sympy.Symbol] = field(default_factory=dict)
    bindings: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    symbol_spans: dict[str, Span] = field(default_factory=dict)
    index_sizes: dict[str, sympy.Expr] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    definitions: dict[str, Network] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    # The inputs and params each output took as written; rewrites that cancel a dependency
    # (X - X = 0) keep the generated function's signature.
    interfaces: dict[str, list[str]] = field(default_factory=dict)
    # Sizes of the indices declared with 'index', known before inference finishes: the passes
    # that run while a file is checked (derivatives) read them to tell regroupings apart.
    declared_sizes: dict[str, sympy.Expr] = field(default_factory=dict)
    samples: dict[str, tuple[Sample, ...]] = field(default_factory=dict)  # tensor dropout, by definition
    kept: dict[str, tuple[Kept, ...]] = field(default_factory=dict)  # the samples, once drawn
    vjps: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # G = vjp(Y, W, V): (Y, W, V)
    selections: dict[str, Selection] = field(default_factory=dict)  # the SAMPLED tensors
    # What the file says that is legal but almost always a mistake (severity "warning"); the
    # command line prints them, or refuses the file with --Werror (tnc.frontend.lints).
    warnings: list[Diagnostic] = field(default_factory=list)

    def concrete(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute bound sizes until only free symbols remain (memoised, see ``tnc.ir.sizes``)."""
        if isinstance(expr, int):
            return sympy.Integer(expr)
        if expr.is_Integer:
            return expr
        return substitute(expr, tuple(self.bindings.items()))

    def size(self, index: str) -> sympy.Expr:
        return self.concrete(self.index_sizes[index])

    def regrouped(self, mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
        """Whether two axes of as many legs split one storage axis differently (``(a b)`` against
        ``(i j)`` with a != i), as far as the sizes known so far tell."""
        if len(mine) != len(theirs) or len(mine) < 2:
            return False
        known = {**self.declared_sizes, **self.index_sizes}
        if not all(leg in known for leg in (*mine, *theirs)):
            return False
        return any(self.concrete(known[a]) != self.concrete(known[b]) for a, b in zip(mine, theirs))

    def axis_size(self, axis: tuple[str, ...]) -> sympy.Expr:
        return self.concrete(sympy.Mul(*(self.index_sizes[name] for name in axis)))

    def pattern_sizes(self, name: str) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
        """Input, output and kernel size of a pattern (a summed one's output count is implied)."""
        tensor = self.tensors[name]
        if tensor.pattern.summed:
            (i,), (k,) = tensor.axes
            I, K = self.size(i), self.size(k)
            return I, self.concrete(tensor.pattern.output_size(I, K)), K
        (i,), (o,), (k,) = tensor.axes
        return self.size(i), self.size(o), self.size(k)

    def free_symbols(self) -> list[sympy.Symbol]:
        return [s for s in self.symbols.values() if s not in self.bindings]

    def uses(self) -> Uses:
        """A snapshot of what every definition uses; a pass that asks for dependencies or orders
        of many tensors takes one (asking the program each time would be quadratic)."""
        return Uses(self)

    def dependencies(self, name: str) -> list[str]:
        """The declared tensors (inputs, params, patterns) that ``name`` depends on, in file order."""
        return self.uses().dependencies(name)

    def interface(self, name: str) -> list[str]:
        """The inputs and params of ``name``'s generated function, in declaration order."""
        return self.uses().interface(name)

    def defined_order(self, name: str) -> list[str]:
        """The defined tensors ``name`` needs (itself last), in an order that respects their uses."""
        return self.uses().defined_order(name)


class Uses:
    """What a program's definitions use, at the moment it is made (memoised queries, each linear
    in what it reaches; the walks are iterative, so a chain of any length is fine)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.position = {name: n for n, name in enumerate(program.tensors)}
        self.leaves = {name for name, tensor in program.tensors.items() if tensor.kind is not Kind.DEFINED}
        last = len(self.position)
        self.reads = {
            name: sorted(network.tensors(), key=lambda t: self.position.get(t, last))
            for name, network in program.definitions.items()
        }
        self._declared: dict[str, frozenset[str]] = {}
        self._orders: dict[str, tuple[str, ...]] = {}

    def in_file_order(self, names: Iterable[str]) -> list[str]:
        return sorted({n for n in names if n in self.position}, key=self.position.__getitem__)

    def dependencies(self, name: str) -> list[str]:
        return sorted(self._reached(name), key=self.position.__getitem__)

    def interface(self, name: str) -> list[str]:
        wanted = set(self.program.interfaces.get(name, ())) | self._reached(name)
        kinds = (Kind.INPUT, Kind.PARAM)
        return [t for t in self.in_file_order(wanted) if self.program.tensors[t].kind in kinds]

    def defined_order(self, name: str) -> list[str]:
        """Depth-first post-order from ``name`` over the definitions, uses in file order."""
        if name not in self._orders:
            order: list[str] = []
            if name in self.reads:
                entered = {name}
                stack = [(name, iter(self.reads[name]))]
                while stack:
                    current, used = stack[-1]
                    for child in used:
                        if child in self.reads and child not in entered:
                            entered.add(child)
                            stack.append((child, iter(self.reads[child])))
                            break
                    else:
                        stack.pop()
                        order.append(current)
            self._orders[name] = tuple(order)
        return list(self._orders[name])

    def defined_order_of(self, names: Iterable[str]) -> list[str]:
        """The defined tensors that ``names`` need, each once, in an order that respects their uses."""
        order: dict[str, None] = {}
        for name in names:
            order.update(dict.fromkeys(self.defined_order(name)))
        return list(order)

    def _reached(self, name: str) -> frozenset[str]:
        """The inputs, params and patterns that ``name`` reaches (itself, if it is one)."""
        if name not in self.reads:
            return frozenset({name} & self.leaves)
        stack = [name]
        while stack:
            current = stack[-1]
            if current in self._declared:
                stack.pop()
                continue
            pending = [u for u in self.reads[current] if u in self.reads and u not in self._declared]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            found = {u for u in self.reads[current] if u in self.leaves}
            for used in self.reads[current]:
                found |= self._declared.get(used, frozenset())
            self._declared[current] = frozenset(found)
        return self._declared[name]
