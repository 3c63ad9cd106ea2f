"""``sample LEG in TENSOR with keep=P[, by=OPERAND][, min=M]``: tensor dropout, checked.

The statement marks a leg that ``TENSOR``'s definition sums over (after the file's own
derivatives are formed, so ``G = vjp(Y, W, V)`` can be sampled). It is refused, with the reason,
where the estimate would not be one: an open leg (sampling it drops entries of the result), a leg
the definition does not sum over, a leg of a delta, a keep probability outside (0, 1], ``by``
naming no operand that carries the leg, a minimum that is not a positive integer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tnc.frontend import ast
from tnc.ir.network import Kind
from tnc.ir.program import Sample

if TYPE_CHECKING:
    from tnc.frontend.checker import Checker

ARGUMENTS = ("keep", "by", "min")


def sample_options(checker: Checker, decl: ast.SampleDecl) -> Sample | None:
    """The statement's leg and options, not yet checked against the tensor (None after an error)."""
    for word, expected in zip(decl.words, ("in", "with")):
        if word.text != expected:
            checker.error(word.span, f"expected '{expected}' here: sample LEG in TENSOR with keep=P")
            return None
    given = {}
    for arg in decl.args:
        key = arg.name.text
        if key not in ARGUMENTS:
            checker.error(arg.name.span, f"unknown argument '{key}' of sample; it takes {', '.join(ARGUMENTS)}")
            return None
        if key in given:
            checker.error(arg.name.span, f"'{key}' is given twice")
            return None
        given[key] = arg.value
    if "keep" not in given:
        checker.error(decl.span, "sample needs keep=P, the probability of keeping each slice (0 < P <= 1)")
        return None
    by = given.get("by")
    if by is not None and not isinstance(by, ast.Symbol):
        checker.error(decl.span, "by= names a tensor of the sampled product (the slices' norms set the probabilities)")
        return None
    if isinstance(given["keep"], ast.Symbol) and given["keep"].name in checker.program.tensors:
        checker.error(given["keep"].span, "keep= is a probability, a number in (0, 1]")
        return None
    keep = checker.scalar(given["keep"], what="keep")
    if keep is None:
        return None
    if not keep.is_number or not 0 < keep <= 1:
        checker.error(given["keep"].span, f"keep must be a number in (0, 1], not {keep}")
        return None
    minimum = 0
    if "min" in given:
        value = checker.scalar(given["min"], what="min")
        if value is None:
            return None
        if not value.is_Integer or value < 1:
            checker.error(given["min"].span, f"min must be a positive integer, the fewest slices kept, not {value}")
            return None
        minimum = int(value)
    return Sample(decl.leg.text, float(keep), by.name if by is not None else None, minimum, decl.span)


def check_sample(checker: Checker, decl: ast.SampleDecl, sample: Sample) -> Sample | None:
    """The statement as a :class:`~tnc.ir.program.Sample` of its tensor, once every definition
    (derivatives included) exists; None after an error."""
    program, leg, name, by = checker.program, sample.leg, decl.tensor.text, sample.by
    network = program.definitions.get(name)
    if network is None or program.tensors[name].function:
        what = f"'{name}' is not a defined tensor" if name not in program.tensors else f"'{name}' is not defined by an equation"
        checker.error(decl.tensor.span, f"{what}; sample a leg that the definition of a tensor sums over")
        return None
    if leg in network.legs:
        checker.error(decl.leg.span, f"'{leg}' is an open leg of '{name}': sampling it would drop entries of the result instead of estimating them; sample a leg that '{name}' sums over")
        return None
    carriers = [f for term in network.terms for f in term.product if leg in f.legs]
    if not carriers:
        checker.error(decl.leg.span, f"'{name}' does not sum over '{leg}' (its definition reads {', '.join(sorted(network.tensors())) or 'no tensor'}); sample the leg in the tensor whose definition sums it")
        return None
    for factor in carriers:
        if factor.kind is Kind.DELTA:
            checker.error(decl.leg.span, f"'{leg}' is a leg of a delta in '{name}'; only legs of tensors can be sampled")
            return None
    if by is not None and by not in {f.tensor for f in carriers}:
        checker.error(decl.span, f"by={by}: '{by}' carries no leg '{leg}' in the definition of '{name}'")
        return None
    if any(s.leg == leg for s in program.samples.get(name, ())):
        checker.error(decl.leg.span, f"'{leg}' of '{name}' is sampled twice")
        return None
    return sample


__all__ = ["check_sample", "sample_options"]
