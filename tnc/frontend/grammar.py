"""Loads ``grammar/tn.lark``: from the installed package, or from the source tree when editable."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark


def grammar_text() -> str:
    packaged = resources.files("tnc").joinpath("grammar").joinpath("tn.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "tn.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    # cache=True keeps the LALR tables in a temporary file keyed by the grammar's hash: the tables
    # are built once per grammar, not at every start of the command.
    return Lark(grammar_text(), parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True, cache=True)
