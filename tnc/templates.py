"""Templates: a ``.tn`` program compiled once per binding of its free sizes and reused.

    >>> conv = tnc.Template("conv2d.tn")      # a file with ``size N, C, D, I, K, S, P``
    >>> layer = conv.module(K=3, S=2, P=1)    # compiled once, then the same module
    >>> Y = conv.function(K=3, S=2, P=1)      # its output's function; N, C, D, I from the inputs

Sizes left unbound stay free and are read from the inputs' shapes at run time. With ``cache_dir``
the generated source is also kept on disk, so a fresh :class:`Template` (another process) reuses it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import types
from pathlib import Path
from typing import Callable

from tnc.api import module_from_source, parse
from tnc.cli.files import write_output


def _version() -> str:
    try:
        return importlib.metadata.version("tnc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Template:
    """A ``.tn`` file (a path) or text (anything with a newline) to compile per binding of sizes.

    ``simplify`` and ``shard`` are passed to :meth:`tnc.api.Network.to_torch_source`."""

    def __init__(
        self,
        source: str | Path,
        name: str | None = None,
        cache_dir: str | Path | None = None,
        simplify: bool = True,
        shard: str | None = None,
    ) -> None:
        is_path = isinstance(source, Path) or "\n" not in source
        self.path = Path(source) if is_path else None
        self._text = None if is_path else str(source)
        self.name = name or (self.path.stem if self.path else "network")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.simplify, self.shard = simplify, shard
        self._modules: dict[str, types.ModuleType] = {}

    def __repr__(self) -> str:
        return f"<tnc.Template {self.name}: {len(self._modules)} binding(s) compiled>"

    def text(self) -> str:
        """The program's text; a file is read again on every call, so an edit is seen."""
        return self.path.read_text(encoding="utf-8") if self.path else self._text

    def key(self, text: str, sizes: dict[str, int]) -> str:
        """sha256 of the text, the name, the options, the sorted bindings and the tnc version."""
        data = json.dumps([text, self.name, self.simplify, self.shard, sorted(sizes.items()), _version()])
        return hashlib.sha256(data.encode()).hexdigest()

    def module(self, **sizes: int) -> types.ModuleType:
        """The executed generated module for this binding, as ``tnc.load(path, sizes).to_module()``
        gives it; compiled on the first call with these sizes (or read from ``cache_dir``)."""
        text = self.text()
        key = self.key(text, sizes)
        if key not in self._modules:
            self._modules[key] = module_from_source(self._source(text, sizes, key), self.name)
        return self._modules[key]

    def function(self, output: str | None = None, **sizes: int) -> Callable:
        """The generated function of ``output`` (by default the only one) for this binding."""
        module = self.module(**sizes)
        functions = {
            name: value
            for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
        }
        if output is None and len(functions) == 1:
            return next(iter(functions.values()))
        if output not in functions:
            raise ValueError(f"{self.name} has outputs {', '.join(sorted(functions))}; pick one with output=")
        return functions[output]

    def _source(self, text: str, sizes: dict[str, int], key: str) -> str:
        """The generated source: read from ``cache_dir`` when there, else compiled (and written there)."""
        cached = self.cache_dir / f"{self.name}_{key[:32]}.py" if self.cache_dir else None
        if cached and cached.is_file():
            return cached.read_text(encoding="utf-8")
        network = parse(text, str(self.path) if self.path else f"{self.name}.tn", sizes)
        network.stem = self.name
        source = network.to_torch_source(self.simplify, self.shard)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_output(source, str(cached))  # atomically: another process never reads half a file
        return source


__all__ = ["Template"]
