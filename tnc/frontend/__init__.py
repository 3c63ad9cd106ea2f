"""Front end: ``.tn`` text to a checked :class:`~tnc.ir.program.Program`."""

from __future__ import annotations

from tnc.errors import Source
from tnc.frontend.checker import check
from tnc.frontend.parser import parse
from tnc.ir.program import Program
from tnc.ir.validate import validate


def compile_source(text: str, name: str = "<string>", sizes: dict[str, int] | None = None) -> Program:
    """Parse and check ``.tn`` source text; raises :class:`tnc.errors.TncError` on bad input.

    ``sizes`` binds free sizes by name, as ``--size N=32`` does on the command line.
    """
    source = Source(name, text)
    return validate(check(parse(source), source, sizes))
