"""Property tests: grad, vjp and jvp of random multilinear networks agree with torch.func.

Each draw is a small network written as `.tn` text: 2 to 4 declared tensors (inputs and params,
1 to 3 legs each, sometimes two legs grouped into one storage axis) over a pool of 4 or 5
indices of sizes 2 to 4; a defined tensor that is a sum of 1 to 3 terms, each a small integer
or rational coefficient times a product of 1 to 3 factors (the same tensor may occur several
times, so the product rule matters; an index may repeat inside a factor, a diagonal); its
result legs are indices that every term carries. Optionally a second defined tensor uses the
first one as a factor (the chain rule through expansion). One declared tensor is the variable.

The reference evaluates the same network directly with ``torch.einsum`` here (not through tnc's
code generation) as a function of the variable, and applies ``torch.func.jacrev`` / ``vjp`` /
``jvp``; everything is float64 and must agree at 1e-10.
"""

from __future__ import annotations

import inspect
import string
import types
from dataclasses import dataclass
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import jacrev, jvp, vjp

from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.simplify import simplify

TOLERANCE = dict(atol=1e-10, rtol=1e-10)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func.jvp
COEFFICIENTS = [Fraction(1), Fraction(-1), Fraction(2), Fraction(-3), Fraction(1, 2), Fraction(-2, 3), Fraction(3, 4)]
POOL = "abcde"
DECLARED = ["A", "B", "C", "E"]

Axes = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    kind: str  # input or param
    axes: Axes  # legs grouped into storage axes


@dataclass(frozen=True)
class Factor:
    tensor: str
    axes: Axes  # as the declaration (or definition) groups them, with this factor's leg names


@dataclass(frozen=True)
class Term:
    coefficient: Fraction
    factors: tuple[Factor, ...]


