"""The whole-network benchmark's programs (benchmarks/multilayer.py) compute autograd's gradients.

The benchmark checks this itself before timing; here every chain runs once at batch 1 in
float64 against ``torch.autograd.grad`` of the reference forward pass.
"""

from __future__ import annotations

import pytest
import torch

import tnc
from benchmarks.multilayer import chains, reference_loss, source, tensors

CHAINS = [c for c in chains() if len(c.layers) <= 3 and "ResNet" not in c.name]


@pytest.mark.parametrize("chain", CHAINS, ids=[c.title for c in CHAINS])
def test_chain_gradients_equal_autograd(chain):
    module = tnc.parse(source(chain, 1), "chain.tn").to_module()
    X, weights = tensors(chain, 1)
    X, weights = X.double(), [W.double().requires_grad_() for W in weights]
    expected = torch.autograd.grad(reference_loss(chain, X, weights), weights)
    named = {f"W{j}": W.detach() for j, W in enumerate(weights, 1)}
    for j, reference in enumerate(expected, 1):
        result = getattr(module, f"G{j}")(X=X, **named)
        torch.testing.assert_close(result, reference, rtol=1e-9, atol=1e-9)
