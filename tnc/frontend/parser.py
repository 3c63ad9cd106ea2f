"""Text to typed syntax tree, with positioned syntax errors that say what was expected."""

from __future__ import annotations

import re

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from tnc.errors import Diagnostic, Source, Span, TncError
from tnc.frontend import ast
from tnc.frontend.grammar import lark_parser
from tnc.frontend.slips import hint
from tnc.limits import MAX_DIGITS, MAX_NESTING

KEYWORDS = frozenset({"size", "index", "input", "param", "pattern", "output", "sample"})

_TERMINAL_NAMES = {"$END": "end of input", "NAME": "a name", "NUMBER": "a number", "SIGN": "'+' or '-'", "MULOP": "'*' or '/'"}


def _span(item: Token | Tree) -> Span:
    if isinstance(item, Token):
        return Span(item.line, item.column, max(1, len(item)))
    meta = item.meta
    length = meta.end_column - meta.column if meta.end_line == meta.line else 1
    return Span(meta.line, meta.column, max(1, length))


def _name(token: Token) -> ast.Name:
    return ast.Name(str(token), _span(token))


_NESTED = frozenset({"binop", "power", "neg", "call"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*'*")


def is_tensor_name(text: str) -> bool:
    """Whether ``text`` can name a tensor: a name that is neither a keyword nor ``delta``."""
    return bool(_NAME.fullmatch(text)) and text not in KEYWORDS and text != "delta"


class _BadToken(Exception):
    """A token the grammar accepts but the language does not; the message says why."""

    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


def _literal(token: Token) -> Token:
    if len(token) > MAX_DIGITS:
        raise _BadToken(token, f"a number has at most {MAX_DIGITS} digits, this one {len(token)}")
    return token


@v_args(tree=True)
class _ToAst(Transformer):
    """Bottom-up conversion of Lark's parse tree into :mod:`tnc.frontend.ast` nodes."""

    def start(self, tree: Tree) -> ast.Module:
        statements: list[ast.Statement] = []
        for child in tree.children:
            statements.extend(child if isinstance(child, list) else [child])
        return ast.Module(tuple(statements))

    # Scalars.
    def number(self, tree: Tree) -> ast.Number:
        return ast.Number(str(_literal(tree.children[0])), _span(tree.children[0]))

    def symbol(self, tree: Tree) -> ast.Symbol:
        return ast.Symbol(str(tree.children[0]), _span(tree.children[0]))

    def index_size(self, tree: Tree) -> ast.IndexSize:
        return ast.IndexSize(str(tree.children[0]), _span(tree))

    def binop(self, tree: Tree) -> ast.BinOp:
        left, op, right = tree.children
        return ast.BinOp(str(op), left, right, _span(tree))

    def power(self, tree: Tree) -> ast.BinOp:
        left, right = tree.children
        return ast.BinOp("**", left, right, _span(tree))

    def neg(self, tree: Tree) -> ast.Scalar:
        sign, operand = tree.children
        return operand if sign == "+" else ast.Neg(operand, _span(tree))

    # Legs.
    def legs(self, tree: Tree) -> tuple[ast.Axis, ...]:
        axes = []
        for leg in tree.children:
            if leg is None:
                continue
            if isinstance(leg, ast.Axis):
                axes.append(leg)
            else:
                axes.append(ast.Axis((_name(leg),), False, _span(leg)))
        return tuple(axes)

    def group(self, tree: Tree) -> ast.Axis:
        return ast.Axis(tuple(_name(t) for t in tree.children), True, _span(tree))

    def block(self, tree: Tree) -> tuple[ast.Name, ...]:
        """One block of a concatenated axis: its legs, or () for the literal block ``1``."""
        first = tree.children[0]
        if first.type == "NUMBER":
            if str(first) != "1":
                raise _BadToken(first, f"a block is a group of indices or 1 (a block of size 1), not {first}")
            return ()
        return tuple(_name(t) for t in tree.children)

    def concat(self, tree: Tree) -> ast.Axis:
        blocks = tuple(tree.children)
        names = tuple(name for block in blocks for name in block)
        return ast.Axis(names, True, _span(tree), blocks=blocks)

    def window(self, tree: Tree) -> ast.Axis:
        """``S*o + D*k - P``; the signs are checked by the checker (see ``Checker.window``)."""
        numbers: list[int] = []
        names: list[Token] = []
        signs: list[str] = []
        pending = 1
        for child in tree.children:
            if child is None:
                continue
            if child.type == "NUMBER":
                if "." in _literal(child):
                    raise _BadToken(child, f"a window leg takes integers, not {child}")
                if len(names) == 2:
                    numbers.append(int(child))
                else:
                    pending = int(child)
            elif child.type == "NAME":
                numbers.append(pending)
                pending = 1
                names.append(child)
            elif child.type == "SIGN":
                signs.append(str(child))
            elif child != "*":
                raise _BadToken(child, f"unexpected {str(child)!r}; a window leg reads S*o + D*k - P")
        stride, dilation = numbers[0], numbers[1]
        padding = numbers[2] if len(numbers) > 2 else 0
        if signs[0] == "-":
            dilation = -dilation
        if len(signs) > 1 and signs[1] == "+":
            padding = -padding
        return ast.Axis(tuple(_name(t) for t in names), False, _span(tree), (stride, dilation, padding))

    # Statements.
    def size_stmt(self, tree: Tree) -> list[ast.SizeDecl]:
        return list(tree.children)

    def size_item(self, tree: Tree) -> ast.SizeDecl:
        name, value = tree.children
        return ast.SizeDecl(_name(name), value)

    def index_stmt(self, tree: Tree) -> list[ast.IndexDecl]:
        return list(tree.children)

    def index_item(self, tree: Tree) -> ast.IndexDecl:
        name, size = tree.children
        return ast.IndexDecl(_name(name), size)

    def tensor_decl(self, tree: Tree) -> ast.TensorDecl:
        kind, name, axes = tree.children
        return ast.TensorDecl(str(kind), _name(name), axes, _span(tree))

    def pair(self, tree: Tree) -> tuple[ast.Scalar, ast.Scalar]:
        return tuple(tree.children)

    def arg(self, tree: Tree) -> ast.PatternArg:
        name, value = tree.children
        return ast.PatternArg(_name(name), value, _span(tree))

    def pattern_decl(self, tree: Tree) -> ast.PatternDecl:
        name, axes, function, *args = tree.children
        return ast.PatternDecl(_name(name), axes, _name(function), tuple(a for a in args if a is not None), _span(tree))

    def sample_stmt(self, tree: Tree) -> ast.SampleDecl:
        leg, within, tensor, using, *args = tree.children
        words = (_name(within), _name(using))
        return ast.SampleDecl(_name(leg), _name(tensor), tuple(args), _span(tree), words)

    def equation(self, tree: Tree) -> ast.Equation:
        # ``OUTPUT?`` leaves no placeholder when the keyword is absent: 3 or 4 children.
        *output, name, axes, rhs = tree.children
        marked = bool(output) and output[0] is not None
        return ast.Equation(marked, _name(name), axes, rhs, _span(tree))

    def call(self, tree: Tree) -> ast.Call:
        function, *args = tree.children
        converted = tuple(_name(a) if isinstance(a, Token) else a for a in args if a is not None)
        return ast.Call(_name(function), converted, _span(tree))

    def sum(self, tree: Tree) -> tuple[ast.Term, ...]:
        terms, sign = [], 1
        for child in tree.children:
            if isinstance(child, Token) and child.type == "SIGN":
                sign = -1 if child == "-" else 1
            elif child is not None:
                terms.append(ast.Term(sign * child.sign, child.items, child.span))
                sign = 1
        return tuple(terms)

    def term(self, tree: Tree) -> ast.Term:
        items, op = [], "*"
        for child in tree.children:
            if isinstance(child, Token) and child.type == "MULOP":
                op = str(child)
            else:
                items.append((op, child))
        return ast.Term(1, tuple(items), _span(tree))

    def apply(self, tree: Tree) -> ast.Apply:
        function, argument = tree.children
        return ast.Apply(_name(function), argument, _span(tree))

    def applied(self, tree: Tree) -> tuple[ast.Term, ...]:
        """``f(...)``'s argument: a sum like the right-hand side's (its first item a factor)."""
        head, *rest = tree.children
        first = ast.Term(1, ((("*", head),)), _span(tree))
        items = [first]
        op = "*"
        for child in rest:
            if isinstance(child, Token) and child.type == "MULOP":
                op = str(child)
            elif isinstance(child, Token) and child.type == "SIGN":
                op = child
            elif isinstance(child, ast.Term):
                items.append(ast.Term(-1 if op == "-" else 1, child.items, child.span))
            else:
                items[-1] = ast.Term(1, items[-1].items + ((op, child),), items[-1].span)
        return tuple(items)

    def factor(self, tree: Tree) -> ast.Factor:
        name, axes = tree.children
        return ast.Factor(_name(name), axes, _span(tree))


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[terminal]
    for definition in lark_parser().terminals:
        if definition.name == terminal and definition.pattern.type == "str":
            return f"'{definition.pattern.value}'"
    return terminal.lower()


_STATEMENT_STARTS = frozenset({"'size'", "'index'", "'input'", "'param'", "'pattern'", "'output'", "'sample'", "a name"})


def _expected(terminals: set[str]) -> list[str]:
    """Readable expected tokens; all the tokens that start a statement read as one item."""
    described = {_describe(t) for t in terminals}
    if _STATEMENT_STARTS <= described:
        described = (described - _STATEMENT_STARTS) | {"a new statement"}
    return sorted(described)


def _acceptable(error: UnexpectedToken) -> set[str]:
    """The tokens the parser really accepts here (LALR's lookahead set can hold a few more)."""
    try:
        accepted = set(error.interactive_parser.accepts())
    except Exception:  # noqa: BLE001 - fall back to Lark's own list
        return set(error.expected)
    return accepted or set(error.expected)


def _first_on_line(source: Source, token: Token) -> bool:
    return not source.line(token.line)[: token.column - 1].strip()


def _syntax_error(source: Source, error: UnexpectedInput) -> TncError:
    lines = source.text.removesuffix("\n").split("\n")
    line = error.line if error.line and error.line > 0 else len(lines)
    column = error.column if error.column and error.column > 0 else len(source.line(line)) + 1
    if isinstance(error, UnexpectedCharacters):
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else ""
        message = f"unexpected character {char!r}"
        length = 1
    else:
        assert isinstance(error, UnexpectedToken)
        token = error.token
        expected = _expected(_acceptable(error))
        if token.type == "$END":
            # Lark places the end of input on the last token; point just past that token.
            if token.end_line and token.end_column and token.end_line > 0:
                line, column = token.end_line, token.end_column
            message = "unexpected end of input"
            length = 1
        elif str(token) in KEYWORDS and "NAME" in error.expected and not _first_on_line(source, token):
            message = f"'{token}' is a keyword and cannot be used as a name"
            expected = []
            length = len(token)
        elif str(token) in KEYWORDS:
            # A keyword that starts a line where the statement before it is still incomplete.
            message = f"unexpected keyword '{token}' (the statement before it is incomplete)"
            length = len(token)
        else:
            message = f"unexpected {str(token)!r}"
            length = len(token)
        if expected:
            message += "; expected " + (expected[0] if len(expected) == 1 else "one of " + ", ".join(expected))
        slip = None if message.endswith("cannot be used as a name") else hint(source.text, token, _acceptable(error))
        if slip is not None:
            (span, message) = slip
            return TncError(source, [Diagnostic(span, message)])
    return TncError(source, [Diagnostic(Span(line, column, length), message)])


def parse(source: Source) -> ast.Module:
    """Parse a source into a syntax tree; raises :class:`TncError` on a syntax error."""
    try:
        tree = lark_parser().parse(source.text)
    except UnexpectedInput as error:
        raise _syntax_error(source, error) from None
    _check_nesting(source, tree)
    try:
        return _ToAst().transform(tree)
    except VisitError as error:
        if not isinstance(error.orig_exc, _BadToken):
            raise
        bad = error.orig_exc
        raise TncError(source, [Diagnostic(_span(bad.token), bad.message)]) from None


def _check_nesting(source: Source, tree: Tree) -> None:
    """Refuse expressions nested deeper than :data:`MAX_NESTING` (walked without recursion)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += node.data in _NESTED
        if depth > MAX_NESTING:
            message = f"this expression is nested more than {MAX_NESTING} levels deep (operators and derivative forms)"
            raise TncError(source, [Diagnostic(_span(node), message)])
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))
