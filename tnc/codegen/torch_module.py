"""The PyTorch target: a standalone module (contract §6) that imports torch and the standard library.

Per defined tensor ``T`` the module has ``_eval_T(operands..., *, free sizes)``, which evaluates
``T``'s terms as the pairwise contractions planned here with opt_einsum. Per output ``Y`` there is
a public ``Y(inputs...)`` that reads free sizes from its arguments' shapes, checks the shapes,
builds the index patterns (cached) and calls the ``_eval`` functions; the ``nn.Module`` subclass
holds the params and the patterns as buffers and computes every output once per ``forward``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from math import prod

import sympy

from tnc.codegen.dropout import (
    SAMPLING,
    draw_lines,
    drawn_in,
    kept_sizes,
    sampling_lines,
    selection_lines,
    selections_of,
    sources_of,
)
from tnc.codegen.names import Namer, TooManyIndices, literal_text
from tnc.codegen.pyexpr import pyexpr
from tnc.codegen.sharding import Sharding, plan
from tnc.codegen.tn import network_text, sample_text
from tnc.cost.model import contraction, show, summary
from tnc.errors import Diagnostic, Span, TncError
from tnc.ir import functions
from tnc.ir.network import Axes, Factor, Kind, Window, axes_text
from tnc.ir.program import Program, Tensor
from tnc.ir.sizes import quotient
from tnc.lowering.blocks import opened, slice_text
from tnc.lowering.elementwise import application_cost
from tnc.lowering.term import STRATEGIES, describe, lower_network, price
from tnc.lowering.views import operand_view
from tnc.passes.sampling import with_samples_drawn

SHARD_HEADER = """Data parallel: every leg of size {size} is split across the ranks of a torch.distributed process
group (each rank passes its own slice); sums over it are all-reduced, {size} in coefficients is the
whole batch, and a result with a leg of size {size} stays the local slice."""
SEED_DOC = "seed: an integer draws the sampled legs' kept slices reproducibly; None draws from torch's generator."
SHARD_DOC = "group: the process group (default: the whole world once torch.distributed is initialised, else none)."

DISTRIBUTED = '''


def _group(group):
    """``group``; by default the whole world once torch.distributed is initialised, else None."""
    if group is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.group.WORLD
    return group


def _all_reduce(tensor: torch.Tensor, group) -> torch.Tensor:
    """The sum of every rank's ``tensor`` (a new tensor, reduced in place)."""
    if group is None:
        return tensor
    tensor = tensor.contiguous()
    torch.distributed.all_reduce(tensor, group=group)
    return tensor


def _total(size: int, group) -> int:
    """The sum of every rank's ``size``: the whole batch."""
    if group is None:
        return size
    total = torch.tensor([size], dtype=torch.int64)
    torch.distributed.all_reduce(total, group=group)
    return int(total.item())


