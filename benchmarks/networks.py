"""The ``.tn`` programs of the benchmark, written per layer and operation, and their compilation.

Five operations per layer (shared/reference/operations.md):

- ``forward``: ``Y = X * P1 * P2 * W`` (a convolution, bias-free);
- ``input_vjp``: ``derive_program(program, wrt="X", vjp_seed="V")`` of the forward network;
- ``weight_vjp``: ``derive_program(program, wrt="W", vjp_seed="V")``;
- ``kfc``: the KFC / KFAC-expand input factor, one factor per group, ``1/N`` normalised;
- ``kfac_reduce``: the KFAC-reduce input factor, one factor per group, ``1/(N (O1 O2)^2)``.

All sizes, the batch size included, are written into the program, so tnc plans the contraction
order for the real sizes (as ``--size`` does on the command line).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Callable

from benchmarks.layers import Layer

OPERATIONS = ("forward", "input_vjp", "weight_vjp", "kfc", "kfac_reduce")
TITLES = {
    "forward": "forward (convolution)",
    "input_vjp": "input VJP",
    "weight_vjp": "weight VJP",
    "kfc": "KFC factor",
    "kfac_reduce": "KFAC-reduce factor",
}


def _pattern_args(stride: int, padding: int) -> str:
    args = []
    if stride != 1:
        args.append(f"stride={stride}")
    if padding:
        args.append(f"padding={padding}")
    return f"conv({', '.join(args)})"


def header(layer: Layer, batch: int, output_sizes: bool = False) -> list[str]:
    """Sizes, indices, the input X and the two index patterns of ``layer``."""
    G = layer.groups
    (K1, K2), (S1, S2), (P1, P2), (I1, I2) = layer.kernel, layer.stride, layer.padding, layer.size
    O1, O2 = layer.out_size
    sizes = [f"C = {layer.c_in // G}", f"D = {layer.c_out // G}", f"I1 = {I1}", f"I2 = {I2}"]
    indices = ["n: N", "c: C", "d: D", "i1: I1", "i2: I2", f"k1: {K1}", f"k2: {K2}"]
    if layer.spelling == "torch":  # depthwise in PyTorch's layout: c is the group leg, W[c, one, k1, k2]
        sizes[:2] = [f"C = {layer.c_in}"] + ([f"M = {layer.c_out // G}"] if layer.c_out != G else [])
        indices[1:3] = ["c: C", "one: 1"] + (["m: M"] if layer.c_out != G else [])
    elif G > 1:
        sizes.insert(0, f"G = {G}")
        indices.insert(1, "g: G")
    if output_sizes:
        sizes += [f"O1 = {O1}", f"O2 = {O2}"]
        indices += ["o1: O1", "o2: O2"]
    return [
        f"# {layer.name} (cnn-layers.md row {layer.id}, {layer.kind}): {layer.describe()}, batch {batch}",
        f"size N = {batch}",
        f"size {', '.join(sizes)}",
        f"index {', '.join(indices)}",
        "",
        f"input X[n, {_channels(layer, 'c')}, i1, i2]",
        f"pattern P1[i1, o1, k1] = {_pattern_args(S1, P1)}",
        f"pattern P2[i2, o2, k2] = {_pattern_args(S2, P2)}",
    ]


def _channels(layer: Layer, leg: str) -> str:
    """The channel axis of X (``leg`` c), Y (d) or the first of W (d), as the spelling writes it."""
    if layer.spelling == "torch":
        prime = leg[1:]
        return f"c{prime}" if leg[0] == "c" or layer.c_out == layer.groups else f"(c m{prime})"
    return f"(g {leg})" if layer.groups > 1 else leg


def forward_text(layer: Layer, batch: int) -> str:
    lines = header(layer, batch)
    w = f"W[{_channels(layer, 'd')}, {'one' if layer.spelling == 'torch' else 'c'}, k1, k2]"
    lines.insert(6, f"param {w}")
    lines.append(
        f"output Y[n, {_channels(layer, 'd')}, o1, o2] = X[n, {_channels(layer, 'c')}, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * {w}"
    )
    return "\n".join(lines) + "\n"


def _factor_text(layer: Layer, batch: int, reduce: bool) -> str:
    lines = header(layer, batch, output_sizes=reduce)
    if layer.spelling == "torch":  # one factor per channel c: A[c, (k1 k2), (k1' k2')]
        o1, o2 = ("o1'", "o2'") if reduce else ("o1", "o2")
        coefficient = "(1/(N*(O1*O2)**2))" if reduce else "(1/N)"
        lines.append(
            f"output A[c, (k1 k2), (k1' k2')] = {coefficient} * X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2]"
            f" * X[n, c, i1', i2'] * P1[i1', {o1}, k1'] * P2[i2', {o2}, k2']"
        )
        return "\n".join(lines) + "\n"
    g = "g, " if layer.groups > 1 else ""
    o1, o2 = ("o1'", "o2'") if reduce else ("o1", "o2")
    coefficient = "(1/(N*(O1*O2)**2))" if reduce else "(1/N)"
    first, second = _channels(layer, "c"), _channels(layer, "c'")
    lines.append(
        f"output A[{g}(c k1 k2), (c' k1' k2')] = {coefficient} * X[n, {first}, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2]"
        f" * X[n, {second}, i1', i2'] * P1[i1', {o1}, k1'] * P2[i2', {o2}, k2']"
    )
    return "\n".join(lines) + "\n"


def source_text(layer: Layer, op: str, batch: int) -> str:
    """The ``.tn`` text tnc compiles for ``op`` (the VJPs are derived from the forward text)."""
    if op in ("forward", "input_vjp", "weight_vjp"):
        return forward_text(layer, batch)
    if op == "kfc":
        return _factor_text(layer, batch, reduce=False)
    if op == "kfac_reduce":
        return _factor_text(layer, batch, reduce=True)
    raise ValueError(op)


@dataclass
class Compiled:
    """One compiled operation: the generated source and its output function."""

    layer: Layer
    op: str
    text: str  # the .tn program after derivation (before simplification)
    source: str  # the generated PyTorch module
    function: Callable
    parameters: list[str]  # the function's argument names
    seconds: float  # compile time: parse, derive, simplify, generate, exec

    def __call__(self, tensors: dict):
        return self.function(**{p: tensors[p] for p in self.parameters})


def compile_op(layer: Layer, op: str, batch: int) -> Compiled:
    """Build the program with the Python API, derive (for the VJPs), simplify, generate, exec."""
    import time

    from tnc.codegen.tn import to_tn
    from tnc.codegen.torch_module import to_torch_source
    from tnc.frontend import compile_source
    from tnc.passes.derive import derive_program
    from tnc.passes.simplify import simplify

    start = time.perf_counter()
    stem = f"layer{layer.id}{'' if layer.spelling == 'standard' else '_' + layer.spelling}_{op}"
    program = compile_source(source_text(layer, op, batch), f"{stem}.tn")
    if op == "input_vjp":
        derive_program(program, wrt="X", vjp_seed="V")
    elif op == "weight_vjp":
        derive_program(program, wrt="W", vjp_seed="V")
    text = to_tn(program)
    simplify(program)
    source = to_torch_source(program, stem)
    module = types.ModuleType(stem)
    exec(compile(source, f"<tnc {stem}>", "exec"), module.__dict__)
    (output,) = program.outputs
    function = getattr(module, output)
    seconds = time.perf_counter() - start
    parameters = list(inspect.signature(function).parameters)
    return Compiled(layer, op, text, source, function, parameters, seconds)
