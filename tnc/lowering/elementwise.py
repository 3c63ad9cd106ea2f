"""What an element-wise application ``f(A)`` costs: one FLOP per element, reading ``A`` once and
writing the result (:func:`tnc.cost.model.elementwise`), whatever ``f`` is."""

from __future__ import annotations

from tnc.cost import model
from tnc.cost.model import Cost, Size
from tnc.ir.program import Program


def application_cost(program: Program, name: str, size: Size | None = None) -> Cost:
    """The price of applying ``name``'s function, or nothing where ``name`` is no application."""
    tensor = program.tensors[name]
    if not tensor.function:
        return Cost()
    return model.elementwise(model.elements(tensor.legs, size or program.size))
