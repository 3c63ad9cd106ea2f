"""The ``.tn`` target: any program prints back as a file that parses to the same networks."""

from __future__ import annotations

import sympy

from tnc.ir.functions import factor_text
from tnc.ir.network import Factor, Kind, Network, Product, axes_text
from tnc.ir.program import Program, Sample


def scalar_text(expr: sympy.Expr) -> str:
    """A size or coefficient in ``.tn`` syntax: sympy's operators are the language's, and a size
    ``floor(p/q)`` is written ``(p)/(q)``, which a size expression reads as floor division."""
    expr = sympy.sympify(expr)
    floors = {f: sympy.Symbol(f"__floor{n}") for n, f in enumerate(expr.atoms(sympy.floor))}
    text = str(expr.xreplace(floors))
    for floor, placeholder in floors.items():
        numerator, denominator = sympy.fraction(sympy.together(floor.args[0]))
        text = text.replace(str(placeholder), f"({_operand(numerator)}/{_operand(denominator)})")
    return text


def _operand(expr: sympy.Expr) -> str:
    return scalar_text(expr) if expr.is_Atom else f"({scalar_text(expr)})"


def _is_ones(factor: Factor) -> bool:
    return factor.kind is Kind.DELTA and len(factor.axes) == 1


def _broadcast(factor: Factor, product: Product, legs: set[str]) -> bool:
    """A ones factor that broadcasting writes implicitly: on a result leg no other factor of its
    term carries, where another term carries it (a leg that no term carries must stay written)."""
    return _is_ones(factor) and factor.legs[0] in legs and len(product.carriers(factor.legs[0])) == 1


def coefficient_text(coefficient: sympy.Expr, sizes: dict[sympy.Expr, str] | None = None) -> str:
    """A coefficient in ``.tn`` syntax. A coefficient divides exactly, so a floor in it (from an
    index size such as ``|o|``) is written as that index's size, found in ``sizes``."""
    if not sizes or not coefficient.atoms(sympy.floor):
        return str(coefficient)
    names = {size: sympy.Symbol(f"__size{n}") for n, size in enumerate(sizes)}
    text = str(coefficient.subs(names))
    for size, placeholder in names.items():
        text = text.replace(str(placeholder), sizes[size])
    return text


def network_text(network: Network, sizes: dict[sympy.Expr, str] | None = None) -> str:
    """``c1 * A[...] * B[...] - c2 * C[...]``; an empty sum is ``0``; ``sizes`` spells the index
    sizes that a coefficient holds (:func:`coefficient_text`)."""
    if not network.terms:
        return "0"
    parts = []
    implicit = {leg for term in network.terms for f in term.product if not _is_ones(f) for leg in f.legs}
    implicit &= set(network.legs)
    for position, term in enumerate(network.terms):
        coefficient = sympy.sympify(term.coefficient)
        negative = coefficient.could_extract_minus_sign()
        if negative:
            coefficient = -coefficient
        factors = " * ".join(factor_text(f) for f in term.product if not _broadcast(f, term.product, implicit))
        text = coefficient_text(coefficient, sizes)
        if not factors:  # a scalar term, broadcast over every result leg
            scale = text if coefficient.is_Integer or coefficient.is_Symbol else f"({text})"
        else:
            scale = "" if coefficient == 1 else (f"{text} * " if coefficient.is_Integer else f"({text}) * ")
        sign = ("-" if negative else "") if position == 0 else (" - " if negative else " + ")
        parts.append(f"{sign}{scale}{factors}")
    return "".join(parts)


def to_tn(program: Program, header: str | None = None) -> str:
    """The program as a ``.tn`` file, every index with its size (a pattern re-checks its own)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()] if header else []
    for name, symbol in program.symbols.items():
        value = program.bindings.get(symbol)
        lines.append(f"size {name}" if value is None else f"size {name} = {scalar_text(value)}")
    used: dict[str, None] = {}  # in order of first appearance in the printed file
    for name, tensor in program.tensors.items():
        if tensor.function:  # an application f(A) is written where it is used, never defined
            continue
        network = program.definitions.get(name)
        used.update(dict.fromkeys(network.legs if network else tensor.legs))
        for term in network.terms if network else ():
            used.update(dict.fromkeys(leg for factor in term.product for leg in factor.legs))
    indices = [(n, program.index_sizes[n]) for n in used]
    for start in range(0, len(indices), 8):
        chunk = indices[start : start + 8]
        lines.append("index " + ", ".join(f"{n}: {scalar_text(s)}" for n, s in chunk))
    lines.append("")
    for name, tensor in program.tensors.items():
        if tensor.kind in (Kind.INPUT, Kind.PARAM):
            lines.append(f"{tensor.kind.value} {name}[{axes_text(tensor.axes)}]")
        elif tensor.kind is Kind.PATTERN:
            lines.append(f"pattern {name}[{axes_text(tensor.axes)}] = {tensor.pattern.arguments()}")
    lines.append("")
    floors = {program.concrete(s): f"|{n}|" for n, s in indices if sympy.sympify(s).atoms(sympy.floor)}
    for name, network in program.definitions.items():
        if program.tensors[name].function:
            continue
        keyword = "output " if name in program.outputs else ""
        lines.append(f"{keyword}{name}[{axes_text(network.axes)}] = {network_text(network, floors)}")
    lines += [sample_text(name, sample) for name, samples in program.samples.items() for sample in samples]
    return "\n".join(lines).rstrip() + "\n"


def sample_text(name: str, sample: Sample) -> str:
    """The ``sample`` statement of a leg of ``name``."""
    by = f", by={sample.by}" if sample.by else ""
    minimum = f", min={sample.minimum}" if sample.minimum else ""
    return f"sample {sample.leg} in {name} with keep={sample.keep!r}{by}{minimum}"
