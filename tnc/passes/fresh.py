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
