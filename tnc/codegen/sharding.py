"""Data-parallel evaluation: which steps of a program communicate when one size is sharded.

``tnc compile --shard N`` (API: ``to_torch_source(shard="N")``) declares that every leg of size
``N`` (a free size, normally the batch) is split across the ranks of a ``torch.distributed``
process group: each rank passes its own slice of every input along those legs. Each defined tensor
is then one of three kinds, decided per term from the legs of size ``N`` it carries:

- *sharded*: an ``N`` leg stays open (``Y[n, ...]``, per-sample gradients and norms); it is
  computed from the local slices and stays local, with no communication;
- *reduced*: a term sums over an ``N`` leg (a gradient, the KFC and KFAC-reduce factors, a GGN
  diagonal): each rank sums its slice and one ``all_reduce`` of the sum of those terms follows
  (terms without the leg, a damping term, are added after it). The reduction moves to the
  smallest tensor of the linear steps that follow (:func:`_defer`): each rank runs them on its
  partial sum, which is correct because a linear map of a sum is the sum of the maps;
- *gathered*: a term carries two different ``N`` legs (``n`` against ``n'``, a GGN Gram matrix):
  the sharded operands are all-gathered first, so every rank computes the whole result.

Coefficients that use ``N`` mean the whole batch: generated code uses the sum of the local sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from tnc.cost import model
from tnc.errors import UsageError
from tnc.ir.network import Kind, Network
from tnc.ir.program import Program
from tnc.lowering.term import numeric_size


class ShardError(UsageError):
    """A program that cannot be evaluated with the requested sharding (the message says why)."""


@dataclass
class Sharding:
    size: sympy.Symbol  # the sharded size N, local on each rank where it is a shape
    total: sympy.Symbol  # N summed over the ranks, in coefficients
    reduced: dict[str, list[int]] = field(default_factory=dict)  # tensor -> its terms (0-based) that sum over N
    gathered: set[str] = field(default_factory=set)  # tensors computed from all-gathered operands
    global_: set[str] = field(default_factory=set)  # tensors whose N legs hold the whole batch

    def coefficient(self, expr: sympy.Expr) -> sympy.Expr:
        """A coefficient with the global batch size for ``N``."""
        return expr.subs(self.size, self.total) if self.size in expr.free_symbols else expr

    def gathered_axes(self, program: Program, operand: str) -> list[int]:
        """The storage axes of ``operand`` that are exactly one leg of size ``N`` (gathered)."""
        axes = program.tensors[operand].axes
        return [p for p, axis in enumerate(axes) if len(axis) == 1 and program.size(axis[0]) == self.size]


def plan(program: Program, size: str) -> Sharding:
    """The communication of every defined tensor of ``program`` with the size ``size`` sharded."""
    symbol = program.symbols.get(size)
    if symbol is None:
        raise ShardError(f"--shard {size}: the file declares no size '{size}'")
    if symbol not in program.free_symbols():
        raise ShardError(f"--shard {size}: '{size}' is bound in the file; a sharded size must be free (each rank has its own)")
    for tensor in program.tensors.values():
        if tensor.kind in (Kind.PARAM, Kind.PATTERN) and any(program.size(leg).has(symbol) for leg in tensor.legs):
            raise ShardError(f"--shard {size}: the {tensor.kind.value} '{tensor.name}' has a leg of size {size}; only inputs can be sharded")
    total = sympy.Symbol(f"{size}_all", positive=True, integer=True)
    sharding = Sharding(symbol, total)
    batch = {leg for leg, s in program.index_sizes.items() if program.concrete(s) == symbol}
    for name in program.uses().defined_order_of(program.outputs):
        _classify(program, sharding, batch, name, program.definitions[name])
    _defer(program, sharding, batch)
    return sharding


def _linear_reader(program: Program, sharding: Sharding, batch: set[str], readers: list[str], name: str) -> str | None:
    """The one definition that reads ``name`` (``readers``), where it is linear in ``name`` and
    reads nothing else that differs between ranks: every term reads ``name`` exactly once and
    carries no leg of size ``N``; not an element-wise application, not itself communicating."""
    if len(readers) != 1 or name in program.outputs:
        return None
    reader = readers[0]
    if program.tensors[reader].function is not None or reader in sharding.reduced or reader in sharding.gathered:
        return None
    for term in program.definitions[reader].terms:
        if sum(f.tensor == name for f in term.product) != 1 or term.product.indices() & batch:
            return None
        if any(f.tensor in sharding.global_ for f in term.product):
            return None
    return reader


def _defer(program: Program, sharding: Sharding, batch: set[str]) -> None:
    """Move each all-reduce to the tensor with the fewest entries along the chain of linear
    readers after it (:func:`_linear_reader`; the first of equals): the tensors before it stay
    partial sums on each rank, the reader reduces all of its terms."""
    size = numeric_size(program)  # the cost model's planning sizes
    readers: dict[str, list[str]] = {}
    for reader, network in program.definitions.items():
        for tensor in network.tensors():
            readers.setdefault(tensor, []).append(reader)
    for start in list(sharding.reduced):
        if len(sharding.reduced[start]) != len(program.definitions[start].terms):
            continue  # terms added after the reduction (a damping) would be counted once per rank
        chain = [start]
        while (reader := _linear_reader(program, sharding, batch, readers.get(chain[-1], []), chain[-1])) is not None:
            chain.append(reader)
        best = min(chain, key=lambda name: (model.elements(program.tensors[name].legs, size), chain.index(name)))
        if best != start:
            del sharding.reduced[start]
            sharding.reduced[best] = list(range(len(program.definitions[best].terms)))


def _classify(program: Program, sharding: Sharding, batch: set[str], name: str, network: Network) -> None:
    """Record how ``name`` meets the sharded legs ``batch`` (the indices of size ``N``)."""
    reads_global = [t for t in network.tensors() if t in sharding.global_]
    reduced = []
    for number, term in enumerate(network.terms):
        legs = term.product.indices() & batch
        if len(legs) > 1:
            sharding.gathered.add(name)
        elif legs and not legs <= set(network.legs):
            reduced.append(number)
    if name in sharding.gathered:
        for operand in network.tensors():
            tensor = program.tensors[operand]
            sharded_legs = [leg for leg in tensor.legs if program.size(leg) == sharding.size]
            if len(sharding.gathered_axes(program, operand)) != len(sharded_legs):
                raise ShardError(f"'{name}' needs '{operand}' gathered along its legs of size {sharding.size}, which must be axes of their own")
        sharding.global_.add(name)
        return
    if reads_global and any(program.size(leg) == sharding.size for leg in network.legs) or reads_global and reduced:
        raise ShardError(f"'{name}' mixes the whole batch of '{reads_global[0]}' with local slices")
    if reduced:
        sharding.reduced[name] = reduced
    elif reads_global:
        sharding.global_.add(name)
