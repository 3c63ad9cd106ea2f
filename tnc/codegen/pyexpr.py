"""Sympy size and coefficient expressions as Python source (integer arithmetic where exact)."""

from __future__ import annotations

from typing import Callable

import sympy


def pyexpr(expr: sympy.Expr, name: Callable[[sympy.Symbol], str]) -> str:
    """Python source for ``expr``; ``floor(p/q)`` becomes ``(p) // (q)`` so sizes stay integers."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    if expr.is_Rational:
        return f"({expr.p} / {expr.q})"
    if expr.is_Float:
        return repr(float(expr))
    if expr.is_Symbol:
        return name(expr)
    if isinstance(expr, sympy.floor):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        if denominator == 1:
            return pyexpr(numerator, name)
        return f"(({pyexpr(numerator, name)}) // {_atom(denominator, name)})"
    if expr.is_Add:
        terms = sorted(expr.args, key=sympy.default_sort_key)
        out = pyexpr(terms[0], name)
        for term in terms[1:]:
            if term.could_extract_minus_sign():
                out += " - " + _atom(-term, name, sum_ok=False)
            else:
                out += " + " + pyexpr(term, name)
        return out
    if expr.is_Mul:
        numerator, denominator = sympy.fraction(expr)
        if denominator != 1:
            return f"{_atom(numerator, name)} / {_atom(denominator, name)}"
        factors = sorted(expr.args, key=sympy.default_sort_key)
        if factors[0] == -1:
            return "-" + _atom(sympy.Mul(*factors[1:]), name)
        return " * ".join(_atom(f, name) for f in factors)
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Integer and exponent < 0:
            return f"1 / {_atom(base ** -exponent, name)}"
        return f"{_atom(base, name)} ** {_atom(exponent, name)}"
    raise ValueError(f"cannot express {expr} in Python")


def _atom(expr: sympy.Expr, name: Callable[[sympy.Symbol], str], sum_ok: bool = False) -> str:
    text = pyexpr(expr, name)
    simple = expr.is_Atom or isinstance(expr, sympy.floor)
    return text if simple or (sum_ok and expr.is_Add) else f"({text})"
