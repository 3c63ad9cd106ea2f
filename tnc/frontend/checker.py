"""Syntax tree to checked :class:`Program`: name resolution, size inference, positioned errors.

Every error found is collected, so one run reports all of them. Sizes are inferred by
unification: indices that must agree are joined (union-find), and the constraints that relate
several sizes (grouped legs, index patterns) are solved to a fixed point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy

from tnc.errors import Diagnostic, Note, Source, Span, TncError, UsageError
from tnc.frontend import ast
from tnc.ir.network import Factor, Kind, Network, Product, Term
from tnc.ir.pattern import ConvPattern
from tnc.ir.program import Program, Tensor

PATTERN_ARGUMENTS = ("stride", "padding", "dilation", "output_padding")


@dataclass
class _Origin:
    size: sympy.Expr
    span: Span
    what: str  # e.g. "declared as index c: 3"


@dataclass
class _Slot:
    """A factor's storage axis (its leg names with spans) against the tensor's declared axis."""

    legs: tuple[ast.Name, ...]
    declared: tuple[str, ...]
    tensor: str
    span: Span


class _Unifier:
    """Union-find over index names; each class may carry a size and where that size came from."""

    def __init__(self, program: Program, report: Callable[[Diagnostic], None]) -> None:
        self.program = program
        self.report = report
        self.parent: dict[str, str] = {}
        self.origin: dict[str, _Origin] = {}
        self.first_use: dict[str, Span] = {}

    def find(self, name: str) -> str:
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def size(self, name: str) -> sympy.Expr | None:
        origin = self.origin.get(self.find(name))
        return origin.size if origin else None

    def equal(self, a: sympy.Expr, b: sympy.Expr) -> bool:
        return sympy.simplify(self.program.concrete(a) - self.program.concrete(b)) == 0

    def use(self, name: str, span: Span) -> None:
        self.first_use.setdefault(name, span)
        self.find(name)

    def assign(self, name: str, origin: _Origin) -> bool:
        """Give ``name`` a size; report a conflict with the size it already has. True if new."""
        root = self.find(name)
        known = self.origin.get(root)
        if known is None:
            self.origin[root] = origin
            return True
        if not self.equal(known.size, origin.size):
            self._conflict(name, origin, known)
        return False

    def join(self, a: str, a_span: Span, b: str) -> None:
        """Index ``a`` (written at ``a_span``) fills a slot declared with index ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        oa, ob = self.origin.get(ra), self.origin.get(rb)
        self.parent[ra] = rb
        if ob is None and oa is not None:
            self.origin[rb] = oa
        elif oa is not None and ob is not None and not self.equal(oa.size, ob.size):
            self._conflict(a, _Origin(ob.size, a_span, f"'{a}' takes the size of '{b}'"), oa)

    def _conflict(self, name: str, here: _Origin, known: _Origin) -> None:
        self.report(
            Diagnostic(
                here.span,
                f"conflicting sizes for index '{name}': {_show(here.size)} here ({here.what}), "
                f"but {_show(known.size)} elsewhere",
                (Note(known.span, f"size {_show(known.size)} comes from here ({known.what})"),),
            )
        )


def _show(expr: sympy.Expr) -> str:
    return str(expr)


