"""The lowering strategies of the PyTorch target (tnc.lowering).

Every case is compiled twice: with the strategies (``native``, ``window``) and as the dense
reference (``strategies=()``, which multiplies by the 0/1 pattern tensors). Both are compared,
in float64, with an independent PyTorch computation (F.conv*d, F.conv_transpose*d, torch.func,
F.unfold, F.avg_pool*d, F.fold, or plain Python loops), and the generated source must name the
strategy the case is meant to take, so that a silent fallback to einsum is noticed.
"""

from __future__ import annotations

import inspect
import itertools
import math
import random
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tnc.codegen.torch_module import to_torch_source
from tnc.cost.model import time
from tnc.frontend import compile_source
from tnc.lowering import native as native_module
from tnc.lowering.term import candidates, numeric_size, price
from tnc.passes.derive import derive_program
from tnc.passes.simplify import simplify

TOL = dict(atol=1e-10, rtol=1e-10)
DT = torch.float64
STRATEGIES = ("native", "window")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# --------------------------------------------------------------------------- helpers
def build(text: str, strategies=STRATEGIES, sizes=None, derive=None, simplified=False):
    """Compile ``text`` (optionally derive, simplify), generate the module and exec it: (source,
    module, output name)."""
    program = compile_source(text, "case.tn", sizes or {})
    if derive is not None:
        derive_program(program, **derive)
    if simplified:
        simplify(program)
    (output,) = program.outputs
    source = to_torch_source(program, "case", strategies=strategies)
    module = types.ModuleType("tnc_generated_lowering_case")
    exec(compile(source, "<lowering case>", "exec"), module.__dict__)
    return source, module, output


def window_is_dearer(text: str, sizes, derive, output: str, number: int) -> bool:
    """Whether term ``number`` (from 0) of ``output`` could take the window strategy and the cost
    model prices it above plain einsum steps."""
    program = compile_source(text, "case.tn", sizes or {})
    if derive is not None:
        derive_program(program, **derive)
    network = program.definitions[output]
    found = {c.strategy: c for c in candidates(program, network.terms[number], network.legs)}
    numeric = numeric_size(program)
    return "window" in found and time(price(program, found["window"], numeric)) > time(price(program, found["einsum"], numeric))


def call(module, name: str, args: dict, **sizes):
    """Call the public function ``name`` with the keyword arguments it takes."""
    function = getattr(module, name)
    accepted = inspect.signature(function).parameters
    missing = [a for a in accepted if a not in args and a not in sizes]
    assert not missing, f"{name} wants {missing}"
    return function(**{k: v for k, v in args.items() if k in accepted}, **sizes)


STRATEGY_RE = re.compile(r"# term (\d+): .*?strategy (native [^:]*|folded [^:]*|window):")
TERM_RE = re.compile(r"# term (\d+): ")


def strategies_of(source: str, tensor: str) -> dict[int, str]:
    """The strategy each term of ``_eval_<tensor>`` took: 'native convNd', 'window' or 'einsum'."""
    lines = source.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"def _eval_{tensor}("))
    found: dict[int, str] = {}
    for line in lines[start + 1 :]:
        if line.startswith("def ") or line.startswith("class ") or line.startswith("@"):
            break
        match = STRATEGY_RE.search(line)
        if match:
            found[int(match.group(1))] = match.group(2)
            continue
        match = TERM_RE.search(line)
        if match:
            found.setdefault(int(match.group(1)), "einsum")
    return found


def check(text: str, args: dict, reference: torch.Tensor, expected: str | re.Pattern | list, sizes=None, derive=None, call_sizes=None, simplified=False):
    """Strategies and dense reference both equal ``reference``; the terms took ``expected`` (a
    strategy, or a pattern it matches, per term; ``simplified``: the strategies after ``simplify``, as ``tnc compile`` runs by default)."""
    source, module, output = build(text, STRATEGIES, sizes, derive, simplified)
    _, dense, _ = build(text, (), sizes, derive)
    expected = [expected] if isinstance(expected, (str, re.Pattern)) else list(expected)
    taken = strategies_of(source, output)
    strategies = [taken[n] for n in sorted(taken)]
    for number, (want, got) in enumerate(zip(expected, strategies)):
        if (want, got) == ("window", "einsum"):  # allowed only where the cost model prices it higher
            assert window_is_dearer(text, sizes, derive, output, number), source
            expected[number] = "einsum"
    assert len(strategies) == len(expected) and all(
        e.fullmatch(t) if isinstance(e, re.Pattern) else e == t for e, t in zip(expected, strategies)
    ), f"strategies {taken}, expected {expected}\n{source}"
    got = call(module, output, args, **(call_sizes or {}))
    ref_dense = call(dense, output, args, **(call_sizes or {}))
    assert got.shape == reference.shape, (got.shape, reference.shape)
    torch.testing.assert_close(ref_dense, reference, **TOL)
    torch.testing.assert_close(got, reference, **TOL)
    return source


