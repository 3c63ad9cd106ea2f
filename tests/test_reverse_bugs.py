"""Regression tests for two bugs fixed with issue #10: a defined (or declared) tensor read with
another split of its grouped legs, and a derivative that is exactly zero. References are plain
torch reshapes and torch.func.jacrev, never tnc itself."""

from __future__ import annotations

import types

import pytest
import torch
from torch.func import jacrev

from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source

TOLERANCE = dict(atol=1e-12, rtol=1e-12)
SIZES = "index i: 3, j: 4, a: 2, b: 6\n"


def _load(source: str, stem: str) -> types.ModuleType:
    module = types.ModuleType(stem)
    exec(compile(to_torch_source(compile_source(source, f"{stem}.tn"), stem), f"<{stem}.py>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(
    "body, reference",
    [  # read as (a b) what was written as (i j): the same 12 entries, split 2 x 6
        ("input X[(i j)]\noutput Y[a, b] = X[(a b)]\n", lambda x: x.reshape(2, 6)),
        ("input X[(i j)]\nA[(i j)] = X[(i j)]\noutput Y[a, b] = A[(a b)]\n", lambda x: x.reshape(2, 6)),
        ("input X[i, j]\nA[(i j)] = X[i, j]\noutput Y[a, b] = A[(a b)]\n", lambda x: x.reshape(2, 6)),
        ("input X[(i j)]\nA[(i j)] = 2 * X[(i j)]\noutput Y[(a b)] = A[(a b)]\n", lambda x: 2 * x),
    ],
)
def test_regrouped_read_forward(body, reference):
    module = _load(SIZES + body, "regrouped")
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x.reshape(12) if "X[(i j)]" in body.splitlines()[0] else x
    torch.testing.assert_close(module.Y(x), reference(x), **TOLERANCE)


@pytest.mark.parametrize(
    "body, shape",
    [
        ("param W[(i j)]\nA[(i j)] = W[(i j)]\nY[a, b] = A[(a b)]\noutput J[a, b, (i j)] = grad(Y, W)\n", (12,)),
        ("param W[i, j]\nA[(i j)] = W[i, j]\nY[a, b] = A[(a b)]\noutput J[a, b, i, j] = grad(Y, W)\n", (3, 4)),
        ("param W[i, j]\nA[(i j)] = W[i, j] * W[i, j]\nY[a, b] = A[(a b)]\noutput J[a, b, i, j] = grad(Y, W)\n", (3, 4)),
    ],
)
def test_regrouped_read_derivative(body, shape):
    """The Jacobian through a regrouped read equals jacrev of the reshape."""
    module = _load(SIZES + body, "regrouped_grad")
    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    square = "W[i, j] * W[i, j]" in body
    expected = jacrev(lambda v: (v * v if square else v).reshape(2, 6))(w)
    result = module.J(w)  # a constant takes the variable too: its dtype and device
    torch.testing.assert_close(result, expected, **TOLERANCE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "body, name, args, value",
    [  # Y does not depend on W, so each derivative is exactly zero; or it is a constant
        ("input X[i]\nparam W[i]\nY[i] = X[i]\noutput J[i, j] = grad(Y, W)\n", "J", (3, 3), 0),
        ("input X[i]\nparam W[i]\nY[i] = 2 * X[i]\ninput V[i]\noutput G[j] = vjp(Y, W, V)\n", "G", (3, 3, 3), 0),
        ("input X[i]\nparam W[i]\nY[i] = X[i] * X[i]\ninput U[i]\noutput T[i] = jvp(Y, W, U)\n", "T", (3, 3, 3), 0),
        ("param W[i]\nL[] = 3 * W[i]\noutput G[j] = grad(L, W)\n", "G", (3,), 3),
        ("param W[i]\nL[] = 3 * W[i] * W[i]\noutput H[i, j] = grad(grad(L, W), W)\n", "H", (3,), None),
    ],
)
def test_zero_or_constant_derivative_has_the_inputs_dtype(body, name, args, value, dtype):
    module = _load("index i: 3\n" + body, "zero")
    tensors = [torch.ones(n, dtype=dtype) for n in args]
    result = getattr(module, name)(*tensors)
    assert result.dtype == dtype and result.device == tensors[0].device
    expected = 6 * torch.eye(3, dtype=dtype) if value is None else torch.full_like(result, value)
    torch.testing.assert_close(result, expected)
