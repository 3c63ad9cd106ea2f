"""Property test (issue #9): random networks compile without internal errors and agree with a dense
reference, with and without the rewrite passes, in both targets.

Hypothesis draws a network: 1 to 3 spatial axes, each a forward, transposed or summed pattern
with its own kernel, stride (kernel = stride and stride > kernel on purpose), padding and
dilation, grouped channels, free or bound sizes (bound with ``sizes=``, zero paddings included),
and one of several operations: a convolution, a sum of terms, a KFC or KFAC-reduce factor, or a
derivative of one (``grad``, ``vjp``, ``jvp``). Each is compiled

- as written with lowering strategies off (``to_torch_source(program, strategies=())``) and on,
- simplified, with strategies off and on, and to the einsum target (evaluated from its operands'
  view expressions and hand-built patterns),

and every result is compared in float64 with :func:`dense`, an evaluator written here that
contracts the checked program's networks with explicit 0/1 pattern tensors (``torch.einsum``).
"""

from __future__ import annotations

import inspect
import math
import os
import types
from dataclasses import dataclass

import sympy
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tnc.codegen.einsum import einsum_outputs, pattern_parameters
from tnc.codegen.names import einsum_letters
from tnc.codegen.tn import to_tn
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.ir.network import Kind, Window
from tnc.passes.simplify import simplify

