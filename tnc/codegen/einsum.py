"""The einsum target: one ``einsum`` call per term, operands named as in the file.

Grouped legs get one letter per index: an operand stored with a grouped axis ``(g c)`` is read
through a view with one axis per letter (listed in ``views``), and a grouped result is flattened.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import sympy

from tnc.codegen.names import einsum_letters
from tnc.errors import Diagnostic, Span, TncError
from tnc.ir import functions
from tnc.ir.functions import factor_text
from tnc.ir.network import Axes, Factor, Kind, axes_text
from tnc.ir.program import Program
from tnc.lowering.views import operand_view


@dataclass
class Operand:
    name: str
    axes: list[list[str]]  # the factor's legs, grouped as stored (a window lists its two legs)
    view: list[str]  # the size of each letter's axis
    text: str  # the factor as written in .tn, e.g. X[n, (g c), 2*o1 + k1]
    expression: str  # PyTorch code for the view with one axis per letter


@dataclass
class EinsumTerm:
    coefficient: str
    equation: str
    operands: list[Operand]


@dataclass
class EinsumOutput:
    name: str
    axes: list[list[str]]
    intermediate: bool
    terms: list[EinsumTerm]
    # An element-wise application f(A): the function applied to every entry of the terms' sum
    # (A itself), and the step as PyTorch code; None for a plain contraction.
    function: str | None = None
    expression: str | None = None


def _sizes(program: Program, axes: Axes) -> list[str]:
    return [str(program.size(leg)) for axis in axes for leg in axis]


def _expression(program: Program, factor: Factor) -> str:
    if factor.kind is Kind.DELTA and len(factor.axes) == 1:
        return f"torch.ones({program.axis_size(factor.axes[0])})"
    if factor.kind is Kind.DELTA:
        size = program.axis_size(factor.axes[0])
        dims = ", ".join(str(program.size(leg)) for axis in factor.axes for leg in axis)
        return f"torch.eye({size}).reshape({dims})"
    return operand_view(program, factor, factor.tensor, str) or factor.tensor


def _operand_name(factor: Factor) -> str:
    """The tensor's name; ``ones`` for the one-leg copy tensor that broadcasting adds."""
    return "ones" if factor.kind is Kind.DELTA and len(factor.axes) == 1 else factor.tensor


def _grouped(axes: Axes) -> bool:
    return any(len(axis) != 1 for axis in axes)


def einsum_outputs(program: Program) -> list[EinsumOutput]:
    """Every output, preceded by the defined tensors it needs, as einsum terms."""
    for name, samples in program.samples.items():
        message = f"'{name}' samples '{samples[0].leg}' (tensor dropout), drawn when the code runs: compile it with --target torch"
        raise TncError(program.source, [Diagnostic(samples[0].span or Span(1, 1), message)])
    result = []
    for name in program.uses().defined_order_of(program.outputs):
        network = program.definitions[name]
        legs = list(network.legs) + [leg for term in network.terms for f in term.product for leg in f.legs]
        if len(set(legs)) > 52:
            span = program.tensors[name].span or Span(1, 1)
            message = f"'{name}' has {len(set(legs))} distinct indices, but an einsum equation has only the 52 letters a-z, A-Z; compile it with --target torch"
            raise TncError(program.source, [Diagnostic(span, message)])
        letters = einsum_letters(legs)
        terms = []
        for term in network.terms:
            factors = term.product.factors
            inputs = ",".join("".join(letters[leg] for leg in f.legs) for f in factors)
            equation = f"{inputs}->{''.join(letters[leg] for leg in network.legs)}"
            operands = [
                Operand(_operand_name(f), [list(a) for a in f.axes], _sizes(program, f.axes), factor_text(f), _expression(program, f))
                for f in factors
            ]
            terms.append(EinsumTerm(str(program.concrete(term.coefficient)), equation, operands))
        output = EinsumOutput(name, [list(a) for a in network.axes], name not in program.outputs, terms)
        applied = functions.application(program, name)
        if applied is not None:
            output.function, output.expression = applied[0], functions.expression(*applied)
        result.append(output)
    return result


