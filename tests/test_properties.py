"""Property tests: random convolutions written as `.tn` agree with PyTorch's convolutions.

Each draw is a grouped convolution with 1 to 3 spatial axes, each axis with its own kernel,
stride, dilation and padding (an integer, ``same``, ``valid`` or an asymmetric pair). The `.tn`
text is compiled with the torch target and with the einsum target, both evaluated on random
float64 tensors, and compared with ``torch.nn.functional.conv1d/2d/3d`` at 1e-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sympy
import torch
import torch.nn.functional as F
from conv_reference import ReferenceAxis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tnc.codegen.einsum import einsum_outputs, pattern_parameters
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source

TOLERANCE = dict(atol=1e-10, rtol=1e-10)

# PyTorch warns that padding="same" with an even kernel copies the input; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Axis(ReferenceAxis):
    def argument_text(self, spell_defaults: bool) -> str:
        args = []
        if self.stride != 1 or spell_defaults:
            args.append(f"stride={self.stride}")
        if isinstance(self.padding, tuple):
            args.append(f"padding=({self.padding[0]}, {self.padding[1]})")
        elif self.padding != 0 or spell_defaults:
            args.append(f"padding={self.padding}")
        if self.dilation != 1 or spell_defaults:
            args.append(f"dilation={self.dilation}")
        return ", ".join(args)


@dataclass(frozen=True)
class Conv:
    batch: int
    groups: int
    channels: int  # input channels per group
    outputs: int  # output channels per group
    axes: tuple[Axis, ...]
    free_batch: bool  # `size N` (read from the input) or `size N = batch`
    bind_batch: bool  # with a free N, bind it at compile time as --size N=batch does
    symbolic_sizes: bool  # spatial sizes through size symbols (`size I1 = 7`) or as numbers
    spell_defaults: bool  # write stride=1, padding=0, dilation=1 out

    @property
    def dim(self) -> int:
        return len(self.axes)

    def sizes(self) -> dict[str, int] | None:
        return {"N": self.batch} if self.free_batch and self.bind_batch else None

    def text(self) -> str:
        dims = range(1, self.dim + 1)
        lines = ["# drawn by tests/test_properties.py"]
        lines.append("size N" if self.free_batch else f"size N = {self.batch}")
        lines.append(f"size G = {self.groups}, C = {self.channels}, D = {self.outputs}")
        lines.append("index n: N, g: G, c: C, d: D")
        for a, axis in zip(dims, self.axes):
            if self.symbolic_sizes:
                lines.append(f"size I{a} = {axis.size}, K{a} = {axis.kernel}")
                lines.append(f"index i{a}: I{a}, k{a}: K{a}")
            else:
                lines.append(f"index i{a}: {axis.size}, k{a}: {axis.kernel}")
        spatial_in = ", ".join(f"i{a}" for a in dims)
        kernels = ", ".join(f"k{a}" for a in dims)
        spatial_out = ", ".join(f"o{a}" for a in dims)
        lines.append(f"input X[n, (g c), {spatial_in}]")
        lines.append(f"param W[(g d), c, {kernels}]")
        for a, axis in zip(dims, self.axes):
            lines.append(f"pattern P{a}[i{a}, o{a}, k{a}] = conv({axis.argument_text(self.spell_defaults)})")
        patterns = " * ".join(f"P{a}[i{a}, o{a}, k{a}]" for a in dims)
        lines.append(f"output Y[n, (g d), {spatial_out}] = X[n, (g c), {spatial_in}] * {patterns} * W[(g d), c, {kernels}]")
        return "\n".join(lines) + "\n"

    def tensors(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch, self.groups * self.channels, *(a.size for a in self.axes), generator=generator, dtype=torch.float64)
        w = torch.randn(self.groups * self.outputs, self.channels, *(a.kernel for a in self.axes), generator=generator, dtype=torch.float64)
        return x, w

    def reference(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """PyTorch's convolution; its own padding argument where it can express the draw."""
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dim - 1]
        stride = tuple(a.stride for a in self.axes)
        dilation = tuple(a.dilation for a in self.axes)
        paddings = [a.padding for a in self.axes]
        if all(p == "same" for p in paddings):
            return conv(x, w, stride=stride, dilation=dilation, padding="same", groups=self.groups)
        if all(p == "valid" for p in paddings):
            return conv(x, w, stride=stride, dilation=dilation, padding="valid", groups=self.groups)
        if all(isinstance(p, int) for p in paddings):
            return conv(x, w, stride=stride, dilation=dilation, padding=tuple(paddings), groups=self.groups)
        # F.pad lists (left, right) pairs from the last axis backwards
        pads = [amount for axis in reversed(self.axes) for amount in axis.pads()]
        return conv(F.pad(x, pads), w, stride=stride, dilation=dilation, padding=0, groups=self.groups)


