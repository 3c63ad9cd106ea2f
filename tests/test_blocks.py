"""Concatenated axes in the PyTorch target: a term embedded into a block is computed without its
0/1 embedding and copied into its slice (tnc.lowering.blocks). Generated code against a reference
made of F.unfold and torch.cat of ones, float64, tolerance 1e-10; the embedding is not built and
not contracted; every price stated equals the cost model's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pricing import assert_prices_agree

import tnc
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.simplify import simplify

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOLERANCE = dict(atol=1e-10, rtol=0)
FACTORS_SIZES = "size N, C, I1, I2, K, S, P"


def augmented(X: torch.Tensor, kernel, stride, padding, groups: int = 1) -> list[torch.Tensor]:
    """Per group, U = cat([F.unfold(X's channels of the group), ones], dim=1): [N, C*K.. + 1, O]."""
    Us = []
    for part in X.chunk(groups, dim=1):
        U = F.unfold(part, kernel, stride=stride, padding=padding)
        Us.append(torch.cat([U, torch.ones(U.shape[0], 1, U.shape[-1], dtype=U.dtype)], dim=1))
    return Us


def kfc(U: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nip,njp->ij", U, U) / U.shape[0]


def kfac_reduce(U: torch.Tensor) -> torch.Tensor:
    u = U.mean(-1)
    return u.T @ u / U.shape[0]


# (K, S, P, C, X's shape): every conv layer of a small network, 'valid' and padded, strided
FACTORS_CASES = [
    (3, 2, 1, 8, (3, 8, 7, 6)),
    (3, 1, 0, 2, (2, 2, 5, 5)),
    (3, 2, 0, 3, (2, 3, 8, 7)),
    (2, 2, 0, 4, (2, 4, 6, 6)),
    (1, 1, 0, 4, (2, 4, 3, 4)),
    (3, 3, 2, 2, (2, 2, 5, 4)),
]


def factors_module(K: int, S: int, P: int, C: int):
    return tnc.load(EXAMPLES / "kfac" / "factors.tn", dict(K=K, S=S, P=P, C=C)).to_module()


@pytest.mark.parametrize("K, S, P, C, shape", FACTORS_CASES)
def test_kfac_factors_match_unfold_and_ones(K: int, S: int, P: int, C: int, shape) -> None:
    module = factors_module(K, S, P, C)
    X = torch.randn(*shape, generator=torch.Generator().manual_seed(K + 10 * S + 100 * P), dtype=torch.float64)
    (U,) = augmented(X, K, S, P)
    torch.testing.assert_close(module.KFC(X), kfc(U), **TOLERANCE)
    torch.testing.assert_close(module.KFAC_reduce(X), kfac_reduce(U), **TOLERANCE)
    KFC, reduce = module.Factors().double()(X)
    torch.testing.assert_close(KFC, kfc(U), **TOLERANCE)
    torch.testing.assert_close(reduce, kfac_reduce(U), **TOLERANCE)


GROUPED = [  # the grouped examples: kernel (3, 2), stride (2, 1), padding (1, 0), 2 groups of 2 channels
    ("kfc_bias.tn", "A", kfc),
    ("kfac_reduce_bias.tn", "A", kfac_reduce),
]


@pytest.mark.parametrize("file, output, factor", GROUPED)
@pytest.mark.parametrize("N", [1, 3])
def test_grouped_examples_match_unfold_and_ones(file: str, output: str, factor, N: int) -> None:
    module = tnc.load(EXAMPLES / file).to_module()
    X = torch.randn(N, 4, 6, 5, generator=torch.Generator().manual_seed(N), dtype=torch.float64)
    reference = torch.stack([factor(U) for U in augmented(X, (3, 2), (2, 1), (1, 0), groups=2)])
    torch.testing.assert_close(getattr(module, output)(X), reference, **TOLERANCE)


def factors_text(K: int, S: int, P: int, C: int) -> str:
    text = (EXAMPLES / "kfac" / "factors.tn").read_text()
    assert FACTORS_SIZES in text
    return text.replace(FACTORS_SIZES, f"size N, I1, I2\nsize C = {C}, K = {K}, S = {S}, P = {P}")


@pytest.mark.parametrize("text", [factors_text(3, 2, 1, 8), factors_text(2, 1, 0, 3)] + [(EXAMPLES / f).read_text() for f, _, _ in GROUPED])
def test_prices_stated_are_the_cost_models(text: str) -> None:
    assert_prices_agree(text)


def function(source: str, name: str) -> str:
    return re.split(r"\n(?:def|class) ", source.split(f"\ndef {name}(")[1])[0]


@pytest.mark.parametrize("K, S, P, C, shape", FACTORS_CASES[:3])
def test_the_embedding_is_neither_built_nor_contracted(K: int, S: int, P: int, C: int, shape) -> None:
    program = compile_source(factors_text(K, S, P, C), "factors.tn")
    simplify(program)
    source = to_torch_source(program, "factors")
    for name, block in (("_eval_U", "U_block2_"), ("_eval_u", "u_block2_")):
        body = function(source, name)
        assert re.search(r"# term 1 costs 0 FLOPs", body) or name == "_eval_u", body  # U's term is the unfolded input, copied
        code = [line for line in body.splitlines()[2:] if not line.strip().startswith("#")]  # past the signature and docstring
        assert not any(block in line for line in code), body
        assert "torch.empty(" in body and ".narrow(1, 0, " in body and ".fill_(1)" in body
        assert " + " not in body.split("return")[-1]  # the blocks fill one result: nothing is added
    assert "_conv_pattern(1, " not in function(source, "KFC") and "_conv_pattern(1, " not in function(source, "KFAC_reduce")
    dense = to_torch_source(program, "factors", strategies=())  # the reference that multiplies by the embeddings
    assert "U_block2_1" in function(dense, "_eval_U").split('"""')[2]


def test_dense_strategies_agree_with_blocks() -> None:
    """The blocks' copies and the dense einsums that multiply by the 0/1 embeddings give the same tensors."""
    program = compile_source(factors_text(3, 2, 1, 3), "factors.tn")
    simplify(program)
    X = torch.randn(2, 3, 7, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results = []
    for strategies in (("native", "window", "block"), ("native", "window"), ()):
        module = tnc.api.module_from_source(to_torch_source(program, "factors", strategies=strategies), "factors")
        results.append((module.KFC(X), module.KFAC_reduce(X)))
    for KFC, reduce in results[1:]:
        torch.testing.assert_close(KFC, results[0][0], **TOLERANCE)
        torch.testing.assert_close(reduce, results[0][1], **TOLERANCE)
