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
from tnc.frontend.concat import Concatenation
from tnc.frontend.lints import lint
from tnc.frontend.sampling import check_sample, sample_options
from tnc.ir import functions
from tnc.ir.network import Factor, Kind, Network, Product, Term, Window, axes_text
from tnc.ir.pattern import PADDING_MODES, ConvPattern
from tnc.ir.program import Program, Sample, Tensor
from tnc.ir.sizes import quotient, same
from tnc.limits import MAX_CHAIN, MAX_EXPONENT, MAX_VALUE
from tnc.passes.deltas import DELTA, ones
from tnc.passes.derive import DerivativeError, chain_in_file, jacobian, jvp, vjp
from tnc.passes.fresh import primed, tidy

PATTERN_ARGUMENTS = ("stride", "padding", "dilation", "output_padding", "padding_mode")
RESERVED_SIZES = ("same", "valid")  # words of padding=..., which a size must not shadow


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
    regrouped: bool = False  # the same storage split another way: only the total size must agree


class _Unifier:
    """Union-find over index names; each class may carry a size and where that size came from."""

    def __init__(self, program: Program, report: Callable[[Diagnostic], None]) -> None:
        self.program = program
        self.report = report
        self.parent: dict[str, str] = {}
        self.origin: dict[str, _Origin] = {}
        self.first_use: dict[str, Span] = {}
        self.via: dict[str, _Origin] = {}  # where a leg name first took a size from a slot
        self.failed: set[str] = set()  # indices whose size was already reported as invalid

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
        return same(self.program.concrete(a), self.program.concrete(b))

    def failed_class(self, name: str) -> bool:
        """Whether an index joined with ``name`` already had its size reported as invalid."""
        root = self.find(name)
        return any(self.find(f) == root for f in self.failed)

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

    def join(self, a: str, a_span: Span, b: str, tensor: str) -> None:
        """Index ``a`` (written at ``a_span``) fills a leg of ``tensor`` declared with index ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        oa, ob = self.origin.get(ra), self.origin.get(rb)
        here = f"leg '{b}' of '{tensor}'" if a != b else f"a leg of '{tensor}'"
        if oa is not None and ob is not None and not self.equal(oa.size, ob.size):
            # Keep the two classes apart, so one mistake is reported once, not at every later use.
            self._conflict(a, _Origin(ob.size, a_span, here), self.via.get(a, oa))
            return
        self.parent[ra] = rb
        if ob is None and oa is not None:
            self.origin[rb] = oa
        elif oa is None and ob is not None:
            self.via.setdefault(a, _Origin(ob.size, a_span, here))

    def show(self, size: sympy.Expr) -> str:
        """A size as written, with its value where it is a bound expression: ``G (= 2)``."""
        concrete = self.program.concrete(size)
        return _show(size) if concrete == size else f"{_show(size)} (= {_show(concrete)})"

    def _conflict(self, name: str, here: _Origin, known: _Origin) -> None:
        self.report(
            Diagnostic(
                here.span,
                f"conflicting sizes for index '{name}': {self.show(here.size)} here ({here.what}), "
                f"but {self.show(known.size)} elsewhere",
                (Note(known.span, f"size {self.show(known.size)} comes from here ({known.what})"),),
            )
        )


def _legs(count: int) -> str:
    return "leg" if count == 1 else "legs"


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
        self.broken: set[str] = set()  # patterns whose declaration was reported as invalid
        self.current: str | None = None  # the tensor whose equation is being checked
        self.names_in_file: set[str] = set()  # every index name written anywhere (fresh names avoid them)
        self.copy_of: dict[str, str] = {}  # a fresh index -> the written index it copies
        self.seeds_used: set[str] = set()  # tensors used as vjp/jvp seeds
        self.seed_checks: list[tuple[ast.Name, tuple, str]] = []
        self.chained_forms: list[tuple[str, str, str, str | None]] = []  # G = grad(L, W): for reverse mode
        self.placeholders: dict[sympy.Symbol, ast.IndexSize] = {}  # |i| -> where it was first written
        self.concatenation = Concatenation(self)
        self.samples: list[tuple[ast.SampleDecl, Sample]] = []

    def error(self, span: Span, message: str, *notes: Note) -> None:
        self.errors.append(Diagnostic(span, message, tuple(notes)))

    # ---------------------------------------------------------------- scalars
    def scalar(self, node: ast.Scalar, *, integer: bool = False, what: str = "a size") -> sympy.Expr | None:
        """A size or coefficient expression as sympy; None (and an error) if it is not valid."""
        if isinstance(node, ast.Number):
            if integer and "." in node.text:
                self.error(node.span, f"{what} must be an integer, not {node.text}")
                return None
            return self.bounded(sympy.Rational(node.text) if "." in node.text else sympy.Integer(node.text), node.span)
        if isinstance(node, ast.IndexSize):
            return self.index_size(node)
        if isinstance(node, ast.Symbol):
            if node.name in self.program.symbols:
                return self.program.symbols[node.name]
            if node.name in self.program.tensors:
                self.error(node.span, f"'{node.name}' is a tensor, not a size; write it with its legs, {node.name}[...]")
            else:
                self.error(node.span, f"unknown size '{node.name}'; declare it with 'size {node.name}'")
            return None
        if isinstance(node, ast.Neg):
            value = self.scalar(node.operand, integer=integer, what=what)
            return None if value is None else -value
        left = self.scalar(node.left, integer=integer, what=what)
        right = self.scalar(node.right, integer=integer, what=what)
        if left is None or right is None:
            return None
        if node.op == "**":
            return self.power(left, right, node)
        if node.op == "/" and self.program.concrete(right) == 0:
            self.error(node.span, "division by zero" if right == 0 else f"division by zero ({right} = 0)")
            return None
        result = {"+": sympy.Add, "-": lambda a, b: a - b, "*": sympy.Mul, "/": lambda a, b: a / b}[node.op](left, right)
        if integer and node.op == "/":  # sizes divide with floor, like Python's //
            result = sympy.floor(result)
        return self.bounded(result, node.span)

    def index_size(self, node: ast.IndexSize) -> sympy.Expr:
        """``|i|``: a placeholder, replaced by the size of ``i`` once sizes are inferred."""
        placeholder = sympy.Symbol(f"|{node.index}|", positive=True, integer=True)
        self.placeholders.setdefault(placeholder, node)
        return placeholder

    def resolve_index_sizes(self) -> None:
        """Replace every ``|i|`` by the size of ``i`` in sizes, index sizes and coefficients."""
        if not self.placeholders:
            return
        values: dict[sympy.Symbol, sympy.Expr] = {}
        for placeholder, node in self.placeholders.items():
            size = self.program.index_sizes.get(node.index)
            if size is None:
                if node.index not in self.unifier.first_use:
                    self.error(node.span, f"|{node.index}| is the size of an index, but no factor or declaration uses index '{node.index}'")
                continue
            values[placeholder] = self.program.concrete(size)  # bound sizes as numbers
        for _ in range(len(values) + 1):  # a size may name another |j|
            values = {p: v.xreplace(values) for p, v in values.items()}
        for placeholder, value in values.items():
            if value.free_symbols & set(self.placeholders):
                self.error(self.placeholders[placeholder].span, f"the size |{self.placeholders[placeholder].index}| depends on itself")
                return
        self.program.bindings = {s: v.xreplace(values) for s, v in self.program.bindings.items()}
        self.program.index_sizes = {i: v.xreplace(values) for i, v in self.program.index_sizes.items()}
        for network in self.program.definitions.values():
            for term in network.terms:
                term.coefficient = sympy.sympify(term.coefficient).xreplace(values)

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.BinOp) -> sympy.Expr | None:
        """``base ** exponent`` for an integer exponent of at most :data:`MAX_EXPONENT`, checked
        before it is computed (``9**9**9`` is refused, not evaluated)."""
        concrete = self.program.concrete(exponent)
        if not concrete.is_Integer or abs(concrete) > MAX_EXPONENT:
            self.error(node.right.span, f"an exponent must be an integer from -{MAX_EXPONENT} to {MAX_EXPONENT}, not {concrete}")
            return None
        if concrete < 0 and self.program.concrete(base) == 0:
            self.error(node.span, "division by zero")
            return None
        return self.bounded(base ** int(concrete), node.span)

    def bounded(self, value: sympy.Expr, span: Span) -> sympy.Expr | None:
        """``value``, or None (and an error) if a number in it exceeds :data:`MAX_VALUE`."""
        numbers = self.program.concrete(value).atoms(sympy.Rational)
        if any(abs(n.p) > MAX_VALUE or n.q > MAX_VALUE for n in numbers):
            self.error(span, f"this value is too large: sizes and coefficients are at most 2**62 ({MAX_VALUE})")
            return None
        return value

    def concrete_integer(self, node: ast.Scalar, what: str) -> int | None:
        value = self.scalar(node, integer=True, what=what)
        if value is None:
            return None
        value = self.program.concrete(value)
        if value.free_symbols & set(self.placeholders):
            self.error(node.span, f"{what} cannot use the size of an index (|i|): it is needed before sizes are inferred")
            return None
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
            self.names_in_file.update(_index_names(statement))
        for statement in module.statements:
            handler = {
                ast.SizeDecl: self.size_decl,
                ast.IndexDecl: self.index_decl,
                ast.TensorDecl: self.tensor_decl,
                ast.PatternDecl: self.pattern_decl,
                ast.SampleDecl: self.sample_decl,
                ast.Equation: self.equation,
            }[type(statement)]
            handler(statement)
        self.check_chains()
        self.infer_sizes()
        self.resolve_index_sizes()
        self.check_seeds()
        self.choose_outputs()
        if self.errors:
            self.errors.sort(key=lambda d: (d.span.line, d.span.column))
            raise TncError(self.source, self.errors)
        chain_in_file(self.program, self.chained_forms)
        for decl, options in self.samples:  # once the file's derivatives are defined
            sample = check_sample(self, decl, options)
            if sample is not None:
                self.program.samples[decl.tensor.text] = self.program.samples.get(decl.tensor.text, ()) + (sample,)
        if self.errors:
            raise TncError(self.source, self.errors)
        self.program.warnings = lint(module, self.program)
        return self.program

    def sample_decl(self, decl: ast.SampleDecl) -> None:
        options = sample_options(self, decl)
        if options is not None:
            self.samples.append((decl, options))

    def check_chains(self) -> None:
        """Refuse a definition that depends on more than :data:`MAX_CHAIN` chained definitions."""
        depth: dict[str, int] = {}
        for name, network in self.program.definitions.items():
            depth[name] = 1 + max((depth.get(used, 0) for used in network.tensors()), default=0)
            if depth[name] > MAX_CHAIN:
                span = self.program.tensors[name].span or Span(1, 1)
                self.error(span, f"'{name}' depends on a chain of more than {MAX_CHAIN:,} definitions")
                return

    def size_decl(self, decl: ast.SizeDecl) -> None:
        name = decl.name.text
        if name in RESERVED_SIZES:
            self.error(decl.name.span, f"'{name}' is reserved for padding={name} and cannot be declared as a size")
        if name in self.program.symbols:
            self.error(decl.name.span, f"size '{name}' is declared twice", Note(self.program.symbol_spans[name], "first declared here"))
            return
        value = self.scalar(decl.value, integer=True) if decl.value is not None else None
        span = decl.value.span if decl.value is not None else decl.name.span
        if name in self.overrides:
            if value is not None:
                self.error(decl.name.span, f"size '{name}' is bound in the file; --size can only bind a free size")
            value, span = sympy.Integer(self.overrides[name]), decl.name.span
        concrete = None if value is None else self.program.concrete(value)
        if concrete is not None and concrete.is_number and concrete < 0:
            self.error(span, f"size '{name}' must not be negative, not {concrete}")
        # A size may be 0 (a padding); a leg of size 0 is reported where an index gets that size.
        zero = concrete is not None and concrete == 0
        symbol = sympy.Symbol(name, integer=True, nonnegative=True) if zero else sympy.Symbol(name, integer=True, positive=True)
        self.program.symbols[name] = symbol
        self.program.symbol_spans[name] = decl.name.span
        if value is not None:
            self.program.bindings[symbol] = value

    def index_decl(self, decl: ast.IndexDecl) -> None:
        name = decl.name.text
        if name in self.declared_indices:
            self.error(decl.name.span, f"index '{name}' is declared twice", Note(self.declared_indices[name], "first declared here"))
            return
        size = self.scalar(decl.size, integer=True)
        self.declared_indices[name] = decl.name.span
        self.unifier.use(name, decl.name.span)
        if size is None:
            self.unifier.failed.add(name)  # the size expression was reported; no second error
        else:
            concrete = self.program.concrete(size)
            if concrete.is_number and concrete < 1:
                self.error(decl.size.span, f"index '{name}' must have a size of at least 1, not {self.unifier.show(size)}")
                self.unifier.failed.add(name)
                return
            self.unifier.assign(name, _Origin(size, decl.name.span, f"declared as 'index {name}: {size}'"))
            self.program.declared_sizes[name] = size

    def declare_tensor(self, name: ast.Name, kind: Kind, axes: tuple[ast.Axis, ...], span: Span) -> Tensor | None:
        if name.text == DELTA:
            self.error(name.span, "'delta' is the built-in identity and cannot be declared or defined")
            return None
        if name.text in self.program.tensors:
            previous = self.program.tensors[name.text]
            self.error(name.span, f"'{name.text}' is defined twice", Note(previous.span or name.span, "first defined here"))
            return None
        seen: dict[str, Span] = {}
        for axis in axes:
            if axis.window:
                self.error(axis.span, f"a window leg can only be read in a factor, not declared in '{name.text}[...]'")
                return None
            if axis.blocks:
                self.error(axis.span, f"a concatenated axis (a | b) is written only on the left side of an equation, not in '{name.text}[...]'")
                return None
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
            self.broken.add(decl.name.text)
            return
        grouped = [axis for axis in decl.axes if axis.grouped]
        if grouped:
            self.error(grouped[0].span, f"the legs of pattern '{decl.name.text}' cannot be grouped; it needs three plain legs [input, output, kernel]")
            self.broken.add(decl.name.text)
            return
        if len(decl.axes) not in (2, 3) or any(axis.window for axis in decl.axes):
            self.error(
                decl.name.span,
                f"pattern '{decl.name.text}' needs three plain legs [input, output, kernel] "
                f"(or two, [input, kernel], for the pattern summed over its outputs), got {len(decl.axes)}",
            )
            self.broken.add(decl.name.text)
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
            self.broken.add(decl.name.text)
            return
        pattern = ConvPattern(
            stride=values.get("stride", 1),
            dilation=values.get("dilation", 1),
            padding=values.get("padding", (0, 0)),
            output_padding=values.get("output_padding", 0),
            summed=len(decl.axes) == 2,
            padding_mode=values.get("padding_mode", "zeros"),
        )
        args = {a.name.text: a for a in decl.args}
        if pattern.padding == "same" and pattern.stride > 1:
            self.error(args["padding"].span, f"padding=same needs stride 1, but stride is {pattern.stride}")
            self.broken.add(decl.name.text)
            return
        bound = max(pattern.stride, pattern.dilation)  # PyTorch's rule for transpose convolutions
        if pattern.output_padding >= bound:
            self.error(
                args["output_padding"].span,
                f"output_padding={pattern.output_padding} must be smaller than max(stride, dilation) = {bound}",
            )
            self.broken.add(decl.name.text)
            return
        if pattern.output_padding and pattern.padding_mode != "zeros":
            self.error(args["padding_mode"].span, TRANSPOSE_MODE.format(mode=pattern.padding_mode, why="output_padding makes this one a transpose convolution's"))
            self.broken.add(decl.name.text)
            return
        tensor = self.declare_tensor(decl.name, Kind.PATTERN, decl.axes, decl.span)
        if tensor is not None:
            tensor.pattern = pattern
            self.patterns.append((tensor.name, decl))

    def pattern_argument(self, key: str, arg: ast.PatternArg) -> object:
        value = arg.value
        if key == "padding_mode":
            if isinstance(value, ast.Symbol) and value.name in PADDING_MODES:
                return value.name
            self.error(getattr(value, "span", arg.span), f"padding_mode must be one of {', '.join(PADDING_MODES)}, not {_argument_text(value)}")
            return None
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
            if isinstance(value, ast.Symbol) and value.name not in self.program.symbols:
                self.error(
                    value.span,
                    f"padding must be an integer, a size, 'same', 'valid' or a pair (left, right), not '{value.name}'",
                )
                return None
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
            self.derivative(eq)
            return
        if _is_zero(eq.rhs):
            tensor = self.declare_tensor(eq.name, Kind.DEFINED, eq.axes, eq.span)
            if tensor is not None:
                self.program.definitions[eq.name.text] = Network(tensor.axes, [])
                if eq.output:
                    self.marked_outputs.append(eq.name.text)
            return
        self.current = eq.name.text
        terms = [t for t in (self.term(term) for term in eq.rhs) if t is not None]
        self.current = None
        axes = eq.axes
        if any(axis.blocks for axis in eq.axes):
            axes = self.concatenation.axes(eq, terms if len(terms) == len(eq.rhs) else None)
        lhs_legs = [leg for axis in axes for leg in axis.names]
        tensor = self.declare_tensor(eq.name, Kind.DEFINED, axes, eq.span)
        if tensor is None or len(terms) != len(eq.rhs) or axes is not eq.axes and self.concatenation.failed:
            return
        carried = [set(t.product.indices()) for t in terms]
        everywhere = set.union(*carried) if carried else set()
        ok = True
        for leg in lhs_legs:
            if leg.text not in everywhere:
                self.error(leg.span, f"index '{leg.text}' on the left side is carried by no factor on the right")
                ok = False
        for term, legs in zip(terms, carried):  # broadcasting: the legs a term lacks carry ones
            for leg in lhs_legs:
                if leg.text not in legs:
                    term.product.add(ones(leg.text))
        if ok:
            self.program.definitions[eq.name.text] = Network(tensor.axes, terms)
        if eq.output:
            self.marked_outputs.append(eq.name.text)

    def term(self, term: ast.Term) -> Term | None:
        coefficient: sympy.Expr = sympy.Integer(term.sign)
        factors: list[Factor] = []
        ok = True
        for op, item in term.items:
            if isinstance(item, (ast.Factor, ast.Apply)):
                if op == "/":
                    self.error(item.span, "cannot divide by a tensor; only by a number or a size")
                    ok = False
                    continue
                factor = self.factor(item) if isinstance(item, ast.Factor) else self.apply(item)
                ok = ok and factor is not None
                if factor is not None:
                    factors.append(factor)
            else:
                value = self.scalar(item)
                if value is not None and op == "/" and self.program.concrete(value) == 0:
                    self.error(item.span, f"division by zero ({value} = 0)" if value != 0 else "division by zero")
                    value = None
                if value is not None:
                    value = self.bounded(coefficient / value if op == "/" else coefficient * value, item.span)
                if value is None:
                    ok = False
                else:
                    coefficient = value
        return Term(coefficient, Product(factors)) if ok else None

    def factor(self, item: ast.Factor) -> Factor | None:
        name = item.tensor.text
        tensor = self.program.tensors.get(name)
        if tensor is None and name == DELTA:
            return self.delta(item)
        if tensor is None and name in self.broken:
            # Its declaration was already reported; its legs' sizes cannot be known either.
            self.unifier.failed.update(leg.text for axis in item.axes for leg in axis.names)
            return None
        if tensor is None:
            if name == self.current:
                self.error(item.tensor.span, f"tensor '{name}' is used in its own definition")
            elif name in self.defined_at:
                self.error(item.tensor.span, f"tensor '{name}' is used before its definition", Note(self.defined_at[name], "defined here"))
            else:
                self.error(item.tensor.span, f"unknown tensor '{name}'")
            self.unifier.failed.update(leg.text for axis in item.axes for leg in axis.names)
            return None
        if len(item.axes) != len(tensor.axes):
            self.error(
                item.span,
                f"'{name}' has {len(tensor.axes)} {_legs(len(tensor.axes))}, but {len(item.axes)} {'is' if len(item.axes) == 1 else 'are'} given here",
                Note(tensor.span, f"'{name}' is declared here"),
            )
            self.unifier.failed.update(leg.text for axis in item.axes for leg in axis.names)
            return None
        blocked = next((axis for axis in item.axes if axis.blocks), None)
        if blocked is not None:
            self.error(blocked.span, f"a concatenated axis (a | b) is written only on the left side of an equation, not in a factor; read '{name}' with one index there")
            self.unifier.failed.update(leg.text for axis in item.axes for leg in axis.names)
            return None
        self.used.add(name)
        for axis, declared in zip(item.axes, tensor.axes):
            for leg in axis.names:
                self.unifier.use(leg.text, leg.span)
            if axis.window is None:  # a window's legs take their sizes from elsewhere
                self.slots.append(_Slot(axis.names, declared, name, axis.span))
        return Factor(name, tensor.kind, tuple(self.factor_axis(axis) for axis in item.axes))

    def apply(self, item: ast.Apply) -> Factor | None:
        """``f(A[legs])``: a factor of the application tensor ``f(A)`` (:mod:`tnc.ir.functions`)."""
        function = item.function.text
        inner = [i for term in item.argument for _, i in term.items]
        problem = self.application_problem(item, inner)
        if problem is not None:
            self.error(*problem)
            # the legs of a rejected application take no sizes from it; they are not reported again
            self.unifier.failed.update(leg.text for f in ast.factors_of(item) for axis in f.axes for leg in axis.names)
            return None
        factor = self.factor(inner[0])
        if factor is None:
            return None
        applied = functions.apply(self.program, function, inner[0].tensor.text)
        self.used.add(applied)
        return Factor(applied, Kind.DEFINED, factor.axes)

    def application_problem(self, item: ast.Apply, inner: list) -> tuple[Span, str] | None:
        """Why ``f(...)`` is not an element-wise function of one tensor, with where; None if it is."""
        function = item.function.text
        if function in ("grad", "vjp", "jvp"):
            return item.function.span, f"{function}(...) is a derivative form; it must be the whole right-hand side, with tensor names as arguments"
        if not functions.known(function):
            return item.function.span, (
                f"unknown function '{function}'; the element-wise functions are {', '.join(functions.FUNCTIONS)} "
                "(with primes for derivatives, relu'), and grad, vjp, jvp are derivative forms"
            )
        nested = next((i for i in inner if isinstance(i, ast.Apply)), None)
        if nested is not None:
            return nested.span, f"the argument of {function} cannot be another function; define {nested.function.text}(...) as a tensor first"
        if len(item.argument) != 1 or len(inner) != 1 or item.argument[0].sign != 1:
            return item.argument[0].span, (
                f"the argument of {function} must be a single tensor with its legs, {function}(Z[...]), "
                "not a product or a sum; define that expression as a tensor first"
            )
        name = inner[0].tensor.text
        tensor = self.program.tensors.get(name)
        if name == DELTA or tensor is not None and tensor.kind is Kind.PATTERN:
            what = "the identity delta" if name == DELTA else f"the index pattern '{name}'"
            return inner[0].tensor.span, f"{function} of {what}: an element-wise function applies to an input, param or defined tensor"
        return None

    def factor_axis(self, axis: ast.Axis) -> tuple[str, ...]:
        """A factor's axis: its legs, or a :class:`Window` for ``S*o + D*k - P``."""
        names = tuple(leg.text for leg in axis.names)
        if axis.window is None:
            return names
        stride, dilation, padding = axis.window
        if max(stride, abs(dilation), abs(padding)) > MAX_VALUE:
            self.error(axis.span, f"this value is too large: sizes and coefficients are at most 2**62 ({MAX_VALUE})")
        elif stride < 1 or dilation < 1 or padding < 0:
            self.error(axis.span, "a window leg reads S*o + D*k - P with S >= 1, D >= 1 and P >= 0")
        if names[0] == names[1]:
            self.error(axis.span, f"a window leg needs two different indices, not '{names[0]}' twice")
        return Window(names[0], names[1], stride, dilation, padding)

    def delta(self, item: ast.Factor) -> Factor | None:
        """The built-in identity ``delta[a, b]``: 1 where its two axes agree, which must match in
        size; ``delta[a]``, the copy tensor with one leg, is 1 everywhere (what broadcasting adds)."""
        if len(item.axes) == 1 and len(item.axes[0].names) == 1 and item.axes[0].window is None:
            self.unifier.use(item.axes[0].names[0].text, item.axes[0].span)
            return ones(item.axes[0].names[0].text)
        if len(item.axes) != 2:
            self.error(item.span, f"delta takes two legs (or grouped legs), or one leg (ones), but {len(item.axes)} are given here")
            return None
        first, second = item.axes
        for leg in first.names + second.names:
            self.unifier.use(leg.text, leg.span)
        self.slots.append(_Slot(second.names, tuple(n.text for n in first.names), DELTA, second.span))
        return Factor(DELTA, Kind.DELTA, tuple(tuple(leg.text for leg in axis.names) for axis in item.axes))

    # ------------------------------------------------------------ derivatives
    def fresh(self, base: str) -> str:
        """A new index name, primed from ``base``, used nowhere in the file."""
        name = primed(base, self.names_in_file)
        self.names_in_file.add(name)
        self.copy_of[name] = self.copy_of.get(base, base)
        self.unifier.use(name, self.call_span)
        self.unifier.join(name, self.call_span, base, "the variable")  # a copy of a leg has its size
        return name

    def same_index_family(self, a: str, b: str) -> bool:
        """Whether two index names are copies of one written index (and so of one size)."""
        return self.copy_of.get(a, a) == self.copy_of.get(b, b)

    def derivative(self, eq: ast.Equation) -> None:
        """``J[...] = grad(T, A)`` and friends: derive, then name the result legs as on the left."""
        self.call_span = eq.rhs.span
        network = self.call_network(eq.rhs)
        if network is None or len(eq.axes) != len(network.axes):
            if network is not None:
                self.error(
                    eq.name.span,
                    f"{_call_text(eq.rhs)} has {len(network.axes)} result legs ({axes_text(network.axes)}), "
                    f"but the left side gives {len(eq.axes)}",
                )
            # Declared, so later uses are not unknown; its legs' sizes are not reported again.
            self.declare_tensor(eq.name, Kind.DEFINED, eq.axes, eq.span)
            self.unifier.failed.update(leg.text for axis in eq.axes for leg in axis.names)
            return
        user = {leg.text for axis in eq.axes for leg in axis.names}
        internal = network.terms and set().union(*(t.product.indices() for t in network.terms)) - set(network.legs)
        mapping = {leg: self.fresh(leg) for leg in sorted(internal or ()) if leg in user}
        for mine, theirs in zip(network.axes, eq.axes):
            if len(mine) == len(theirs.names):
                mapping.update(zip(mine, (leg.text for leg in theirs.names)))
                for leg, name in zip(mine, theirs.names):  # sizes, even when the result is 0
                    self.unifier.use(name.text, name.span)
                    self.unifier.join(name.text, name.span, leg, eq.name.text)
        used = user | {leg for t in network.terms for leg in t.product.indices()} | set(network.legs)
        for mine, theirs in zip(network.axes, eq.axes):  # legs the left side does not name: plainest copy
            for leg in mine if len(mine) != len(theirs.names) else ():
                if leg in user:  # the left side gives this name to another axis
                    mapping[leg] = self.fresh(leg)
                    continue
                plain = leg.rstrip("'")
                while plain != leg and (plain in used or not self.same_index_family(plain, leg)):
                    plain += "'"
                mapping[leg] = plain
                used.add(plain)
        axes = tuple(tuple(mapping.get(leg, leg) for leg in axis) for axis in network.axes)
        cut = tuple(mapping.get(leg, leg) for leg in network.cut)
        network = Network(axes, [Term(t.coefficient, t.product.renamed(mapping)) for t in network.terms])
        network = Network(network.axes, tidy(network, self.same_index_family, user).terms, cut)
        tensor = self.declare_tensor(eq.name, Kind.DEFINED, eq.axes, eq.span)
        if tensor is None:
            return
        for mine, theirs in zip(network.axes, eq.axes):
            if len(mine) != len(theirs.names):
                self.slots.append(_Slot(theirs.names, mine, eq.name.text, theirs.span))
        self.constrain(network, eq.rhs.span)
        self.program.definitions[eq.name.text] = network
        args = eq.rhs.args
        if eq.rhs.function.text in ("grad", "vjp") and not any(isinstance(a, ast.Call) for a in args):
            self.chained_forms.append((eq.name.text, args[0].text, args[1].text, args[2].text if args[2:] else None))
            if args[2:]:
                self.program.vjps[eq.name.text] = (args[0].text, args[1].text, args[2].text)
        if network.reads_no_data():  # 0 or a constant: the function still takes what it was taken of
            self.program.interfaces[eq.name.text] = self.call_interface(eq.rhs)
        if eq.output:
            self.marked_outputs.append(eq.name.text)

    def call_interface(self, call: ast.Call) -> list[str]:
        """The inputs and params a derivative form names or reaches through its arguments."""
        uses, names = self.program.uses(), []
        for arg in call.args:
            if isinstance(arg, ast.Call):
                names += self.call_interface(arg)
            elif arg.text in self.program.tensors:
                names += uses.dependencies(arg.text) if arg.text in self.program.definitions else [arg.text]
        return uses.in_file_order(n for n in names if self.program.tensors[n].kind in (Kind.INPUT, Kind.PARAM))

    def constrain(self, network: Network, span: Span) -> None:
        """Size constraints for a network built by a pass: every factor against its declaration
        (seeds are checked on their own once sizes are known, see :meth:`check_seeds`)."""
        for term in network.terms:
            for factor in term.product:
                if factor.tensor in self.seeds_used:
                    continue
                names = [tuple(ast.Name(leg, span) for leg in axis) for axis in factor.axes]
                for axis in names:
                    for leg in axis:
                        self.unifier.use(leg.text, span)
                if factor.kind is Kind.DELTA:  # a pass writes a grouped delta only for a regrouping
                    if len(names) == 2:  # a one-leg delta (broadcast ones) links no sizes
                        regrouped = len(factor.axes[0]) > 1 and len(factor.axes[1]) > 1
                        self.slots.append(_Slot(names[1], factor.axes[0], DELTA, span, regrouped))
                    continue
                for axis, mine, declared in zip(names, factor.axes, self.program.tensors[factor.tensor].axes):
                    if not isinstance(mine, Window):
                        self.slots.append(_Slot(axis, declared, factor.tensor, span))

    def call_network(self, call: ast.Call) -> Network | None:
        """The network of a derivative form; None (and an error) if it cannot be taken."""
        function = call.function.text
        arity = {"grad": 2, "vjp": 3, "jvp": 3}.get(function)
        if arity is None and functions.known(function):
            self.error(call.span, f"{function} is an element-wise function of a tensor with its legs, {function}(A[...]), here inside an expression")
            return None
        if arity is None:
            self.error(call.function.span, f"unknown function '{function}'; expected grad, vjp or jvp")
            return None
        if len(call.args) != arity:
            usage = {"grad": "grad(T, A)", "vjp": "vjp(T, A, V)", "jvp": "jvp(T, A, U)"}[function]
            self.error(call.span, f"{function} takes {arity} arguments, {usage}; got {len(call.args)}")
            return None
        of, wrt, *seed = call.args
        if isinstance(of, ast.Call):
            network = self.call_network(of)
        else:
            network = self.argument_network(of)
        if network is None:
            return None
        for arg in (wrt, *seed):
            if isinstance(arg, ast.Call):
                self.error(arg.span, f"the {'variable' if arg is wrt else 'seed'} of {function} must be a tensor name")
                return None
            if arg.text not in self.program.tensors:
                self.error(arg.span, f"unknown tensor '{arg.text}'")
                return None
        variable = self.program.tensors[wrt.text]
        if variable.kind not in (Kind.INPUT, Kind.PARAM):
            self.error(wrt.span, f"can only differentiate with respect to an input or param, and '{wrt.text}' is a {variable.kind.value} tensor")
            return None
        if seed:
            needed = network.axes if function == "vjp" else variable.axes
            tensor = self.program.tensors[seed[0].text]
            whose = "the differentiated tensor" if function == "vjp" else f"'{wrt.text}'"
            if len(tensor.axes) != len(needed):
                self.error(
                    seed[0].span,
                    f"seed '{seed[0].text}' has {len(tensor.axes)} {_legs(len(tensor.axes))}, but {function} needs "
                    f"one for each of the {len(needed)} legs of {whose} ({axes_text(needed)})",
                )
                return None
            self.used.add(seed[0].text)
        try:
            if function == "grad":
                result = jacobian(self.program, network, wrt.text, self.fresh)
            elif function == "vjp":
                result = vjp(self.program, network, wrt.text, seed[0].text, self.fresh)
            else:
                result = jvp(self.program, network, wrt.text, seed[0].text, self.fresh)
        except DerivativeError as error:
            self.error(call.span, str(error))
            return None
        if seed:
            self.seeds_used.add(seed[0].text)
            self.seed_checks.append((seed[0], needed, f"{function} needs one for each of the legs of {whose} ({axes_text(needed)})"))
        return result

    def check_seeds(self) -> None:
        """Every seed's axes have the sizes of the legs it is contracted with."""
        for seed, needed, what in self.seed_checks:
            tensor = self.program.tensors[seed.text]
            for number, (mine, theirs) in enumerate(zip(tensor.axes, needed), start=1):
                if not all(leg in self.program.index_sizes for leg in (*mine, *theirs)):
                    continue
                have, want = self.program.axis_size(mine), self.program.axis_size(theirs)
                if not self.unifier.equal(have, want):
                    self.error(seed.span, f"seed '{seed.text}' has size {have} on its axis {number}, but {what}, of size {want} there")
                    break

    def argument_network(self, name: ast.Name) -> Network | None:
        tensor = self.program.tensors.get(name.text)
        if tensor is None:
            if name.text in self.defined_at:
                self.error(name.span, f"tensor '{name.text}' is used before its definition", Note(self.defined_at[name.text], "defined here"))
            else:
                self.error(name.span, f"unknown tensor '{name.text}'")
            return None
        self.used.add(name.text)
        if tensor.kind is Kind.DEFINED:
            return self.program.definitions.get(name.text)
        return Network(tensor.axes, [Term(sympy.Integer(1), Product([Factor(name.text, tensor.kind, tensor.axes)]))])

    # ------------------------------------------------------------ size solving
    def infer_sizes(self) -> None:
        product_slots = []
        for slot in self.slots:
            if len(slot.legs) == len(slot.declared) and not self.regrouped(slot):
                for leg, declared in zip(slot.legs, slot.declared):
                    self.unifier.join(leg.text, leg.span, declared, slot.tensor)
            else:
                product_slots.append(slot)
        changed = True
        while changed:
            changed = any([self.solve_slot(slot) for slot in product_slots] + [self.solve_pattern(*p) for p in self.patterns])
            changed = self.concatenation.size() or changed
        for slot in product_slots:
            self.solve_slot(slot, final=True)
        for name, decl in self.patterns:
            self.solve_pattern(name, decl, final=True)
        for name, span in self.unifier.first_use.items():
            size = self.unifier.size(name)
            if size is None and self.unifier.failed_class(name):
                continue  # its size was already reported as invalid
            if size is None:
                self.error(span, f"cannot infer the size of index '{name}'; declare it with 'index {name}: SIZE'")
            else:
                self.program.index_sizes[name] = size

    def regrouped(self, slot: _Slot) -> bool:
        """Whether a group of legs reads an axis grouped with as many legs of other known sizes
        (``A[(a b)]`` of ``A[(i j)]`` with a != i): the same storage split another way, which
        only the total size constrains."""
        if slot.regrouped:
            return True
        if len(slot.legs) < 2:
            return False
        sizes = [(self.unifier.size(leg.text), self.unifier.size(d)) for leg, d in zip(slot.legs, slot.declared)]
        if any(a is None or b is None for a, b in sizes):
            return False
        return not all(self.unifier.equal(a, b) for a, b in sizes)

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
                self.error(
                    slot.span,
                    f"these legs have total size {self.unifier.show(sympy.Mul(*sizes))}, "
                    f"but this axis of '{slot.tensor}' has size {self.unifier.show(total)}",
                )
            return False
        if len(unknown) > 1:
            return False
        known = sympy.Mul(*(s for s in sizes if s is not None))
        value = quotient(total, known)
        concrete = self.program.concrete(value)
        if concrete.is_number and not concrete.is_integer:
            if final:
                self.error(slot.span, f"this axis of '{slot.tensor}' has size {self.unifier.show(total)}, which {self.unifier.show(known)} does not divide")
            return False
        return self.unifier.assign(unknown[0].text, _Origin(value, unknown[0].span, f"the rest of an axis of '{slot.tensor}'"))

    def solve_pattern(self, name: str, decl: ast.PatternDecl, final: bool = False) -> bool:
        pattern = self.program.tensors[name].pattern
        if pattern.summed:
            return False  # [i, k]: both sizes come from elsewhere
        (i,), (o,), (k,) = (axis.names for axis in decl.axes)
        I, O, K = (self.unifier.size(n.text) for n in (i, o, k))
        if final and any(self.unifier.failed_class(n.text) for n in (i, o, k)):
            self.unifier.failed.update(n.text for n in (i, o, k))  # reported once, at the bad size
            return False
        if K is None:
            return False
        if I is not None and O is None:
            value = pattern.output_size(I, K)
            if self._too_small(value, o, f"output size of '{name}'", "input too small for kernel, dilation and padding"):
                return False
            return self.unifier.assign(o.text, _Origin(value, o.span, f"the output size of pattern '{name}'"))
        if O is not None and I is None:
            if pattern.padding_mode != "zeros":
                if not self.unifier.failed_class(i.text):  # else reported on an earlier round
                    self.unifier.failed.add(i.text)
                    span = next(a.span for a in decl.args if a.name.text == "padding_mode")
                    why = f"the input size '{i.text}' is inferred from the output size '{o.text}'"
                    self.error(span, TRANSPOSE_MODE.format(mode=pattern.padding_mode, why=why))
                return False
            value = pattern.input_size(O, K)
            if self._too_small(value, i, f"input size of '{name}'", "output too small for the padding"):
                return False
            return self.unifier.assign(i.text, _Origin(value, i.span, f"the input size of transpose pattern '{name}'"))
        if final and I is not None and pattern.moded(K):
            self.mode_fits(name, decl, pattern, I, K)
        if final and I is not None and O is not None:
            expected = pattern.output_size(I, K)
            # a transpose convolution's input size I may exceed what maps to O by its output
            # padding (PyTorch's rule allows output_padding >= stride where the dilation is larger)
            transpose = pattern.output_padding and self.unifier.equal(pattern.input_size(O, K), I)
            if not transpose and not self.unifier.equal(expected, O):
                self.error(o.span, f"pattern '{name}' maps input size {I} with kernel {K} to output size {expected}, but '{o.text}' has size {O}")
        return False

    def mode_fits(self, name: str, decl: ast.PatternDecl, pattern: ConvPattern, I: sympy.Expr, K: sympy.Expr) -> None:
        """PyTorch's rules for a padding mode (F.pad): reflect pads less than the input size on
        each side, circular at most the input size; checked where the sizes are concrete."""
        size = self.program.concrete(I)
        pads = [self.program.concrete(p) for p in pattern.pads(K)]
        if not size.is_number or not all(p.is_number for p in pads):
            return
        mode, largest = pattern.padding_mode, max(pads)
        limit = {"reflect": ("smaller than", largest < size), "circular": ("at most", largest <= size)}.get(mode)
        if limit is not None and not limit[1]:
            span = next(a.span for a in decl.args if a.name.text == "padding_mode")
            self.error(
                span,
                f"{mode} padding must be {limit[0]} the input size, but pattern '{name}' pads "
                f"({pads[0]}, {pads[1]}) an input of size {size}",
            )

    def _too_small(self, value: sympy.Expr, index: ast.Name, what: str, why: str) -> bool:
        concrete = self.program.concrete(value)
        if concrete.is_number and concrete < 1:
            if self.unifier.failed_class(index.text):
                return True  # reported on an earlier round of solving
            self.unifier.failed.add(index.text)
            self.error(index.span, f"the {what} would be {concrete}; it must be at least 1 ({why})")
            return True
        return False

    def choose_outputs(self) -> None:
        if self.marked_outputs:
            self.program.outputs = [n for n in self.marked_outputs if n in self.program.definitions]
            return
        self.program.outputs = [n for n in self.program.definitions if n not in self.used and not self.program.tensors[n].function]


