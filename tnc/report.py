"""``tnc check``: a table of every size, index and tensor with its legs and sizes."""

from __future__ import annotations

from tnc.ir.network import Kind, axes_text
from tnc.ir.program import Program


def describe(program: Program) -> str:
    lines = ["sizes:"]
    for name, symbol in program.symbols.items():
        value = program.bindings.get(symbol)
        lines.append(f"  {name} = {value}" if value is not None else f"  {name} (free)")
    lines.append("indices:")
    for name in program.index_sizes:
        lines.append(f"  {name}: {program.size(name)}")
    lines.append("tensors:")
    rows = []
    for name, tensor in program.tensors.items():
        kind = tensor.kind.value
        if tensor.kind is Kind.DEFINED:
            kind = "output" if name in program.outputs else "function" if tensor.function else "defined"
        legs = f"{name}[{axes_text(tensor.axes)}]"
        if tensor.pattern is not None:
            legs += f" = {tensor.pattern.arguments()}"
        shape = "[" + ", ".join(str(program.axis_size(axis)) for axis in tensor.axes) + "]"
        rows.append((kind, legs, shape))
    width = max((len(legs) for _, legs, _ in rows), default=0)
    for kind, legs, shape in rows:
        lines.append(f"  {kind:<8}{legs:<{width}}  shape {shape}")
    return "\n".join(lines) + "\n"
