"""The rewrite engine: named rules applied to every defined tensor's network until none applies.

A rule is a small unit with a symbolic condition and a rewrite (see ``tnc.passes.rules``). The
engine tries the rules in the documented order (:data:`RULES`) and applies the first one that
matches and does not make the generated code costlier, then starts again from the first rule; it
stops at a fixed point. "Costlier" is the cost model's price of the code the PyTorch target emits
for the network (:func:`tnc.lowering.term.network_cost`): a rewrite that raises it, or the largest
tensor the code creates, is not applied. The IR validator checks what every rewrite changed (and
the whole program at the end), and the log says which rule fired, where, why its condition held,
and what it saved.
"""

from __future__ import annotations

from dataclasses import dataclass

from tnc.cost import model
from tnc.ir.network import Kind
from tnc.ir.program import Program
from tnc.ir.validate import validate
from tnc.lowering.term import network_cost, numeric_size
from tnc.passes.rules import RULES, Rule


@dataclass(frozen=True)
class Applied:
    rule: str
    tensor: str
    where: str
    why: str
    before: model.Cost = model.Cost()  # the price of the generated code (free sizes at 16)
    after: model.Cost = model.Cost()

    def __str__(self) -> str:
        before, after = _flops(self.before), _flops(self.after)
        saved = f"costs {after} instead of {before}" if after != before else f"costs the same, {after}"
        return f"{self.rule}: {self.tensor}, {self.where}: {self.why}; the generated code {saved}"


def _flops(cost: model.Cost) -> str:
    return f"{model.number(cost.flops):,} FLOPs ({model.number(cost.moved):,} elements moved)"


def simplify(program: Program, rules: tuple[Rule, ...] = RULES, limit: int = 10_000) -> list[Applied]:
    """Rewrite ``program`` in place to a fixed point; returns the log of rules applied."""
    log: list[Applied] = []
    uses = program.uses()
    for output in program.outputs:
        program.interfaces.setdefault(output, uses.interface(output))
    known = set(program.tensors)
    numeric = numeric_size(program)
    # f(A) stays f(A); a sampled definition keeps its sampled legs (a rule could remove one)
    for name in [n for n in program.definitions if not program.tensors[n].function and n not in program.samples]:
        before = network_cost(program, name, size=numeric)
        while len(log) < limit:
            for rule in rules:
                count, previous = len(program.tensors), program.definitions[name]
                rewrite = rule.find(program, previous)
                if rewrite is None:
                    continue
                program.definitions[name] = rewrite.network
                added = [] if len(program.tensors) == count else [t for t in program.tensors if t not in known]
                after = network_cost(program, name, size=numeric)
                if not _cheaper(after, before, rule.gain):  # undone
                    program.definitions[name] = previous
                    for tensor in added:  # a constant (with its network) or a summed pattern
                        del program.tensors[tensor]
                        program.definitions.pop(tensor, None)
                    continue
                known.update(added)
                # the terms a rewrite kept were checked before, against the same result legs
                kept = {id(t) for t in previous.terms} if rewrite.network.legs == previous.legs else set()
                validate(program, [name, *added], kept)
                log.append(Applied(rule.name, name, rewrite.where, rewrite.why, before, after))
                before = after
                break
            else:
                break
    _drop_unused_patterns(program)
    validate(program)
    return log


def _cheaper(after: model.Cost, before: model.Cost, gain: float) -> bool:
    """Whether code costing ``after`` is no costlier than ``before`` (``gain`` times cheaper for a
    rule that asks for a clear win), and creates no larger tensor."""
    return gain * model.time(after) <= model.time(before) and model.number(after.largest) <= model.number(before.largest)


def _drop_unused_patterns(program: Program) -> None:
    """Patterns that no network reads any more are removed from the program."""
    used = {t for network in program.definitions.values() for t in network.tensors()}
    for name in [n for n, t in program.tensors.items() if t.kind is Kind.PATTERN and n not in used]:
        del program.tensors[name]


def explain(log: list[Applied], source: str) -> str:
    """The ``--explain`` report: every rule applied, where, and why its condition held."""
    if not log:
        return f"tnc simplify {source}: no rule applies"
    lines = [f"tnc simplify {source}: {len(log)} rewrite{'s' if len(log) != 1 else ''}, in order"]
    lines.extend(f"{n}. {entry}" for n, entry in enumerate(log, start=1))
    return "\n".join(lines)