TRANSPOSE_MODE = (
    "padding_mode={mode} needs a convolution, but {why}: a transpose convolution pads only with "
    "zeros (as PyTorch's ConvTranspose)"
)


def _argument_text(value: object) -> str:
    """A pattern argument's value as written, quoted."""
    if isinstance(value, ast.Symbol):
        return f"'{value.name}'"
    return f"'{value.text}'" if isinstance(value, ast.Number) else "an expression"


def _index_names(statement: ast.Statement) -> set[str]:
    axes: list[ast.Axis] = list(getattr(statement, "axes", ()))
    rhs = getattr(statement, "rhs", ())
    if isinstance(rhs, tuple):
        for term in rhs:
            for _, item in term.items:
                axes.extend(axis for factor in ast.factors_of(item) for axis in factor.axes)
    return {leg.text for axis in axes for leg in axis.names}




def _is_zero(terms: tuple[ast.Term, ...]) -> bool:
    """``= 0``: the empty sum, written as one term that is the number zero."""
    if len(terms) != 1 or len(terms[0].items) != 1:
        return False
    _, item = terms[0].items[0]
    return isinstance(item, ast.Number) and float(item.text) == 0


def _call_text(call: ast.Call) -> str:
    args = ", ".join(_call_text(a) if isinstance(a, ast.Call) else a.text for a in call.args)
    return f"{call.function.text}({args})"


def check(module: ast.Module, source: Source, sizes: dict[str, int] | None = None) -> Program:
    """Validate a syntax tree and build its program; raises :class:`TncError` with every error.

    ``sizes`` binds free sizes (``--size N=32``); naming a size the file does not declare is a
    :class:`UsageError`.
    """
    declared = {s.name.text for s in module.statements if isinstance(s, ast.SizeDecl)}
    unknown = sorted(set(sizes or {}) - declared)
    if unknown:
        raise UsageError(f"--size: the file declares no size {', '.join(repr(u) for u in unknown)}")
    for name, value in (sizes or {}).items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"--size {name}={value!r}: a size is an integer (0 or more)")
    return Checker(source, sizes).run(module)
