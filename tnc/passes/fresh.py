"""Fresh index names: a primed copy of a leg that clashes with no name in use."""

from __future__ import annotations

from typing import Callable, Iterable

# Makes a fresh index with the size of the given leg and returns its name.
Fresh = Callable[[str], str]


def primed(base: str, taken: Iterable[str] | set[str]) -> str:
    """``base'``, ``base''``, ... : the first that is not taken."""
    taken = taken if isinstance(taken, set) else set(taken)
    name = base + "'"
    while name in taken:
        name += "'"
    return name


def program_fresh(program) -> Fresh:
    """Fresh indices registered in ``program.index_sizes`` with the size of their base leg."""

    def fresh(base: str) -> str:
        name = primed(base, program.index_sizes.keys())
        program.index_sizes[name] = program.index_sizes[base]
        return name

    return fresh


def tidy(network, interchangeable: Callable[[str, str], bool], fixed: Iterable[str] = ()):
    """Rename each term's summed legs to the plainest free name they may take (``c'''`` to ``c``).

    A summed leg is local to its term, so any name that the term does not use and that
    ``interchangeable`` accepts (same size) will do; result legs and ``fixed`` legs keep theirs.
    """
    from tnc.ir.network import Network, Term

    keep = set(network.legs) | set(fixed)
    terms = []
    for term in network.terms:
        summed = sorted(term.product.indices() - keep, key=lambda leg: (leg.rstrip("'"), len(leg)))
        taken = keep | set(summed)
        mapping: dict[str, str] = {}
        for leg in summed:
            taken.discard(leg)
            candidate = leg.rstrip("'")
            while candidate != leg and (candidate in taken or not interchangeable(candidate, leg)):
                candidate += "'"
            mapping[leg] = candidate
            taken.add(candidate)
        terms.append(Term(term.coefficient, term.product.renamed(mapping)))
    return Network(network.axes, terms)
