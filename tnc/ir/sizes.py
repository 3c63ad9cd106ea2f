"""Size arithmetic kept out of sympy's slow paths: integer fast paths and memoised canonical forms.

Sizes are sympy expressions in the size symbols. Most of them are integers once the bound sizes
are substituted, and the few symbolic ones recur many times in one compile (every leg size is
asked for by every rule, every validation and every emitter), so each expensive step is a pure
function of its (hashable) arguments, computed once per process.
"""

from __future__ import annotations

from functools import lru_cache

import sympy

_CACHE = 1 << 16


@lru_cache(maxsize=_CACHE)
def substitute(expr: sympy.Expr, bindings: tuple[tuple[sympy.Symbol, sympy.Expr], ...]) -> sympy.Expr:
    """``expr`` with the bound sizes substituted until only free symbols remain (as sympy writes
    it: the printed sizes of generated code do not change; equality goes through :func:`canonical`)."""
    expr = sympy.sympify(expr)
    mapping = dict(bindings)
    for _ in range(len(mapping) + 1):
        if not expr.free_symbols & mapping.keys():
            break
        expr = expr.subs(mapping)
    return expr


def _floor(arg: sympy.Expr) -> sympy.Expr:
    """``floor(arg)`` with the integer part of the constant taken out: ``floor((p + r)/d) + q``
    with ``0 <= r < d`` (``floor(x + q) = floor(x) + q`` for an integer ``q``), so equal floors
    of affine forms compare equal."""
    numerator, denominator = sympy.fraction(sympy.together(arg))
    if not denominator.is_Integer or denominator < 1:
        return sympy.floor(arg)
    constant, rest = sympy.expand(numerator).as_coeff_Add()
    if not constant.is_Integer:
        return sympy.floor(arg)
    quotient, remainder = divmod(int(constant), int(denominator))
    return sympy.floor((rest + remainder) / denominator) + quotient


@lru_cache(maxsize=_CACHE)
def canonical(expr: sympy.Expr) -> sympy.Expr:
    """A canonical form of a size expression: floors normalised (see :func:`_floor`), expanded."""
    if expr.is_number:
        return expr
    if expr.has(sympy.floor):
        expr = expr.replace(lambda e: isinstance(e, sympy.floor), lambda e: _floor(e.args[0]))
    return sympy.expand(expr)


@lru_cache(maxsize=_CACHE)
def is_zero(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is provably 0 for every value of its free symbols (False if undecidable)."""
    if expr.is_number:
        return expr == 0
    form = canonical(expr)
    if form.is_number:
        return form == 0
    return sympy.cancel(form) == 0


def same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether two (concrete) size expressions are provably equal."""
    return a == b or (not (a.is_number and b.is_number) and is_zero(a - b))


@lru_cache(maxsize=_CACHE)
def divides(divisor: sympy.Expr, value: sympy.Expr) -> bool:
    """Whether ``divisor`` divides ``value`` whatever the free sizes are (False if undecidable)."""
    if divisor.is_Integer and value.is_Integer:
        return int(value) % int(divisor) == 0
    return sympy.Mod(canonical(value), canonical(divisor)) == 0


@lru_cache(maxsize=_CACHE)
def is_positive(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is provably positive (False if undecidable)."""
    if expr.is_number:
        return bool(expr > 0)
    return bool(canonical(expr).is_positive)


@lru_cache(maxsize=_CACHE)
def at(expr: sympy.Expr, value: int) -> int:
    """``expr`` as an integer with every free symbol set to ``value`` (the planning size)."""
    if expr.is_Integer:
        return int(expr)
    return int(expr.xreplace({s: sympy.Integer(value) for s in expr.free_symbols}))


@lru_cache(maxsize=_CACHE)
def quotient(numerator: sympy.Expr, denominator: sympy.Expr) -> sympy.Expr:
    """``numerator / denominator`` with common factors cancelled (sympy cancels equal powers
    itself; ``cancel`` runs only where a denominator is left)."""
    value = numerator / denominator
    if value.is_number or sympy.fraction(value)[1] == 1:
        return value
    return sympy.cancel(value)