@st.composite
def axes(draw) -> Axis:
    stride = draw(st.integers(1, 3))
    kinds = ["int", "valid", "pair"] + (["same"] if stride == 1 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        padding: object = draw(st.integers(0, 2))
    elif kind == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    else:
        padding = kind
    return Axis(
        size=draw(st.integers(1, 7)),
        kernel=draw(st.integers(1, 3)),
        stride=stride,
        dilation=draw(st.integers(1, 2)),
        padding=padding,
    )


@st.composite
def convolutions(draw) -> Conv:
    dim = draw(st.integers(1, 3))
    conv = Conv(
        batch=draw(st.integers(1, 2)),
        groups=draw(st.integers(1, 2)),
        channels=draw(st.integers(1, 2)),
        outputs=draw(st.integers(1, 2)),
        axes=tuple(draw(axes()) for _ in range(dim)),
        free_batch=draw(st.booleans()),
        bind_batch=draw(st.booleans()),
        symbolic_sizes=draw(st.booleans()),
        spell_defaults=draw(st.booleans()),
    )
    assume(all(axis.output() >= 1 for axis in conv.axes))
    return conv


def load(source: str, name: str = "prop") -> dict:
    """Execute generated code in a fresh module namespace."""
    namespace: dict = {"__name__": f"tnc_generated_{name}"}
    exec(compile(source, f"<generated {name}>", "exec"), namespace)
    return namespace


def resolve(size: str, values: dict[str, int]) -> int:
    """A size as the einsum target writes it (a number, or an expression in free sizes)."""
    expr = sympy.sympify(size, locals={name: sympy.Symbol(name) for name in values})
    return int(expr.subs({sympy.Symbol(name): value for name, value in values.items()}))


def pattern_tensor(axis: Axis, output: int) -> torch.Tensor:
    """P[i, o, k] = 1 exactly when i = stride*o + dilation*k - left (contract §3), built by hand."""
    left, _ = axis.pads()
    p = torch.zeros(axis.size, output, axis.kernel, dtype=torch.float64)
    for o in range(output):
        for k in range(axis.kernel):
            i = axis.stride * o + axis.dilation * k - left
            if 0 <= i < axis.size:
                p[i, o, k] = 1
    return p


@SETTINGS
@given(conv=convolutions(), seed=st.integers(0, 2**16))
def test_random_convolution_matches_torch(conv: Conv, seed: int):
    program = compile_source(conv.text(), "prop.tn", conv.sizes())
    x, w = conv.tensors(seed)
    expected = conv.reference(x, w)
    assert tuple(expected.shape[2:]) == tuple(a.output() for a in conv.axes)

    # the torch target: the output function (called by keyword) and the nn.Module
    namespace = load(to_torch_source(program, "prop"))
    result = namespace["Y"](X=x, W=w)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, expected, **TOLERANCE)
    module = namespace["Prop"]().double()
    with torch.no_grad():
        module.W.copy_(w)
    torch.testing.assert_close(module(x), expected, **TOLERANCE)

    # the einsum target: one equation, operands read through their `view` sizes
    (output,) = einsum_outputs(program)
    (term,) = output.terms
    values = {"N": conv.batch}
    outputs = [a.output() for a in conv.axes]
    rows = {row["name"]: row for row in pattern_parameters(program)}
    operands = {"X": x, "W": w}
    for a, axis in enumerate(conv.axes, start=1):
        row = rows[f"P{a}"]
        assert [resolve(row[key], values) for key in ("input_size", "output_size", "kernel_size")] == [axis.size, outputs[a - 1], axis.kernel]
        assert (row["stride"], row["dilation"]) == (axis.stride, axis.dilation)
        assert tuple(resolve(p, values) for p in row["padding"]) == axis.pads()
        operands[f"P{a}"] = pattern_tensor(axis, outputs[a - 1])
    views = [operands[op.name].reshape([resolve(v, values) for v in op.view]) for op in term.operands]
    assert sympy.sympify(term.coefficient) == 1
    einsum = torch.einsum(term.equation, *views).reshape(expected.shape)
    torch.testing.assert_close(einsum, expected, **TOLERANCE)


