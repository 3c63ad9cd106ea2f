"""Common slips behind a syntax error, said at the place where something is probably missing.

The LALR parser reports the first token it cannot use, which is often one token after the slip
(a missing ``*`` is noticed where the next factor's legs end, a missing ``]`` at the next
statement). Each hint below looks at the tokens before the error and states when it applies.
"""

from __future__ import annotations

from lark import Token

from tnc.errors import Span
from tnc.frontend.grammar import lark_parser

_ITEM_ENDS = frozenset({"RSQB", "RPAR", "NUMBER", "NAME"})
_STATEMENT_KEYWORDS = frozenset({"SIZE", "INDEX", "INPUT", "PARAM", "PATTERN", "SAMPLE", "OUTPUT"})
Hint = tuple[Span, str]


def _tokens_before(text: str, error: Token) -> list[Token]:
    """The tokens in front of the error token (the text lexes up to it: the parser got there)."""
    limit = len(text) if error.type == "$END" or error.start_pos is None else error.start_pos
    tokens: list[Token] = []
    try:
        for token in lark_parser().lex(text):
            if token.start_pos >= limit:
                break
            tokens.append(token)
    except Exception:  # noqa: BLE001 - a later lexical error: what was read is enough
        pass
    return tokens


def _after(token: Token) -> Span:
    return Span(token.end_line, token.end_column, 1)


def _at(token: Token) -> str:
    return f"{token.line}:{token.column}"


def missing_star(tokens: list[Token], accepts: set[str]) -> Hint | None:
    """``X[n, c] W[c]``: the parser read ``W[c]`` as the start of a new equation and wants ``=``.
    When ``W`` follows the end of a factor or scalar on the same line, a ``*`` is missing."""
    if "EQUAL" not in accepts or not tokens or tokens[-1].type != "RSQB":
        return None
    depth, at = 0, len(tokens) - 1
    while at >= 0:
        depth += {"RSQB": 1, "LSQB": -1}.get(tokens[at].type, 0)
        if depth == 0:
            break
        at -= 1
    if at < 2 or tokens[at - 1].type != "NAME":
        return None
    name, before = tokens[at - 1], tokens[at - 2]
    if before.type not in _ITEM_ENDS or before.end_line != name.line:
        return None
    return Span(name.line, name.column, len(name)), f"missing '*' before '{name}': the factors of a term are joined by '*'"


def missing_bracket(tokens: list[Token], accepts: set[str], error: Token) -> Hint | None:
    """``X[n, c`` followed by anything but ``,`` or ``]``: the legs opened at ``[`` are not closed;
    followed by another name on the same line (``X[i j]``), a ``,`` is missing instead."""
    if "RSQB" not in accepts:
        return None
    opened = [t for t in tokens if t.type in ("LSQB", "RSQB")]
    if not opened or opened[-1].type != "LSQB":
        return None
    if error.type == "NAME" and error.line == tokens[-1].end_line:  # X[i j]: a leg follows a leg
        return Span(error.line, error.column, len(error)), f"missing ',' before '{error}': the legs are separated by ','"
    where = _after(tokens[-1]) if error.type == "$END" or error.line != tokens[-1].end_line else Span(error.line, error.column, max(1, len(error)))
    return where, f"missing ']': the legs opened with '[' at {_at(opened[-1])} are not closed"


def colon_or_equals(error: Token, accepts: set[str]) -> Hint | None:
    """``index n = 2`` and ``size N: 2``: an index takes ``:``, a size ``=``."""
    if error.type == "EQUAL" and "COLON" in accepts:
        return Span(error.line, error.column, 1), "an index is declared with ':' (index n: 2); '=' gives a size its value"
    if error.type == "COLON" and "EQUAL" in accepts:
        return Span(error.line, error.column, 1), "a size is given its value with '=' (size N = 2); ':' declares an index"
    return None


def pattern_without_arguments(tokens: list[Token], accepts: set[str]) -> Hint | None:
    """``pattern P[i, o, k] = conv``: the pattern's arguments, or ``()``, are missing."""
    if "LPAR" not in accepts or len(tokens) < 2 or tokens[-1].type != "NAME" or tokens[-2].type != "EQUAL":
        return None
    starts = [t.type for t in tokens if t.type in _STATEMENT_KEYWORDS]
    if not starts or starts[-1] != "PATTERN":
        return None
    name = tokens[-1]
    return _after(name), f"missing '(' after '{name}': a pattern lists its arguments, e.g. {name}(stride=2), or {name}() for the defaults"


def hint(text: str, error: Token, accepts: set[str]) -> Hint | None:
    """The first slip that explains this syntax error, if any."""
    tokens = _tokens_before(text, error)
    return (missing_star(tokens, accepts) or missing_bracket(tokens, accepts, error)
            or colon_or_equals(error, accepts) or pattern_without_arguments(tokens, accepts))
