"""The Python API: load or parse a network, then derive, simplify and generate code in-process.

    >>> import tnc
    >>> net = tnc.load("examples/conv2d.tn")
    >>> grad = net.derive("W", vjp="V")
    >>> module = grad.to_module()            # a Python module: grad function + nn.Module
    >>> source = grad.to_torch_source()      # the same, as text to paste into a project

Every method returns a new :class:`Network`; the one it was called on is left unchanged. The code
generators run the same pipeline as ``tnc compile``: the rewrite passes first, unless the network
was already simplified or ``simplify=False`` is passed (``--no-simplify``).

A file's warnings (legal, but almost always a mistake) are issued by :func:`parse` and
:func:`load` with :func:`warnings.warn` as :class:`tnc.errors.TncWarning`, one per warning, and
kept as text in :attr:`Network.warnings`; ``warnings.simplefilter("error", TncWarning)`` makes
them exceptions, as ``--Werror`` makes them errors.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
import types
import warnings
from pathlib import Path

from tnc.ir.program import Program


class Network:
    """A checked ``.tn`` program (its IR is :attr:`program`) with the pipeline as methods."""

    def __init__(self, program: Program, stem: str = "network", log: tuple = (), simplified: bool = False) -> None:
        self.program = program
        self.stem = stem
        self.log = log  # the rewrites that made it, as ``tnc simplify --explain`` lists them
        self.simplified = simplified

    def __repr__(self) -> str:
        return f"<tnc.Network {self.stem}: outputs {', '.join(self.program.outputs) or '(none)'}>"

    def _repr_svg_(self) -> str:
        """The diagram (as ``tnc draw`` writes it), so a notebook shows the network as a picture."""
        from tnc.draw import render

        return render(self.program, "svg").decode()

    def _copy(self) -> "Network":
        return Network(copy.deepcopy(self.program), self.stem, self.log, self.simplified)

    @property
    def outputs(self) -> list[str]:
        return list(self.program.outputs)

    @property
    def warnings(self) -> list[str]:
        """The warnings of the source, as ``tnc check`` prints them (``FILE:LINE:COL: warning: ...``
        with the line and a caret); the networks derived from it keep them."""
        from tnc.errors import format_diagnostic

        return [format_diagnostic(self.program.source, w) for w in self.program.warnings]

    def derive(self, wrt: str | list[str], of: str | None = None, vjp: str | None = None, jvp: str | None = None) -> "Network":
        """The derivative of ``of`` (default: the single output) with respect to ``wrt`` as the
        only output: the Jacobian, or with ``vjp``/``jvp`` its product with that seed. A list
        ``wrt`` gives every derivative at once, as outputs that share the forward and backward steps."""
        from tnc.passes.derive import derive_program

        result = self._copy()
        derive_program(result.program, wrt, of, vjp, jvp)
        result.log, result.simplified = (), False
        return result

    def simplify(self) -> "Network":
        """The network after the rewrite passes; ``.log`` lists the rules applied."""
        from tnc.passes.simplify import simplify

        result = self._copy()
        result.log = tuple(simplify(result.program))
        result.simplified = True
        return result

    def _compiled(self, simplify: bool) -> Program:
        """The program ``tnc compile`` generates code for (``simplify=False``: ``--no-simplify``)."""
        return self.simplify().program if simplify and not self.simplified else self.program

    def to_tn(self) -> str:
        from tnc.codegen.tn import to_tn

        return to_tn(self.program)

    def to_einsum(self, format: str = "text", simplify: bool = True) -> str:
        """Einsum equations, one per term (``format="json"`` for data), as ``tnc compile --target
        einsum`` writes them."""
        from tnc.codegen.einsum import to_json, to_text

        program = self._compiled(simplify)
        return to_json(program) if format == "json" else to_text(program)

    def to_torch_source(self, simplify: bool = True, shard: str | None = None) -> str:
        """The standalone PyTorch module as source text (imports torch and the standard library
        only), as ``tnc compile --target torch`` writes it; ``shard="N"`` as ``--shard N``."""
        from tnc.codegen.torch_module import to_torch_source

        return to_torch_source(self._compiled(simplify), self.stem, shard=shard)

    def to_module(self, simplify: bool = True, shard: str | None = None) -> types.ModuleType:
        """The generated module, executed in-process: one function per output and the
        ``nn.Module`` class; plain torch code, so ``torch.compile`` can trace it."""
        return module_from_source(self.to_torch_source(simplify, shard), self.stem)


def module_from_source(source: str, stem: str) -> types.ModuleType:
    """Generated ``source`` executed as the module ``tnc_generated_<stem>_<hash>``, registered in
    ``sys.modules`` so that pickle, ``torch.save`` and ``copy`` find its classes; the same source
    gives the same module."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"tnc_generated_{re.sub(r'[^0-9A-Za-z_]', '_', stem)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = f"<tnc: {stem}.py>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def parse(text: str, name: str = "<string>", sizes: dict[str, int] | None = None) -> Network:
    """Parse and check ``.tn`` text; raises :class:`tnc.errors.TncError` with every error, and
    warns (:class:`tnc.errors.TncWarning`) once for each warning."""
    return _checked(text, name, sizes)


def load(path: str | Path, sizes: dict[str, int] | None = None) -> Network:
    """Read and check a ``.tn`` file; ``sizes`` binds free sizes as ``--size`` does."""
    path = Path(path)
    return _checked(path.read_text(encoding="utf-8"), str(path), sizes)


def _checked(text: str, name: str, sizes: dict[str, int] | None) -> Network:
    from tnc.errors import TncWarning
    from tnc.frontend import compile_source

    stem = Path(name).stem if not name.startswith("<") else "network"
    network = Network(compile_source(text, name, sizes), stem)
    for warning in network.warnings:
        warnings.warn(warning, TncWarning, stacklevel=3)  # at the caller of parse or load
    return network


__all__ = ["Network", "load", "parse"]
