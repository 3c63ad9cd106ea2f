"""Templates: ``.tn`` programs whose batch, channel and spatial sizes are free and whose kernel,
stride, padding and dilation are bound per layer (``--size K=3 --size S=2 ...``), as a model with
many conv layers compiles one template per layer configuration.

``TEMPLATES`` maps a name to its text for 1d, 2d and 3d: forward and transpose convolutions,
their derivatives (``grad``/``vjp``/``jvp`` forms) and the KFC and KFAC-reduce factors.
``BINDINGS`` are the layer configurations each template is compiled with.
"""

from __future__ import annotations

from typing import Callable

# kernel K, stride S, padding P (0 included), dilation L: 3x3, strided, kernel = stride,
# stride > kernel, 1x1, dilated
BINDINGS: tuple[dict[str, int], ...] = (
    {"K": 3, "S": 1, "P": 1, "L": 1},
    {"K": 3, "S": 2, "P": 1, "L": 1},
    {"K": 2, "S": 2, "P": 0, "L": 1},
    {"K": 1, "S": 2, "P": 0, "L": 1},
    {"K": 1, "S": 1, "P": 0, "L": 1},
    {"K": 3, "S": 1, "P": 2, "L": 2},
)


PRIME = "'"


def _axes(dim: int, leg: str, prime: str = "", sep: str = ", ") -> str:
    return sep.join(f"{leg}{d}{prime}" for d in range(1, dim + 1))


def _header(dim: int, transpose: bool = False) -> list[str]:
    spatial = ", ".join(f"I{d}" for d in range(1, dim + 1))
    indices = ", ".join(f"k{d}: K" for d in range(1, dim + 1))
    known = "o" if transpose else "i"
    sized = ", ".join(f"{known}{d}: I{d}" for d in range(1, dim + 1))
    patterns = [
        f"pattern P{d}[i{d}, o{d}, k{d}] = conv(stride=S, padding=P, dilation=L)" for d in range(1, dim + 1)
    ]
    return [f"size N, C, D, {spatial}, K, S, P, L", f"index n: N, c: C, d: D, {sized}, {indices}", *patterns]


def _patterns(dim: int, prime: str = "", shared_o: bool = False) -> str:
    o = "" if shared_o else prime
    return " * ".join(f"P{d}[i{d}{prime}, o{d}{o}, k{d}{prime}]" for d in range(1, dim + 1))


def forward(dim: int, derivative: str = "") -> str:
    """``Y = conv(X, W)``, or one derivative form of it as the output."""
    i, o, k = _axes(dim, "i"), _axes(dim, "o"), _axes(dim, "k")
    lines = _header(dim)
    lines += [f"input X[n, c, {i}]", f"param W[d, c, {k}]", f"input V[n, d, {o}]", f"input U[d, c, {k}]"]
    equation = f"Y[n, d, {o}] = X[n, c, {i}] * {_patterns(dim)} * W[d, c, {k}]"
    forms = {
        "": None,
        "input_vjp": f"output gX[n, c, {i}] = vjp(Y, X, V)",
        "weight_vjp": f"output gW[d, c, {k}] = vjp(Y, W, V)",
        "weight_jvp": f"output dY[n, d, {o}] = jvp(Y, W, U)",
        "weight_grad": f"output J[n, d, {o}, d', c', {_axes(dim, 'k', PRIME)}] = grad(Y, W)",
    }
    if not derivative:
        return "\n".join(lines + ["output " + equation]) + "\n"
    return "\n".join(lines + [equation, forms[derivative]]) + "\n"


def transpose(dim: int) -> str:
    """A transpose convolution: the input lives on the output legs, the result's sizes are inferred."""
    i, o, k = _axes(dim, "i"), _axes(dim, "o"), _axes(dim, "k")
    lines = _header(dim, transpose=True) + [f"input Z[n, c, {o}]", f"param W[c, d, {k}]"]
    return "\n".join(lines + [f"output Y[n, d, {i}] = Z[n, c, {o}] * {_patterns(dim)} * W[c, d, {k}]"]) + "\n"


def factor(dim: int, reduce: bool) -> str:
    """The KFC (``reduce=False``) or KFAC-reduce input factor ``A[(c k), (c' k')]``."""
    i = _axes(dim, "i")
    lines = _header(dim) + [f"input X[n, c, {i}]"]
    outputs = "*".join(f"((I{d} + 2*P - L*(K - 1) - 1)/S + 1)" for d in range(1, dim + 1))
    coefficient = f"(1/(N*({outputs})**2))" if reduce else "(1/N)"
    first = f"X[n, c, {i}] * {_patterns(dim)}"
    second = f"X[n, c', {_axes(dim, 'i', PRIME)}] * {_patterns(dim, PRIME, shared_o=not reduce)}"
    lhs = f"A[(c {_axes(dim, 'k', sep=' ')}), (c' {_axes(dim, 'k', PRIME, ' ')})]"
    return "\n".join(lines + [f"output {lhs} = {coefficient} * {first} * {second}"]) + "\n"


BUILDERS: dict[str, Callable[[int], str]] = {
    "forward": forward,
    "input_vjp": lambda dim: forward(dim, "input_vjp"),
    "weight_vjp": lambda dim: forward(dim, "weight_vjp"),
    "weight_jvp": lambda dim: forward(dim, "weight_jvp"),
    "weight_grad": lambda dim: forward(dim, "weight_grad"),
    "transpose": transpose,
    "kfc": lambda dim: factor(dim, reduce=False),
    "kfac_reduce": lambda dim: factor(dim, reduce=True),
}

TEMPLATES: dict[str, str] = {f"{name}_{dim}d": build(dim) for name, build in BUILDERS.items() for dim in (1, 2, 3)}
