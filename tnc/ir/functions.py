"""Element-wise functions of a tensor: ``relu(Z[n, c])`` and their derivatives ``relu'(Z[...])``.

An application ``f(A)`` is a defined tensor of the program named ``f(A)``, with ``A``'s declared
axes, whose network is ``A`` itself and whose :attr:`Tensor.function` says to apply ``f`` to every
entry. A factor ``f(A)[legs]`` reads that tensor like any other (so the rewrite passes and the
lowering treat it as an opaque operand), and it is written ``f(A[legs])`` in a ``.tn`` file.

A function name with ``p`` primes is the ``p``-th derivative of the base function. Every
derivative has a closed form that code generation writes in terms of the base value (``s`` for
``sigmoid``, ``t`` for ``tanh``) or the argument ``x``; some are constant or zero, which the chain
rule uses to drop a factor or a term.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial, prod

import sympy

from tnc.ir.network import Factor, Kind, Network, Product, Term, axes_text
from tnc.ir.program import Program, Tensor

FUNCTIONS = ("exp", "log", "relu", "sigmoid", "softplus", "sqrt", "square", "tanh")

# The base value's PyTorch call, with {x} the argument.
BASE = {
    "exp": "torch.exp({x})",
    "log": "torch.log({x})",
    "relu": "torch.relu({x})",
    "sigmoid": "torch.sigmoid({x})",
    "softplus": "torch.nn.functional.softplus({x})",
    "sqrt": "torch.sqrt({x})",
    "square": "torch.square({x})",
    "tanh": "torch.tanh({x})",
}


@dataclass(frozen=True)
class Value:
    """The ``order``-th derivative of ``base``: ``constant`` (0 is zero everywhere) or code.

    ``code`` is a Python expression in ``{x}`` (the argument) and ``{s}`` (the base value of
    ``uses``, computed once), e.g. ``{s} * (1 - {s})`` with ``uses = "sigmoid"``.
    """

    base: str
    order: int
    constant: sympy.Expr | None = None
    code: str = ""
    uses: str | None = None


def split(name: str) -> tuple[str, int]:
    """``"sigmoid''"`` -> ``("sigmoid", 2)``."""
    base = name.rstrip("'")
    return base, len(name) - len(base)


def known(name: str) -> bool:
    return split(name)[0] in FUNCTIONS


def _polynomial(generator: sympy.Expr, order: int) -> sympy.Expr:
    """``d^order/dx^order`` of ``y`` where ``dy/dx = generator(y)``, as a polynomial in ``y``."""
    y = sympy.Symbol("y")
    value = y
    for _ in range(order):
        value = sympy.expand(sympy.diff(value, y) * generator.subs(sympy.Symbol("g"), y))
    return sympy.factor(value)


def _code(expr: sympy.Expr) -> str:
    """A sympy expression in ``y`` (the base value) and ``x`` as Python code with placeholders."""
    text = sympy.printing.pycode(expr, fully_qualified_modules=False)
    return text.replace("y", "{s}")


def value(name: str) -> Value:
    """The closed form of a known function name (see :func:`known`)."""
    base, order = split(name)
    if order == 0:
        return Value(base, 0, code=BASE[base])
    if base == "relu":
        return Value(base, order, code="({x} > 0).to({x}.dtype)") if order == 1 else Value(base, order, sympy.Integer(0))
    if base == "exp":
        return Value(base, order, code="{s}", uses="exp")
    if base == "square":
        return Value(base, order, code="2 * {x}") if order == 1 else Value(base, order, sympy.Integer(2 if order == 2 else 0))
    if base == "log":
        scale = (-1) ** (order - 1) * factorial(order - 1)
        power = "{x}" if order == 1 else f"{{x}} ** {order}"
        return Value(base, order, code=f"1 / {power}" if scale == 1 else f"{scale} / {power}")
    if base == "sqrt":
        scale = prod((sympy.Rational(1, 2) - j for j in range(order)), start=sympy.Integer(1))
        power = "" if order == 1 else " / {x}" if order == 2 else f" / {{x}} ** {order - 1}"
        return Value(base, order, code=f"{float(scale)!r} / {{s}}{power}", uses="sqrt")
    if base == "softplus":  # softplus' = sigmoid
        inner = value("sigmoid" + "'" * (order - 1))
        return Value(base, order, code=inner.code if inner.uses else "{s}", uses="sigmoid")
    g = sympy.Symbol("g")
    generator = g * (1 - g) if base == "sigmoid" else 1 - g**2  # sigmoid' = s(1-s), tanh' = 1-t^2
    if order == 1:
        return Value(base, 1, code="{s} * (1 - {s})" if base == "sigmoid" else "1 - {s} ** 2", uses=base)
    return Value(base, order, code=_code(_polynomial(generator, order)), uses=base)


def derivative(name: str) -> str:
    return name + "'"


def torch_lines(name: str, x: str, temp: str) -> tuple[list[str], str]:
    """Statements and the expression that compute ``name`` of the tensor held in ``x``
    (``temp`` names the base value where the closed form reads it more than once)."""
    form = value(name)
    if form.constant is not None:
        return [], f"torch.full_like({x}, {form.constant})" if form.constant else f"torch.zeros_like({x})"
    if form.uses is None:
        return [], form.code.format(x=x)
    base = BASE[form.uses].format(x=x)
    if form.code.count("{s}") == 1:
        return [], form.code.format(x=x, s=base)
    return [f"{temp} = {base}"], form.code.format(x=x, s=temp)


def expression(name: str, x: str) -> str:
    """``name`` of ``x`` as one Python expression (the einsum target's step)."""
    form = value(name)
    if form.constant is not None or form.uses is None:
        return torch_lines(name, x, "")[1]
    return form.code.format(x=x, s=BASE[form.uses].format(x=x))


# ------------------------------------------------------------------ applications in a program
def application_name(function: str, argument: str) -> str:
    return f"{function}({argument})"


def application(program: Program, name: str) -> tuple[str, str] | None:
    """``(function, argument)`` where ``name`` is an application tensor, else None."""
    tensor = program.tensors.get(name)
    if tensor is None or getattr(tensor, "function", None) is None:
        return None
    return tensor.function, name[len(tensor.function) + 1 : -1]


def apply(program: Program, function: str, argument: str) -> str:
    """The application tensor ``function(argument)``, added to ``program`` at its first use."""
    name = application_name(function, argument)
    if name not in program.tensors:
        used = program.tensors[argument]
        program.tensors[name] = Tensor(name, Kind.DEFINED, used.axes, None, None, function)
        program.definitions[name] = Network(used.axes, [Term(sympy.Integer(1), Product([Factor(argument, used.kind, used.axes)]))])
    return name


def factor_text(factor: Factor) -> str:
    """A factor as written in ``.tn``: ``Z[n, c]``, or ``relu(Z[n, c])`` for an application."""
    name = factor.tensor
    if name.endswith(")") and "(" in name:
        function, argument = name[:-1].split("(", 1)
        return f"{function}({argument}[{axes_text(factor.axes)}])"
    return f"{name}[{axes_text(factor.axes)}]"
