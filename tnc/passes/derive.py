"""Differentiation as cutting (contract §4): Jacobians, VJPs and JVPs of networks.

``jacobian`` removes each occurrence of the variable from each term of the expanded network
(product rule: one term per occurrence); every leg of the removed factor is joined to a new
result leg by a delta, and deltas that a rename can replace are eliminated. Terms without the
variable contribute nothing, so a network that does not depend on it becomes the empty sum (0).
"""

from __future__ import annotations

import copy
from dataclasses import replace

from tnc.ir.network import Axes, Factor, Kind, Network, Product, Term, Window, flatten
from tnc.ir.program import Program
from tnc.ir.validate import validate
from tnc.passes.deltas import axis_deltas, eliminate_deltas
from tnc.passes.elementwise import ChainError, through_applications
from tnc.passes.expand import ExpansionError, expand
from tnc.passes.fresh import Fresh, program_fresh


class DerivativeError(ValueError):
    """A derivative that cannot be taken (the message says why)."""


def variable_axes(program: Program, wrt: str, fresh: Fresh) -> Axes:
    """New result legs for the variable: a fresh copy of each of its declared legs."""
    return tuple(tuple(fresh(leg) for leg in axis) for axis in program.tensors[wrt].axes)


def _cut(program: Program, network: Network, wrt: str, new_axes: Axes) -> list[Term]:
    """One term per occurrence of ``wrt``: the occurrence removed, each of its axes joined to the
    matching new result axis by identities."""
    terms = []
    for term in network.terms:
        for node in term.product.nodes():
            factor: Factor = term.product.graph.nodes[node]["factor"]
            if factor.tensor != wrt or factor.kind is Kind.DELTA:
                continue
            if any(isinstance(a, Window) for a in factor.axes):
                raise DerivativeError(f"'{wrt}' is read through a window leg here; differentiate before simplifying")
            rest = [f for n, f in zip(term.product.nodes(), term.product.factors) if n != node]
            declared = program.tensors[wrt].axes
            deltas = [
                d
                for used, new, mine in zip(factor.axes, new_axes, declared)
                for d in axis_deltas(used, new, program.regrouped(used, mine))
            ]
            terms.append(Term(term.coefficient, Product(rest + deltas)))
    return terms


def _derivative_terms(program: Program, network: Network, wrt: str, new_axes: Axes, fresh: Fresh) -> list[Term]:
    """The terms of d network / d wrt on the result axes ``network.axes + new_axes``: the cuts of
    ``wrt`` in the expanded network, and the chain rule through element-wise applications."""
    expanded = expand(program, network, fresh)
    return _cut(program, expanded, wrt, new_axes) + through_applications(program, expanded, wrt, new_axes, fresh, _derivative_terms)


def jacobian(program: Program, network: Network, wrt: str, fresh: Fresh) -> Network:
    """d network / d wrt: result legs are the network's, then a fresh copy of ``wrt``'s."""
    if program.tensors[wrt].kind not in (Kind.INPUT, Kind.PARAM):
        raise DerivativeError(f"can only differentiate with respect to an input or param, and '{wrt}' is neither")
    new_axes = variable_axes(program, wrt, fresh)
    try:
        terms = _derivative_terms(program, network, wrt, new_axes, fresh)
    except (ExpansionError, ChainError) as error:
        raise DerivativeError(str(error)) from None
    result = Network(network.axes + new_axes, terms)
    return replace(eliminate_deltas(program, result), cut=flatten(new_axes))


def vjp(program: Program, network: Network, wrt: str, seed: str, fresh: Fresh) -> Network:
    """The Jacobian contracted with ``seed`` (legs of the network) over the network's legs."""
    full = jacobian(program, network, wrt, fresh)
    own = full.axes[: len(network.axes)]
    seed_factor = Factor(seed, program.tensors[seed].kind, own)
    terms = [Term(t.coefficient, Product(t.product.factors + [seed_factor])) for t in full.terms]
    return replace(eliminate_deltas(program, Network(full.axes[len(network.axes) :], terms)), cut=full.cut)


def jvp(program: Program, network: Network, wrt: str, seed: str, fresh: Fresh) -> Network:
    """The Jacobian contracted with ``seed`` (legs of ``wrt``) over the variable's legs."""
    full = jacobian(program, network, wrt, fresh)
    new = full.axes[len(network.axes) :]
    seed_factor = Factor(seed, program.tensors[seed].kind, new)
    terms = [Term(t.coefficient, Product(t.product.factors + [seed_factor])) for t in full.terms]
    return eliminate_deltas(program, Network(network.axes, terms))


