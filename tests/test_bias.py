"""Broadcasting (a bias), |i| sizes in coefficients: generated code against torch.nn.functional
and autograd in float64, on random layers (1d-3d, groups, strides, dilations, 'same' and
asymmetric padding); seeds are the case numbers, tolerance 1e-10."""

from __future__ import annotations

import random
from math import prod

import pytest
import torch
import torch.nn.functional as F
from bias_cases import Layer, random_layer

import tnc
from tnc.cost import model
from tnc.lowering.term import network_cost

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
            "output gb[(g d)] = vjp(Y, b, V)",
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


def transpose_case(seed: int, dims: int) -> dict:
    """A random grouped transpose convolution: sizes of its input Z (on the patterns' o legs)."""
    rng = random.Random(seed)
    axes = []
    for _ in range(dims):
        stride, dilation = rng.randint(1, 3), rng.randint(1, 2)
        axes.append(dict(O=rng.randint(2, 5), K=rng.randint(1, 3), S=stride, D=dilation, P=rng.randint(0, 1), A=rng.randint(0, stride - 1)))
    return dict(G=rng.choice((1, 2)), C=rng.randint(1, 3), axes=axes)


def transpose_text(case: dict) -> str:
    dims = len(case["axes"])
    legs = lambda letter, prime="": ", ".join(f"{letter}{j}{prime}" for j in range(1, dims + 1))  # noqa: E731
    sizes = ", ".join(f"o{j}: {a['O']}, k{j}: {a['K']}" for j, a in enumerate(case["axes"], start=1))
    patterns = [
        f"pattern P{j}[i{j}, o{j}, k{j}] = conv(stride={a['S']}, padding={a['P']}, dilation={a['D']}, output_padding={a['A']})"
        for j, a in enumerate(case["axes"], start=1)
    ]
    unfolded = lambda p: f"Z[n, (g c{p}), {legs('o', p)}] * " + " * ".join(f"P{j}[i{j}{p}, o{j}{p}, k{j}{p}]" for j in range(1, dims + 1))  # noqa: E731
    ks = " ".join(f"k{j}" for j in range(1, dims + 1))
    positions = " * ".join(f"|i{j}|" for j in range(1, dims + 1))
    return "\n".join(
        ["size N", f"size G = {case['G']}, C = {case['C']}", "index n: N, g: G, c: C", f"index {sizes}", f"input Z[n, (g c), {legs('o')}]"]
        + patterns
        + [
            f"output UT[n, g, (c {ks}), {legs('i')}] = {unfolded('')}",
            f"output REDUCE[g, (c {ks}), (c' {ks.replace(' ', chr(39) + ' ')}')] = (1/(N * ({positions})**2)) * {unfolded('')} * {unfolded(chr(39))}",
        ]
    )


def transpose_unfold_reference(case: dict, Z: torch.Tensor) -> torch.Tensor:
    """The transpose-unfolded input by F.conv_transpose with one-hot weights [G*C, C*K.., K..]."""
    G, C, axes = case["G"], case["C"], case["axes"]
    kernel = tuple(a["K"] for a in axes)
    eye = torch.eye(C * prod(kernel), dtype=Z.dtype).reshape(C * prod(kernel), C, *kernel).transpose(0, 1)
    weight = eye.repeat(G, *([1] * (len(axes) + 1)))
    transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[len(axes) - 1]
    args = {name: tuple(a[key] for a in axes) for name, key in (("stride", "S"), ("padding", "P"), ("output_padding", "A"), ("dilation", "D"))}
    U = transpose(Z, weight, groups=G, **args)  # [N, G*C*K.., I..]
    return U.unflatten(1, (G, C * prod(kernel)))


@pytest.mark.parametrize("seed, dims", CASES)
def test_transpose_unfolded_input_and_its_kfac_reduce_factor(seed: int, dims: int) -> None:
    case = transpose_case(seed, dims)
    module = tnc.parse(transpose_text(case)).to_module()
    generator = torch.Generator().manual_seed(seed)
    Z = torch.randn(2, case["G"] * case["C"], *(a["O"] for a in case["axes"]), generator=generator, dtype=torch.float64)
    U = transpose_unfold_reference(case, Z)
    torch.testing.assert_close(module.UT(Z=Z), U, **TOLERANCE)
    u = U.flatten(3).mean(-1)  # [N, G, C*K..]
    torch.testing.assert_close(module.REDUCE(Z=Z), torch.einsum("ngi,ngj->gij", u, u) / Z.shape[0], **TOLERANCE)


BIAS_LOWERING = [
    # (bias term, fused into the kernel's call)
    ("b[(g d)]", True),
    ("2 * b[(g d)]", False),  # the kernel adds b itself, not a multiple
    ("B2[g, d]", False),  # stored [G, D], not the kernel's one axis
    ("c[o1]", False),  # broadcast over the channels, not along them
]


@pytest.mark.parametrize("bias, fused", BIAS_LOWERING)
def test_a_convolution_plus_bias_lowers_to_one_call_with_bias(bias: str, fused: bool) -> None:
    text = conv_bias_text(random_layer(1, 2)).split("\noutput gX")[0]
    text = text.replace("param b[(g d)]", "param b[(g d)]\nparam B2[g, d]\nparam c[o1]").replace("+ b[(g d)]", f"+ {bias}")
    network = tnc.parse(text)
    source = network.to_torch_source()
    assert ("bias=b)" in source) is fused
    assert source.count("torch.nn.functional.conv2d(") == 1
    program = network.simplify().program
    cost = network_cost(program, "Y")
    separate = network_cost(program, "Y", strategies=("window",))  # no native kernel: two terms
    assert cost.calls == (1 if fused else 2 if "*" not in bias else 3)
    assert model.number(cost.flops) < model.number(separate.flops)
