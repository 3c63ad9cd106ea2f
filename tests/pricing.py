"""The one-truth check of the cost model: ``tnc cost``, the comments of generated code and the
rewrite log state the same price for every term."""

from __future__ import annotations

import re

from tnc.codegen.torch_module import to_torch_source
from tnc.cost import model
from tnc.cost.model import summary
from tnc.frontend import compile_source
from tnc.lowering.term import describe, lower_network, network_cost, numeric_size, price
from tnc.passes.simplify import simplify

PRICE_RE = re.compile(r"# term (\d+) costs (.*)")


def priced_comments(source: str) -> list[tuple[str, str]]:
    """(function, price) for every term comment of a generated module, in order."""
    found, function = [], None
    for line in source.splitlines():
        if line.startswith("def "):
            function = line[4 : line.index("(")]
        match = PRICE_RE.search(line)
        if match:
            found.append((function, match.group(2)))
    return found


def assert_prices_agree(text: str, report: str | None = None) -> None:
    """Compile ``text`` as ``tnc compile`` does; every term's comment states the cost model's price
    of its lowering, the last rewrite of each tensor logged that price, no rewrite raised it, and
    ``report`` (the output of ``tnc cost``, if given) gives the same FLOPs after simplification."""
    program = compile_source(text, "case.tn")
    log = simplify(program)
    assert all(model.time(entry.after) <= model.time(entry.before) for entry in log), log
    source = to_torch_source(program, "case")
    numeric = numeric_size(program)
    priced = []
    emitted = sorted((n for n in program.definitions if f"def _eval_{n}(" in source), key=lambda n: source.index(f"def _eval_{n}("))
    for name in emitted:  # in the order the module defines them
        network = program.definitions[name]
        for _, lowered in lower_network(program, network):
            if lowered is not None:  # None: a bias added by another term's kernel, priced there
                priced.append((f"_eval_{name}", summary(price(program, lowered))))
            assert describe(lowered) in source
        cost = network_cost(program, name, size=numeric)
        for entry in [a for a in log if a.tensor == name][-1:]:
            assert (model.number(entry.after.flops), model.number(entry.after.moved)) == (
                model.number(cost.flops),
                model.number(cost.moved),
            )
    assert priced_comments(source) == priced
    if report is not None:
        simplified = report.split("== simplified")[1]
        for _, text_price in priced:
            assert f"FLOPs:           {text_price.split(' FLOPs')[0]}" in simplified, text_price