class Checker:
    def __init__(self, source: Source, sizes: dict[str, int] | None = None) -> None:
        self.source = source
        self.overrides = dict(sizes or {})
        self.program = Program(source)
        self.errors: list[Diagnostic] = []
        self.unifier = _Unifier(self.program, self.errors.append)
        self.slots: list[_Slot] = []
        self.patterns: list[tuple[str, ast.PatternDecl]] = []
        self.defined_at: dict[str, Span] = {}
        self.used: set[str] = set()
        self.marked_outputs: list[str] = []
        self.declared_indices: dict[str, Span] = {}

    def error(self, span: Span, message: str, *notes: Note) -> None:
        self.errors.append(Diagnostic(span, message, tuple(notes)))

    # ---------------------------------------------------------------- scalars
    def scalar(self, node: ast.Scalar, *, integer: bool = False) -> sympy.Expr | None:
        """A size or coefficient expression as sympy; None (and an error) if it is not valid."""
        if isinstance(node, ast.Number):
            if integer and "." in node.text:
                self.error(node.span, f"a size must be an integer, not {node.text}")
                return None
            return sympy.Rational(node.text) if "." in node.text else sympy.Integer(node.text)
        if isinstance(node, ast.Symbol):
            if node.name in self.program.symbols:
                return self.program.symbols[node.name]
            if node.name in self.program.tensors:
                self.error(node.span, f"'{node.name}' is a tensor, not a size; write it with its legs, {node.name}[...]")
            else:
                self.error(node.span, f"unknown size '{node.name}'; declare it with 'size {node.name}'")
            return None
        if isinstance(node, ast.Neg):
            value = self.scalar(node.operand, integer=integer)
            return None if value is None else -value
        left = self.scalar(node.left, integer=integer)
        right = self.scalar(node.right, integer=integer)
        if left is None or right is None:
            return None
        if node.op == "/" and right == 0:
            self.error(node.span, "division by zero")
            return None
        result = {"+": left + right, "-": left - right, "*": left * right, "/": left / right, "**": left**right}[node.op]
        if integer and node.op == "/":
            return sympy.floor(result) if self.program.concrete(result).is_integer is not True else result
        return result

    def concrete_integer(self, node: ast.Scalar, what: str) -> int | None:
        value = self.scalar(node, integer=True)
        if value is None:
            return None
        value = self.program.concrete(value)
        if value.free_symbols:
            names = ", ".join(sorted(str(s) for s in value.free_symbols))
            self.error(node.span, f"{what} needs a concrete integer, but size {names} is free; bind it with 'size {names} = ...'")
            return None
        if not value.is_integer:
            self.error(node.span, f"{what} must be an integer, not {value}")
            return None
        return int(value)

    # ------------------------------------------------------------- statements
    def run(self, module: ast.Module) -> Program:
        for statement in module.statements:
            if isinstance(statement, ast.Equation):
                self.defined_at.setdefault(statement.name.text, statement.name.span)
        for statement in module.statements:
            handler = {
                ast.SizeDecl: self.size_decl,
                ast.IndexDecl: self.index_decl,
                ast.TensorDecl: self.tensor_decl,
                ast.PatternDecl: self.pattern_decl,
                ast.Equation: self.equation,
            }[type(statement)]
            handler(statement)
        self.infer_sizes()
        self.choose_outputs()
        if self.errors:
            self.errors.sort(key=lambda d: (d.span.line, d.span.column))
            raise TncError(self.source, self.errors)
        return self.program

    def size_decl(self, decl: ast.SizeDecl) -> None:
        name = decl.name.text
        if name in self.program.symbols:
            self.error(decl.name.span, f"size '{name}' is declared twice", Note(self.program.symbol_spans[name], "first declared here"))
            return
        value = self.scalar(decl.value, integer=True) if decl.value is not None else None
        if name in self.overrides:
            if value is not None:
                self.error(decl.name.span, f"size '{name}' is bound in the file; --size can only bind a free size")
            value = sympy.Integer(self.overrides[name])
        symbol = sympy.Symbol(name, integer=True, positive=True)
        self.program.symbols[name] = symbol
        self.program.symbol_spans[name] = decl.name.span
        if value is not None:
            concrete = self.program.concrete(value)
            if concrete.is_number and concrete < 1:
                self.error(decl.value.span, f"size '{name}' must be at least 1, not {concrete}")
            self.program.bindings[symbol] = value

    def index_decl(self, decl: ast.IndexDecl) -> None:
        name = decl.name.text
        if name in self.declared_indices:
            self.error(decl.name.span, f"index '{name}' is declared twice", Note(self.declared_indices[name], "first declared here"))
            return
        size = self.scalar(decl.size, integer=True)
        self.declared_indices[name] = decl.name.span
        self.unifier.use(name, decl.name.span)
        if size is not None:
            concrete = self.program.concrete(size)
            if concrete.is_number and concrete < 1:
                self.error(decl.size.span, f"index '{name}' must have a size of at least 1, not {concrete}")
                return
            self.unifier.assign(name, _Origin(size, decl.name.span, f"declared as 'index {name}: {size}'"))

    def declare_tensor(self, name: ast.Name, kind: Kind, axes: tuple[ast.Axis, ...], span: Span) -> Tensor | None:
        if name.text in self.program.tensors:
            previous = self.program.tensors[name.text]
            self.error(name.span, f"'{name.text}' is defined twice", Note(previous.span or name.span, "first defined here"))
            return None
        seen: dict[str, Span] = {}
        for axis in axes:
            for leg in axis.names:
                if leg.text in seen:
                    self.error(leg.span, f"index '{leg.text}' appears twice in '{name.text}[...]'", Note(seen[leg.text], "first here"))
                seen[leg.text] = leg.span
                self.unifier.use(leg.text, leg.span)
        tensor = Tensor(name.text, kind, tuple(tuple(leg.text for leg in axis.names) for axis in axes), name.span)
        self.program.tensors[name.text] = tensor
        return tensor

    def tensor_decl(self, decl: ast.TensorDecl) -> None:
        self.declare_tensor(decl.name, Kind(decl.kind), decl.axes, decl.span)

    def pattern_decl(self, decl: ast.PatternDecl) -> None:
        if decl.function.text != "conv":
            self.error(decl.function.span, f"unknown index pattern '{decl.function.text}'; the only pattern is conv(...)")
            return
        if len(decl.axes) != 3 or any(axis.grouped for axis in decl.axes):
            self.error(decl.name.span, f"pattern '{decl.name.text}' needs exactly three plain legs [input, output, kernel], got {len(decl.axes)}")
            return
        values: dict[str, object] = {}
        for arg in decl.args:
            key = arg.name.text
            if key not in PATTERN_ARGUMENTS:
                self.error(arg.name.span, f"unknown argument '{key}' to conv; expected one of {', '.join(PATTERN_ARGUMENTS)}")
                continue
            if key in values:
                self.error(arg.name.span, f"argument '{key}' is given twice")
                continue
            values[key] = self.pattern_argument(key, arg)
        if any(v is None for v in values.values()):
            return
        pattern = ConvPattern(
            stride=values.get("stride", 1),
            dilation=values.get("dilation", 1),
            padding=values.get("padding", (0, 0)),
            output_padding=values.get("output_padding", 0),
        )
        args = {a.name.text: a for a in decl.args}
        if pattern.padding == "same" and pattern.stride > 1:
            self.error(args["padding"].span, f"padding=same needs stride 1, but stride is {pattern.stride}")
            return
        if pattern.output_padding >= pattern.stride:
            self.error(args["output_padding"].span, f"output_padding must be smaller than the stride ({pattern.stride}), got {pattern.output_padding}")
            return
        tensor = self.declare_tensor(decl.name, Kind.PATTERN, decl.axes, decl.span)
        if tensor is not None:
            tensor.pattern = pattern
            self.patterns.append((tensor.name, decl))

    def pattern_argument(self, key: str, arg: ast.PatternArg) -> object:
        value = arg.value
        if key == "padding":
            if isinstance(value, tuple):
                pair = tuple(self.concrete_integer(v, "padding") for v in value)
                if None in pair:
                    return None
                if min(pair) < 0:
                    self.error(arg.span, f"padding must not be negative, got {pair}")
                    return None
                return pair
            if isinstance(value, ast.Symbol) and value.name in ("same", "valid"):
                return "same" if value.name == "same" else (0, 0)
            amount = self.concrete_integer(value, "padding")
            if amount is not None and amount < 0:
                self.error(arg.span, f"padding must not be negative, got {amount}")
                return None
            return None if amount is None else (amount, amount)
        if isinstance(value, tuple):
            self.error(arg.span, f"'{key}' takes one integer, not a pair")
            return None
        amount = self.concrete_integer(value, key)
        if amount is None:
            return None
        least = 0 if key == "output_padding" else 1
        if amount < least:
            self.error(arg.span, f"{key} must be at least {least}, got {amount}")
            return None
        return amount

    # -------------------------------------------------------------- equations
    def equation(self, eq: ast.Equation) -> None:
        if isinstance(eq.rhs, ast.Call):
            self.error(eq.rhs.span, f"derivative forms like {eq.rhs.function.text}(...) are not supported by this version of tnc")
            return
        terms = [t for t in (self.term(term) for term in eq.rhs) if t is not None]
        lhs_legs = [leg for axis in eq.axes for leg in axis.names]
        tensor = self.declare_tensor(eq.name, Kind.DEFINED, eq.axes, eq.span)
        if tensor is None or len(terms) != len(eq.rhs):
            return
        carried = [set(t.product.indices()) for t in terms]
        everywhere = set.union(*carried) if carried else set()
        ok = True
        for leg in lhs_legs:
            if leg.text not in everywhere:
                self.error(leg.span, f"index '{leg.text}' on the left side is carried by no factor on the right")
                ok = False
        for position, (term, legs) in enumerate(zip(eq.rhs, carried), start=1):
            missing = [leg.text for leg in lhs_legs if leg.text not in legs and leg.text in everywhere]
            if missing:
                open_here = [leg.text for leg in lhs_legs if leg.text in legs]
                self.error(
                    term.span,
                    f"term {position} has open legs [{', '.join(open_here)}] but the left side has "
                    f"[{', '.join(leg.text for leg in lhs_legs)}] (missing {', '.join(missing)})",
                )
                ok = False
        if ok:
            self.program.definitions[eq.name.text] = Network(tensor.axes, terms)
        if eq.output:
            self.marked_outputs.append(eq.name.text)

    def term(self, term: ast.Term) -> Term | None:
        coefficient: sympy.Expr = sympy.Integer(term.sign)
        factors: list[Factor] = []
        ok = True
        for op, item in term.items:
            if isinstance(item, ast.Factor):
                if op == "/":
                    self.error(item.span, "cannot divide by a tensor; only by a number or a size")
                    ok = False
                    continue
                factor = self.factor(item)
                ok = ok and factor is not None
                if factor is not None:
                    factors.append(factor)
            else:
                value = self.scalar(item)
                if value is None:
                    ok = False
                else:
                    coefficient = coefficient / value if op == "/" else coefficient * value
        if not factors and ok:
            self.error(term.span, "a term needs at least one tensor factor")
            return None
        return Term(coefficient, Product(factors)) if ok else None

    def factor(self, item: ast.Factor) -> Factor | None:
        name = item.tensor.text
        tensor = self.program.tensors.get(name)
        if tensor is None:
            if name in self.defined_at:
                self.error(item.tensor.span, f"tensor '{name}' is used before its definition", Note(self.defined_at[name], "defined here"))
            else:
                self.error(item.tensor.span, f"unknown tensor '{name}'")
            return None
        if len(item.axes) != len(tensor.axes):
            self.error(
                item.span,
                f"'{name}' has {len(tensor.axes)} legs, but {len(item.axes)} are given here",
                Note(tensor.span, f"'{name}' is declared here"),
            )
            return None
        self.used.add(name)
        for axis, declared in zip(item.axes, tensor.axes):
            for leg in axis.names:
                self.unifier.use(leg.text, leg.span)
            self.slots.append(_Slot(axis.names, declared, name, axis.span))
        return Factor(name, tensor.kind, tuple(tuple(leg.text for leg in axis.names) for axis in item.axes))

    # ------------------------------------------------------------ size solving
    def infer_sizes(self) -> None:
        product_slots = []
        for slot in self.slots:
            if len(slot.legs) == len(slot.declared):
                for leg, declared in zip(slot.legs, slot.declared):
                    self.unifier.join(leg.text, leg.span, declared)
            else:
                product_slots.append(slot)
        changed = True
        while changed:
            changed = any([self.solve_slot(slot) for slot in product_slots] + [self.solve_pattern(*p) for p in self.patterns])
        for slot in product_slots:
            self.solve_slot(slot, final=True)
        for name, decl in self.patterns:
            self.solve_pattern(name, decl, final=True)
        for name, span in self.unifier.first_use.items():
            size = self.unifier.size(name)
            if size is None:
                self.error(span, f"cannot infer the size of index '{name}'; declare it with 'index {name}: SIZE'")
            else:
                self.program.index_sizes[name] = size

    def solve_slot(self, slot: _Slot, final: bool = False) -> bool:
        """Grouped legs against a differently grouped axis: the sizes must multiply to the same."""
        target = [self.unifier.size(n) for n in slot.declared]
        sizes = [self.unifier.size(leg.text) for leg in slot.legs]
        if None in target:
            return False
        total = sympy.Mul(*target)
        unknown = [leg for leg, size in zip(slot.legs, sizes) if size is None]
        if not unknown:
            if final and not self.unifier.equal(sympy.Mul(*sizes), total):
                self.error(slot.span, f"these legs have total size {sympy.Mul(*sizes)}, but this axis of '{slot.tensor}' has size {total}")
            return False
        if len(unknown) > 1:
            return False
        known = sympy.Mul(*(s for s in sizes if s is not None))
        value = sympy.simplify(total / known)
        concrete = self.program.concrete(value)
        if concrete.is_number and not concrete.is_integer:
            if final:
                self.error(slot.span, f"this axis of '{slot.tensor}' has size {total}, which {known} does not divide")
            return False
        return self.unifier.assign(unknown[0].text, _Origin(value, unknown[0].span, f"the rest of an axis of '{slot.tensor}'"))

    def solve_pattern(self, name: str, decl: ast.PatternDecl, final: bool = False) -> bool:
        pattern = self.program.tensors[name].pattern
        (i,), (o,), (k,) = (axis.names for axis in decl.axes)
        I, O, K = (self.unifier.size(n.text) for n in (i, o, k))
        if K is None:
            return False
        if I is not None and O is None:
            value = pattern.output_size(I, K)
            if self._too_small(value, o.span, f"output size of '{name}'"):
                return False
            return self.unifier.assign(o.text, _Origin(value, o.span, f"the output size of pattern '{name}'"))
        if O is not None and I is None:
            value = pattern.input_size(O, K)
            if self._too_small(value, i.span, f"input size of '{name}'"):
                return False
            return self.unifier.assign(i.text, _Origin(value, i.span, f"the input size of transpose pattern '{name}'"))
        if final and I is not None and O is not None:
            expected = pattern.output_size(I, K)
            if not self.unifier.equal(expected, O):
                self.error(o.span, f"pattern '{name}' maps input size {I} with kernel {K} to output size {expected}, but '{o.text}' has size {O}")
        return False

    def _too_small(self, value: sympy.Expr, span: Span, what: str) -> bool:
        concrete = self.program.concrete(value)
        if concrete.is_number and concrete < 1:
            self.error(span, f"the {what} would be {concrete}; it must be at least 1 (input too small for kernel, dilation and padding)")
            return True
        return False

    def choose_outputs(self) -> None:
        if self.marked_outputs:
            self.program.outputs = [n for n in self.marked_outputs if n in self.program.definitions]
            return
        self.program.outputs = [n for n in self.program.definitions if n not in self.used]


def check(module: ast.Module, source: Source, sizes: dict[str, int] | None = None) -> Program:
    """Validate a syntax tree and build its program; raises :class:`TncError` with every error.

    ``sizes`` binds free sizes (``--size N=32``); naming a size the file does not declare is a
    :class:`UsageError`.
    """
    declared = {s.name.text for s in module.statements if isinstance(s, ast.SizeDecl)}
    unknown = sorted(set(sizes or {}) - declared)
    if unknown:
        raise UsageError(f"--size: the file declares no size {', '.join(repr(u) for u in unknown)}")
    return Checker(source, sizes).run(module)
