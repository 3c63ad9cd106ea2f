"""Passes are near-linear in the size of the file (issue #17): long chains of definitions, sums of
many terms and many equal terms compile within generous bounds, and the results are right.

The bounds (CPU seconds of this process) are an order of magnitude above what these take (about
1-3 s each): they catch a pass
that is quadratic again (a 1,500-definition chain took 115 s, a 1,000-term sum more than 15 s),
not a slow machine. References are plain torch.
"""

from __future__ import annotations

import time
import types

import pytest
import torch

from tnc.codegen.einsum import einsum_outputs
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.simplify import simplify

BOUND_S = 20.0


def chain(length: int) -> str:
    """``T_t = T_{t-1} W``, ``length`` definitions deep."""
    lines = ["size N", "index i: N, j: N, k: N", "input X[i, j]", "param W[j, k]", "T0[i, j] = X[i, j]"]
    lines += [f"T{t}[i, k] = T{t - 1}[i, j] * W[j, k]" for t in range(1, length)]
    return "\n".join(lines) + "\n"


def product(count: int) -> str:
    """One term of ``count`` matrices: ``Y = A_0 A_1 ... A_{count-1}`` (one greedy-planned einsum)."""
    lines = ["size N", "index " + ", ".join(f"i{t}: N" for t in range(count + 1))]
    lines += [f"input A{t}[i{t}, i{t + 1}]" for t in range(count)]
    lines.append(f"output Y[i0, i{count}] = " + " * ".join(f"A{t}[i{t}, i{t + 1}]" for t in range(count)))
    return "\n".join(lines) + "\n"


def many_terms(count: int) -> str:
    """``Y = 1 A_0 + 2 A_1 + ...``: ``count`` different terms."""
    lines = ["size N", "index i: N, j: N", *(f"input A{t}[i, j]" for t in range(count))]
    lines.append("output Y[i, j] = " + " + ".join(f"{t + 1} * A{t}[i, j]" for t in range(count)))
    return "\n".join(lines) + "\n"


def equal_terms(count: int) -> str:
    """``count`` copies of one matrix product, each with its own summed leg (merge-terms joins them)."""
    lines = ["size N", "index i: N, j: N, k: N", "input A[i, j]", "input B[j, k]"]
    lines.append("output Y[i, k] = " + " + ".join(f"A[i, j{t}] * B[j{t}, k]" for t in range(count)))
    return "\n".join(lines) + "\n"


def _compile(text: str, target: str):
    """Check, simplify and generate; the program and the generated text."""
    program = compile_source(text, "big.tn")
    simplify(program)
    generated = to_torch_source(program, "big") if target == "torch" else einsum_outputs(program)
    return program, generated


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("big")
    exec(compile(source, "<big.py>", "exec"), module.__dict__)
    return module


CASES = [
    pytest.param(make, size, target, id=f"{make.__name__}-{size}-{target}")
    for make, size in ((chain, 1_500), (many_terms, 1_000), (equal_terms, 1_000), (product, 300))
    for target in ("torch", "einsum")
    if not (make is product and target == "einsum")  # 301 indices: more than an einsum's 52 letters
]


@pytest.mark.parametrize("make, size, target", CASES)
def test_large_programs_compile_within_a_generous_bound(make, size, target):
    start = time.process_time()  # this process's CPU time: other processes on the machine do not count
    _compile(make(size), target)
    assert time.process_time() - start < BOUND_S


def test_long_chain_computes_the_product():
    program, source = _compile(chain(1_500), "torch")
    X = torch.randn(3, 3, dtype=torch.float64)
    W = torch.eye(3, dtype=torch.float64) + 1e-3 * torch.randn(3, 3, dtype=torch.float64)
    expected = X @ torch.linalg.matrix_power(W, 1_499)
    torch.testing.assert_close(getattr(_module(source), program.outputs[0])(X=X, W=W), expected, rtol=1e-9, atol=1e-9)


def test_long_product_computes_the_matrix_product():
    _, source = _compile(product(300), "torch")
    A = {f"A{t}": torch.eye(2, dtype=torch.float64) + 1e-2 * torch.randn(2, 2, dtype=torch.float64) for t in range(300)}
    expected = torch.linalg.multi_dot(list(A.values()))
    torch.testing.assert_close(_module(source).Y(**A), expected, rtol=1e-9, atol=1e-9)


def test_many_terms_compute_the_weighted_sum():
    _, source = _compile(many_terms(1_000), "torch")
    A = {f"A{t}": torch.randn(2, 2, dtype=torch.float64) for t in range(1_000)}
    expected = sum((t + 1) * A[f"A{t}"] for t in range(1_000))
    torch.testing.assert_close(_module(source).Y(**A), expected, rtol=1e-10, atol=1e-10)


def test_equal_terms_merge_into_one():
    program, source = _compile(equal_terms(1_000), "torch")
    assert len(program.definitions["Y"].terms) == 1
    A, B = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    torch.testing.assert_close(_module(source).Y(A=A, B=B), 1_000 * A @ B, rtol=1e-10, atol=1e-10)