def pattern_parameters(program: Program) -> list[dict[str, object]]:
    rows = []
    for name, tensor in program.tensors.items():
        if tensor.kind is not Kind.PATTERN:
            continue
        size_in, size_out, kernel = program.pattern_sizes(name)
        left, right = tensor.pattern.pads(kernel)
        rows.append(
            {
                "name": name,
                "legs": list(tensor.legs),
                "summed_over_outputs": tensor.pattern.summed,
                "input_size": str(size_in),
                "output_size": str(size_out),
                "kernel_size": str(kernel),
                "stride": tensor.pattern.stride,
                "padding": [str(left), str(right)],
                "dilation": tensor.pattern.dilation,
                "output_padding": tensor.pattern.output_padding,
            }
        )
        if tensor.pattern.moded(kernel):  # absent: zeros
            rows[-1]["padding_mode"] = tensor.pattern.padding_mode
    return rows


def _line(name: str, first: bool, coefficient: sympy.Expr, call: str) -> str:
    if first:
        prefix = "" if coefficient == 1 else "-" if coefficient == -1 else f"{coefficient} * "
        return f"{name} = {prefix}{call}"
    if coefficient.could_extract_minus_sign():
        coefficient, op = -coefficient, "-="
    else:
        op = "+="
    return f"{name} {op} {'' if coefficient == 1 else f'{coefficient} * '}{call}"


def to_text(program: Program) -> str:
    lines = []
    for output in einsum_outputs(program):
        axes = tuple(tuple(a) for a in output.axes)
        if output.function is not None:
            lines += [f"# element-wise {output.name}[{axes_text(axes)}]", f"{output.name} = {output.expression}", ""]
            continue
        role = "intermediate" if output.intermediate else "output"
        lines.append(f"# {role} {output.name}[{axes_text(axes)}]")
        views = []
        for term in output.terms:
            for op in term.operands:
                note = f"{op.text} = {op.expression}"
                if op.expression != op.name and note not in views:
                    views.append(note)
        if _grouped(axes):
            views.append(f"the result [{', '.join(_sizes(program, axes))}] flattened to {output.name}[{axes_text(axes)}]")
        if views:
            lines.append("# views: " + "; ".join(views))
        if not output.terms:
            lines.append(f"{output.name} = zeros([{', '.join(_sizes(program, axes))}])")
        for position, term in enumerate(output.terms):
            operands = ", ".join(op.name for op in term.operands)
            call = f'einsum("{term.equation}", {operands})' if operands else "ones([])"  # a scalar term
            # parse with the program's symbols: plain sympify reads N, S, I, E, O, Q as sympy objects
            coefficient = sympy.sympify(term.coefficient, locals=dict(program.symbols))
            lines.append(_line(output.name, position == 0, coefficient, call))
        lines.append("")
    patterns = pattern_parameters(program)
    if patterns:
        lines.append("# index patterns: P[i, o, k] = 1 where i = stride*o + dilation*k - padding_left")
    if any("padding_mode" in row for row in patterns):
        lines.append("# (with padding_mode: where that is outside [0, I), the input position F.pad's mode reads there)")
    for row in patterns:
        mode = f", padding_mode={row['padding_mode']}" if "padding_mode" in row else ""
        lines.append(
            f"{row['name']} = conv(I={row['input_size']}, O={row['output_size']}, K={row['kernel_size']}, "
            f"stride={row['stride']}, padding=({row['padding'][0]}, {row['padding'][1]}), dilation={row['dilation']}{mode})"
            + (".sum(o)  # summed over its output leg" if row["summed_over_outputs"] else "")
        )
    return "\n".join(lines).rstrip() + "\n"


def to_json(program: Program) -> str:
    data = {
        "outputs": [{k: v for k, v in asdict(o).items() if v is not None or k not in ("function", "expression")} for o in einsum_outputs(program)],
        "patterns": pattern_parameters(program),
        "sizes": {name: str(program.size(name)) for name in program.index_sizes},
    }
    return json.dumps(data, indent=2) + "\n"