@dataclass(frozen=True)
class Definition:
    name: str
    axes: Axes
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class Spec:
    sizes: dict  # index -> size
    tensors: tuple[Tensor, ...]
    definitions: tuple[Definition, ...]  # the last one is differentiated
    variable: str

    # ------------------------------------------------------------------ .tn text
    def text(self, forms: str = "grad vjp jvp") -> str:
        lines = ["# drawn by tests/test_derive_properties.py"]
        lines.append("index " + ", ".join(f"{name}: {size}" for name, size in self.sizes.items()))
        variable = self.tensor(self.variable)
        # legs for the variable's copy in the results: declared, so a zero derivative has sizes too
        copies = self.variable_copies()
        lines.append("index " + ", ".join(f"{copy}: {self.sizes[leg]}" for leg, copy in zip(_flat(variable.axes), _flat(copies))))
        for tensor in self.tensors:
            lines.append(f"{tensor.kind} {tensor.name}[{_axes(tensor.axes)}]")
        target = self.definitions[-1]
        lines.append(f"input V[{_axes(target.axes)}]")
        lines.append(f"input U[{_axes(copies)}]")
        for definition in self.definitions:
            lines.append(f"{definition.name}[{_axes(definition.axes)}] = {_terms(definition.terms)}")
        out = _axes(target.axes)
        both = ", ".join(part for part in (out, _axes(copies)) if part)
        if "grad" in forms.split():
            lines.append(f"output J[{both}] = grad({target.name}, {self.variable})")
        if "vjp" in forms.split():
            lines.append(f"output G[{_axes(copies)}] = vjp({target.name}, {self.variable}, V)")
        if "jvp" in forms.split():
            lines.append(f"output T[{out}] = jvp({target.name}, {self.variable}, U)")
        if "hessian" in forms.split():
            seconds = tuple(tuple(leg + "2" for leg in axis) for axis in copies)
            lines.insert(2, "index " + ", ".join(f"{c}2: {self.sizes[leg]}" for leg, c in zip(_flat(variable.axes), _flat(copies))))
            legs = ", ".join(part for part in (out, _axes(copies), _axes(seconds)) if part)
            lines.append(f"output H[{legs}] = grad(grad({target.name}, {self.variable}), {self.variable})")
        return "\n".join(lines) + "\n"

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def variable_copies(self) -> Axes:
        return tuple(tuple(f"{leg}_v{position}" for position, leg in enumerate(axis)) for axis in self.tensor(self.variable).axes)

    # ------------------------------------------------------------------ reference
    def storage_shape(self, axes: Axes) -> tuple[int, ...]:
        return tuple(_product(self.sizes[leg] for leg in axis) for axis in axes)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {t.name: self.storage_shape(t.axes) for t in self.tensors}
        shapes["V"] = self.storage_shape(self.definitions[-1].axes)
        shapes["U"] = self.storage_shape(self.tensor(self.variable).axes)
        return shapes

    def evaluate(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last definition, term by term with torch.einsum (one leg per einsum letter)."""
        known = dict(values)
        axes_of = {t.name: t.axes for t in self.tensors}
        for definition in self.definitions:
            letters = {}
            total = torch.zeros(self.storage_shape(definition.axes), dtype=torch.float64)
            for term in definition.terms:
                operands, subscripts = [], []
                for factor in term.factors:
                    legs = _flat(factor.axes)
                    declared = _flat(axes_of[factor.tensor])
                    operands.append(known[factor.tensor].reshape([self.sizes[leg] for leg in declared]))
                    subscripts.append("".join(letters.setdefault(leg, string.ascii_letters[len(letters)]) for leg in legs))
                out = "".join(letters[leg] for leg in _flat(definition.axes))
                value = torch.einsum(",".join(subscripts) + "->" + out, *operands)
                total = total + float(term.coefficient) * value.reshape(total.shape)
            known[definition.name] = total
            axes_of[definition.name] = definition.axes
        return known[self.definitions[-1].name]


def _product(numbers) -> int:
    result = 1
    for n in numbers:
        result *= n
    return result


def _flat(axes: Axes) -> tuple[str, ...]:
    return tuple(leg for axis in axes for leg in axis)


def _axes(axes: Axes) -> str:
    return ", ".join(axis[0] if len(axis) == 1 else f"({' '.join(axis)})" for axis in axes)


def _terms(terms: tuple[Term, ...]) -> str:
    text = ""
    for position, term in enumerate(terms):
        magnitude = abs(term.coefficient)
        sign = ("-" if term.coefficient < 0 else "") if position == 0 else (" - " if term.coefficient < 0 else " + ")
        scale = "" if magnitude == 1 else (f"{magnitude} * " if magnitude.denominator == 1 else f"({magnitude}) * ")
        factors = " * ".join(f"{f.tensor}[{_axes(f.axes)}]" for f in term.factors)
        text += f"{sign}{scale}{factors}"
    return text


# ---------------------------------------------------------------------- strategies


def _group(draw, legs: tuple[str, ...]) -> Axes:
    """The legs as storage axes: each its own, or (sometimes) two neighbours grouped."""
    if len(legs) >= 2 and draw(st.integers(0, 3)) == 0:
        start = draw(st.integers(0, len(legs) - 2))
        return tuple((leg,) for leg in legs[:start]) + ((legs[start], legs[start + 1]),) + tuple((leg,) for leg in legs[start + 2 :])
    return tuple((leg,) for leg in legs)


def _regroup(axes: Axes, legs: tuple[str, ...]) -> Axes:
    """``legs`` in the grouping of ``axes``."""
    result, position = [], 0
    for axis in axes:
        result.append(tuple(legs[position : position + len(axis)]))
        position += len(axis)
    return tuple(result)


def _definition(draw, name: str, sizes: dict, sources: list[tuple[str, Axes]], must_use: str | None) -> Definition:
    """A sum of 1-3 terms of 1-3 factors over ``sources``; result legs carried by every term."""
    same_size = {leg: [other for other in sizes if sizes[other] == sizes[leg]] for leg in sizes}
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        factors = []
        for _ in range(draw(st.integers(1, 3))):
            tensor, axes = draw(st.sampled_from(sources))
            legs = tuple(draw(st.sampled_from(same_size[leg])) for leg in _flat(axes))
            factors.append(Factor(tensor, _regroup(axes, legs)))
        terms.append(Term(draw(st.sampled_from(COEFFICIENTS)), tuple(factors)))
    if must_use is not None and not any(f.tensor == must_use for t in terms for f in t.factors):
        axes = dict(sources)[must_use]
        first = terms[0]
        terms[0] = Term(first.coefficient, first.factors + (Factor(must_use, axes),))
    carried = set.intersection(*(set(leg for f in t.factors for leg in _flat(f.axes)) for t in terms))
    count = draw(st.integers(0, min(3, len(carried)))) if draw(st.integers(0, 3)) == 0 else min(len(carried), draw(st.integers(1, 3)))
    open_legs = draw(st.permutations(sorted(carried)))[:count] if carried else []
    return Definition(name, _group(draw, tuple(open_legs)), tuple(terms))


@st.composite
def networks(draw, chain: bool | None = None) -> Spec:
    names = POOL[: draw(st.integers(4, 5))]
    sizes = {name: draw(st.integers(2, 4)) for name in names}
    tensors = []
    for name in DECLARED[: draw(st.integers(2, 4))]:
        legs = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
        tensors.append(Tensor(name, draw(st.sampled_from(["input", "param"])), _group(draw, legs)))
    variable = draw(st.sampled_from([t.name for t in tensors]))
    sources = [(t.name, t.axes) for t in tensors]
    mostly = variable if draw(st.integers(0, 9)) else None  # now and then the variable may be missing
    definitions = [_definition(draw, "Y", sizes, sources, mostly)]
    if chain if chain is not None else draw(st.booleans()):
        first = definitions[0]
        definitions.append(_definition(draw, "Z", sizes, sources + [(first.name, first.axes)], first.name))
    return Spec(sizes, tuple(tensors), tuple(definitions), variable)


# ---------------------------------------------------------------------- the tests


def _compile(spec: Spec, forms: str) -> types.ModuleType:
    program = compile_source(spec.text(forms), "random.tn")
    module = types.ModuleType("random_network")
    exec(compile(to_torch_source(program, "random"), "<random.py generated by tnc>", "exec"), module.__dict__)
    return module


def _call(module: types.ModuleType, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
    function = getattr(module, name)
    parameters = list(inspect.signature(function).parameters)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # an output that reads no tensor (0, or deltas only)
    try:
        return function(**{p: values[p] for p in parameters})
    finally:
        torch.set_default_dtype(default)


def _values(spec: Spec, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator, dtype=torch.float64) for name, shape in spec.shapes().items()}


def _function_of_variable(spec: Spec, values: dict[str, torch.Tensor]):
    return lambda x: spec.evaluate({**values, spec.variable: x})


def _check(result: torch.Tensor, expected: torch.Tensor, what: str, spec: Spec) -> None:
    assert result.dtype == torch.float64, what
    assert result.shape == expected.shape, (what, spec.text())
    torch.testing.assert_close(result, expected, **TOLERANCE, msg=lambda m: f"{what}\n{spec.text()}\n{m}")


def _check_first_order(spec: Spec, seed: int) -> None:
    """grad, vjp and jvp of the network against jacrev, vjp and jvp of its einsum reference."""
    module = _compile(spec, "grad vjp jvp")
    values = _values(spec, seed)
    f = _function_of_variable(spec, values)
    x = values[spec.variable]
    _check(_call(module, "J", values), jacrev(f)(x), "grad", spec)
    _check(_call(module, "G", values), vjp(f, x)[1](values["V"])[0], "vjp", spec)
    _check(_call(module, "T", values), jvp(f, (x,), (values["U"],))[1], "jvp", spec)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=networks(), seed=st.integers(0, 2**16))
def test_grad_vjp_jvp_of_random_network(spec: Spec, seed: int):
    _check_first_order(spec, seed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=networks(chain=True), seed=st.integers(0, 2**16))
def test_chain_rule_of_random_network(spec: Spec, seed: int):
    """The differentiated tensor uses an earlier defined tensor: derivatives through expansion."""
    _check_first_order(spec, seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=networks(), seed=st.integers(0, 2**16))
def test_second_derivative_of_random_network(spec: Spec, seed: int):
    module = _compile(spec, "hessian")
    values = _values(spec, seed)
    f = _function_of_variable(spec, values)
    _check(_call(module, "H", values), jacrev(jacrev(f))(values[spec.variable]), "grad(grad)", spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=networks(), seed=st.integers(0, 2**16))
def test_simplified_forward_of_random_network(spec: Spec, seed: int):
    """Random valid networks, simplified and lowered as `tnc compile` does, agree with the einsum reference."""
    program = compile_source(spec.text(""), "random.tn")
    simplify(program)
    module = types.ModuleType("random_forward")
    exec(compile(to_torch_source(program, "random"), "<random.py generated by tnc>", "exec"), module.__dict__)
    values = _values(spec, seed)
    _check(_call(module, spec.definitions[-1].name, values), spec.evaluate(values), "simplified forward", spec)
