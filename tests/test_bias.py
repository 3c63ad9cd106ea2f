"""Broadcasting (a bias), |i| sizes in coefficients: generated code against torch.nn.functional
and autograd in float64, on random layers (1d-3d, groups, strides, dilations, 'same' and
asymmetric padding); seeds are the case numbers, tolerance 1e-10."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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


def kfac_text(layer: Layer) -> str:
    """KFC and KFAC-reduce with bias, twice: through the augmented unfolded input U, and as one
    equation of four blocks each."""
    o, k, k_ = layer.legs("o"), layer.legs("k"), layer.legs("k", "'")
    positions = " * ".join(f"|o{j}|" for j in range(1, layer.dims + 1))
    x, x_ = layer.unfolded(), layer.unfolded("'")  # the copy shares the output legs (KFC)
    x_r = layer.unfolded("'", "'")  # the copy has its own output legs (KFAC-reduce)
    return "\n".join(
        layer.header()
        + [f"input X[n, (g c), {layer.legs('i')}]"]
        + layer.patterns()
        + [
            f"U[n, g, (c {k.replace(',', '')} | 1), {o}] = {x} + 1",
            f"output KFC[g, u, u'] = (1/N) * U[n, g, u, {o}] * U[n, g, u', {o}]",
            f"output REDUCE[g, u, u'] = (1/(N * ({positions})**2)) * U[n, g, u, {o}] * U[n, g, u', {layer.legs('o', chr(39))}]",
            f"output KFC1[g, (c {k.replace(',', '')} | 1), (c' {k_.replace(',', '')} | 1)] ="
            f" (1/N) * {x} * {x_} + (1/N) * {x} + (1/N) * {x_} + {positions}",
            f"output REDUCE1[g, (c {k.replace(',', '')} | 1), (c' {k_.replace(',', '')} | 1)] ="
            f" (1/(N * ({positions})**2)) * {x} * {x_r} + (1/(N * {positions})) * {x} + (1/(N * {positions})) * {x_r} + 1",
        ]
    )


@pytest.mark.parametrize("seed, dims", CASES)
def test_kfc_and_kfac_reduce_with_bias_match_unfold_plus_ones(seed: int, dims: int) -> None:
    layer = random_layer(seed, dims)
    module = tnc.parse(kfac_text(layer)).to_module()
    X = tensors(layer, seed)["X"]
    N = X.shape[0]
    kfc, reduce = [], []
    for U in layer.unfold(X):  # [N, C*K.., O] per group, augmented by a row of ones
        U = torch.cat([U, torch.ones(N, 1, U.shape[-1], dtype=U.dtype)], dim=1)
        kfc.append(torch.einsum("nip,njp->ij", U, U) / N)
        reduce.append(U.mean(-1).T @ U.mean(-1) / N)
    for name, reference in (("KFC", kfc), ("REDUCE", reduce), ("KFC1", kfc), ("REDUCE1", reduce)):
        torch.testing.assert_close(getattr(module, name)(X=X), torch.stack(reference), **TOLERANCE)


@pytest.mark.parametrize("seed", range(4))
def test_the_reference_unfold_is_f_unfold_in_2d(seed: int) -> None:
    layer = random_layer(seed, 2)
    X = tensors(layer, seed)["X"]
    kernel = tuple(a.kernel for a in layer.axes)
    stride, dilation = tuple(a.stride for a in layer.axes), tuple(a.dilation for a in layer.axes)
    for mine, part in zip(layer.unfold(X), layer.reference_input(X).chunk(layer.groups, dim=1)):
        torch.testing.assert_close(mine, F.unfold(part, kernel, dilation=dilation, stride=stride), **TOLERANCE)
