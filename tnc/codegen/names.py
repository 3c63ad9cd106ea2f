"""Deterministic names for generated code: einsum letters and Python identifiers."""

from __future__ import annotations

import keyword
import string
from typing import Iterable

LETTERS = string.ascii_lowercase + string.ascii_uppercase


class TooManyIndices(ValueError):
    """An einsum equation would need more than the 52 letters torch.einsum has."""


def einsum_letters(legs: Iterable[str]) -> dict[str, str]:
    """One letter per distinct leg, so that the equation reads like the file: a one-letter index
    keeps its letter; then, in order of first appearance, every other index takes its own initial
    while that is free; the rest take the next free letter after their initial (``i1, i2`` become
    ``i, j``). Claiming all initials before the fallback keeps ``n`` from being taken by ``m2``."""
    order = list(dict.fromkeys(legs))
    if len(order) > len(LETTERS):
        raise TooManyIndices(f"{len(order)} distinct indices in one einsum, but torch.einsum has only the 52 letters a-z, A-Z")
    letters: dict[str, str] = {}
    for wanted in (lambda leg: len(leg) == 1, lambda leg: True):
        for leg in order:
            if leg not in letters and leg[0] in LETTERS and wanted(leg) and leg[0] not in letters.values():
                letters[leg] = leg[0]
    taken = set(letters.values())
    for leg in order:
        if leg not in letters:
            start = LETTERS.index(leg[0]) if leg[0] in LETTERS else 0
            letters[leg] = next(c for c in LETTERS[start:] + LETTERS[:start] if c not in taken)
            taken.add(letters[leg])
    return {leg: letters[leg] for leg in order}


class Namer:
    """Maps names from a ``.tn`` file to unique Python identifiers that shadow nothing needed."""

    # Keywords, and the names generated code refers to at module level (builtins are fine as
    # parameter names, so an input called ``sum`` stays callable as ``sum=...``).
    RESERVED = frozenset(keyword.kwlist) | {"torch", "self", "super", "tuple", "int", "ValueError", "getattr", "dict"}

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.taken = set(self.RESERVED) | set(reserved)
        self.names: dict[tuple[str, str], str] = {}

    def __call__(self, namespace: str, name: str) -> str:
        key = (namespace, name)
        if key not in self.names:
            base = name.replace("'", "_prime").replace("(", "_").replace(")", "")  # relu'(Z): relu_prime_Z
            candidate = base
            while candidate in self.taken or candidate.startswith("_"):
                candidate = (candidate.lstrip("_") or "t") + "_"
            self.taken.add(candidate)
            self.names[key] = candidate
        return self.names[key]


def literal_text(text: str) -> str:
    """``text`` escaped for a place inside a generated ``\"\"\"`` string, which reads back as
    ``text``: backslashes and quotes are escaped, characters that do not print are written as
    ``\\n``, ``\\x0c``, ``\\u2028``. File names go through it, so no name ends a docstring."""
    escaped = {"\\": "\\\\", '"': '\\"'}
    return "".join(escaped.get(c) or (c if c.isprintable() else ascii(c)[1:-1]) for c in text)