def derive_program(
    program: Program, wrt: str | list[str], of: str | None = None, vjp_seed: str | None = None, jvp_seed: str | None = None
) -> str | list[str]:
    """Add the derivative of ``of`` (default: the single output) with respect to ``wrt`` (a name,
    or a list of names: every gradient at once) to ``program`` as its outputs.

    A seed that the program does not declare is declared as an input with the legs it needs. A
    gradient or VJP through several definitions runs reverse mode on them, a JVP forward mode
    (:mod:`tnc.passes.reverse`), where the cost model prices that below the expanded product.
    Returns the new tensor's name (``dY_dW``, ``vjp_Y_W`` or ``jvp_Y_W``), a list for a list.
    """
    from tnc.ir.program import Tensor  # local: program.py imports nothing from passes

    wrts = [wrt] if isinstance(wrt, str) else list(dict.fromkeys(wrt))
    if of is None:
        if len(program.outputs) != 1:
            raise DerivativeError(f"the file has {len(program.outputs)} outputs ({', '.join(program.outputs)}); choose one with --of")
        of = program.outputs[0]
    for role, name in [("--of", of)] + [("--wrt", w) for w in wrts]:
        if name not in program.tensors:
            raise DerivativeError(f"{role}: the file has no tensor '{name}'")
    if jvp_seed is not None and len(wrts) != 1:
        raise DerivativeError("a jvp takes one variable: its tangent has that variable's legs")
    network = program.definitions.get(of) or _single(program, of)
    for seed, axes in ((vjp_seed, network.axes), (jvp_seed, program.tensors[wrts[0]].axes)):
        if seed is None:
            continue
        if seed not in program.tensors:
            program.tensors[seed] = Tensor(seed, Kind.INPUT, axes)
        elif [program.axis_size(a) for a in program.tensors[seed].axes] != [program.axis_size(a) for a in axes]:
            raise DerivativeError(f"seed '{seed}' must have the shape of the legs [{', '.join(' '.join(a) for a in axes)}]")
    for w in wrts:
        if program.tensors[w].kind not in (Kind.INPUT, Kind.PARAM):
            raise DerivativeError(f"can only differentiate with respect to an input or param, and '{w}' is neither")
    results = _chained(program, of, wrts, vjp_seed, jvp_seed)
    if results is None:
        fresh = program_fresh(program)
        results = [(_expanded(program, network, w, vjp_seed, jvp_seed, fresh), w) for w in wrts]
    names = [_add(program, result, of, w, vjp_seed, jvp_seed) for result, w in results]
    program.outputs = names
    validate(program)
    return names[0] if isinstance(wrt, str) else names


def _expanded(program: Program, network: Network, wrt: str, vjp_seed: str | None, jvp_seed: str | None, fresh: Fresh) -> Network:
    """The derivative as one expanded network (the cut of every occurrence)."""
    if vjp_seed is not None:
        return vjp(program, network, wrt, vjp_seed, fresh)
    if jvp_seed is not None:
        return jvp(program, network, wrt, jvp_seed, fresh)
    return jacobian(program, network, wrt, fresh)


def _chained(program: Program, of: str, wrts: list[str], vjp_seed: str | None, jvp_seed: str | None) -> list[tuple[Network, str]] | None:
    """The derivatives by the chain rule on definitions, added to ``program`` with their steps,
    where that is possible and the cost model prices it below expansion; else None."""
    from tnc.passes import reverse

    scalar_grad = vjp_seed is None and jvp_seed is None and not program.tensors[of].axes
    if of not in program.definitions or program.tensors[of].function or not (scalar_grad or vjp_seed or jvp_seed):
        return None
    if max(reverse.depth(program, of, w) for w in wrts) < 3:
        return None  # a single layer (and its loss): one product, as before
    trial = copy.deepcopy(program)
    try:
        with_steps = _chain(trial, of, wrts, vjp_seed, jvp_seed)
    except reverse.ReverseError:
        return None
    expanded = copy.deepcopy(program)
    fresh = program_fresh(expanded)
    try:
        plain = [(_expanded(expanded, expanded.definitions[of], w, vjp_seed, jvp_seed, fresh), w) for w in wrts]
    except DerivativeError:
        plain = None
    if plain is not None and _price(expanded, plain, of, vjp_seed, jvp_seed) <= _price(trial, with_steps, of, vjp_seed, jvp_seed):
        return None
    program.__dict__.update(trial.__dict__)
    return with_steps


