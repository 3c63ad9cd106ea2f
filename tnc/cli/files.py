"""Reading sources (``-`` is standard input) and writing results atomically."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tnc.errors import Source


class FileError(Exception):
    """A file could not be read or written; the message names it."""


def read_source(path: str) -> Source:
    if path == "-":
        return Source("<stdin>", sys.stdin.read())
    try:
        return Source(path, Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise FileError(f"{path}: error: cannot read the file: {getattr(error, 'strerror', None) or error}") from None


def write_output(text: str, path: str | None) -> None:
    """Print ``text``, or write it to ``path`` through a temporary file so no half file is left."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except OSError as error:
        if "temporary" in locals() and os.path.exists(temporary):
            os.unlink(temporary)
        raise FileError(f"{path}: error: cannot write the file: {error.strerror or error}") from None