def _all_gather(tensor: torch.Tensor, axes: tuple, group) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along ``axes`` in rank order (slices may differ in size)."""
    if group is None:
        return tensor
    ranks = torch.distributed.get_world_size(group)
    for axis in axes:
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(ranks)]
        torch.distributed.all_gather(sizes, torch.tensor([tensor.shape[axis]], dtype=torch.int64), group=group)
        sizes = [int(s.item()) for s in sizes]
        padding = [0, 0] * (tensor.dim() - 1 - axis) + [0, max(sizes) - tensor.shape[axis]]
        padded = torch.nn.functional.pad(tensor, padding).contiguous()
        pieces = [torch.empty_like(padded) for _ in range(ranks)]
        torch.distributed.all_gather(pieces, padded, group=group)
        tensor = torch.cat([piece.narrow(axis, 0, size) for piece, size in zip(pieces, sizes)], axis)
    return tensor
'''

MODULE_ATTRIBUTES = frozenset(
    "T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double "
    "dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half "
    "ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters "
    "register_backward_hook register_buffer register_forward_hook register_forward_pre_hook "
    "register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook "
    "register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook "
    "register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to "
    "to_empty train training type xpu zero_grad reset_parameters".split()
)

PRELUDE = '''
_CACHE: dict = {}  # patterns and constants, built once per sizes, device and dtype
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _cached(key: tuple, build):
    """``build()``, remembered under ``key`` (traced afresh under torch.compile)."""
    if _compiling():
        return build()
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _conv_pattern(I: int, O: int, K: int, stride: int, left: int, dilation: int, device, dtype) -> torch.Tensor:
    """The index pattern P[i, o, k] = 1 where i == stride*o + dilation*k - left, for 0 <= i < I."""

    def build() -> torch.Tensor:
        i = torch.arange(I, device=device).view(I, 1, 1)
        o = torch.arange(O, device=device).view(1, O, 1)
        k = torch.arange(K, device=device).view(1, 1, K)
        return (i == stride * o + dilation * k - left).to(dtype)

    return _cached(("pattern", I, O, K, stride, left, dilation, device, dtype), build)


def _expect(name: str, tensor: torch.Tensor, shape: tuple) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
'''

PADDED_PATTERN = '''

def _padded_pattern(I: int, O: int, K: int, stride: int, left: int, dilation: int, mode: str, device, dtype) -> torch.Tensor:
    """The index pattern P[i, o, k] = 1 where i is the input position that F.pad's ``mode``
    (reflect, replicate, circular) reads at position stride*o + dilation*k - left."""

    def build() -> torch.Tensor:
        o = torch.arange(O, device=device).view(O, 1)
        k = torch.arange(K, device=device).view(1, K)
        at = stride * o + dilation * k - left
        if mode == "reflect":
            at = (I - 1) - ((I - 1) - at.abs()).abs()
        elif mode == "replicate":
            at = at.clamp(0, I - 1)
        else:
            at = at.remainder(I)
        return (torch.arange(I, device=device).view(I, 1, 1) == at).to(dtype)

    return _cached(("padded pattern", I, O, K, stride, left, dilation, mode, device, dtype), build)
'''


def equation_text(program: Program, name: str) -> str:
    """The defining equation of ``name`` as it reads in a ``.tn`` file."""
    network = program.definitions[name]
    if program.tensors[name].function:
        return f"{name}[{axes_text(network.axes)}] = {program.tensors[name].function}({network_text(network)})"
    return f"{name}[{axes_text(network.axes)}] = {network_text(network)}"


def class_name(stem: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", stem)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name and name[0].isalpha() else "Network"


class TorchGenerator:
    def __init__(self, program: Program, stem: str = "network", strategies: tuple[str, ...] = STRATEGIES, shard: str | None = None) -> None:
        self.written = program  # as the file says it, for the docstrings
        program = with_samples_drawn(program)
        self.program = program
        self.sharding: Sharding | None = plan(program, shard) if shard else None
        self.stem = stem
        self.strategies = strategies
        self.eval_operands: dict[str, list[str]] = {}  # what each _eval_T reads, in file order
        self.sizes_of: dict[str, list[sympy.Symbol]] = {}  # memo of eval_sizes
        self.entries: dict[Axes, int] = {}  # memo of elements
        self.uses = program.uses()  # the program does not change while it is generated
        self.namer = Namer({"Module"})
        self.free = program.free_symbols()
        self.lines: list[str] = []

    # ------------------------------------------------------------ helpers
    def py(self, name: str) -> str:
        return self.namer("tensor", name)

    def attr(self, name: str) -> str:
        """The attribute of the generated nn.Module that holds a param or pattern."""
        base = self.py(name)
        return self.namer("attr", name) if base in MODULE_ATTRIBUTES else base

    def size_name(self, symbol: sympy.Symbol) -> str:
        return self.namer("size", str(symbol))

    def expr(self, expr: sympy.Expr) -> str:
        return pyexpr(self.program.concrete(expr), self.size_name)

    def shape(self, axes: Axes, grouped: bool = True) -> str:
        dims = [self.program.axis_size(axis) for axis in axes] if grouped else [
            self.program.size(leg) for axis in axes for leg in axis
        ]
        return "(" + ", ".join(self.expr(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"

    def symbols_in(self, names: list[str]) -> set[sympy.Symbol]:
        found: set[sympy.Symbol] = set()
        for name in names:
            for leg in self.program.tensors[name].legs:
                found |= self.program.size(leg).free_symbols
        return found

    def resolve_sizes(
        self, args: list[str], needed: set[sympy.Symbol], prefix: dict[str, str] | None = None, known: set[sympy.Symbol] = frozenset()
    ) -> tuple[list[str], list[sympy.Symbol]]:
        """Statements that read the needed free sizes from the shapes of ``args`` (``prefix``
        maps a tensor to the expression that holds it, ``self.W`` for a param in ``forward``;
        sizes in ``known`` are set already), and the sizes no shape tells, which the function
        then takes as keyword arguments."""
        prefix = prefix or {}
        lines, known = [], set(known)
        progress = True
        while needed - known and progress:
            progress = False
            for arg in args:
                tensor = self.program.tensors[arg]
                for position, axis in enumerate(tensor.axes):
                    size = self.program.axis_size(axis)
                    unknown = size.free_symbols - known
                    if len(unknown) != 1:
                        continue
                    (symbol,) = unknown
                    rest = quotient(size, symbol)
                    if symbol in rest.free_symbols or not (rest.is_Mul or rest.is_Symbol or rest.is_Integer):
                        continue
                    read = f"{prefix.get(arg, self.py(arg))}.shape[{position}]"
                    value = read if rest == 1 else f"{read} // {self.expr_atom(rest)}"
                    lines.append(f"{self.size_name(symbol)} = {value}")
                    known.add(symbol)
                    progress = True
        return lines, sorted(needed - known, key=str)

    def keyword_sizes(self, missing: list[sympy.Symbol]) -> str:
        return "".join(f", {self.size_name(s)}: int" for s in missing)

    def expr_atom(self, expr: sympy.Expr) -> str:
        text = self.expr(expr)
        return text if expr.is_Atom else f"({text})"

    def pattern_call(self, tensor: Tensor, device: str, dtype: str) -> str:
        sizes = self.program.pattern_sizes(tensor.name)
        spec = tensor.pattern
        left, _ = spec.pads(sizes[2])
        mode = f", {spec.padding_mode!r}" if spec.moded(sizes[2]) else ""
        function = "_padded_pattern" if mode else "_conv_pattern"
        call = f"{function}({', '.join(self.expr(s) for s in sizes)}, {spec.stride}, {self.expr(left)}, {spec.dilation}{mode}, {device}, {dtype})"
        return call + ".sum(1)" if tensor.pattern.summed else call

    def is_concrete_pattern(self, tensor: Tensor) -> bool:
        return all(not self.program.size(leg).free_symbols for leg in tensor.legs)

    def direct_operands(self, name: str) -> list[str]:
        return self.uses.in_file_order(self.program.definitions[name].tensors())

    def eval_sizes(self, name: str) -> list[sympy.Symbol]:
        """The free sizes ``_eval_T`` needs (memoised: every caller of T asks)."""
        if name not in self.sizes_of:
            self.sizes_of[name] = self._eval_sizes(name)
        return list(self.sizes_of[name])

    def _eval_sizes(self, name: str) -> list[sympy.Symbol]:
        if self.program.tensors[name].function:
            return []  # an element-wise application needs no sizes
        network = self.program.definitions[name]
        legs = set(network.legs) | {leg for term in network.terms for f in term.product for leg in f.legs}
        found = set().union(*(self.program.size(leg).free_symbols for leg in legs))
        for term in network.terms:  # a window reads the whole storage axis, whose size may be free
            for factor in term.product:
                declared = self.program.tensors[factor.tensor].axes if factor.tensor in self.program.tensors else ()
                for axis, storage in zip(factor.axes, declared):
                    if isinstance(axis, Window):
                        found |= self.program.axis_size(storage).free_symbols
        for term in network.terms:
            found |= self.coefficient(term.coefficient).free_symbols
        if self.sharding and name in self.sharding.gathered:
            found.add(self.sharding.size)  # called with the whole batch's size
        return sorted(found, key=str)

    def coefficient(self, expr: sympy.Expr) -> sympy.Expr:
        """A term's coefficient as generated: sharded, ``N`` is the whole batch's size."""
        expr = self.program.concrete(expr)
        return self.sharding.coefficient(expr) if self.sharding else expr

    # ------------------------------------------------------------ emitters
    def emit_eval(self, name: str) -> None:
        """``_eval_T``; its parameters are the operands its body reads (a pattern that a native
        kernel or a window replaced is not built at all)."""
        if self.program.tensors[name].function:
            self.emit_application(name)
            return
        network = self.program.definitions[name]
        operands = self.direct_operands(name)
        sizes = self.eval_sizes(name)
        header, self.lines = self.lines, []
        self.views: dict[str, str] = {}  # view expression -> the variable that holds it
        self.fresh: set[str] = set()  # temporaries that are new tensors, safe to scale in place
        self.temp = 0
        data = [o for o in operands if self.program.tensors[o].kind is not Kind.PATTERN]
        anchor = self.py((data or operands)[0]) if operands else None
        try:
            spelling = (lambda f: self.py(f.tensor), self.new_temp, self.expr)
            lowerings = lower_network(self.program, network, self.strategies, *spelling)
            if self.sharding and self.sharding.reduced.get(name):  # terms are all-reduced one by one: none is placed in a shared result
                lowerings = [(term, replace(lowered, into=None) if lowered is not None else None) for term, lowered in lowerings]
            values = [self.emit_term(number, term, lowered, anchor) for number, (term, lowered) in enumerate(lowerings, start=1)]
            reduced = self.sharding.reduced.get(name, []) if self.sharding else []
            results = self.reduce([v for n, v in enumerate(values) if v is not None and n in reduced], network)
            results += [v for n, v in enumerate(values) if v is not None and n not in reduced]
        except TooManyIndices as error:
            span = self.program.tensors[name].span or Span(1, 1)
            raise TncError(self.program.source, [Diagnostic(span, f"a contraction step of '{name}' needs {error}")]) from None
        if not results:
            self.lines.append(f"    return torch.zeros({self.shape(network.axes)}, {self.device_dtype(anchor)})  # the empty sum")
        else:
            total = " + ".join(results)
            if any(len(axis) != 1 for axis in network.axes):
                total = f"({total}).reshape{self.shape(network.axes)}" if len(results) > 1 else f"{total}.reshape{self.shape(network.axes)}"
            self.lines.append(f"    return {total}")
        body, self.lines = self.lines, header
        text = "\n".join(body)
        words = set(re.findall(r"\w+", text))
        self.eval_operands[name] = [o for o in operands if self.py(o) in words]
        keywords = [f"{self.size_name(s)}: int" for s in sizes] + (["group"] if self.communicates(name) else [])
        params = ", ".join([self.py(o) for o in self.eval_operands[name]] + (["*"] if keywords else []) + keywords)
        self.lines += ["", "", f"def _eval_{self.py(name)}({params}) -> torch.Tensor:", f'    """{equation_text(self.program, name)}"""', *body]

    def reduce(self, values: list[str], network) -> list[str]:
        """The sum of the terms that sum over the sharded leg, all-reduced over the group."""
        if not values:
            return []
        elements = self.expr(prod((self.program.axis_size(a) for a in network.axes), start=sympy.Integer(1)))
        self.lines.append(f"    # all-reduce over the ranks: {elements} elements per rank")
        return [f"_all_reduce({' + '.join(values)}, group)"]

    def communicates(self, name: str) -> bool:
        """Whether ``_eval_T`` all-reduces (it then takes the process group)."""
        return bool(self.sharding and self.sharding.reduced.get(name))

    def emit_application(self, name: str) -> None:
        """``_eval_f_A(A)`` of an element-wise application ``f(A)``: one call on ``A`` as stored."""
        function, argument = functions.application(self.program, name)
        tensor = self.program.tensors[name]
        lines, value = functions.torch_lines(function, self.py(argument), "_s")
        cost = summary(application_cost(self.program, name))
        self.eval_operands[name] = [argument]
        text = f"{name}[{axes_text(tensor.axes)}] = {function}({argument}[{axes_text(tensor.axes)}]), element-wise"
        self.lines += ["", "", f"def _eval_{self.py(name)}({self.py(argument)}) -> torch.Tensor:", f'    """{text}"""']
        self.lines += [f"    # {functions.value(function).base} (derivative order {functions.value(function).order}) of every entry: {cost}"]
        self.lines += [f"    {line}" for line in lines] + [f"    return {value}"]

    def scaled(self, value: str, coefficient: sympy.Expr) -> str:
        """``coefficient * value``; in place when ``value`` is a new tensor that nothing else holds
        (a pairwise contraction or a native kernel's result, never a view of an argument)."""
        if coefficient == 1:
            return value
        if value in self.fresh:
            self.lines.append(f"    {value}.mul_({self.expr(coefficient)})")
            return value
        return f"{self.expr_atom(coefficient)} * {value}"

    def device_dtype(self, anchor: str | None) -> str:
        return f"device={anchor}.device, dtype={anchor}.dtype" if anchor else "dtype=torch.get_default_dtype()"

    def new_temp(self) -> str:
        self.temp += 1
        return f"_t{self.temp - 1}"

    def operand(self, factor: Factor, anchor: str | None) -> str:
        """The variable holding a factor with one axis per leg (a view of a grouped tensor)."""
        if factor.kind is Kind.DELTA and len(factor.axes) == 1:
            variable = self.new_temp()
            size = self.expr(self.program.axis_size(factor.axes[0]))
            self.lines.append(f"    {variable} = torch.ones({size}, {self.device_dtype(anchor)})")
            return variable
        if factor.kind is Kind.DELTA:
            size = self.expr(self.program.axis_size(factor.axes[0]))
            variable = self.new_temp()
            eye = f"torch.eye({size}, {self.device_dtype(anchor)})"
            grouped = any(len(axis) != 1 for axis in factor.axes)
            self.lines.append(f"    {variable} = {eye}{'.reshape' + self.shape(factor.axes, grouped=False) if grouped else ''}")
            return variable
        view = operand_view(self.program, factor, self.py(factor.tensor), self.expr)
        if view is None:
            return self.py(factor.tensor)
        if view not in self.views:
            self.views[view] = f"_{self.py(factor.tensor)}{len(self.views)}"
            self.lines.append(f"    {self.views[view]} = {view}")
        return self.views[view]

    def emit_term(self, number: int, term, lowered, anchor: str | None) -> str | None:
        """Emit one term as :func:`tnc.lowering.term.lower_network` lowers it; returns its (scaled)
        value (None for a bias a kernel adds), after a comment with the strategy and its price."""
        out = self.lines.append
        if lowered is None:
            out(f"    # term {number}: {describe(lowered)}")
            return None
        result_legs = lowered.legs
        coefficient, target = self.coefficient(lowered.coefficient), list(lowered.target)
        out(f"    # term {number}: coefficient {term.coefficient}; {describe(lowered)}")
        out(f"    # term {number} costs {summary(price(self.program, lowered))}")
        if lowered.native is not None:
            for line in lowered.native.lines:
                out(f"    {line}")
            if not lowered.native.view:  # a view of an argument must not be scaled in place
                self.fresh.add(lowered.native.value)
            if lowered.blocks:
                return self.place(lowered, lowered.native.value, coefficient, anchor)
            return self.broadcast(lowered, self.scaled(lowered.native.value, coefficient))
        if lowered.strategy == "scalar":
            if lowered.blocks:
                return self.place(lowered, None, coefficient, anchor)
            return self.broadcast(lowered, f"torch.full((), {self.expr(coefficient)}, {self.device_dtype(anchor)})")
        value = None
        if lowered.plan is not None:
            variables = [self.operand(f, anchor) for f in lowered.factors]
            computed: dict[str, str] = {}  # the same equation on the same variables is computed once
            for step in lowered.plan.steps:
                args = [variables[p] for p in step.operands]
                variables = [v for p, v in enumerate(variables) if p not in step.operands]
                call = f'torch.einsum("{step.equation()}", {", ".join(args)})'
                if call not in computed:
                    computed[call] = self.new_temp()
                    flops = contraction(step.inputs, step.result, self.program.size).flops
                    out(f"    {computed[call]} = {call}  # {show(flops)} FLOPs")
                    if len(args) == 2:
                        self.fresh.add(computed[call])
                else:
                    self.fresh.discard(computed[call])  # used twice: scaling it in place would scale both
                variables.append(computed[call])
            value = anchor = variables[-1]
            if lowered.blocks:
                return self.place(lowered, value, coefficient, anchor)
            carried = set(lowered.carried)
            if lowered.embeds and not set(target) <= carried:  # broadcast over legs only the identities carry
                value += "[" + ", ".join(":" if leg in carried else "None" for leg in target) + "]"
        if not lowered.embeds:
            return self.broadcast(lowered, self.scaled(value, coefficient))
        diagonal, legs = "", list(result_legs)
        for a, b in lowered.embeds:
            diagonal += f".diagonal(0, {legs.index(a)}, {legs.index(b)})"
            legs = [leg for leg in legs if leg not in (a, b)] + [a]
        full = self.new_temp()
        shape = "(" + ", ".join(self.expr(self.program.size(leg)) for leg in result_legs) + ("," if len(result_legs) == 1 else "") + ")"
        out(f"    {full} = torch.zeros({shape}, {self.device_dtype(anchor)})")
        if value is None:
            out(f"    {full}{diagonal}.fill_({self.expr(coefficient)})")
        else:
            scale = "" if coefficient == 1 else f"{self.expr_atom(coefficient)} * "
            out(f"    {full}{diagonal}.copy_({scale}{value})")
        return full

    def place(self, lowered, value: str | None, coefficient: sympy.Expr, anchor: str | None) -> str | None:
        """Copy a term's value (None: the coefficient alone) into its blocks' slice
        (:mod:`tnc.lowering.blocks`) of zeros of its own, or of the network's result; returns what
        the network adds up (None where an earlier term made the result)."""
        out = self.lines.append
        placed = lowered.placed
        if lowered.into == "result":
            full = self.assembled
        else:
            full = self.new_temp()
            shape = "(" + ", ".join(self.expr(self.program.size(leg)) for leg in placed) + ("," if len(placed) == 1 else "") + ")"
            out(f"    {full} = torch.{'empty' if lowered.into == 'empty' else 'zeros'}({shape}, {self.device_dtype(anchor)})")
            self.assembled = full
        region = slice_text(full, placed, lowered.blocks, lambda b: "(" + ", ".join(self.expr(self.program.size(leg)) for leg in b.inner) + ")")
        if value is None:
            out(f"    {region}.fill_({self.expr(coefficient)})")
        else:
            value = self.scaled(value, coefficient)
            legs, have = opened(placed, lowered.blocks), lowered.carried
            index = "" if have == legs else "[" + ", ".join(":" if leg in have else "None" for leg in legs) + "]"
            out(f"    {region}.copy_({value}{index})")
        if lowered.into is None and lowered.broadcast:
            index = ", ".join(":" if leg in placed else "None" for leg in lowered.legs)
            shape = ", ".join(self.expr(self.program.size(leg)) for leg in lowered.legs)
            return f"{full}[{index}].expand({shape})"
        return None if lowered.into == "result" else full

    def broadcast(self, lowered, value: str) -> str:
        """``value`` (on the term's target legs) as a view over all its result legs."""
        if not lowered.broadcast:
            return value
        index = ", ".join(":" if leg in lowered.target else "None" for leg in lowered.legs)
        shape = ", ".join(self.expr(self.program.size(leg)) for leg in lowered.legs)
        return f"{value}[{index}].expand({shape})"

    def emit_public(self, name: str) -> None:
        args = self.uses.dependencies(name)
        read = {o for d in self.uses.defined_order(name) if not self.is_constant(d) for o in self.eval_operands[d]}
        patterns = [a for a in args if self.program.tensors[a].kind is Kind.PATTERN and a in read]
        inputs = self.uses.interface(name)
        out = self.lines.append
        kept = drawn_in(self.program, self.uses.defined_order(name))
        needed = self.symbols_in(args + inputs + self.uses.defined_order(name))  # _expect checks every input
        needed |= self.needed_sizes(self.uses.defined_order(name)) | self.symbols_in(sources_of(self.program, kept))
        reads, missing = self.resolve_sizes(inputs, needed - self.whole_batch() - {k.size for k in kept})
        signature = ", ".join(f"{self.py(a)}: torch.Tensor" for a in inputs)
        keywords = self.keyword_sizes(missing) + (", group=None" if self.sharding else "") + (", seed=None" if kept else "")
        if keywords:
            signature += (", *" if inputs else "*") + keywords
        out("")
        out("")
        out(f"def {self.py(name)}({signature}) -> torch.Tensor:")
        out(f'    """{self.written_text(name)}')
        out("")
        out(f"    Returns a tensor of shape [{axes_text(self.program.definitions[name].axes)}]; grouped legs are flattened.")
        if missing:
            out(f"    No argument's shape tells the size{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}: pass {'them' if len(missing) > 1 else 'it'} by keyword.")
        if self.sharding:
            out(f"    {SHARD_DOC.format(size=self.sharding.size)}")
        if kept:
            out(f"    {SEED_DOC}")
        out('    """')
        for line in reads + self.distributed_lines(needed):
            out(f"    {line}")
        for a in inputs:
            out(f'    _expect("{a}", {self.py(a)}, {self.shape(self.program.tensors[a].axes)})')
        device, dtype = (f"{self.py(inputs[0])}.device", f"{self.py(inputs[0])}.dtype") if inputs else ("None", "torch.get_default_dtype()")
        for p in patterns:
            out(f"    {self.py(p)} = {self.pattern_call(self.program.tensors[p], device, dtype)}")
        if kept:
            value = self.source_value({self.py(p) for p in patterns}, {}, device, dtype)
            for line in sampling_lines(self.program, kept, value, self.size_name, self.py, self.expr, device, dtype):
                out(f"    {line}")
        self.emit_calls(self.uses.defined_order(name), [name], indent="    ", anchor=self.py(inputs[0]) if inputs else None)
        out(f"    return {self.py(name)}")

    def dropout_layers(self) -> list[tuple[str, str, str, str]]:
        """``(G, Y, W, V)`` for each sampled output ``G = vjp(Y, W, V)`` of an output ``Y`` and a
        param ``W`` whose draw needs no size beyond the inputs' shapes: each gets a layer."""
        found = []
        for name in self.program.outputs:
            of, wrt, seed = self.program.vjps.get(name, (None, None, None))
            if name in self.program.kept and of in self.program.outputs and self.program.tensors[wrt].kind is Kind.PARAM:
                found.append((name, of, wrt, seed))
        return found

    def emit_dropout(self, name: str, of: str, wrt: str, seed: str) -> None:
        """``_draw_G`` (the kept indices, weights and slices known in the forward pass),
        ``_G_from_draw`` (the sampled G from them and the seed ``V``) and the autograd.Function
        ``SampledG``: ``Y`` exact in forward, the gradient of ``W`` sampled in backward, from
        the kept slices alone; other inputs get their own VJPs of ``Y`` where the file has them.
        Nothing is emitted where a size of either function is told by no shape."""
        out, py = self.lines.append, self.py
        order = self.uses.defined_order(name)
        kept = drawn_in(self.program, order)
        counts = {k.size for k in kept}
        selections = selections_of(self.program, kept)
        early = [a for a in self.uses.interface(name) if a != seed]
        sources = set(sources_of(self.program, kept))
        saved = [f"_{k.index}" for k in kept] + [py(k.weights) for k in kept]
        saved += [py(n) for n, s in selections.items() if s.source != seed]
        reads, missing = self.resolve_sizes(early, self.symbols_in(early + sorted(sources)) - counts)
        read = {o for d in order if not self.is_constant(d) for o in self.eval_operands[d]}
        patterns = [t for t in self.uses.dependencies(name) if self.program.tensors[t].kind is Kind.PATTERN and t in read]
        shaped = [n for n, s in selections.items() if s.source != seed] + [seed]
        sizes, missing_later = self.resolve_sizes(shaped, (self.needed_sizes(order) | self.symbols_in(patterns)) - counts, known=counts)
        if missing or missing_later or not early:
            return
        device, dtype = f"{py(early[0])}.device", f"{py(early[0])}.dtype"
        value = self.source_value(set(), {}, device, dtype)
        out("")
        out("")
        out(f"def _draw_{py(name)}({', '.join(py(a) for a in early)}, *, seed=None) -> tuple:")
        out(f'    """The draw of {name} that its forward pass can make: kept indices, weights, slices."""')
        lines = draw_lines(self.program, kept, value, py, self.expr, device, dtype)
        lines += selection_lines(self.program, kept, value, py, self.expr, sources - {seed})
        for line in reads + lines:
            out(f"    {line}")
        out(f"    return {', '.join(saved)}")
        out("")
        out("")
        out(f"def _{py(name)}_from_draw({', '.join(saved)}, {py(seed)}) -> torch.Tensor:")
        out(f'    """{name} from the draw of _draw_{py(name)} and {seed}."""')
        device, dtype = f"{py(seed)}.device", f"{py(seed)}.dtype"
        lines = kept_sizes(kept, self.size_name) + sizes
        lines += [f"{py(p)} = {self.pattern_call(self.program.tensors[p], device, dtype)}" for p in patterns]
        lines += selection_lines(self.program, kept, self.source_value(set(), {}, device, dtype), py, self.expr, sources & {seed})
        for line in lines:
            out(f"    {line}")
        self.emit_calls(order, [name], indent="    ", anchor=py(seed))
        out(f"    return {py(name)}")
        self.emit_dropout_function(name, of, wrt, seed, saved)

    def emit_dropout_function(self, name: str, of: str, wrt: str, seed: str, saved: list[str]) -> None:
        out, py = self.lines.append, self.py
        args = self.uses.interface(of)
        early = [a for a in self.uses.interface(name) if a != seed]
        others = {a: g for g, (y, a, v) in self.program.vjps.items() if y == of and g in self.program.outputs and g != name and v == seed}
        needed = sorted({a for g in others.values() for a in self.uses.interface(g) if a != seed}, key=args.index)
        out("")
        out("")
        out(f"class Sampled{py(name)}(torch.autograd.Function):")
        out(f'    """{of} exactly in forward; in backward the gradient of {wrt} is {name} with its sampled legs, from')
        out(f"    the kept slices alone (saved in forward); {', '.join(f'{a} gets {g}' for a, g in others.items()) or 'other inputs get none'}.")
        out("")
        out(f"    Sampled{py(name)}.apply({', '.join(py(a) for a in args)}, seed) (seed None: torch's generator).")
        out('    """')
        out("")
        out("    @staticmethod")
        out(f"    def forward(ctx, {', '.join(py(a) for a in args)}, seed=None):")
        out(f"        draw = _draw_{py(name)}({', '.join(f'{py(a)}' for a in early)}, seed=seed)")
        out(f"        ctx.save_for_backward({''.join(f'{py(a)}, ' for a in needed)}*draw)")
        out(f"        return {py(of)}({', '.join(f'{py(a)}={py(a)}' for a in args)})")
        out("")
        out("    @staticmethod")
        out(f"    def backward(ctx, {py(seed)}):")
        out(f"        {''.join(f'{py(a)}, ' for a in needed)}*draw = ctx.saved_tensors" if needed else "        draw = ctx.saved_tensors")
        grads = []
        for a in args:
            if a == wrt:
                grads.append(f"_{py(name)}_from_draw(*draw, {py(seed)})")
            elif a in others:
                call = ", ".join(f"{py(b)}={py(b)}" for b in self.uses.interface(others[a]))
                grads.append(f"{py(others[a])}({call})")
            else:
                grads.append("None")
        out(f"        return {', '.join(grads)}, None")
        self.emit_dropout_layer(name, of, wrt, args)

    def emit_dropout_layer(self, name: str, of: str, wrt: str, args: list[str]) -> None:
        """``Sampled<name>Layer``: an nn.Module that holds the params of ``of`` and applies
        ``Sampled<name>`` to its inputs, a drop-in layer whose weight gradient is sampled."""
        out, py = self.lines.append, self.py
        params = [self.program.tensors[a] for a in args if self.program.tensors[a].kind is Kind.PARAM]
        inputs = [a for a in args if self.program.tensors[a].kind is not Kind.PARAM]
        call = ", ".join(f"self.{self.attr(a)}" if self.program.tensors[a].kind is Kind.PARAM else py(a) for a in args)
        out("")
        out("")
        out(f"class Sampled{py(name)}Layer(torch.nn.Module):")
        out(f'    """{of} as a layer: forward({", ".join(py(a) for a in inputs)}, seed=None) is {of} exactly; in backward {wrt} gets')
        out(f'    {name} with its sampled legs, from the kept slices alone (Sampled{py(name)})."""')
        out("")
        self.emit_init(params, [])
        out(f"    def forward(self, {''.join(f'{py(a)}, ' for a in inputs)}seed=None):")
        out(f"        return Sampled{py(name)}.apply({call}, seed)")

    def written_text(self, name: str) -> str:
        """The equation of ``name`` as the file writes it, then the legs it samples."""
        samples = self.written.samples.get(name, ())
        return equation_text(self.written, name) + "".join(f"; {sample_text(name, s)}" for s in samples)

    def source_value(self, built: set[str], prefix: dict[str, str], device: str, dtype: str):
        """How the sampling lines spell a tensor they slice: a pattern built already, or built
        there; a param as the function or module holds it; an input by name."""

        def value(name: str) -> str:
            tensor = self.program.tensors[name]
            if tensor.kind is Kind.PATTERN and self.py(name) not in built and name not in prefix:
                return self.pattern_call(tensor, device, dtype)
            return prefix.get(name, self.py(name))

        return value

    def is_constant(self, name: str) -> bool:
        """A defined tensor of patterns alone, with known sizes: computed once, then cached."""
        network = self.program.definitions[name]
        return bool(network.terms) and not self.eval_sizes(name) and all(
            self.program.tensors[t].kind is Kind.PATTERN for t in self.uses.dependencies(name)
        )

    def emit_constant(self, name: str) -> None:
        operands = self.eval_operands[name]
        out = self.lines.append
        out("")
        out("")
        out(f"def _constant_{self.py(name)}(device, dtype) -> torch.Tensor:")
        out(f'    """{name}: it reads no data, so it is made once per device and dtype."""')
        args = []
        for operand in operands:
            tensor = self.program.tensors[operand]
            if tensor.kind is Kind.PATTERN:
                args.append(self.pattern_call(tensor, "device", "dtype"))
            else:
                args.append(f"_constant_{self.py(operand)}(device, dtype)")
        out(f'    return _cached(("{name}", device, dtype), lambda: _eval_{self.py(name)}({", ".join(args)}).to(device, dtype))')

    def reads(self, name: str) -> list[str]:
        """The local variables the call that makes ``name`` reads (a constant or 0 reads none)."""
        if self.is_constant(name) or not self.program.definitions[name].terms:
            return []
        return self.eval_operands[name]

    def elements(self, name: str) -> int:
        """A defined tensor's number of entries (free sizes taken as 32), for :meth:`schedule`."""
        axes = self.program.tensors[name].axes
        if axes not in self.entries:  # by legs: the tensors of a chain share theirs
            size = self.program.concrete(prod((self.program.axis_size(a) for a in axes), start=sympy.Integer(1)))
            self.entries[axes] = int(size.subs({symbol: 32 for symbol in size.free_symbols}))
        return self.entries[axes]

    def schedule(self, order: list[str], keep: list[str]) -> list[str]:
        """``order`` rearranged to hold less memory: of the tensors whose operands are ready,
        make next one that frees at least the entries it holds (operands it reads last: a weight
        gradient as soon as its error is there), the most first; else the one read soonest in
        ``order`` (an element-wise derivative just before its use), then the earliest there."""
        position = {name: n for n, name in enumerate(order)}
        operands = {d: {o for o in self.reads(d) if o in position} for d in order}
        readers: dict[str, set[str]] = {d: set() for d in order}
        for d in order:
            for o in operands[d]:
                readers[o].add(d)
        done: set[str] = set()
        result: list[str] = []
        ready = {d for d in order if not operands[d]}

        soonest = {d: min((position[r] for r in readers[d]), default=len(order)) for d in order}

        def gain(d: str) -> tuple[int, int, int]:
            freed = sum(self.elements(o) for o in operands[d] if o not in keep and readers[o] - done == {d})
            saved = freed - self.elements(d)
            return saved if saved >= 0 else -1, -soonest[d], -position[d]

        while ready:
            best = max(ready, key=gain)
            ready.discard(best)
            done.add(best)
            result.append(best)
            ready |= {r for r in readers[best] if operands[r] <= done}
        return result

    def emit_calls(self, order: list[str], keep: list[str], indent: str, prefix: dict[str, str] | None = None, anchor: str | None = None) -> None:
        """Evaluate the defined tensors in order, each dropped after its last reader unless in
        ``keep``; an empty sum is made like ``anchor`` (an argument)."""
        prefix = prefix or {}
        order = self.schedule(order, keep)
        last = {o: step for step, d in enumerate(order) for o in self.reads(d) if o in self.program.definitions}
        for step, defined in enumerate(order):
            network = self.program.definitions[defined]
            if self.is_constant(defined):
                where = f"{anchor}.device, {anchor}.dtype" if anchor else "None, torch.get_default_dtype()"
                self.lines.append(f"{indent}{self.py(defined)} = _constant_{self.py(defined)}({where})")
            elif not network.terms and anchor:
                self.lines.append(f"{indent}{self.py(defined)} = torch.zeros({self.shape(network.axes)}, {self.device_dtype(anchor)})")
            else:
                operands = [self.gathered(defined, o, prefix.get(o, self.py(o))) for o in self.eval_operands[defined]]
                sizes = [f"{self.size_name(s)}={self.size_value(defined, s)}" for s in self.eval_sizes(defined)]
                sizes += ["group=group"] if self.communicates(defined) else []
                self.lines.append(f"{indent}{self.py(defined)} = _eval_{self.py(defined)}({', '.join(operands + sizes)})")
            dead = [self.py(o) for o in dict.fromkeys(self.reads(defined)) if last.get(o) == step and o not in keep]
            if dead and step < len(order) - 1:
                self.lines.append(f"{indent}del {', '.join(dead)}")

    def gathered(self, name: str, operand: str, value: str) -> str:
        """``value``, all-gathered along its sharded axes where ``name`` needs the whole batch."""
        if not self.sharding or name not in self.sharding.gathered or operand in self.sharding.global_:
            return value
        axes = self.sharding.gathered_axes(self.program, operand)
        return f"_all_gather({value}, {tuple(axes)}, group)" if axes else value

    def size_value(self, name: str, symbol: sympy.Symbol) -> str:
        """What ``_eval_T`` gets for a free size: the whole batch's where its operands are gathered."""
        if self.sharding and symbol == self.sharding.size and name in self.sharding.gathered:
            return self.size_name(self.sharding.total)
        return self.size_name(symbol)

    def distributed_lines(self, needed: set[sympy.Symbol]) -> list[str]:
        """The group (``None`` in one process) and the whole batch's size, where needed."""
        if not self.sharding:
            return []
        lines = ["group = _group(group)"]
        if self.sharding.total in needed:
            total, size = self.size_name(self.sharding.total), self.size_name(self.sharding.size)
            lines.append(f"{total} = _total({size}, group)")
        return lines

    def whole_batch(self) -> set[sympy.Symbol]:
        """The size computed from the local ones (never read from a shape or passed)."""
        return {self.sharding.total} if self.sharding else set()

    def needed_sizes(self, order: list[str]) -> set[sympy.Symbol]:
        """The free sizes the calls of ``order`` pass, the whole batch's size read as its local one."""
        needed = set().union(*(set(self.eval_sizes(n)) for n in order)) if order else set()
        if self.sharding and self.sharding.total in needed:
            needed.add(self.sharding.size)
        if self.sharding and any(n in self.sharding.gathered for n in order):
            needed |= {self.sharding.size, self.sharding.total}
        return needed

    def emit_init(self, params: list[Tensor], buffers: list[str]) -> None:
        """A module's ``__init__`` (``params`` as nn.Parameters, then ``buffers``; free sizes of
        the params as keywords) and its ``reset_parameters``."""
        out = self.lines.append
        init_sizes = sorted(self.symbols_in([p.name for p in params]), key=str)
        init_args = "".join(f", {self.size_name(s)}: int" for s in init_sizes)
        out(f"    def __init__(self{', *' if init_sizes else ''}{init_args}) -> None:")
        out("        super().__init__()")
        for p in params:
            shape = self.shape(p.axes) if p.axes else "(())"  # torch.empty(()) is a scalar
            out(f"        self.{self.attr(p.name)} = torch.nn.Parameter(torch.empty{shape})")
        for line in buffers:
            out(f"        {line}")
        out("        self.reset_parameters()")
        out("")
        out("    def reset_parameters(self) -> None:")
        out('        """Normal entries with variance 1 / fan-in (all axes but the first)."""')
        if not params:
            out("        pass")
        for p in params:
            fan_in = prod((self.program.axis_size(a) for a in p.axes[1:]), start=sympy.Integer(1))
            out(f"        torch.nn.init.normal_(self.{self.attr(p.name)}, std={self.expr_atom(fan_in)} ** -0.5)")
        out("")

    def emit_module(self) -> None:
        program = self.program
        params = [t for t in program.tensors.values() if t.kind is Kind.PARAM]
        inputs = [t for t in program.tensors.values() if t.kind is Kind.INPUT]
        patterns = [t for t in program.tensors.values() if t.kind is Kind.PATTERN]
        order = self.uses.defined_order_of(program.outputs)
        used = {d for name in order for d in self.uses.dependencies(name)}
        used |= {d for name in program.outputs for d in self.uses.interface(name)}
        params = [p for p in params if p.name in used]
        inputs = [t for t in inputs if t.name in used]
        patterns = [t for t in patterns if t.name in used]  # buffers, per the contract, even where a kernel replaced them
        out = self.lines.append
        name = self.namer("class", class_name(self.stem))
        returns = ", ".join(program.outputs)
        out("")
        out("")
        out(f"class {name}(torch.nn.Module):")
        out(f'    """The network of {literal_text(self.stem)}.tn as a module: params are nn.Parameters, patterns buffers.')
        out("")
        out(f"    forward({', '.join(t.name for t in inputs)}) returns {returns if len(program.outputs) == 1 else '(' + returns + ')'}.")
        out('    """')
        out("")
        buffers = [
            f'self.register_buffer("{self.attr(p.name)}", {self.pattern_call(p, "None", "torch.get_default_dtype()")}.clone(), persistent=False)'
            for p in patterns
            if self.is_concrete_pattern(p)
        ]
        self.emit_init(params, buffers)
        kept = drawn_in(program, order)
        needed = self.needed_sizes(order) | self.symbols_in(sources_of(self.program, kept))
        needed |= self.symbols_in([p.name for p in patterns if not self.is_concrete_pattern(p)])
        needed |= self.symbols_in([t.name for t in inputs])  # forward checks every input, as the functions do
        prefix = {p.name: f"self.{self.attr(p.name)}" for p in params}
        resolved = needed - self.whole_batch() - {k.size for k in kept}
        reads, missing = self.resolve_sizes([t.name for t in inputs] + [p.name for p in params], resolved, prefix)
        signature = "".join(f", {self.py(t.name)}: torch.Tensor" for t in inputs)
        keywords = self.keyword_sizes(missing) + (", group=None" if self.sharding else "") + (", seed=None" if kept else "")
        out(f"    def forward(self{signature}{', *' + keywords if keywords else ''}):")
        for line in reads + self.distributed_lines(needed):
            out(f"        {line}")
        for t in inputs:
            out(f'        _expect("{t.name}", {self.py(t.name)}, {self.shape(t.axes)})')
        anchor = inputs[0].name if inputs else params[0].name if params else None
        device = f"{prefix.get(anchor, self.py(anchor))}.device" if anchor else "None"
        dtype = f"{prefix.get(anchor, self.py(anchor))}.dtype" if anchor else "torch.get_default_dtype()"
        read = {o for d in order if not self.is_constant(d) for o in self.eval_operands[d]}
        for p in patterns:
            if self.is_concrete_pattern(p):
                prefix[p.name] = f"self.{self.attr(p.name)}"
            elif p.name in read:
                out(f"        {self.py(p.name)} = {self.pattern_call(p, device, dtype)}")
        if kept:
            built = {self.py(p.name) for p in patterns if p.name in read and not self.is_concrete_pattern(p)}
            value = self.source_value(built, prefix, device, dtype)
            for line in sampling_lines(program, kept, value, self.size_name, self.py, self.expr, device, dtype):
                out(f"        {line}")
        self.emit_calls(order, program.outputs, indent="        ", prefix=prefix, anchor=prefix.get(anchor, self.py(anchor)) if anchor else None)
        out(f"        return {', '.join(self.py(o) for o in program.outputs)}")

    def generate(self) -> str:
        program = self.program
        for name in program.tensors:  # claim user-visible names first, in file order
            self.py(name)
        order = self.uses.defined_order_of(program.outputs)
        header = [
            f'"""Generated by tnc from {literal_text(self.stem)}.tn; regenerate it rather than editing it.',
            "",
            "Outputs:",
            *(f"    {self.written_text(o)}" for o in program.outputs),
        ]
        free = [str(s) for s in self.free]
        if free:
            header += ["", f"Free sizes, read from the inputs' shapes: {', '.join(free)}."]
        if self.sharding:
            header += ["", SHARD_HEADER.format(size=self.sharding.size)]
        header += ['"""', "", "import torch", "", ""]
        self.lines = header + PRELUDE.strip("\n").splitlines()
        if any(t.pattern.moded(program.pattern_sizes(t.name)[2]) for t in program.tensors.values() if t.kind is Kind.PATTERN):
            self.lines += PADDED_PATTERN.rstrip("\n").splitlines()
        if self.sharding:
            self.lines += DISTRIBUTED.rstrip("\n").splitlines()
        if program.kept:
            self.lines += SAMPLING.rstrip("\n").splitlines()
        for name in order:
            self.emit_eval(name)
            if self.is_constant(name):
                self.emit_constant(name)
        for name in program.outputs:
            self.emit_public(name)
        for layer in self.dropout_layers():
            self.emit_dropout(*layer)
        self.emit_module()
        return "\n".join(self.lines) + "\n"


def to_torch_source(program: Program, stem: str = "network", strategies: tuple[str, ...] = STRATEGIES, shard: str | None = None) -> str:
    """Generate the standalone PyTorch module for ``program``'s outputs.

    ``strategies`` names the lowerings allowed besides planned einsum steps (see
    :mod:`tnc.lowering`); ``()`` gives the dense reference that multiplies by patterns.
    ``shard`` names a free size split across the ranks of a process group
    (:mod:`tnc.codegen.sharding`).
    """
    if not program.outputs:
        raise TncError(program.source, [Diagnostic(Span(1, 1), "nothing to compile: the file defines no output tensor")])
    return TorchGenerator(program, stem, strategies, shard).generate()