def rand(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- random convolutions
@dataclass(frozen=True)
class Ax:
    I: int
    K: int
    S: int
    Dl: int
    pad: object  # int, "same" or (left, right)

    @property
    def pads(self) -> tuple[int, int]:
        if self.pad == "same":
            total = self.Dl * (self.K - 1)
            return total // 2, total - total // 2
        if isinstance(self.pad, tuple):
            return self.pad
        return self.pad, self.pad

    @property
    def O(self) -> int:
        left, right = self.pads
        return (self.I + left + right - self.Dl * (self.K - 1) - 1) // self.S + 1

    def text(self) -> str:
        args = []
        if self.S != 1:
            args.append(f"stride={self.S}")
        if self.pad == "same":
            args.append("padding=same")
        elif isinstance(self.pad, tuple):
            args.append(f"padding=({self.pad[0]}, {self.pad[1]})")
        elif self.pad:
            args.append(f"padding={self.pad}")
        if self.Dl != 1:
            args.append(f"dilation={self.Dl}")
        return f"conv({', '.join(args)})"

    def tag(self) -> str:
        pad = self.pad if not isinstance(self.pad, tuple) else f"{self.pad[0]}:{self.pad[1]}"
        return f"I{self.I}K{self.K}s{self.S}d{self.Dl}p{pad}"


SPELLINGS = ("standard", "separate", "depthwise", "channel-last")


@dataclass(frozen=True)
class Conv:
    axes: tuple[Ax, ...]
    G: int
    C: int
    D: int
    N: int
    grouped: bool  # write the channels as (g c) even when G = 1
    free_n: bool  # leave the batch size free (read from the shapes)
    # how the program spells the layout: "standard" X[n, (g c), i..], W[(g d), c, k..],
    # Y[n, (g d), o..]; "separate" a group leg of its own, X[n, g, c, i..], W[g, d, c, k..],
    # Y[n, g, d, o..]; "depthwise" (C = 1) PyTorch's layout with a size-1 leg, X[n, g, i..],
    # W[(g d), one, k..]; "channel-last" X[n, i.., (g c)], Y[n, o.., (g d)]
    spelling: str = "standard"

    @property
    def dims(self) -> int:
        return len(self.axes)

    def tag(self) -> str:
        layout = "gc" if self.grouped else "c"
        spelling = "" if self.spelling == "standard" else f"{self.spelling}-"
        return f"{spelling}{self.dims}d-G{self.G}{layout}-C{self.C}D{self.D}N{self.N}{'free' if self.free_n else ''}-" + "-".join(a.tag() for a in self.axes)

    def flat_pads(self) -> tuple[int, ...]:
        return tuple(p for a in reversed(self.axes) for p in a.pads)

    def header(self) -> str:
        r = range(1, self.dims + 1)
        lines = [f"size N{'' if self.free_n else f' = {self.N}'}", f"size G = {self.G}, C = {self.C}, D = {self.D}"]
        lines.append("index n: N, g: G, c: C, d: D, one: 1")
        lines.append("index " + ", ".join(f"i{j}: {a.I}, k{j}: {a.K}" for j, a in zip(r, self.axes)))
        return "\n".join(lines) + "\n"

    def patterns(self) -> str:
        return "".join(f"pattern P{j}[i{j}, o{j}, k{j}] = {a.text()}\n" for j, a in enumerate(self.axes, start=1))

    def legs(self, letter: str, prime: str = "") -> str:
        return ", ".join(f"{letter}{j}{prime}" for j in range(1, self.dims + 1))

    def pattern_factors(self, prime: str = "", o_prime: str = "") -> str:
        return " * ".join(f"P{j}[i{j}{prime}, o{j}{o_prime}, k{j}{prime}]" for j in range(1, self.dims + 1))

    def conv_text(self) -> str:
        cx, cw, cy = ("(g c)", "(g d)", "(g d)") if self.grouped else ("c", "d", "d")
        i, k, o = self.legs("i"), self.legs("k"), self.legs("o")
        x, w, y = f"X[n, {cx}, {i}]", f"W[{cw}, c, {k}]", f"Y[n, {cy}, {o}]"
        if self.spelling == "separate":
            x, w, y = f"X[n, g, c, {i}]", f"W[g, d, c, {k}]", f"Y[n, g, d, {o}]"
        elif self.spelling == "depthwise":
            assert self.C == 1
            x, w = f"X[n, g, {i}]", f"W[(g d), one, {k}]"
        elif self.spelling == "channel-last":
            x, y = f"X[n, {i}, {cx}]", f"Y[n, {o}, {cy}]"
        return self.header() + f"input {x}\nparam {w}\n" + self.patterns() + f"output {y} = {x} * {self.pattern_factors()} * {w}\n"

    def stored(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the standard layout in the spelling's storage layout."""
        if self.spelling == "separate":
            return t.unflatten(0 if name == "W" else 1, (self.G, -1))
        if self.spelling == "channel-last" and name != "W":
            return t.movedim(1, -1).contiguous()
        return t

    def standard(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`stored`."""
        if self.spelling == "separate":
            return t.flatten(0, 1) if name == "W" else t.flatten(1, 2)
        if self.spelling == "channel-last" and name != "W":
            return t.movedim(-1, 1)
        return t

    def tensors(self, seed: int) -> dict[str, torch.Tensor]:
        X = rand(self.N, self.G * self.C, *(a.I for a in self.axes), seed=seed)
        W = rand(self.G * self.D, self.C, *(a.K for a in self.axes), seed=seed + 1)
        V = rand(self.N, self.G * self.D, *(a.O for a in self.axes), seed=seed + 2)
        return {name: self.stored(name, t) for name, t in dict(X=X, W=W, V=V).items()}

    def torch_conv(self, X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """F.conv*d of the spelling's storage tensors, in the spelling's layout of Y."""
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        X, W = self.standard("X", X), self.standard("W", W)
        Y = conv(F.pad(X, self.flat_pads()), W, stride=tuple(a.S for a in self.axes), dilation=tuple(a.Dl for a in self.axes), groups=self.G)
        return self.stored("V", Y)


def random_axis(rng: random.Random, max_input: int) -> Ax:
    K = rng.randint(1, 4)
    Dl = rng.choice([1, 1, 2, 3])
    kind = rng.choice(["int", "same", "pair"])
    S = 1 if kind == "same" else rng.choice([1, 2, 3])
    pad = rng.randint(0, 2) if kind == "int" else "same" if kind == "same" else (rng.randint(0, 3), rng.randint(0, 3))
    axis = Ax(1, K, S, Dl, pad)
    left, right = axis.pads
    least = max(1, Dl * (K - 1) + 1 - left - right)
    return Ax(rng.randint(least, max(least, max_input)), K, S, Dl, pad)


def random_conv(seed: int, dims: int, G: int, spelling: str = "standard") -> Conv:
    rng = random.Random(seed)
    axes = tuple(random_axis(rng, (11, 8, 6)[dims - 1]) for _ in range(dims))
    C = 1 if spelling == "depthwise" else rng.randint(1, 3)
    return Conv(axes, G, C, rng.randint(1, 3), rng.randint(1, 3), grouped=G > 1 or rng.random() < 0.5, free_n=rng.random() < 0.3, spelling=spelling)


def conv_cases(kind: str, count: int, base: int, spellings=("standard",)) -> list:
    """``count`` random convolutions per spelling (1d to 3d, 1 to 3 groups; depthwise: 2 to 4)."""
    cases = []
    for spelling in spellings:
        for n in range(count):
            dims, G = 1 + n % 3, 1 + (n // 3) % 3 + (spelling == "depthwise")
            seed = base + n + 1000 * SPELLINGS.index(spelling)
            conv = random_conv(seed, dims, G, spelling)
            cases.append(pytest.param(conv, seed, id=f"{kind}{n}-{conv.tag()}"))
    return cases


# A few fixed corners besides the random ones: same with an even kernel (asymmetric), a pair
# padding larger than the kernel, a 1x1 kernel with stride, a transpose whose full output is
# shorter than left padding + I.
FIXED = [
    Conv((Ax(7, 4, 1, 1, "same"), Ax(6, 3, 1, 2, "same")), 2, 2, 3, 2, True, False),
    Conv((Ax(5, 2, 2, 1, (3, 0)),), 3, 1, 2, 2, True, True),
    Conv((Ax(6, 1, 3, 1, 0), Ax(5, 1, 2, 1, (0, 1)), Ax(4, 2, 1, 3, 2)), 1, 2, 2, 1, False, False),
    Conv((Ax(8, 3, 2, 1, 0), Ax(9, 3, 2, 1, (1, 0))), 1, 2, 2, 2, False, False),
]
FIXED_CASES = [pytest.param(c, 900 + n, id=f"fixed{n}-{c.tag()}") for n, c in enumerate(FIXED)]


WEIGHT_VJP = re.compile(r"(native conv[123]d weight gradient|folded conv[123]d)")


def expected(conv: Conv, operation: str, simplified: bool) -> str | re.Pattern:
    """The strategy a convolution's operation takes: its native kernel in as many dimensions as
    the convolution has. After simplify a rewrite may leave fewer (an axis whose output has
    size 1 is dropped with it), and where every axis is 1x1 (the identity rule renames them all)
    the convolution and the transpose convolution are one operation, either call will do. A
    weight VJP may take the folded convolution instead (tnc.lowering.folded) where the cost model
    prices it lower (a slow grouped kernel wider than 3, or operands the native call copies)."""
    name = {"forward": "conv{}d", "input_vjp": "conv_transpose{}d", "weight_vjp": "conv{}d weight gradient"}[operation]
    if operation == "weight_vjp":
        return WEIGHT_VJP
    if not simplified:
        return "native " + name.format(conv.dims)
    if operation != "weight_vjp" and all(a.K == 1 and a.S == 1 and a.Dl == 1 and a.pads == (0, 0) for a in conv.axes):
        return re.compile(r"native conv(_transpose)?[123]d")
    return re.compile("native " + re.escape(name).replace(r"\{\}", "[123]"))


@pytest.mark.parametrize(("conv", "seed"), conv_cases("fwd", 12, 100) + conv_cases("fwd", 6, 100, SPELLINGS[1:]) + FIXED_CASES)
@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
def test_forward_convolution_is_native(conv: Conv, seed: int, simplified: bool) -> None:
    t = conv.tensors(seed)
    check(conv.conv_text(), t, conv.torch_conv(t["X"], t["W"]), expected(conv, "forward", simplified), simplified=simplified)


@pytest.mark.parametrize(("conv", "seed"), conv_cases("ivjp", 12, 200) + conv_cases("ivjp", 6, 200, SPELLINGS[1:]) + FIXED_CASES)
@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
def test_input_vjp_is_a_native_transpose_convolution(conv: Conv, seed: int, simplified: bool) -> None:
    t = conv.tensors(seed)
    _, pullback = torch.func.vjp(lambda x: conv.torch_conv(x, t["W"]), t["X"])
    (reference,) = pullback(t["V"])
    check(conv.conv_text(), t, reference, expected(conv, "input_vjp", simplified), derive=dict(wrt="X", vjp_seed="V"), simplified=simplified)


@pytest.mark.parametrize(("conv", "seed"), conv_cases("wvjp", 12, 300) + conv_cases("wvjp", 6, 300, SPELLINGS[1:]) + FIXED_CASES)
@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
def test_weight_vjp_is_native(conv: Conv, seed: int, simplified: bool) -> None:
    t = conv.tensors(seed)
    _, pullback = torch.func.vjp(lambda w: conv.torch_conv(t["X"], w), t["W"])
    (reference,) = pullback(t["V"])
    check(conv.conv_text(), t, reference, expected(conv, "weight_vjp", simplified), derive=dict(wrt="W", vjp_seed="V"), simplified=simplified)


# --------------------------------------------------------------------------- unfold, pooling, KFC
def onehot_unfold(X: torch.Tensor, conv: Conv) -> torch.Tensor:
    """[N, C*prod(K), O1*...] by a depthwise convolution with one-hot kernels (any dimension)."""
    kernel = tuple(a.K for a in conv.axes)
    positions = math.prod(kernel)
    channels = X.shape[1]
    weight = torch.eye(positions, dtype=X.dtype).reshape(positions, 1, *kernel).repeat(channels, *([1] * (conv.dims + 1)))
    function = (F.conv1d, F.conv2d, F.conv3d)[conv.dims - 1]
    out = function(F.pad(X, conv.flat_pads()), weight, stride=tuple(a.S for a in conv.axes), dilation=tuple(a.Dl for a in conv.axes), groups=channels)
    return out.reshape(X.shape[0], channels * positions, -1)


def unfold_text(conv: Conv) -> str:
    return (
        conv.header()
        + f"input X[n, c, {conv.legs('i')}]\n"
        + conv.patterns()
        + f"output U[n, (c {' '.join(f'k{j}' for j in range(1, conv.dims + 1))}), ({' '.join(f'o{j}' for j in range(1, conv.dims + 1))})]"
        + f" = X[n, c, {conv.legs('i')}] * {conv.pattern_factors()}\n"
    )


def unfold_cases() -> list:
    cases = []
    for n in range(9):
        dims = (2, 2, 2, 2, 2, 1, 3, 1, 3)[n]
        conv = random_conv(400 + n, dims, 1)
        cases.append(pytest.param(conv, 400 + n, id=f"unfold{n}-{conv.tag()}"))
    return cases


@pytest.mark.parametrize(("conv", "seed"), unfold_cases())
def test_unfold(conv: Conv, seed: int) -> None:
    """2d: native F.unfold; 1d and 3d have no native im2col and read X through windows."""
    X = conv.tensors(seed)["X"][:, : conv.C]
    if conv.dims == 2:
        reference = F.unfold(F.pad(X, conv.flat_pads()), tuple(a.K for a in conv.axes), dilation=tuple(a.Dl for a in conv.axes), stride=tuple(a.S for a in conv.axes))
        torch.testing.assert_close(reference, onehot_unfold(X, conv), **TOL)
    else:
        reference = onehot_unfold(X, conv)
    check(unfold_text(conv), dict(X=X), reference, "native unfold" if conv.dims == 2 else "window")


def pool_cases() -> list:
    cases = []
    for n in range(12):
        conv = random_conv(500 + n, 1 + n % 3, 1)
        if n % 2 == 0:  # mostly undilated with padding at most K // 2 (what avg_pool takes)
            axes = []
            for a in conv.axes:
                left, right = a.pads
                pad = min(left, a.K // 2) if not isinstance(a.pad, tuple) else (min(left, a.K // 2), right)
                pad = pad if a.pad != "same" else "same"
                axis = Ax(a.I, a.K, a.S, 1, pad)
                least = max(1, a.K - sum(axis.pads))
                axes.append(Ax(max(a.I, least), a.K, a.S, 1, pad))
            conv = Conv(tuple(axes), 1, conv.C, conv.D, conv.N, False, conv.free_n)
        cases.append(pytest.param(conv, 500 + n, id=f"pool{n}-{conv.tag()}"))
    return cases


@pytest.mark.parametrize(("conv", "seed"), pool_cases())
def test_sum_pooling(conv: Conv, seed: int) -> None:
    """Undilated with left padding <= K // 2: native avg_pool times the window; else windows."""
    X = conv.tensors(seed)["X"][:, : conv.C]
    text = conv.header() + f"input X[n, c, {conv.legs('i')}]\n" + conv.patterns()
    text += f"output S[n, c, {conv.legs('o')}] = X[n, c, {conv.legs('i')}] * {conv.pattern_factors()}\n"
    window = math.prod(a.K for a in conv.axes)
    if all(a.Dl == 1 for a in conv.axes):
        pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[conv.dims - 1]
        reference = window * pool(F.pad(X, conv.flat_pads()), tuple(a.K for a in conv.axes), stride=tuple(a.S for a in conv.axes))
    else:  # avg_pool has no dilation: a depthwise convolution with a kernel of ones
        function = (F.conv1d, F.conv2d, F.conv3d)[conv.dims - 1]
        ones = torch.ones(conv.C, 1, *(a.K for a in conv.axes), dtype=DT)
        reference = function(F.pad(X, conv.flat_pads()), ones, stride=tuple(a.S for a in conv.axes), dilation=tuple(a.Dl for a in conv.axes), groups=conv.C)
    native = all(a.Dl == 1 and a.pads[0] <= a.K // 2 for a in conv.axes)
    check(text, dict(X=X), reference, f"native avg_pool{conv.dims}d" if native else "window")


def kfc_text(conv: Conv) -> str:
    ks = lambda p: " ".join(f"k{j}{p}" for j in range(1, conv.dims + 1))  # noqa: E731
    return (
        conv.header()
        + f"input X[n, (g c), {conv.legs('i')}]\n"
        + conv.patterns()
        + f"output A[g, (c {ks('')}), (c' {ks(chr(39))})] = (1/N) * X[n, (g c), {conv.legs('i')}] * {conv.pattern_factors()}"
        + f" * X[n, (g c'), {conv.legs('i', chr(39))}] * {conv.pattern_factors(chr(39))}\n"
    )


@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
@pytest.mark.parametrize(("conv", "seed"), conv_cases("kfc", 9, 600))
def test_kfc_is_a_gram_matrix_of_windows(conv: Conv, seed: int, simplified: bool) -> None:
    """A[g] = sum_n U_g U_g^T / N with U the unfolded input (both copies of X share o): one copy
    of X read through windows (or, where rewrites removed the patterns, reshaped), then U U^T."""
    X = conv.tensors(seed)["X"]
    U = onehot_unfold(X, conv).reshape(conv.N, conv.G, -1, math.prod(a.O for a in conv.axes))
    reference = torch.einsum("ngal,ngbl->gab", U, U) / conv.N
    # after simplify, rewrites may leave a product that is no Gram matrix (a constant C_P.._P.. of
    # two patterns, or a window on one axis beside a pattern on another); as written it is one
    strategy = re.compile("native Gram matrix|window|einsum") if simplified else "native Gram matrix"
    source = check(kfc_text(conv), dict(X=X), reference, strategy, simplified=simplified)
    body = source.split("def _eval_A(")[1].split("\ndef ")[0]
    if "strategy native Gram matrix" in body:
        assert "torch.matmul(" in body and "einsum" not in body


@pytest.mark.parametrize(("conv", "seed"), conv_cases("kfc-raw", 9, 600) + conv_cases("kfc-raw", 9, 650))
def test_kfc_gram_with_a_raw_axis(conv: Conv, seed: int, monkeypatch) -> None:
    """The Gram matrix with one axis read whole and its shifted diagonals summed, taken on every
    case (RAW_FLOPS raised), so strides, dilations, asymmetric padding and groups all meet it."""
    monkeypatch.setattr(native_module, "RAW_FLOPS", 1e9)
    X = conv.tensors(seed)["X"]
    U = onehot_unfold(X, conv).reshape(conv.N, conv.G, -1, math.prod(a.O for a in conv.axes))
    reference = torch.einsum("ngal,ngbl->gab", U, U) / conv.N
    source = check(kfc_text(conv), dict(X=X), reference, "native Gram matrix")
    assert ("read whole" in source) == any(a.K > 1 for a in conv.axes)


@pytest.mark.parametrize(
    ("I", "K", "S", "pad", "C", "raw"),
    [(56, 7, 1, 3, 1, True), (14, 7, 1, 3, 1, True), (17, 7, 1, (3, 3), 128, False), (8, 3, 1, 1, 1, True), (56, 3, 1, 1, 1, False), (224, 7, 2, 3, 3, False)],
    ids=["depthwise7x7-56", "depthwise7x7-14", "1x7-17-128-channels", "1x3-8-one-channel", "3x3-56", "7x7s2-224"],
)
def test_raw_axis_is_taken_for_large_kernels_on_small_inputs(I, K, S, pad, C, raw) -> None:
    """Only for U of few rows (depthwise), where the FLOP ratio span^2 / (K^2 O) is at most
    RAW_FLOPS, on the sizes of benchmark layers."""
    conv = Conv((Ax(I, K, S, 1, pad),), 1, C, 1, 1, False, False)
    source, _, _ = build(kfc_text(conv))
    assert ("read whole" in source) == raw


# --------------------------------------------------------------------------- boundaries
def test_channel_last_layout_is_native() -> None:
    """Leg orders are canonicalised: X[n, i1, i2, c] is permuted into the kernel's layout."""
    text = """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, i1: 7, i2: 6, k1: 3, k2: 2
input X[n, i1, i2, c]
param W[d, c, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2, padding=1)
pattern P2[i2, o2, k2] = conv(padding=(0, 1))
output Y[n, d, o1, o2] = X[n, i1, i2, c] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]
"""
    X, W = rand(2, 7, 6, 3, seed=1), rand(2, 3, 3, 2, seed=2)
    reference = F.conv2d(F.pad(X.permute(0, 3, 1, 2), (0, 1, 1, 1)), W, stride=(2, 1))
    check(text, dict(X=X, W=W), reference, "native conv2d")


def test_channel_last_transpose_is_native() -> None:
    """The patterns' input legs are result legs: no window; the permuted layout is native."""
    text = """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, o: 4, k: 3
input V[n, o, d]
param W[d, c, k]
pattern P[i, o, k] = conv(stride=2, padding=1)
output Z[n, i, c] = V[n, o, d] * P[i, o, k] * W[d, c, k]
"""
    V, W = rand(2, 4, 2, seed=3), rand(2, 3, 3, seed=4)
    reference = F.conv_transpose1d(V.permute(0, 2, 1), W, stride=2, padding=1).permute(0, 2, 1)  # I = 7
    check(text, dict(V=V, W=W), reference, "native conv_transpose1d")


def test_fold_pattern_input_legs_are_result_legs() -> None:
    """col2im: the input legs of both patterns are result legs, so nothing is windowed, and the
    product is exactly F.fold."""
    text = (EXAMPLES / "fold.tn").read_text()
    U = rand(2, 2 * 3 * 2, 4 * 6, seed=5)
    reference = F.fold(U, output_size=(7, 6), kernel_size=(3, 2), dilation=(1, 2), padding=(1, 1), stride=(2, 1))
    check(text, dict(U=U), reference, "native fold")


@pytest.mark.parametrize("padding", [(1, 0), (0, 2)], ids=["left", "right"])
def test_fold_with_asymmetric_padding(padding) -> None:
    text = f"""
size N = 2, C = 2
index n: N, c: C, i1: 7, i2: 6, k1: 3, k2: 2
input U[n, (c k1 k2), (o1 o2)]
pattern P1[i1, o1, k1] = conv(stride=2, padding={padding})
pattern P2[i2, o2, k2] = conv(padding=1)
output X[n, c, i1, i2] = U[n, (c k1 k2), (o1 o2)] * P1[i1, o1, k1] * P2[i2, o2, k2]
"""
    left, right = padding
    O1 = (7 + left + right - 3) // 2 + 1
    U = rand(2, 2 * 3 * 2, O1 * 7, seed=6)
    full = F.fold(U, output_size=(7 + left + right, 8), kernel_size=(3, 2), stride=(2, 1))
    check(text, dict(U=U), full[:, :, left : left + 7, 1:7], "native fold")


def test_pattern_input_leg_read_inside_a_group_is_native() -> None:
    """Not windowed (i is inside a group), but X[n, (c i)] is X[n, c, i] regrouped: native."""
    text = """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, i: 8, k: 3
input X[n, (c i)]
param W[d, c, k]
pattern P[i, o, k] = conv(stride=2, padding=(2, 1), dilation=2)
output Y[n, d, o] = X[n, (c i)] * P[i, o, k] * W[d, c, k]
"""
    X, W = rand(2, 24, seed=6), rand(2, 3, 3, seed=7)
    reference = F.conv1d(F.pad(X.reshape(2, 3, 8), (2, 1)), W, stride=2, dilation=2)
    check(text, dict(X=X, W=W), reference, "native conv1d")


def test_pattern_input_leg_on_a_pattern_and_data_is_not_windowed() -> None:
    """Two patterns on one input leg (a hyperedge): the window strategy must leave it alone."""
    text = """
index n: 2, i: 7, k: 3, k': 2
input X[n, i]
pattern P[i, o, k] = conv(stride=2, padding=1)
pattern Q[i, o', k'] = conv(stride=3)
output Y[n, o, k, o', k'] = X[n, i] * P[i, o, k] * Q[i, o', k']
"""
    X = rand(2, 7, seed=8)
    reference = torch.zeros(2, 4, 3, 2, 2, dtype=DT)
    for o, k, o2, k2 in itertools.product(range(4), range(3), range(2), range(2)):
        i = 2 * o + k - 1
        if 0 <= i < 7 and i == 3 * o2 + k2:
            reference[:, o, k, o2, k2] = X[:, i]
    check(text, dict(X=X), reference, "einsum")


CONV1D = EXAMPLES / "conv1d.tn"


def _conv1d_example(X, W):
    return F.conv1d(X, W, stride=2, padding=2, dilation=2, groups=3)


def test_weight_jacobian_with_deltas_is_not_native() -> None:
    """dY/dW keeps delta[g, g'] * delta[d, d']: a diagonal embedding; the rest is windowed, never native."""
    X, W = rand(2, 6, 11, seed=9), rand(6, 2, 3, seed=10)
    reference = torch.func.jacrev(lambda w: _conv1d_example(X, w))(W)
    source = check(CONV1D.read_text(), dict(X=X, W=W), reference, "window", sizes={"N": 2}, derive=dict(wrt="W"))
    assert "diagonal embedding" in source


def test_input_jacobian_with_deltas_is_not_native() -> None:
    X, W = rand(2, 6, 11, seed=11), rand(6, 2, 3, seed=12)
    reference = torch.func.jacrev(lambda x: _conv1d_example(x, W))(X)
    source = check(CONV1D.read_text(), dict(X=X, W=W), reference, "einsum", sizes={"N": 2}, derive=dict(wrt="X"))
    assert "diagonal embedding" in source


def test_summed_delta_in_a_convolution_is_not_native() -> None:
    text = """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, e: D, i: 9, k: 3
input X[n, c, i]
param W[e, c, k]
pattern P[i, o, k] = conv(stride=2, padding=1)
output Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[e, c, k] * delta[e, d]
"""
    X, W = rand(2, 3, 9, seed=13), rand(2, 3, 3, seed=14)
    check(text, dict(X=X, W=W), F.conv1d(X, W, stride=2, padding=1), "window")


FREE_INPUT = """
size N, I
size C = 2, D = 3
index n: N, c: C, d: D, i: I, k: 3
input X[n, c, i]
param W[d, c, k]
pattern P[i, o, k] = conv(stride=2, padding=(1, 2), dilation=2)
output Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[d, c, k]
"""


@pytest.mark.parametrize("I", [3, 4, 9, 10])
def test_free_spatial_size_is_windowed_not_native(I: int) -> None:
    X, W = rand(2, 2, I, seed=15), rand(3, 2, 3, seed=16)
    reference = F.conv1d(F.pad(X, (1, 2)), W, stride=2, dilation=2)
    source = check(FREE_INPUT, dict(X=X, W=W), reference, "window")
    assert "conv1d" not in source


@pytest.mark.parametrize("I", [3, 9, 10])
def test_free_spatial_size_input_vjp_is_dense(I: int) -> None:
    X, W = rand(2, 2, I, seed=17), rand(3, 2, 3, seed=18)
    out, pullback = torch.func.vjp(lambda x: F.conv1d(F.pad(x, (1, 2)), W, stride=2, dilation=2), X)
    V = rand(*out.shape, seed=19)
    check(FREE_INPUT, dict(X=X, W=W, V=V), pullback(V)[0], "einsum", derive=dict(wrt="X", vjp_seed="V"), call_sizes={"I": I})


@pytest.mark.parametrize("K", [2, 3, 4])
def test_free_kernel_size_with_same_padding(K: int) -> None:
    """The left padding floor(2*(K-1)/2) is symbolic: neither native nor window."""
    text = """
size N = 2, K
index n: N, c: 2, d: 3, i: 7, k: K
input X[n, c, i]
param W[d, c, k]
pattern P[i, o, k] = conv(padding=same, dilation=2)
output Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[d, c, k]
"""
    X, W = rand(2, 2, 7, seed=20), rand(3, 2, K, seed=21)
    check(text, dict(X=X, W=W), F.conv1d(X, W, padding="same", dilation=2), "einsum")


@pytest.mark.parametrize(
    ("axes", "needs_pad"),
    [
        pytest.param([(8, 3, 2, 0)], True, id="1d-I8K3s2"),
        pytest.param([(9, 3, 2, (1, 0))], True, id="1d-I9K3s2-left1"),
        pytest.param([(7, 3, 2, 1), (9, 3, 2, (1, 0))], True, id="2d-second-axis"),
        pytest.param([(9, 3, 2, (1, 0)), (7, 3, 2, 1)], True, id="2d-first-axis"),
        pytest.param([(7, 3, 2, 1), (5, 2, 3, 0), (9, 3, 2, (1, 0))], True, id="3d-last-axis"),
        pytest.param([(7, 3, 2, 1)], False, id="1d-exact"),
    ],
)
def test_transpose_shorter_than_left_padding_plus_input(axes, needs_pad) -> None:
    conv = Conv(tuple(Ax(I, K, S, 1, p) for I, K, S, p in axes), 1, 2, 3, 2, False, False)
    short = [(a.O - 1) * a.S + a.K < a.pads[0] + a.I for a in conv.axes]
    assert any(short) == needs_pad  # the cases are chosen for this
    t = conv.tensors(22)
    _, pullback = torch.func.vjp(lambda x: conv.torch_conv(x, t["W"]), t["X"])
    source = check(conv.conv_text(), t, pullback(t["V"])[0], f"native conv_transpose{conv.dims}d", derive=dict(wrt="X", vjp_seed="V"))
    body = source.split("def _eval_vjp_Y_X(")[1].split("\ndef ")[0]
    # symmetric padding: output_padding covers a short transpose; asymmetric: an explicit F.pad
    asymmetric = any(isinstance(axis[3], tuple) for axis in axes)
    assert ("torch.nn.functional.pad(" in body) == (needs_pad and asymmetric)


def transpose_text(dims: int, G: int, C: int, D: int, Os, Ks, Ss, Ps, Dls, OPs) -> str:
    r = range(1, dims + 1)
    text = f"size N = 2, G = {G}, C = {C}, D = {D}\nindex n: N, g: G, c: C, d: D\n"
    text += "index " + ", ".join(f"o{j}: {O}, k{j}: {K}" for j, O, K in zip(r, Os, Ks)) + "\n"
    text += f"input Z[n, (g c), {', '.join(f'o{j}' for j in r)}]\nparam W[(g c), d, {', '.join(f'k{j}' for j in r)}]\n"
    for j, S, P, Dl, OP in zip(r, Ss, Ps, Dls, OPs):
        text += f"pattern P{j}[i{j}, o{j}, k{j}] = conv(stride={S}, padding={P}, dilation={Dl}, output_padding={OP})\n"
    text += f"output Y[n, (g d), {', '.join(f'i{j}' for j in r)}] = Z[n, (g c), {', '.join(f'o{j}' for j in r)}] * "
    text += " * ".join(f"P{j}[i{j}, o{j}, k{j}]" for j in r) + f" * W[(g c), d, {', '.join(f'k{j}' for j in r)}]\n"
    return text


@pytest.mark.parametrize(
    "dims, G, C, D, Os, Ks, Ss, Ps, Dls, OPs",
    [
        pytest.param(1, 1, 2, 3, [4], [3], [2], [1], [1], [1], id="1d-op1"),
        pytest.param(1, 3, 1, 2, [5], [2], [3], [0], [2], [2], id="1d-op2-g3"),
        pytest.param(2, 2, 2, 3, [4, 3], [3, 2], [2, 3], [1, 1], [1, 2], [1, 2], id="2d-example"),
        pytest.param(2, 1, 3, 1, [3, 4], [1, 3], [2, 2], [0, 2], [1, 1], [1, 0], id="2d-k1"),
        pytest.param(3, 2, 1, 2, [2, 3, 2], [2, 3, 3], [2, 1, 3], [0, 1, 1], [1, 1, 2], [1, 0, 2], id="3d"),
        # PyTorch's rule output_padding < max(stride, dilation): at stride 1, up to dilation - 1
        pytest.param(1, 1, 2, 3, [5], [3], [1], [1], [2], [1], id="1d-s1-d2-op1"),
        pytest.param(2, 1, 2, 2, [4, 3], [3, 2], [1, 1], [1, 0], [2, 3], [1, 2], id="2d-s1-d2-op1-d3-op2"),
        pytest.param(3, 2, 1, 2, [3, 2, 3], [2, 3, 2], [1, 2, 1], [0, 1, 1], [2, 3, 2], [1, 2, 1], id="3d-s1-d2-op1"),
    ],
)
def test_transpose_with_output_padding(dims, G, C, D, Os, Ks, Ss, Ps, Dls, OPs) -> None:
    Z, W = rand(2, G * C, *Os, seed=23), rand(G * C, D, *Ks, seed=24)
    transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
    reference = transpose(Z, W, stride=tuple(Ss), padding=tuple(Ps), output_padding=tuple(OPs), dilation=tuple(Dls), groups=G)
    check(transpose_text(dims, G, C, D, Os, Ks, Ss, Ps, Dls, OPs), dict(Z=Z, W=W), reference, f"native conv_transpose{dims}d")


def test_kernel_is_a_defined_tensor() -> None:
    text = """
size N = 2, G = 2, C = 2, D = 3
index n: N, g: G, c: C, d: D, i1: 7, i2: 6, k1: 3, k2: 2, e: 4
input X[n, (g c), i1, i2]
param A[(g d), e]
param B[e, c, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2, padding=1)
pattern P2[i2, o2, k2] = conv(padding=same, dilation=3)
K[(g d), c, k1, k2] = A[(g d), e] * B[e, c, k1, k2]
output Y[n, (g d), o1, o2] = X[n, (g c), i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * K[(g d), c, k1, k2]
"""
    X, A, B = rand(2, 4, 7, 6, seed=25), rand(6, 4, seed=26), rand(4, 2, 3, 2, seed=27)
    K = torch.einsum("ae,eckl->ackl", A, B)
    reference = F.conv2d(F.pad(X, (1, 2, 1, 1)), K, stride=(2, 1), dilation=(1, 3), groups=2)
    check(text, dict(X=X, A=A, B=B), reference, "native conv2d")


@pytest.mark.parametrize(
    ("coefficient", "factor"),
    [pytest.param("0.5", lambda N: 0.5, id="half"), pytest.param("-3", lambda N: -3.0, id="minus3"), pytest.param("(2/N)", lambda N: 2 / N, id="2/N-free")],
)
def test_coefficient_on_a_native_term(coefficient, factor) -> None:
    text = f"""
size N, C = 2, D = 3
index n: N, c: C, d: D, i: 9, k: 3
input X[n, c, i]
param W[d, c, k]
pattern P[i, o, k] = conv(stride=2, padding=(0, 2))
output Y[n, d, o] = {coefficient} * X[n, c, i] * P[i, o, k] * W[d, c, k]
"""
    X, W = rand(3, 2, 9, seed=28), rand(3, 2, 3, seed=29)
    check(text, dict(X=X, W=W), factor(3) * F.conv1d(F.pad(X, (0, 2)), W, stride=2), "native conv1d")


def test_sum_of_two_native_terms() -> None:
    """A convolution minus twice a transpose convolution: two native calls, one sum."""
    text = """
size N = 2, C = 2, D = 3, E = 2
index n: N, c: C, d: D, e: E, i: 9, k: 3, j: 3, k': 3
input X[n, c, i]
param W[d, c, k]
input Z[n, e, j]
param W2[e, d, k']
pattern P[i, o, k] = conv(stride=2, padding=1)
pattern Q[o, j, k'] = conv(stride=2, padding=1)
output Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[d, c, k] - 2 * Z[n, e, j] * Q[o, j, k'] * W2[e, d, k']
"""
    X, W, Z, W2 = rand(2, 2, 9, seed=30), rand(3, 2, 3, seed=31), rand(2, 2, 3, seed=32), rand(2, 3, 3, seed=33)
    reference = F.conv1d(X, W, stride=2, padding=1) - 2 * F.conv_transpose1d(Z, W2, stride=2, padding=1)
    check(text, dict(X=X, W=W, Z=Z, W2=W2), reference, ["native conv1d", "native conv_transpose1d"])


def test_sum_of_a_native_and_a_window_term() -> None:
    text = """
size N = 2, C = 2, D = 3
index n: N, c: C, d: D, i1: 6, i2: 5, k1: 2, k2: 3
input X[n, c, i1, i2]
param W[d, c, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2, padding=(0, 1))
pattern P2[i2, o2, k2] = conv(padding=1)
output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2] + X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2] * X[n, c, i1, i2]
"""
    X, W = rand(2, 2, 6, 5, seed=34), rand(3, 2, 2, 3, seed=35)
    xpad = F.pad(X, (1, 1, 0, 1))
    # term 2: sum_c sum_i X^2 P P W = conv of X^2 (X read at the same pixel twice)
    reference = F.conv2d(xpad, W, stride=(2, 1)) + F.conv2d(xpad * xpad, W, stride=(2, 1))
    check(text, dict(X=X, W=W), reference, ["native conv2d", "window"])


# --------------------------------------------------------------------------- hand-written windows
def loops(shape, value):
    """A tensor of ``shape`` whose entry at each index tuple is ``value(*index)``."""
    out = torch.zeros(*shape, dtype=DT)
    for index in itertools.product(*(range(s) for s in shape)):
        out[index] = value(*index)
    return out


def at(X, *index):
    """X at ``index``; 0 where a position falls outside its axis."""
    if any(not 0 <= p < s for p, s in zip(index, X.shape)):
        return 0.0
    return X[index].item()


WINDOWS = [
    pytest.param(
        "index n: 2, i: 7, o: 3, k: 2\ninput X[n, i]\noutput Y[n, o, k] = X[n, 2*o + k]\n",
        dict(X=(2, 7)),
        lambda X: loops((2, 3, 2), lambda n, o, k: at(X, n, 2 * o + k)),
        id="strided-inside",
    ),
    pytest.param(
        "index n: 2, i: 6, o: 4, k: 3\ninput X[n, i]\noutput Y[n, o, k] = X[n, o + 3*k - 1]\n",
        dict(X=(2, 6)),
        lambda X: loops((2, 4, 3), lambda n, o, k: at(X, n, o + 3 * k - 1)),
        id="dilated-padded-both-sides",
    ),
    pytest.param(
        "index n: 2, c: 2, d: 3, i: 8, o: 4, k: 3\ninput X[n, c, i]\nparam W[d, c, k]\n"
        "output Y[n, d, o] = X[n, c, 2*o + k - 2] * W[d, c, k]\n",
        dict(X=(2, 2, 8), W=(3, 2, 3)),
        lambda X, W: loops((2, 3, 4), lambda n, d, o: sum(at(X, n, c, 2 * o + k - 2) * W[d, c, k].item() for c in range(2) for k in range(3))),
        id="contracted-with-kernel",
    ),
    pytest.param(
        "index n: 2, i: 5, j: 6, o: 3, k: 2, p: 2, q: 3\ninput X[n, i, j]\n"
        "output Y[n, o, k, p, q] = X[n, 2*o + k - 1, p + 2*q]\n",
        dict(X=(2, 5, 6)),
        lambda X: loops((2, 3, 2, 2, 3), lambda n, o, k, p, q: at(X, n, 2 * o + k - 1, p + 2 * q)),
        id="two-windows-one-factor",
    ),
    pytest.param(
        "index n: 2, i: 10, o: 3, k: 2\ninput X[n, i]\noutput Y[n, o, k] = X[n, 3*o + k]\n",
        dict(X=(2, 10)),
        lambda X: loops((2, 3, 2), lambda n, o, k: at(X, n, 3 * o + k)),
        id="stride-over-kernel-narrow",
    ),
    pytest.param(
        "index n: 2, i: 3, o: 2, k: 2\ninput X[n, i]\noutput Y[n, o, k] = X[n, o + k - 5]\n",
        dict(X=(2, 3)),
        lambda X: loops((2, 2, 2), lambda n, o, k: at(X, n, o + k - 5)),
        id="entirely-outside",
    ),
    pytest.param(
        "index n: 2, i: 4, o: 3, k: 3\ninput X[n, i]\noutput Y[n, o, k] = X[n, 2*o + 2*k]\n",
        dict(X=(2, 4)),
        lambda X: loops((2, 3, 3), lambda n, o, k: at(X, n, 2 * o + 2 * k)),
        id="reads-past-the-right-end",
    ),
    pytest.param(
        "index n: 2, i: 7, o: 4, k: 2, k': 3\ninput X[n, i]\n"
        "output Y[n, o, k, k'] = X[n, o + k] * X[n, 2*o + k' - 1]\n",
        dict(X=(2, 7)),
        lambda X: loops((2, 4, 2, 3), lambda n, o, k, k2: at(X, n, o + k) * at(X, n, 2 * o + k2 - 1)),
        id="one-tensor-two-windows",
    ),
    pytest.param(
        "index n: 2, c: 3, i: 6, o: 3, k: 2\ninput X[(n c), i]\noutput Y[n, o, c] = X[(n c), 2*o + k - 1]\n",
        dict(X=(6, 6)),
        lambda X: loops((2, 3, 3), lambda n, o, c: sum(at(X.reshape(2, 3, 6), n, c, 2 * o + k - 1) for k in range(2))),
        id="grouped-declaration-summed-kernel",
    ),
    pytest.param(
        "index n: 2, i: 7, o: 3, k: 3\ninput X[n, i]\npattern P[o, o2, k2] = conv(stride=2, padding=1)\nindex k2: 2\n"
        "output Y[n, o2, k, k2] = X[n, 2*o + k - 1] * P[o, o2, k2]\n",
        dict(X=(2, 7)),
        lambda X: loops((2, 2, 3, 2), lambda n, o2, k, k2: sum(at(X, n, 2 * o + k - 1) for o in range(3) if o == 2 * o2 + k2 - 1)),
        id="pattern-on-a-window-leg",
    ),
]


@pytest.mark.parametrize(("text", "shapes", "reference"), WINDOWS)
def test_hand_written_windows(text, shapes, reference) -> None:
    args = {name: rand(*shape, seed=40 + n) for n, (name, shape) in enumerate(shapes.items())}
    source, module, output = build(text)
    _, dense, _ = build(text, ())
    expected = reference(**args)
    torch.testing.assert_close(call(module, output, args), expected, **TOL)
    torch.testing.assert_close(call(dense, output, args), expected, **TOL)
    # read through an unfold view, or, where the window and a kernel make a convolution, by the native kernel
    assert ".unfold(" in source or "strategy native conv" in source


@pytest.mark.parametrize("I", [1, 2, 4, 5, 9])
def test_hand_written_window_with_free_axis(I: int) -> None:
    """The right padding max(0, 5 - I) is symbolic. L[j] (j: I) makes I a leg size of the term:
    without it the eval function lacks I (tests/test_lowering_bugs.py, bug 3)."""
    text = "size I\nindex n: 2, i: I, j: I, o: 3, k: 2\ninput X[n, i]\ninput L[j]\noutput Y[n, o, k] = X[n, 2*o + k - 1] * L[j]\n"
    X, L = rand(2, I, seed=50), rand(I, seed=51)
    source, module, output = build(text)
    expected = loops((2, 3, 2), lambda n, o, k: at(X, n, 2 * o + k - 1)) * L.sum()
    torch.testing.assert_close(call(module, output, dict(X=X, L=L)), expected, **TOL)
    assert "max(0, " in source


ONE_BY_SEVEN = """
size N = 2
index n: N, c: 3, d: 4, i1: 17, i2: 17, k1: 1, k2: 7
input X[n, c, i1, i2]
param W[d, c, k1, k2]
pattern P1[i1, o1, k1] = conv()
pattern P2[i2, o2, k2] = conv(padding=3)
output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]
"""


@pytest.mark.parametrize(
    "derive, output, expected_strategy",
    [
        (None, "Y", "native conv2d"),
        (dict(wrt="X", vjp_seed="V"), "vjp_Y_X", "native conv_transpose2d"),
        (dict(wrt="W", vjp_seed="V"), "vjp_Y_W", "native conv2d weight gradient"),
    ],
    ids=["forward", "input-vjp", "weight-vjp"],
)
def test_one_by_k_layer_stays_native_after_the_identity_rule(derive, output, expected_strategy):
    """InceptionV3's 1x7 convolutions: the identity rule renames the 1x1 axis away, and the native
    kernel still matches (the axis is read as a 1x1 axis of the convolution)."""
    program = compile_source(ONE_BY_SEVEN, "one_by_seven.tn")
    if derive:
        derive_program(program, **derive)
    log = simplify(program)
    assert "identity" in [a.rule for a in log]
    module = types.ModuleType("one_by_seven")
    source = to_torch_source(program, "one_by_seven")
    exec(source, module.__dict__)
    assert f"strategy {expected_strategy}:" in source
    g = torch.Generator().manual_seed(3)
    X, W, V = (torch.randn(shape, generator=g, dtype=torch.float64) for shape in [(2, 3, 17, 17), (4, 3, 1, 7), (2, 4, 17, 17)])
    forward = lambda x, w: F.conv2d(x, w, padding=(0, 3))  # noqa: E731
    reference = {
        "Y": lambda: forward(X, W),
        "vjp_Y_X": lambda: torch.func.vjp(lambda x: forward(x, W), X)[1](V)[0],
        "vjp_Y_W": lambda: torch.func.vjp(lambda w: forward(X, w), W)[1](V)[0],
    }[output]()
    arguments = {"X": X, "W": W, "V": V}
    function = getattr(module, output)
    result = function(**{p: arguments[p] for p in inspect.signature(function).parameters})
    torch.testing.assert_close(result, reference, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- spellings
# Each case spells a standard operation in a way other than the kernel's own layout; every one must
# reach the kernel, as written and after simplify. ``reference(**tensors)`` computes it with PyTorch.
def _dw(X, W, stride=1, padding=0):
    return F.conv2d(X, W, stride=stride, padding=padding, groups=X.shape[1])


SPELLING_CASES = [
    pytest.param(
        """
size N = 2, C = 4
index n: N, c: C, one: 1, i1: 9, i2: 8, k1: 3, k2: 3
input X[n, c, i1, i2]
param W[c, one, k1, k2]
pattern P1[i1, o1, k1] = conv(padding=1)
pattern P2[i2, o2, k2] = conv(stride=2, padding=1)
output Y[n, c, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[c, one, k1, k2]
""",
        dict(X=(2, 4, 9, 8), W=(4, 1, 3, 3)),
        lambda X, W: _dw(X, W, (1, 2), 1),
        "conv2d",
        id="depthwise-torch-layout",
    ),
    pytest.param(
        """
size N = 2, C = 3, M = 2
index n: N, c: C, m: M, one: 1, i1: 7, i2: 7, k1: 3, k2: 3
input X[n, c, i1, i2]
param W[(c m), one, k1, k2]
pattern P1[i1, o1, k1] = conv(padding=1)
pattern P2[i2, o2, k2] = conv(padding=1)
output Y[n, (c m), o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[(c m), one, k1, k2]
""",
        dict(X=(2, 3, 7, 7), W=(6, 1, 3, 3)),
        lambda X, W: F.conv2d(X, W, padding=1, groups=3),
        "conv2d",
        id="depthwise-multiplier",
    ),
    pytest.param(
        """
size N = 2, C = 4
index n: N, c: C, i1: 6, i2: 6, k1: 3, k2: 3
input X[n, c, i1, i2]
param W[c, k1, k2]
pattern P1[i1, o1, k1] = conv(padding=1)
pattern P2[i2, o2, k2] = conv(padding=1)
output Y[n, c, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[c, k1, k2]
""",
        dict(X=(2, 4, 6, 6), W=(4, 3, 3)),
        lambda X, W: _dw(X, W.unsqueeze(1), 1, 1),
        "conv2d",
        id="depthwise-no-channel-leg",
    ),
    pytest.param(
        """
size N = 2, G = 2, C = 2, D = 3
index n: N, g: G, c: C, d: D, i: 9, k: 3
input X[n, (g c), i]
param W[g, d, c, k]
pattern P[i, o, k] = conv(stride=2, padding=(1, 0))
output Y[n, g, d, o] = X[n, (g c), i] * P[i, o, k] * W[g, d, c, k]
""",
        dict(X=(2, 4, 9), W=(2, 3, 2, 3)),
        lambda X, W: F.conv1d(F.pad(X, (1, 0)), W.flatten(0, 1), stride=2, groups=2).unflatten(1, (2, 3)),
        "conv1d",
        id="grouped-mixed-legs",
    ),
    pytest.param(
        """
size G = 3, C = 2, D = 2
index g: G, c: C, d: D, i1: 5, i2: 4, i3: 4, k1: 2, k2: 1, k3: 3
input X[(g c), i1, i2, i3]
param W[c, k1, k2, k3, (g d)]
pattern P1[i1, o1, k1] = conv(dilation=2)
pattern P2[i2, o2, k2] = conv(stride=2)
pattern P3[i3, o3, k3] = conv(padding=same)
output Y[o1, (g d), o2, o3] = X[(g c), i1, i2, i3] * P1[i1, o1, k1] * P2[i2, o2, k2] * P3[i3, o3, k3] * W[c, k1, k2, k3, (g d)]
""",
        dict(X=(6, 5, 4, 4), W=(2, 2, 1, 3, 6)),
        lambda X, W: F.conv3d(X[None], W.permute(4, 0, 1, 2, 3), stride=(1, 2, 1), padding=(0, 0, 1), dilation=(2, 1, 1), groups=3)[0].movedim(1, 0),
        "conv3d",
        id="3d-no-batch-kernel-last-1xk",
    ),
    pytest.param(
        """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, i1: 7, i2: 9, k1: 1, k2: 3
input X[n, c, i1, i2]
param W[d, c, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2, padding=1)
pattern P2[i2, o2, k2] = conv(padding=(2, 0), dilation=2)
output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]
""",
        dict(X=(2, 3, 7, 9), W=(2, 3, 1, 3)),
        lambda X, W: F.conv2d(F.pad(X, (2, 0, 1, 1)), W, stride=(2, 1), dilation=(1, 2)),
        "conv2d",
        id="1xk-strided-padded-1-axis",
    ),
    pytest.param(
        """
size N = 2, C = 3, D = 2
index n: N, c: C, d: D, o1: 3, o2: 4, k1: 2, k2: 2
input Z[n, c, o1, o2]
param W[c, d, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2)
pattern P2[i2, o2, k2] = conv(stride=2)
output Y[n, d, i1, i2] = Z[n, c, o1, o2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[c, d, k1, k2]
""",
        dict(Z=(2, 3, 3, 4), W=(3, 2, 2, 2)),
        lambda Z, W: F.conv_transpose2d(Z, W, stride=2),
        "conv_transpose2d",
        id="transpose-kernel-equals-stride",
    ),
    pytest.param(
        """
size N = 2, C = 4
index n: N, c: C, one: 1, o: 5, k: 3
input Z[n, c, o]
param W[c, one, k]
pattern P[i, o, k] = conv(stride=3)
output Y[n, c, i] = Z[n, c, o] * P[i, o, k] * W[c, one, k]
""",
        dict(Z=(2, 4, 5), W=(4, 1, 3)),
        lambda Z, W: F.conv_transpose1d(Z, W, stride=3, groups=4),
        "conv_transpose1d",
        id="transpose-depthwise-kernel-equals-stride",
    ),
]


def _spelling_tensors(shapes: dict) -> dict:
    return {name: rand(*shape, seed=60 + n) for n, (name, shape) in enumerate(shapes.items())}


@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
@pytest.mark.parametrize(("text", "shapes", "reference", "kernel"), SPELLING_CASES)
def test_spelling_reaches_the_native_kernel(text, shapes, reference, kernel, simplified) -> None:
    args = _spelling_tensors(shapes)
    check(text, args, reference(**args), f"native {kernel}", simplified=simplified)


@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
@pytest.mark.parametrize("wrt", ["data", "kernel"])
@pytest.mark.parametrize(("text", "shapes", "reference", "kernel"), SPELLING_CASES)
def test_spelling_vjps_reach_native_kernels(text, shapes, reference, kernel, wrt, simplified) -> None:
    """Both VJPs of every spelling: a convolution's are a transpose convolution and a weight
    gradient, a transpose convolution's a convolution and a weight gradient (with the roles of
    data and seed exchanged)."""
    args = _spelling_tensors(shapes)
    data, weight = list(shapes)
    out = reference(**args)
    V = rand(*out.shape, seed=70)
    name = data if wrt == "data" else weight
    _, pullback = torch.func.vjp(lambda t: reference(**{**args, name: t}), args[name])
    dims = kernel[-2]
    strategy = {
        ("data", False): f"native conv_transpose{dims}d",
        ("data", True): f"native conv{dims}d",
        ("kernel", False): WEIGHT_VJP,  # or the folded convolution, where the cost model says so
        ("kernel", True): WEIGHT_VJP,
    }[wrt, kernel.startswith("conv_transpose")]
    check(text, {**args, "V": V}, pullback(V)[0], strategy, derive=dict(wrt=name, vjp_seed="V"), simplified=simplified)


# Where a product is not a standard operation the kernel must not be chosen.
NOT_NATIVE = [
    pytest.param(
        "index n: 2, c: 3, d: 2, i: 7, k: 3\ninput X[n, c, i]\nparam W[d, c, k, o]\npattern P[i, o, k] = conv(padding=1)\n"
        "output Y[n, d] = X[n, c, i] * P[i, o, k] * W[d, c, k, o]\n",
        dict(X=(2, 3, 7), W=(2, 3, 3, 7)),
        lambda X, W: torch.einsum("ncok,dcko->nd", F.pad(X, (1, 1)).unfold(2, 3, 1), W),
        id="output-leg-on-the-kernel",
    ),
    pytest.param(
        "index n: 2, c: 3, d: 2, i: 7, k: 3\ninput X[n, c, i]\nparam W[d, c, k]\npattern P[i, o, k] = conv(padding=1)\n"
        "output Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[d, c, k] * X[n, c, i]\n",
        dict(X=(2, 3, 7), W=(2, 3, 3)),
        lambda X, W: F.conv1d(X * X, W, padding=1),
        id="input-used-twice",
    ),
    pytest.param(
        "index n: 2, c: 3, d: 2, i: 7, k: 3\ninput X[n, c, i]\nparam W[d, c, k]\npattern P[i, o, k] = conv(padding=1)\n"
        "output Y[n, d, o, k] = X[n, c, i] * P[i, o, k] * W[d, c, k]\n",
        dict(X=(2, 3, 7), W=(2, 3, 3)),
        lambda X, W: torch.einsum("ncok,dck->ndok", F.pad(X, (1, 1)).unfold(2, 3, 1), W),
        id="kernel-leg-kept",
    ),
    pytest.param(
        "index n: 4, c: 3, d: 2\ninput X[n, c]\nparam W[d, c]\noutput Y[n, d] = X[n, c] * W[d, c]\n",
        dict(X=(4, 3), W=(2, 3)),
        lambda X, W: X @ W.T,
        id="matmul",
    ),
]


@pytest.mark.parametrize(("text", "shapes", "reference"), NOT_NATIVE)
def test_not_a_standard_operation_is_not_native(text, shapes, reference) -> None:
    args = _spelling_tensors(shapes)
    source, module, output = build(text)
    assert "strategy native" not in source, source
    _, dense, _ = build(text, ())
    torch.testing.assert_close(call(module, output, args), reference(**args), **TOL)
    torch.testing.assert_close(call(dense, output, args), reference(**args), **TOL)


@pytest.mark.parametrize(
    ("text", "shape", "reference", "strategy"),
    [
        pytest.param(
            "index bn: 2, ch: 3, i1: 7, k1: 3\ninput X[bn, ch, i1]\npattern P[i1, o1, k1] = conv(stride=2, padding=1)\n"
            "output S[bn, ch, o1] = X[bn, ch, i1] * P[i1, o1, k1]\n",
            (2, 3, 7), lambda X: 3 * F.avg_pool1d(X, 3, stride=2, padding=1, count_include_pad=True), "native avg_pool1d", id="pool",
        ),
        pytest.param(
            "index i1: 7, i2: 6, k1: 3, k2: 2\ninput X[i1, i2]\npattern P1[i1, o1, k1] = conv(stride=2)\npattern P2[i2, o2, k2] = conv()\n"
            "output U[k1, k2, o1, o2] = X[i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2]\n",
            (7, 6), lambda X: F.unfold(X[None, None], (3, 2), stride=(2, 1)).reshape(3, 2, 3, 5), "native unfold", id="unfold-no-batch",
        ),
    ],
)
def test_single_operand_spellings(text, shape, reference, strategy) -> None:
    """Pooling and unfold with legs of longer names, or none but the spatial ones."""
    X = rand(*shape, seed=80)
    check(text, dict(X=X), reference(X), strategy)


# --------------------------------------------------------------------------- identities: views, no computation
IDENTITY_HEAD = "size N = 3, G = 1, C = 4\nindex n: N, g: G, c: C, i1: 5, i2: 6, i3: 2, k1: 1, k2: 1, k3: 1\n"


@pytest.mark.parametrize(
    "body, shape, reference",
    [
        pytest.param("input X[n, (g c), i1, i2]\noutput Y[n, c, i1, i2] = (1/G) * X[n, (g c), i1, i2]\n",
                     (3, 4, 5, 6), lambda X: X, id="group-average-one-group"),
        pytest.param("input X[n, g, c, i1]\noutput Y[n, c, i1] = X[n, g, c, i1]\n",
                     (3, 1, 4, 5), lambda X: X[:, 0], id="sum-over-size-1-leg"),
        pytest.param("input X[n, (g c)]\noutput Y[n, g, c] = X[n, (g c)]\n", (3, 4), lambda X: X[:, None], id="size-1-leg-kept"),
        pytest.param("input X[n, g, c, i1]\noutput Y[c, i1, n] = X[n, g, c, i1]\n",
                     (3, 1, 4, 5), lambda X: X[:, 0].permute(1, 2, 0), id="permuted"),
        pytest.param("input X[n, g, c, i1]\noutput Y[n, c, i1] = 2 * X[n, g, c, i1]\n",
                     (3, 1, 4, 5), lambda X: 2 * X[:, 0], id="scaled-not-in-place"),
        pytest.param("input X[n, (g c), i1, i2]\npattern P1[i1, o1, k1] = conv()\npattern P2[i2, o2, k2] = conv()\n"
                     "output Y[n, c, o1, o2] = (1/G) * X[n, (g c), i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2]\n",
                     (3, 4, 5, 6), lambda X: X, id="1x1-pooling-2d"),
        pytest.param("input X[n, c, i1]\npattern P[i1, o1, k1] = conv(dilation=3)\noutput Y[n, c, o1] = X[n, c, i1] * P[i1, o1, k1]\n",
                     (3, 4, 5), lambda X: X, id="1x1-pattern-1d-dilated"),
        pytest.param("input X[n, c, i1, i2, i3]\npattern P1[i1, o1, k1] = conv()\npattern P2[i2, o2, k2] = conv()\n"
                     "pattern P3[i3, o3, k3] = conv()\n"
                     "output Y[o3, n, c, o1, o2] = X[n, c, i1, i2, i3] * P1[i1, o1, k1] * P2[i2, o2, k2] * P3[i3, o3, k3]\n",
                     (3, 4, 5, 6, 2), lambda X: X.permute(4, 0, 1, 2, 3), id="1x1-pattern-3d-permuted"),
    ],
)
@pytest.mark.parametrize("simplified", [False, True], ids=["as-written", "simplified"])
def test_identity_is_a_view(body, shape, reference, simplified) -> None:
    """An identity (sums over size-1 legs only, 1x1 patterns of stride 1) computes nothing: its
    term is a view of the operand (same storage), priced at 0, the input left as it was."""
    X = rand(*shape, seed=31)
    kept = X.clone()
    source = check(IDENTITY_HEAD + body, dict(X=X), reference(X), "native view", simplified=simplified)
    scaled = "2 *" in body
    body_lines = source.split("def _eval_Y(")[1].split("\ndef ")[0]
    assert ("60 FLOPs, 120 elements moved" if scaled else "0 FLOPs, 0 elements moved") in body_lines, body_lines
    assert not re.search(r"einsum|avg_pool|clone|contiguous|copy_|mul_", body_lines), body_lines
    _, module, _ = build(IDENTITY_HEAD + body, STRATEGIES, simplified=simplified)
    result = module.Y(X=X)
    torch.testing.assert_close(X, kept, rtol=0, atol=0)  # not scaled in place
    assert (result.untyped_storage().data_ptr() == X.untyped_storage().data_ptr()) != scaled


def test_size_1_leg_alone_starts_no_reduction_step() -> None:
    """A leg only one operand carries is summed first (a step of its own) unless it has size 1:
    that step would copy the operand and save nothing."""
    text = IDENTITY_HEAD + "input X[n, g, c, i1]\ninput W[d, c]\nindex d: 2\noutput R[n, d, i1] = X[n, g, c, i1] * W[d, c]\n"
    X, W = rand(3, 1, 4, 5, seed=32), rand(2, 4, seed=33)
    source = check(text, dict(X=X, W=W), torch.einsum("ngci,dc->ndi", X, W), "einsum")
    assert "path [(0, 1)]" in source and source.count("torch.einsum(") == 1, source
