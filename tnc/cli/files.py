"""Reading sources (``-`` is standard input) and writing results (``-o``) without destroying files.

``-o`` onto a regular file (or a new one) writes a temporary file in the same folder and renames
it over the target, which keeps its mode; a symlink is followed, so its target is replaced and the
link kept. Anything else that exists (a device such as ``/dev/null``, a FIFO, ``/dev/stdout``) is
opened and written straight. A read-only file is refused, and so is the input file when the result
is generated code (``compile``, ``draw``). Temporary files are named ``.OUT.tnc-XXXXXXXX.tmp`` and
are removed on any error, Ctrl-C or SIGTERM; only SIGKILL can leave one behind.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from tnc.errors import Source, printable
from tnc.limits import MAX_INPUT_BYTES


class FileError(Exception):
    """A file could not be read or written; the message names it."""


def read_source(path: str) -> Source:
    """The source at ``path``; at most :data:`MAX_INPUT_BYTES` are read, a longer one is refused.

    As Python's text files do, ``\\r\\n`` and ``\\r`` read as ``\\n``; a UTF-8 byte order mark is
    skipped."""
    name = "<stdin>" if path == "-" else printable(path)
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", sys.stdin)
            data = stream.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise FileError(f"{name}: error: the file is larger than {MAX_INPUT_BYTES // 2**20} MiB, the most tnc reads")
        text = data if isinstance(data, str) else data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise FileError(f"{name}: error: cannot read the file: {getattr(error, 'strerror', None) or error}") from None
    return Source(name, text.replace("\r\n", "\n").replace("\r", "\n"))


def _is_input(target: str, protect: str | None) -> bool:
    if protect is None or protect == "-":
        return False
    try:
        return os.path.samefile(target, protect)
    except OSError:
        return False


def write_output(data: str | bytes, path: str | None, protect: str | None = None) -> None:
    """Print ``data``, or write it to ``path`` (see the module's docstring for how).

    ``protect`` names the input file when ``data`` is generated code: ``path`` must not be it."""
    if path is None or path == "-":
        if sys.stdout is None:  # started with standard output closed (`tnc ... >&-`)
            raise FileError("<stdout>: error: cannot write standard output: it is closed")
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        return
    raw = data.encode("utf-8") if isinstance(data, str) else data
    shown = printable(path)
    if _is_input(path, protect):
        raise FileError(f"{shown}: error: this is the input file; tnc does not overwrite it with generated code")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise FileError(f"{shown}: error: cannot write the file: {error.strerror or error}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise FileError(f"{shown}: error: cannot write the file: it is a folder")
    real = os.path.realpath(path)
    if info is None and not os.path.isdir(os.path.dirname(real)):
        raise FileError(f"{shown}: error: cannot write the file: there is no folder {printable(os.path.dirname(path))}")
    if info is not None and (not stat.S_ISREG(info.st_mode) or real.startswith("/proc/")):
        _write_straight(raw, path)  # a device, a FIFO, /dev/stdout: nothing to replace
        return
    if info is not None and (not info.st_mode & stat.S_IWUSR or not os.access(real, os.W_OK)):
        raise FileError(f"{shown}: error: the file is read-only; tnc does not replace it")
    _replace(raw, Path(real), info.st_mode & 0o7777 if info is not None else None, shown)


def _write_straight(raw: bytes, path: str) -> None:
    try:
        with open(path, "wb") as handle:
            handle.write(raw)
    except OSError as error:
        raise FileError(f"{printable(path)}: error: cannot write the file: {error.strerror or error}") from None


def _replace(raw: bytes, target: Path, mode: int | None, shown: str) -> None:
    """Write ``raw`` to a temporary file next to ``target`` and rename it over ``target``."""
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.tnc-", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, target)
        temporary = None
    except OSError as error:
        raise FileError(f"{shown}: error: cannot write the file: {error.strerror or error}") from None
    finally:  # also on KeyboardInterrupt and on SIGTERM (which tnc turns into an exception)
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)
