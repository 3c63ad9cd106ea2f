"""The folded strategy (tnc.lowering.folded): per-sample weight gradients against torch.func
(vmap of grad) and weight VJPs against torch.nn.grad, float64 at 1e-10; and where the cost model
takes it (depthwise, per-sample) and where it must not (a plain dense weight VJP, a strided 1x1
axis, a product that is no weight gradient)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import tnc.api

TOL = dict(atol=1e-10, rtol=1e-10)
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class Layer:
    """A convolution layer: per axis input size, kernel, stride, dilation and padding (an int, a
    (left, right) pair or "same"); channels per group c, d; ``torch``: depthwise as W[c, one, k..]."""

    inputs: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    paddings: tuple
    groups: int = 1
    c: int = 1
    d: int = 1
    torch: bool = False
    batch: int = 3

    def pads(self, n: int) -> tuple[int, int]:
        p, k, dil = self.paddings[n], self.kernels[n], self.dilations[n]
        if p == "same":
            total = dil * (k - 1)
            return total // 2, total - total // 2
        return (p, p) if isinstance(p, int) else p

    def outputs(self) -> list[int]:
        return [
            (i + sum(self.pads(n)) - dil * (k - 1) - 1) // s + 1
            for n, (i, k, s, dil) in enumerate(zip(self.inputs, self.kernels, self.strides, self.dilations))
        ]

    def text(self, per_sample: bool) -> str:
        """The .tn source of the per-sample gradient (n open) or the weight VJP (n summed)."""
        dims = range(1, len(self.inputs) + 1)
        i, o, k = (", ".join(f"{x}{n}" for n in dims) for x in "iok")
        lines = ["size N", f"size G = {self.groups}, C = {self.groups if self.torch else self.c}, D = {self.d}"]
        spatial = ", ".join(f"i{n}: {s}, k{n}: {K}" for n, s, K in zip(dims, self.inputs, self.kernels))
        lines.append(f"index n: N, g: G, c: C, d: D, one: 1, {spatial}")
        depthwise = ("X[n, c, {i}]", "W[c, one, {k}]", "V[n, c, {o}]")
        x, w, y = depthwise if self.torch else ("X[n, (g c), {i}]", "W[(g d), c, {k}]", "V[n, (g d), {o}]")
        x, w, y = (s.format(i=i, o=o, k=k) for s in (x, w, y))
        lines += [f"input {x}", f"param {w}", f"input {y}"]
        for n in dims:
            p = self.paddings[n - 1]
            pad = "same" if p == "same" else f"({p[0]}, {p[1]})" if isinstance(p, tuple) else str(p)
            stride, dilation = self.strides[n - 1], self.dilations[n - 1]
            lines.append(f"pattern P{n}[i{n}, o{n}, k{n}] = conv(stride={stride}, padding={pad}, dilation={dilation})")
        patterns = " * ".join(f"P{n}[i{n}, o{n}, k{n}]" for n in dims)
        lines.append(f"{y.replace('V', 'Y')} = {x} * {patterns} * {w}")
        lines.append(f"L{'[n]' if per_sample else '[]'} = {y.replace('V', 'Y')} * {y}")
        lines.append(f"output G{w[1:] if not per_sample else '[n, ' + w[2:]} = grad(L, W)")
        return "\n".join(lines) + "\n"

    def data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        channels = self.groups * (1 if self.torch else self.c)
        out = self.groups * (1 if self.torch else self.d)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.batch, channels, *self.inputs, generator=generator, dtype=torch.float64)
        w = torch.randn(out, channels // self.groups, *self.kernels, generator=generator, dtype=torch.float64)
        v = torch.randn(self.batch, out, *self.outputs(), generator=generator, dtype=torch.float64)
        return x, w, v

    def conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        pads = [p for n in reversed(range(len(self.inputs))) for p in self.pads(n)]
        return CONV[len(self.inputs)](F.pad(x, pads), w, stride=self.strides, dilation=self.dilations, groups=self.groups)


def random_layer(seed: int) -> Layer:
    rng = random.Random(seed)
    dims = rng.randint(1, 3)
    kernels = tuple(rng.randint(1, 4) for _ in range(dims))
    paddings = tuple(rng.choice([0, 1, "same", (0, 2), (2, 1)]) for _ in range(dims))
    depthwise = rng.random() < 0.5
    strides = tuple(1 if p == "same" else rng.randint(1, 3) for p in paddings)
    dilations = tuple(rng.randint(1, 2) for _ in range(dims))
    inputs = tuple(rng.randint(dil * (k - 1) + 1, dil * (k - 1) + 6) for k, dil in zip(kernels, dilations))
    return Layer(
        inputs, kernels, strides, dilations, paddings, groups=rng.randint(1, 3),
        c=1 if depthwise else rng.randint(1, 3), d=rng.randint(1, 3), torch=depthwise and rng.random() < 0.5,
    )


CASES = {
    "depthwise 7x7 same": Layer((9, 9), (7, 7), (1, 1), (1, 1), ("same", "same"), groups=4),
    "depthwise torch layout": Layer((8, 8), (3, 3), (2, 2), (1, 1), (1, 1), groups=3, torch=True),
    "grouped stride dilation": Layer((9, 8), (3, 2), (2, 1), (1, 2), (1, 0), groups=2, c=3, d=2),
    "asymmetric 2d": Layer((9, 7), (3, 3), (2, 1), (1, 1), ((1, 2), (0, 3)), groups=2, c=2, d=2),
    "1d dilated": Layer((10,), (3,), (2,), (2,), (1,), groups=2, c=3, d=2),
    "3d grouped": Layer((5, 6, 5), (3, 2, 3), (1, 1, 2), (1, 1, 2), (1, "same", 0), groups=2, c=2, d=1),
    "depthwise multiplier": Layer((7, 7), (5, 5), (1, 1), (1, 1), (2, 2), groups=3, d=2),
    **{f"random {seed}": random_layer(seed) for seed in range(12)},
}


def generated(layer: Layer, per_sample: bool) -> tuple[str, object]:
    network = tnc.api.parse(layer.text(per_sample), "case.tn")
    return network.to_torch_source(), network.to_module().G


@pytest.mark.parametrize("name", CASES)
def test_per_sample_gradient_against_vmap_of_grad(name: str) -> None:
    layer = CASES[name]
    x, w, v = layer.data()
    def loss(w, x, v): return (layer.conv(x[None], w)[0] * v).sum()
    expected = vmap(grad(loss), in_dims=(None, 0, 0))(w, x, v)
    _, function = generated(layer, per_sample=True)
    torch.testing.assert_close(function(X=x, V=v), expected, **TOL)


@pytest.mark.parametrize("name", CASES)
def test_weight_vjp_against_autograd(name: str) -> None:
    layer = CASES[name]
    x, w, v = layer.data()
    w.requires_grad_(True)
    (expected,) = torch.autograd.grad((layer.conv(x, w) * v).sum(), w)
    _, function = generated(layer, per_sample=False)
    torch.testing.assert_close(function(X=x, V=v), expected, **TOL)


CONVNEXT = Layer((56, 56), (7, 7), (1, 1), (1, 1), (3, 3), groups=128, batch=8)
RESNET = Layer((56, 56), (3, 3), (1, 1), (1, 1), (1, 1), c=64, d=64, batch=8)
CHOSEN = [  # (layer, per-sample?, strategy the generated code states)
    (CONVNEXT, True, "strategy folded conv2d"),
    (CONVNEXT, False, "strategy folded conv2d"),  # the grouped 7x7 weight-gradient kernel is slow
    (Layer((56, 56), (3, 3), (2, 2), (1, 1), (1, 1), groups=96, batch=8), False, "strategy native conv2d weight gradient"),
    (Layer((56, 56), (3, 3), (2, 2), (1, 1), (1, 1), groups=96, batch=8), True, "strategy folded conv2d"),
    (RESNET, False, "strategy native conv2d weight gradient"),  # no permute of X, same FLOPs
    (RESNET, True, "strategy folded conv2d"),
    # a strided 1x1 axis: the convolution would compute 2x2 entries to keep one; simplified to a
    # strided view of X, plain einsum steps
    (Layer((16, 16), (1, 1), (2, 2), (1, 1), (0, 0), c=32, d=32, batch=8), True, "strategy einsum"),
]


@pytest.mark.parametrize("layer, per_sample, strategy", CHOSEN)
def test_strategy_chosen_by_the_cost_model(layer: Layer, per_sample: bool, strategy: str) -> None:
    source = tnc.api.parse(layer.text(per_sample), "case.tn").to_torch_source()
    (note,) = [line for line in source.splitlines() if "# term 1: " in line and "_eval_G" in source]
    assert strategy in note


def test_not_a_weight_gradient() -> None:
    """The result keeps a leg of X's window (a transposed pattern use): no folded convolution."""
    text = """size N
index n: N, c: 3, i: 8, k: 3
input X[n, c, i]
input V[n, c, o]
pattern P[i, o, k] = conv(padding=1)
output U[n, c, i, k] = X[n, c, i] * P[i, o, k] * V[n, c, o]
"""
    assert "folded" not in tnc.api.parse(text, "case.tn").to_torch_source()
