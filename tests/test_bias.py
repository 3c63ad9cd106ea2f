"""Broadcasting (a bias), |i| sizes in coefficients: generated code against torch.nn.functional
and autograd in float64, on random layers (1d-3d, groups, strides, dilations, 'same' and
asymmetric padding); seeds are the case numbers, tolerance 1e-10."""

from __future__ import annotations

import pytest
import torch

import tnc
from bias_cases import Layer, random_layer

TOLERANCE = dict(atol=1e-10, rtol=1e-10)
CASES = [(seed, dims) for dims in (1, 2, 3) for seed in range(4)]


def conv_bias_text(layer: Layer) -> str:
    o, i, k = layer.legs("o"), layer.legs("i"), layer.legs("k")
    return "\n".join(
        layer.header()
        + [f"input X[n, (g c), {i}]", f"param W[(g d), c, {k}]", "param b[(g d)]", f"input V[n, (g d), {o}]"]
        + layer.patterns()
        + [
            f"output Y[n, (g d), {o}] = {layer.unfolded()} * W[(g d), c, {k}] + b[(g d)]",
            f"output gX[n, (g c), {i}] = vjp(Y, X, V)",
            f"output gW[(g d), c, {k}] = vjp(Y, W, V)",
            f"output gb[(g d)] = vjp(Y, b, V)",
        ]
    )


def tensors(layer: Layer, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    N, G = 2, layer.groups
    X = torch.randn(N, G * layer.C, *(a.size for a in layer.axes), generator=generator, dtype=torch.float64)
    W = torch.randn(G * layer.D, layer.C, *(a.kernel for a in layer.axes), generator=generator, dtype=torch.float64)
    b = torch.randn(G * layer.D, generator=generator, dtype=torch.float64)
    V = torch.randn(N, G * layer.D, *(a.output() for a in layer.axes), generator=generator, dtype=torch.float64)
    return dict(X=X, W=W, b=b, V=V)


@pytest.mark.parametrize("seed, dims", CASES)
@pytest.mark.parametrize("simplify", [True, False])
def test_conv_bias_and_its_three_gradients(seed: int, dims: int, simplify: bool) -> None:
    layer = random_layer(seed, dims)
    module = tnc.parse(conv_bias_text(layer)).to_module(simplify=simplify)
    t = tensors(layer, seed)
    X, W, b = (t[name].clone().requires_grad_() for name in "XWb")
    Y = layer.conv(X, W, b)
    gX, gW, gb = torch.autograd.grad(Y, (X, W, b), t["V"])
    torch.testing.assert_close(module.Y(X=t["X"], W=t["W"], b=t["b"]), Y.detach(), **TOLERANCE)
    torch.testing.assert_close(module.gX(V=t["V"], W=t["W"]), gX, **TOLERANCE)
    torch.testing.assert_close(module.gW(X=t["X"], V=t["V"]), gW, **TOLERANCE)
    torch.testing.assert_close(module.gb(V=t["V"]), gb, **TOLERANCE)