def chain_in_file(program: Program, forms: list[tuple[str, str, str, str | None]]) -> None:
    """In-file derivatives ``G = grad(L, W)`` and ``G = vjp(T, W, V)`` (``forms``: G, T, W, V or
    None) by reverse mode on the definitions: the forms of one ``T`` and seed share one backward
    chain, whose steps become defined tensors before the first of them. Applied per group where
    the cost model prices it below the expanded products the checker wrote; else left as they are."""
    from tnc.passes import reverse

    groups: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    for name, of, wrt, seed in forms:
        groups.setdefault((of, seed), []).append((name, wrt))
    for (of, seed), members in groups.items():
        if of not in program.definitions or program.tensors[of].function or (seed is None and program.tensors[of].axes):
            continue
        wrts = list(dict.fromkeys(w for _, w in members))
        if max(reverse.depth(program, of, w) for w in wrts) < 3:
            continue  # a single layer (and its loss): one product, as before
        shapes = [[len(a) for a in program.tensors[n].axes] == [len(a) for a in program.tensors[w].axes] for n, w in members]
        if not all(shapes):
            continue  # a left side that groups the variable's legs otherwise: keep the expansion
        trial = copy.deepcopy(program)
        fresh = program_fresh(trial)
        try:
            gradients = reverse.backward(trial, of, wrts, seed, fresh)
        except reverse.ReverseError:
            continue
        for name, wrt in members:
            trial.definitions[name] = reverse.named(trial, gradients[wrt], trial.tensors[name].axes, fresh)
        names = [n for n, _ in members]
        if _defined_price(trial, names) >= _defined_price(program, names):
            continue
        steps = [t for t in trial.tensors if t not in program.tensors]
        first = min(list(program.tensors).index(n) for n in names)
        order = list(program.tensors)[:first] + steps + list(program.tensors)[first:]
        trial.tensors = {t: trial.tensors[t] for t in order}
        trial.definitions = {t: trial.definitions[t] for t in order if t in trial.definitions}
        program.__dict__.update(trial.__dict__)
        _drop_unread_applications(program)


def _drop_unread_applications(program: Program) -> None:
    """Remove the applications ``f'(A)`` that the replaced expansions read and nothing reads now."""
    while True:
        read = {t for network in program.definitions.values() for t in network.tensors()}
        unread = [n for n, t in program.tensors.items() if t.function and n not in read and n not in program.outputs]
        if not unread:
            return
        for name in unread:
            del program.tensors[name], program.definitions[name]


def _defined_price(program: Program, names: list[str]) -> int:
    """What computing ``names`` costs, with the defined tensors they read (each once)."""
    from tnc.cost import model
    from tnc.lowering.term import network_cost

    return sum(model.time(network_cost(program, name)) for name in program.uses().defined_order_of(names))


def _chain(program: Program, of: str, wrts: list[str], vjp_seed: str | None, jvp_seed: str | None) -> list[tuple[Network, str]]:
    from tnc.passes import reverse

    fresh = program_fresh(program)
    if jvp_seed is not None:
        return [(reverse.forward(program, of, wrts[0], jvp_seed, fresh), wrts[0])]
    gradients = reverse.backward(program, of, wrts, vjp_seed, fresh)
    return [(gradients[w], w) for w in wrts]


def _price(program: Program, results: list[tuple[Network, str]], of: str, vjp_seed: str | None, jvp_seed: str | None) -> int:
    """What computing every result costs, with the defined tensors it reads (each once)."""
    trial = copy.deepcopy(program)
    return _defined_price(trial, [_add(trial, result, of, w, vjp_seed, jvp_seed) for result, w in results])


def _add(program: Program, result: Network, of: str, wrt: str, vjp_seed: str | None, jvp_seed: str | None) -> str:
    """``result`` as a new defined tensor ``vjp_Y_W``, ``jvp_Y_W`` or ``dY_dW`` (summed legs tidied)."""
    from tnc.ir.program import Tensor
    from tnc.passes.fresh import tidy

    name = f"vjp_{of}_{wrt}" if vjp_seed is not None else f"jvp_{of}_{wrt}" if jvp_seed is not None else f"d{of}_d{wrt}"
    base, number = name, 2
    while name in program.tensors:
        name, number = f"{base}_{number}", number + 1
    sizes = program.index_sizes
    result = replace(tidy(result, lambda a, b: a in sizes and sizes[a] == sizes[b]), cut=result.cut)
    program.tensors[name] = Tensor(name, Kind.DEFINED, result.axes)
    program.definitions[name] = result
    if result.reads_no_data():  # 0 or a constant: the function still takes what it was taken of
        wanted = program.interface(of) + [wrt] + [s for s in (vjp_seed, jvp_seed) if s is not None]
        program.interfaces[name] = program.uses().in_file_order(wanted)
    return name


def _single(program: Program, name: str) -> Network:
    """A declared tensor as a network of itself."""
    tensor = program.tensors[name]
    return Network(tensor.axes, [Term(1, Product([Factor(name, tensor.kind, tensor.axes)]))])