@st.composite
def transposed(draw) -> tuple[int, int, int, int, int, int, int, int]:
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    output_padding = draw(st.integers(0, max(0, min(stride, dilation) - 1)))  # PyTorch's limit
    values = (
        draw(st.integers(1, 2)),  # batch
        draw(st.integers(1, 3)),  # input channels
        draw(st.integers(1, 3)),  # output channels
        draw(st.integers(1, 5)),  # O: the transposed convolution's input size
        draw(st.integers(1, 3)),  # K
        stride,
        dilation,
        draw(st.integers(0, 2)),  # padding on both sides
    )
    batch, _, _, size, kernel, _, _, padding = values
    result = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 + output_padding
    assume(result >= 1)
    return values + (output_padding,)


@settings(max_examples=30, deadline=None)
@given(case=transposed(), seed=st.integers(0, 2**16))
def test_transpose_convolution_matches_torch(case, seed):
    """Given the output and kernel legs, the pattern's input size follows the transpose rule."""
    batch, cin, cout, size, kernel, stride, dilation, padding, output_padding = case
    source = (
        f"size N\nindex n: N, c: {cin}, d: {cout}, o: {size}, k: {kernel}\n"
        "input X[n, c, o]\nparam W[c, d, k]\n"
        f"pattern P[i, o, k] = conv(stride={stride}, padding={padding}, dilation={dilation}, output_padding={output_padding})\n"
        "output Y[n, d, i] = X[n, c, o] * P[i, o, k] * W[c, d, k]\n"
    )
    program = compile_source(source, "transpose.tn")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, size, generator=generator, dtype=torch.float64)
    w = torch.randn(cin, cout, kernel, generator=generator, dtype=torch.float64)
    expected = F.conv_transpose1d(x, w, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    assert program.size("i") == expected.shape[-1]
    result = load(to_torch_source(program, "transpose"))["Y"](X=x, W=w)
    torch.testing.assert_close(result, expected, **TOLERANCE)


@pytest.mark.parametrize("padding", ["same", "valid", "(0, 3)", "2"])
def test_known_example_each_padding_kind(padding):
    """One fixed 2d example per padding kind, so a failure names the kind without shrinking."""
    source = (
        "size N, C = 2, D = 3\nindex n: N, c: C, d: D, i1: 6, i2: 5, k1: 3, k2: 2\n"
        "input X[n, c, i1, i2]\nparam W[d, c, k1, k2]\n"
        f"pattern P1[i1, o1, k1] = conv(padding={padding}, dilation=2)\n"
        f"pattern P2[i2, o2, k2] = conv(padding={padding})\n"
        "output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]\n"
    )
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 5, generator=generator, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 2, generator=generator, dtype=torch.float64)
    if padding in ("same", "valid"):
        expected = F.conv2d(x, w, padding=padding, dilation=(2, 1))
    elif padding == "2":
        expected = F.conv2d(x, w, padding=2, dilation=(2, 1))
    else:
        expected = F.conv2d(F.pad(x, (0, 3, 0, 3)), w, dilation=(2, 1))
    result = load(to_torch_source(compile_source(source, "kinds.tn"), "kinds"))["Y"](X=x, W=w)
    torch.testing.assert_close(result, expected, **TOLERANCE)
