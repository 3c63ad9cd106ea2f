"""tnc: a symbolic tensor-network compiler for convolutions and their derivatives.

``tnc.load(path)`` and ``tnc.parse(text)`` give a :class:`tnc.api.Network` with ``derive``,
``simplify``, ``to_einsum``, ``to_torch_source`` and ``to_module``; ``tnc.Template(path)`` compiles
a file once per binding of its free sizes. The heavy modules load on first use, so the ``tnc``
command starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tnc.api import Network, load, parse
    from tnc.errors import TncError, TncWarning
    from tnc.templates import Template

__all__ = ["Network", "Template", "TncError", "TncWarning", "load", "parse"]


def __getattr__(name: str) -> Any:
    if name in ("Network", "load", "parse"):
        from tnc import api

        return getattr(api, name)
    if name in ("TncError", "TncWarning"):
        from tnc import errors

        return getattr(errors, name)
    if name == "Template":
        from tnc.templates import Template

        return Template
    raise AttributeError(f"module 'tnc' has no attribute {name!r}")
