"""Positioned diagnostics: every user error is reported as ``FILE:LINE:COL: error: MESSAGE``, and
every warning (legal, but almost always a mistake) as ``FILE:LINE:COL: warning: MESSAGE``."""

from __future__ import annotations

from dataclasses import dataclass, field


def printable(text: str) -> str:
    """``text`` with the characters that do not print written as escapes (``\n``, ``\x0c``), so
    that a file name cannot break the ``FILE:LINE:COL:`` format or a comment it is printed in."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Span:
    """A place in the source: 1-based line and column, and how many characters it covers."""

    line: int
    column: int
    length: int = 1


@dataclass(frozen=True)
class Source:
    """A source text and the name it is reported under (``-`` reads as ``<stdin>``)."""

    name: str
    text: str

    def line(self, number: int) -> str:
        """Line ``number`` (from 1) as the parser counts lines: only ``\n`` ends one."""
        lines = self.text.split("\n")
        return lines[number - 1].removesuffix("\r") if 0 < number <= len(lines) else ""


@dataclass(frozen=True)
class Note:
    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    notes: tuple[Note, ...] = ()
    severity: str = "error"  # or "warning": the file is still accepted


class TncWarning(UserWarning):
    """A warning about a ``.tn`` source (``warnings.warn`` by :func:`tnc.parse` and :func:`tnc.load`)."""


@dataclass
class TncError(Exception):
    """One or more diagnostics about a source; the CLI prints them and exits with status 1."""

    source: Source
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(format_diagnostic(self.source, d) for d in self.diagnostics)


WIDTH = 100  # longer source lines are shown as a window around the column


def _excerpt(source: Source, span: Span) -> str:
    text = source.line(span.line).replace("\t", " ")
    column, length = span.column, max(1, min(span.length, len(text) - span.column + 1))
    if len(text) > WIDTH:
        start = max(0, min(column - 1 - WIDTH // 3, len(text) - WIDTH))
        shown = text[start : start + WIDTH]
        prefix, suffix = ("..." if start else ""), ("..." if start + WIDTH < len(text) else "")
        text, column = prefix + shown + suffix, column - start + len(prefix)
        length = max(1, min(length, WIDTH - (column - 1 - len(prefix))))
    caret = " " * (column - 1) + "^" + "~" * (length - 1)
    return f"    {text}\n    {caret}"


def format_diagnostic(source: Source, diagnostic: Diagnostic) -> str:
    """Render a diagnostic and its notes like a C compiler does, with the line and a caret."""
    parts = [
        f"{source.name}:{diagnostic.span.line}:{diagnostic.span.column}: {diagnostic.severity}: {diagnostic.message}",
        _excerpt(source, diagnostic.span),
    ]
    for note in diagnostic.notes:
        parts.append(f"{source.name}:{note.span.line}:{note.span.column}: note: {note.message}")
        parts.append(_excerpt(source, note.span))
    return "\n".join(parts)


class UsageError(Exception):
    """A command-line request that does not fit the file (exit status 2)."""
