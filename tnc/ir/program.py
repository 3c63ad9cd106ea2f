"""A checked program: sizes, indices, tensors, and a network for every defined tensor."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from tnc.errors import Source, Span
from tnc.ir.network import Axes, Kind, Network, flatten
from tnc.ir.pattern import ConvPattern


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

    def concrete(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute bound sizes until only free symbols remain."""
        expr = sympy.sympify(expr)
        for _ in range(len(self.bindings) + 1):
            if not expr.free_symbols & self.bindings.keys():
                break
            expr = expr.subs(self.bindings)
        return sympy.simplify(expr) if expr.free_symbols else expr

    def size(self, index: str) -> sympy.Expr:
        return self.concrete(self.index_sizes[index])

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

    def dependencies(self, name: str) -> list[str]:
        """The declared tensors (inputs, params, patterns) that ``name`` depends on, in file order."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.definitions:
                stack.extend(self.definitions[current].tensors())
        return [t for t, info in self.tensors.items() if t in seen and info.kind is not Kind.DEFINED]

    def interface(self, name: str) -> list[str]:
        """The inputs and params of ``name``'s generated function, in declaration order."""
        wanted = set(self.interfaces.get(name, ())) | set(self.dependencies(name))
        return [t for t, info in self.tensors.items() if info.kind in (Kind.INPUT, Kind.PARAM) and t in wanted]

    def defined_order(self, name: str) -> list[str]:
        """The defined tensors ``name`` needs (itself last), in an order that respects their uses."""
        order: list[str] = []

        def visit(current: str) -> None:
            if current in order or current not in self.definitions:
                return
            for used in sorted(self.definitions[current].tensors(), key=list(self.tensors).index):
                visit(used)
            order.append(current)

        visit(name)
        return order
