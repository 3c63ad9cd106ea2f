"""Padding modes (``padding_mode=reflect|replicate|circular``) in every operation, against
independent references: nn.Conv{1,2,3}d(padding_mode=...) forward, autograd for both VJPs,
F.pad(mode) + unfold for KFC and KFAC-reduce, torch.func.vjp for derived networks; both targets
(the torch module, strategies and dense, and the einsum target); simplified against unsimplified.

Each case draws its hyperparameters from a seeded random generator: dimension 1-3, groups,
stride, dilation, padding (symmetric, asymmetric or same), one mode per case.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch.func import vjp

from tnc.codegen.einsum import einsum_outputs, pattern_parameters
from tnc.codegen.tn import to_tn
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.derive import derive_program
from tnc.passes.simplify import simplify

MODES = ("reflect", "replicate", "circular")
TOLERANCE = dict(atol=1e-10, rtol=1e-10)
N = 2

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")


@dataclass(frozen=True)
class Layer:
    """A random convolution: per spatial axis (I, K, stride, dilation, (left, right) or 'same')."""

    mode: str
    groups: int
    channels: int  # per group, in
    outputs: int  # per group, out
    axes: tuple[tuple[int, int, int, int, object], ...]

    @property
    def dims(self) -> int:
        return len(self.axes)

    def pads(self) -> list[tuple[int, int]]:
        result = []
        for _, K, _, D, padding in self.axes:
            if padding == "same":
                total = D * (K - 1)
                padding = (total // 2, total - total // 2)
            result.append(padding)
        return result

    def padded(self, X: torch.Tensor) -> torch.Tensor:
        """The reference padding: F.pad with the mode (PyTorch's own rule for each mode)."""
        return F.pad(X, tuple(p for pair in reversed(self.pads()) for p in pair), mode=self.mode)

    def conv(self, X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """nn.Conv{d}d(padding_mode=mode) where its padding argument can say it, else F.pad + conv."""
        stride, dilation = [a[2] for a in self.axes], [a[3] for a in self.axes]
        if all(a[4] == "same" for a in self.axes) or all(isinstance(a[4], tuple) and a[4][0] == a[4][1] for a in self.axes):
            padding = "same" if self.axes[0][4] == "same" else tuple(a[4][0] for a in self.axes)
            cls = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[self.dims - 1]
            layer = cls(self.groups * self.channels, self.groups * self.outputs, tuple(a[1] for a in self.axes),
                        stride=tuple(stride), padding=padding, dilation=tuple(dilation), groups=self.groups,
                        bias=False, padding_mode=self.mode, dtype=torch.float64)
            return torch.func.functional_call(layer, {"weight": W}, (X,))
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        return conv(self.padded(X), W, stride=tuple(stride), dilation=tuple(dilation), groups=self.groups)

    def text(self) -> str:
        names = range(1, self.dims + 1)
        spatial = ", ".join(f"I{n} = {a[0]}" for n, a in zip(names, self.axes))
        lines = [
            "size N",
            f"size G = {self.groups}, C = {self.channels}, D = {self.outputs}, {spatial}",
            "index n: N, g: G, c: C, d: D",
            "index " + ", ".join(f"i{n}: I{n}, k{n}: {a[1]}" for n, a in zip(names, self.axes)),
            f"input X[n, (g c), {', '.join(f'i{n}' for n in names)}]",
            f"param W[(g d), c, {', '.join(f'k{n}' for n in names)}]",
        ]
        for n, (_, _, S, D, padding) in zip(names, self.axes):
            pad = "same" if padding == "same" else f"({padding[0]}, {padding[1]})"
            lines.append(f"pattern P{n}[i{n}, o{n}, k{n}] = conv(stride={S}, padding={pad}, dilation={D}, padding_mode={self.mode})")
        patterns = " * ".join(f"P{n}[i{n}, o{n}, k{n}]" for n in names)
        legs = ", ".join(f"o{n}" for n in names)
        lines.append(f"output Y[n, (g d), {legs}] = X[n, (g c), {', '.join(f'i{n}' for n in names)}] * {patterns} * W[(g d), c, {', '.join(f'k{n}' for n in names)}]")
        return "\n".join(lines) + "\n"

    def kfc_text(self, reduce: bool) -> str:
        """The KFC (KFAC-expand) or KFAC-reduce input factor of the layer's input, per group."""
        names = range(1, self.dims + 1)
        base = self.text().splitlines()[:-1]
        base = [line for line in base if not line.startswith("param")]
        ins = ", ".join(f"i{n}" for n in names)
        one = " * ".join(f"P{n}[i{n}, o{n}, k{n}]" for n in names)
        ks, kps = " ".join(f"k{n}" for n in names), " ".join(f"k{n}'" for n in names)
        if reduce:
            two = " * ".join(f"P{n}[i{n}', o{n}', k{n}']" for n in names)
            count = "*".join(f"|o{n}|" for n in names)
            scale = f"(1/(N*({count})**2))"
            second = f"X[n, (g c'), {', '.join(f'i{n}' for n in names).replace(',', chr(39) + ',')}'] * {two}"
        else:
            two = " * ".join(f"P{n}[i{n}', o{n}, k{n}']" for n in names)
            scale = "(1/N)"
            second = f"X[n, (g c'), {', '.join(f'i{n}' for n in names).replace(',', chr(39) + ',')}'] * {two}"
        return "\n".join(base) + f"\noutput A[g, (c {ks}), (c' {kps})] = {scale} * X[n, (g c), {ins}] * {one} * {second}\n"

    def unfolded(self, X: torch.Tensor) -> list[torch.Tensor]:
        """Per group, [N, C*K.., O..] from F.pad(mode) and Tensor.unfold (F.unfold is 2d only)."""
        U = self.padded(X)
        for n, (_, K, S, D, _) in enumerate(self.axes):
            span = D * (K - 1) + 1
            U = U.unfold(2 + n, span, S)[..., ::D]  # [.., O, .., K] with K last
        U = U.movedim(tuple(range(-self.dims, 0)), tuple(range(2, 2 + self.dims)))  # [N, GC, K.., O..]
        U = U.flatten(1, 1 + self.dims).flatten(2)
        return list(U.unflatten(1, (self.groups, -1)).unbind(1))

    def kfc(self, X: torch.Tensor, reduce: bool) -> torch.Tensor:
        if reduce:
            return torch.stack([U.mean(-1).T @ U.mean(-1) / X.shape[0] for U in self.unfolded(X)])
        return torch.stack([torch.einsum("nip,njp->ij", U, U) / X.shape[0] for U in self.unfolded(X)])


def random_layer(seed: int) -> Layer:
    rng = random.Random(seed)
    mode, dims = MODES[seed % 3], rng.choice((1, 2, 2, 3))
    same = rng.random() < 0.25
    axes = []
    for _ in range(dims):
        K, D = rng.choice((1, 2, 3)), rng.choice((1, 1, 2))
        S = 1 if same else rng.choice((1, 2))
        I = rng.randint(D * (K - 1) + 2, 7)
        limit = I - 1 if mode == "reflect" else I  # PyTorch's rules: reflect < I, circular <= I
        if same:
            padding = "same" if D * (K - 1) - D * (K - 1) // 2 <= limit else (0, 0)
        elif rng.random() < 0.5:
            padding = (rng.randint(0, min(2, limit)),) * 2
        else:
            padding = (rng.randint(0, min(2, limit)), rng.randint(0, min(2, limit)))
        axes.append((I, K, S, D, padding))
    if same and any(a[4] != "same" for a in axes):
        axes = [(I, K, S, D, (0, 0) if p == "same" else p) for I, K, S, D, p in axes]
    return Layer(mode, rng.choice((1, 2)), rng.choice((1, 2)), rng.choice((1, 2)), tuple(axes))


LAYERS = [random_layer(seed) for seed in range(18)]
IDS = [f"{layer.mode}-{layer.dims}d-{seed}" for seed, layer in enumerate(LAYERS)]


def load(text: str, strategies: tuple[str, ...] | None = None) -> types.ModuleType:
    program = compile_source(text, "case.tn")
    source = to_torch_source(program, "case") if strategies is None else to_torch_source(program, "case", strategies)
    module = types.ModuleType("generated_case")
    exec(compile(source, "<case.py>", "exec"), module.__dict__)
    return module


def inputs(layer: Layer, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(N, layer.groups * layer.channels, *(a[0] for a in layer.axes), generator=generator, dtype=torch.float64)
    W = torch.randn(layer.groups * layer.outputs, layer.channels, *(a[1] for a in layer.axes), generator=generator, dtype=torch.float64)
    return X, W


def mode_pattern(I: int, O: int, K: int, stride: int, padding: tuple[int, int], dilation: int, mode: str) -> torch.Tensor:
    """Π[i, o, k] from F.pad(mode) of the positions 0..I-1: the position it reads at stride*o + dilation*k."""
    positions = F.pad(torch.arange(I, dtype=torch.float64).view(1, 1, I), padding, mode=mode).view(-1).long()
    P = torch.zeros(I, O, K, dtype=torch.float64)
    for o in range(O):
        for k in range(K):
            P[positions[stride * o + dilation * k], o, k] = 1
    return P


def einsum_target(text: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The einsum target's terms run with torch.einsum, its patterns built by mode_pattern."""
    program = compile_source(text, "case.tn", {"N": N})
    values = dict(values)
    for row in pattern_parameters(program):
        sizes = [int(row[key]) for key in ("input_size", "output_size", "kernel_size")]
        padding = tuple(int(p) for p in row["padding"])
        values[row["name"]] = mode_pattern(*sizes, row["stride"], padding, row["dilation"], row.get("padding_mode", "constant"))
    for output in einsum_outputs(program):
        total = 0
        for term in output.terms:
            operands = [values[op.name].reshape([int(s) for s in op.view]) for op in term.operands]
            coefficient = program.concrete(sympy.sympify(term.coefficient, locals=dict(program.symbols)))
            total = total + float(coefficient) * torch.einsum(term.equation, *operands)
        values[output.name] = total.reshape([int(program.axis_size(tuple(a))) for a in output.axes])
    return values


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
@pytest.mark.parametrize("strategies", [None, ()], ids=["lowered", "dense"])
def test_forward_matches_nn_conv(layer: Layer, strategies) -> None:
    X, W = inputs(layer, 0)
    torch.testing.assert_close(load(layer.text(), strategies).Y(X, W), layer.conv(X, W), **TOLERANCE)


@pytest.mark.parametrize("layer", LAYERS[:6], ids=IDS[:6])
def test_einsum_target_forward(layer: Layer) -> None:
    X, W = inputs(layer, 1)
    torch.testing.assert_close(einsum_target(layer.text(), dict(X=X, W=W))["Y"], layer.conv(X, W), **TOLERANCE)


def derived_text(text: str, wrt: str) -> str:
    program = compile_source(text, "case.tn")
    derive_program(program, wrt, vjp_seed="V")
    return to_tn(program)  # printed and re-parsed: the modes print back


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
@pytest.mark.parametrize("wrt", ["W", "X"])
def test_derived_vjp_matches_torch_func(layer: Layer, wrt: str) -> None:
    X, W = inputs(layer, 2)
    Y, pullback = vjp(lambda X, W: layer.conv(X, W), X, W)
    V = torch.randn_like(Y)
    expected = pullback(V)[0 if wrt == "X" else 1]
    text = derived_text(layer.text(), wrt)
    module = load(text)
    name = next(n for n in dir(module) if n.startswith("vjp_") and not n.startswith("vjp__"))
    got = getattr(module, name)(**{k: v for k, v in dict(X=X, W=W, V=V).items() if k in getattr(module, name).__code__.co_varnames})
    torch.testing.assert_close(got, expected, **TOLERANCE)


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
@pytest.mark.parametrize("reduce", [False, True], ids=["kfc", "kfac_reduce"])
def test_kfc_matches_unfold_of_padded_input(layer: Layer, reduce: bool) -> None:
    X, _ = inputs(layer, 3)
    text = layer.kfc_text(reduce)
    torch.testing.assert_close(load(text).A(X), layer.kfc(X, reduce), **TOLERANCE)
    if layer.dims < 3:
        torch.testing.assert_close(einsum_target(text, dict(X=X))["A"], layer.kfc(X, reduce), **TOLERANCE)


@pytest.mark.parametrize("seed", range(30))
def test_simplify_agrees_with_no_simplify(seed: int) -> None:
    """Property: on mode-padded networks (a layer, its VJPs, its KFC factor), the rewrite rules
    change the generated result by no more than rounding."""
    layer = random_layer(100 + seed)
    X, W = inputs(layer, seed)
    text = [layer.text(), derived_text(layer.text(), "W"), derived_text(layer.text(), "X"), layer.kfc_text(seed % 2 == 1)][seed % 4]
    plain, simplified = compile_source(text, "case.tn"), compile_source(text, "case.tn")
    simplify(simplified)
    outputs = []
    for program in (plain, simplified):
        module = types.ModuleType("generated_case")
        exec(compile(to_torch_source(program, "case"), "<case.py>", "exec"), module.__dict__)
        name = program.outputs[0]
        function = getattr(module, name)
        values = dict(X=X, W=W, V=torch.randn_like(layer.conv(X, W), dtype=torch.float64).fill_(0.5))
        outputs.append(function(**{k: v for k, v in values.items() if k in function.__code__.co_varnames}))
    torch.testing.assert_close(outputs[1], outputs[0], **TOLERANCE)


@pytest.mark.parametrize("wrt", ["W", "X"])
def test_tnc_derive_of_reflect_example(wrt: str) -> None:
    """``tnc derive examples/conv2d_reflect.tn --wrt W|X --vjp V``, both targets, against torch.func.vjp."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "tnc", "derive", str(root / "examples" / "conv2d_reflect.tn"), "--wrt", wrt, "--vjp", "V"]
    derived = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    layer = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, bias=False, padding_mode="reflect", dtype=torch.float64)
    generator = torch.Generator().manual_seed(7)
    X, W = torch.randn(N, 6, 9, 9, generator=generator, dtype=torch.float64), torch.randn(8, 3, 3, 3, generator=generator, dtype=torch.float64)
    Y, pullback = vjp(lambda X, W: torch.func.functional_call(layer, {"weight": W}, (X,)), X, W)
    V = torch.randn_like(Y)
    expected = pullback(V)[0 if wrt == "X" else 1]
    module = load(derived)
    name = f"vjp_Y_{wrt}"
    function = getattr(module, name)
    values = {k: v for k, v in dict(X=X, W=W, V=V).items() if k in function.__code__.co_varnames}
    torch.testing.assert_close(function(**values), expected, **TOLERANCE)
    torch.testing.assert_close(einsum_target(derived, values)[name], expected, **TOLERANCE)