TOLERANCE = dict(atol=1e-9, rtol=1e-9)
FREE = {"N": 2, "C": 2}  # values of the free sizes at run time (spatial ones are drawn)
# TNC_EXAMPLES=N runs N examples per property; TNC_RANDOMIZE=1 draws new ones (CI: fixed ones)
SETTINGS = dict(
    deadline=None,
    derandomize=not os.environ.get("TNC_RANDOMIZE"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ============================================================================ the networks


@dataclass(frozen=True)
class Axis:
    role: str  # "forward": data on i; "transposed": data on o (i inferred); "summed": M[i, k]
    size: int  # I (forward, summed) or O (transposed)
    kernel: int
    stride: int
    padding: tuple[int, int]
    dilation: int
    free: bool  # the data's spatial size is a free size, read from the input's shape

    def arguments(self) -> str:
        left, right = self.padding
        padding = f"{left}" if left == right else f"({left}, {right})"
        return f"conv(stride={self.stride}, padding={padding}, dilation={self.dilation})"

    def output(self) -> int:
        left, right = self.padding
        return (self.size + left + right - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def transposed_input(self) -> int:
        left, right = self.padding
        return (self.size - 1) * self.stride - left - right + self.dilation * (self.kernel - 1) + 1


@dataclass(frozen=True)
class Net:
    axes: tuple[Axis, ...]
    groups: int
    channels: int  # per group (free: a size C read from the input)
    outputs: int
    free_channels: bool
    operation: str
    bind_padding: bool  # padding through a size P bound with sizes= (0 included)

    def text(self) -> str:
        dims = range(1, len(self.axes) + 1)
        lines = ["size N", f"size G = {self.groups}, D = {self.outputs}"]
        lines.append("size C" if self.free_channels else f"size C = {self.channels}")
        index = ["n: N", "g: G", "c: C", "d: D"]
        for a, axis in zip(dims, self.axes):
            data_leg = "o" if axis.role == "transposed" else "i"
            lines.append(f"size S{a}" if axis.free else f"size S{a} = {axis.size}")
            index += [f"{data_leg}{a}: S{a}", f"k{a}: {axis.kernel}"]
            if self.bind_padding:
                lines.append(f"size P{a}")
        lines.append("index " + ", ".join(index))
        for a, axis in zip(dims, self.axes):
            args = axis.arguments()
            if self.bind_padding:
                args = args.replace(f"padding={axis.padding[0]}", f"padding=P{a}")
            legs = f"i{a}, k{a}" if axis.role == "summed" else f"i{a}, o{a}, k{a}"
            lines.append(f"pattern Q{a}[{legs}] = {args}")
        return "\n".join(lines + self.equations()) + "\n"

    def sizes(self) -> dict[str, int]:
        return {f"P{a}": axis.padding[0] for a, axis in enumerate(self.axes, start=1)} if self.bind_padding else {}

    def legs(self, prime: str = "", shared_o: bool = False, summed: str = "") -> tuple[str, str, str]:
        """The data's spatial legs, the patterns, and the result's spatial legs; ``prime`` marks
        every leg (but the output legs if ``shared_o``), ``summed`` only the summed ones."""
        data, patterns, result = [], [], []
        for a, axis in enumerate(self.axes, start=1):
            i, o, k = f"i{a}{prime}", f"o{a}{'' if shared_o else prime}", f"k{a}{prime}"
            if axis.role == "summed":
                i = i + summed
                data.append(i)
                patterns.append(f"Q{a}[{i}, {k}]")
                result.append(k)
                continue
            if axis.role == "transposed":
                o, k = o + summed, k + summed
            else:
                i, k = i + summed, k + summed
            data.append(o if axis.role == "transposed" else i)
            patterns.append(f"Q{a}[{i}, {o}, {k}]")
            result.append(i if axis.role == "transposed" else o)
        return ", ".join(data), " * ".join(patterns), ", ".join(result)

    def kernels(self, prime: str = "", summed: str = "") -> str:
        return ", ".join(f"k{a}{prime}{summed if axis.role != 'summed' else ''}" for a, axis in enumerate(self.axes, start=1))

    def conv(self, weight: str = "W", summed: str = "") -> str:
        data, patterns, _ = self.legs(summed=summed)
        c = "c" + summed
        return f"X[n, (g {c}), {data}] * {patterns} * {weight}[(g d), {c}, {self.kernels(summed=summed)}]"

    def equations(self) -> list[str]:
        data, patterns, result = self.legs()
        kernels = self.kernels()
        declare = [f"input X[n, (g c), {data}]", f"param W[(g d), c, {kernels}]", f"param W2[(g d), c, {kernels}]"]
        forward = f"Y[n, (g d), {result}] = {self.conv()}"
        seeds = [f"input V[n, (g d), {result}]", f"input U[(g d), c, {kernels}]", f"input UX[n, (g c), {data}]"]
        op = self.operation
        if op == "conv":
            return declare + ["output " + forward]
        if op == "two_terms":  # a second weight, and the first product again with other summed names
            return declare + [f"output {forward} - (1/2) * {self.conv('W2')} + 3 * {self.conv(summed='x')}"]
        flat = " ".join(f"k{a}" for a in range(1, len(self.axes) + 1))
        flat2 = " ".join(f"k{a}'" for a in range(1, len(self.axes) + 1))
        if op in ("kfc", "kfac", "kfc_vjp"):
            data2, patterns2, _ = self.legs("'", shared_o=op != "kfac")
            scale = "" if op == "kfc_vjp" else "(1/N) * "
            factor = f"A[g, (c {flat}), (c' {flat2})] = {scale}X[n, (g c), {data}] * {patterns} * X[n, (g c'), {data2}] * {patterns2}"
            head = declare[:1] + [f"input V[g, (c {flat}), (c' {flat2})]"]
            if op == "kfc_vjp":
                return head + [factor, f"output R[n, (g c), {data}] = vjp(A, X, V)"]
            return head + ["output " + factor]
        fresh_k = ", ".join(f"ka{a}" for a in range(1, len(self.axes) + 1))
        fresh_data = ", ".join(f"{leg}a" for leg in data.split(", "))
        derived = {
            "grad_W": f"output R[n, (g d), {result}, (ga da), ca, {fresh_k}] = grad(Y, W)",
            "vjp_W": f"output R[(ga da), ca, {fresh_k}] = vjp(Y, W, V)",
            "vjp_X": f"output R[n, (ga ca), {fresh_data}] = vjp(Y, X, V)",
            "grad_X": f"output R[n, (g d), {result}, na, (ga ca), {fresh_data}] = grad(Y, X)",
            "jvp_W": f"output R[n, (g d), {result}] = jvp(Y, W, U)",
            "jvp_X": f"output R[n, (g d), {result}] = jvp(Y, X, UX)",
        }
        return declare + seeds + [forward, derived[op]]


@st.composite
def axes(draw, role: str) -> Axis:
    shape = draw(st.sampled_from(["general", "kernel=stride", "stride>kernel", "1x1"]))
    if shape == "kernel=stride":
        kernel = draw(st.integers(1, 3))
        stride, padding, dilation = kernel, (0, 0), 1
    elif shape == "stride>kernel":
        kernel = draw(st.integers(1, 2))
        stride, padding, dilation = draw(st.integers(kernel + 1, 3)), (0, 0), 1
    elif shape == "1x1":
        kernel, stride, padding, dilation = 1, draw(st.integers(1, 2)), (0, 0), 1
    else:
        kernel, stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        padding = draw(st.sampled_from([(0, 0), (1, 1), (2, 2), (0, 1), (1, 0)]))
    axis = Axis(role, draw(st.integers(1, 7)), kernel, stride, padding, dilation, draw(st.booleans()))
    assume((axis.transposed_input() if role == "transposed" else axis.output()) >= 1)
    return axis


OPERATIONS = ("conv", "two_terms", "kfc", "kfac", "kfc_vjp", "grad_W", "grad_X", "vjp_W", "vjp_X", "jvp_W", "jvp_X")


@st.composite
def networks(draw, operations: tuple[str, ...] = OPERATIONS) -> Net:
    operation = draw(st.sampled_from(operations))
    dim = draw(st.sampled_from([1, 1, 2, 2, 3]))
    roles = ["forward", "transposed", "summed"]
    axes_ = tuple(draw(axes(draw(st.sampled_from(roles)))) for _ in range(dim))
    if dim == 3:
        assume(all(a.size <= 4 for a in axes_))
    bind = draw(st.booleans()) and all(a.padding[0] == a.padding[1] for a in axes_)
    return Net(axes_, draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.booleans()), operation, bind)


# ============================================================================ the dense reference


def _pattern(spec, I: int, O: int, K: int) -> torch.Tensor:
    """Π[i, o, k] = [i = stride*o + dilation*k - left], entry by entry."""
    left = int(spec.pads(sympy.Integer(K))[0])
    P = torch.zeros(I, O, K, dtype=torch.float64)
    for o in range(O):
        for k in range(K):
            i = spec.stride * o + spec.dilation * k - left
            if 0 <= i < I:
                P[i, o, k] = 1
    return P


def _value(program, expr, free: dict) -> sympy.Expr:
    return program.concrete(expr).subs({program.symbols[n]: v for n, v in free.items() if n in program.symbols})


def dense(program, inputs: dict[str, torch.Tensor], free: dict[str, int]) -> dict[str, torch.Tensor]:
    """Every defined tensor of ``program`` (as checked, before any pass), by one einsum per term."""
    size = {leg: int(_value(program, s, free)) for leg, s in program.index_sizes.items()}
    values = dict(inputs)
    for name, tensor in program.tensors.items():
        if tensor.kind is Kind.PATTERN:
            (i,), *_, (k,) = tensor.axes
            if tensor.pattern.summed:
                O = int(_value(program, tensor.pattern.output_size(program.size(i), program.size(k)), free))
                values[name] = _pattern(tensor.pattern, size[i], O, size[k]).sum(1)
            else:
                values[name] = _pattern(tensor.pattern, size[i], size[tensor.axes[1][0]], size[k])
    for name in program.uses().defined_order_of(program.outputs):
        network = program.definitions[name]
        shape = [size[leg] for leg in network.legs]
        total = torch.zeros(shape, dtype=torch.float64)
        for term in network.terms:
            letters = einsum_letters([leg for f in term.product for leg in f.legs] + list(network.legs))
            operands, subscripts = [], []
            for factor in term.product:
                assert not any(isinstance(a, Window) for a in factor.axes)
                legs = [size[leg] for leg in factor.legs]
                if factor.kind is Kind.DELTA:
                    first = [size[leg] for leg in factor.axes[0]]
                    operands.append(torch.eye(int(torch.tensor(first).prod()), dtype=torch.float64).reshape(legs))
                else:
                    operands.append(values[factor.tensor].reshape(legs))
                subscripts.append("".join(letters[leg] for leg in factor.legs))
            equation = ",".join(subscripts) + "->" + "".join(letters[leg] for leg in network.legs)
            total = total + float(_value(program, term.coefficient, free)) * torch.einsum(equation, *operands)
        values[name] = total.reshape([int(torch.tensor([size[leg] for leg in axis]).prod()) for axis in network.axes])
    return {name: values[name] for name in program.outputs}


# ============================================================================ the compiled results


def _call(function, inputs: dict[str, torch.Tensor], free: dict[str, int]) -> torch.Tensor:
    accepted = inspect.signature(function).parameters
    return function(**{k: v for k, v in {**inputs, **free}.items() if k in accepted})


def torch_results(program, inputs, free, strategies=None) -> dict[str, torch.Tensor]:
    source = to_torch_source(program, "random") if strategies is None else to_torch_source(program, "random", strategies)
    module = types.ModuleType("tnc_random_network")
    exec(compile(source, "<random network>", "exec"), module.__dict__)
    return {name: _call(getattr(module, name), inputs, free) for name in program.outputs}


def einsum_results(program, inputs, free) -> dict[str, torch.Tensor]:
    """The einsum target: each operand's view expression evaluated, hand-built patterns."""
    symbols = {n: v for n, v in free.items() if n in program.symbols}
    number = {}
    for row in pattern_parameters(program):
        I, O, K = (int(_number(program, row[key], symbols)) for key in ("input_size", "output_size", "kernel_size"))
        P = _pattern(program.tensors[row["name"]].pattern, I, O, K)
        number[row["name"]] = P.sum(1) if row["summed_over_outputs"] else P
    namespace = {"torch": torch, "max": max, "floor": math.floor, **symbols, **inputs, **number}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch.eye in a delta's view
    try:
        for output in einsum_outputs(program):
            stored = [int(program.axis_size(tuple(a)).subs(_symbols(program, symbols))) for a in output.axes]
            total = torch.zeros(stored, dtype=torch.float64)
            for term in output.terms:
                views = [eval(op.expression, namespace) for op in term.operands]  # noqa: S307 - generated by tnc
                coefficient = float(_number(program, term.coefficient, symbols))
                total = total + coefficient * torch.einsum(term.equation, *views).reshape(stored)
            namespace[output.name] = total
    finally:
        torch.set_default_dtype(previous)
    return {name: namespace[name] for name in program.outputs}


def _symbols(program, values: dict[str, int]) -> dict:
    return {program.symbols[n]: v for n, v in values.items()}


def _number(program, text: str, values: dict[str, int]) -> sympy.Expr:
    """A size or coefficient as the einsum target writes it, at the free sizes' values."""
    return sympy.sympify(text, locals=dict(program.symbols)).subs(_symbols(program, values))


def check(net: Net, seed: int) -> None:
    text = net.text()
    program = compile_source(text, "random.tn", net.sizes())
    free = dict(FREE)
    for a, axis in enumerate(net.axes, start=1):
        free[f"S{a}"] = axis.size
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, tensor in program.tensors.items():
        if tensor.kind in (Kind.INPUT, Kind.PARAM):
            shape = [int(_value(program, program.axis_size(axis), free)) for axis in tensor.axes]
            inputs[name] = torch.randn(shape, generator=generator, dtype=torch.float64)
    free = {n: v for n, v in free.items() if n in program.symbols and program.symbols[n] not in program.bindings}
    reference = dense(program, inputs, free)
    results = {
        "as written, strategies off": torch_results(program, inputs, free, ()),
        "as written": torch_results(program, inputs, free),
    }
    simplify(program)
    compile_source(to_tn(program), "simplified.tn")  # the simplified file re-checks (sizes bound in it)
    results["simplified, strategies off"] = torch_results(program, inputs, free, ())
    results["simplified"] = torch_results(program, inputs, free)
    results["simplified, einsum target"] = einsum_results(program, inputs, free)
    for what, got in results.items():
        for name, expected in reference.items():
            assert got[name].shape == expected.shape, (what, name, got[name].shape, expected.shape, text)
            torch.testing.assert_close(got[name], expected, **TOLERANCE, msg=lambda m: f"{what}, {name}: {m}\n{text}")


# ============================================================================ the properties


@settings(max_examples=int(os.environ.get("TNC_EXAMPLES", 120)), **SETTINGS)
@given(net=networks(("conv", "two_terms")), seed=st.integers(0, 2**16))
def test_random_convolutions_and_sums(net: Net, seed: int):
    check(net, seed)


@settings(max_examples=int(os.environ.get("TNC_EXAMPLES", 80)), **SETTINGS)
@given(net=networks(("kfc", "kfac", "kfc_vjp")), seed=st.integers(0, 2**16))
def test_random_kfac_factors(net: Net, seed: int):
    check(net, seed)


@settings(max_examples=int(os.environ.get("TNC_EXAMPLES", 120)), **SETTINGS)
@given(net=networks(("grad_W", "grad_X", "vjp_W", "vjp_X", "jvp_W", "jvp_X")), seed=st.integers(0, 2**16))
def test_random_derivatives(net: Net, seed: int):
    check(net, seed)
