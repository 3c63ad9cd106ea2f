"""Generated code for tensor dropout (:mod:`tnc.passes.sampling`): draw the kept slices of each
sampled leg, then take them from every tensor that carries the leg.

The functions (and ``forward``) of a program with sampled legs take ``seed=None``: an integer
makes the draw reproducible (a ``torch.Generator`` seeded with it, on the inputs' device),
``None`` draws from torch's global generator. Under ``torch.distributed`` each rank draws its own
slices (rank ``r`` seeds with the ``r``-th number drawn from the seed).
"""

from __future__ import annotations

from typing import Callable

from tnc.ir.program import Kept, Program, Selection

SAMPLING = '''

def _generator(seed, device):
    """A generator for this call's draw: seeded with ``seed``, or torch's global generator when
    there is none. Under ``torch.distributed`` rank 0 uses ``seed`` and rank ``r`` the ``r``-th
    number drawn from it (a seed drawn from torch's generator first when there is none), so the
    ranks draw independently, also when every rank seeded torch alike, and reproducibly."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if seed is None and not distributed:
        return None
    if seed is None:
        seed = int(torch.randint(2**62, (1,)))
    rank = torch.distributed.get_rank() if distributed else 0
    if rank:
        seed = int(torch.randint(2**62, (rank,), generator=torch.Generator().manual_seed(seed))[-1])
    return torch.Generator(device=device).manual_seed(seed)


def _norms(tensor: torch.Tensor, axis: int) -> torch.Tensor:
    """The norm of each slice of ``tensor`` along ``axis``."""
    return torch.linalg.vector_norm(tensor.movedim(axis, 0).reshape(tensor.shape[axis], -1), dim=1)


def _probabilities(norms: torch.Tensor, expected: float) -> torch.Tensor:
    """Keep probabilities proportional to ``norms``, at most 1, summing to ``expected`` (slices
    whose share would pass 1 are kept surely, the rest shared again, until none passes)."""
    p = torch.zeros_like(norms)
    sure = torch.zeros_like(norms, dtype=torch.bool)
    for _ in range(len(norms)):
        rest = norms.masked_fill(sure, 0)
        if float(rest.sum()) <= 0:
            break
        p = torch.where(sure, torch.ones_like(p), rest * (expected - int(sure.sum())) / rest.sum())
        if not bool((p > 1).any()):
            break
        sure |= p >= 1
    return p.clamp(max=1)


def _through_rows(tensor: torch.Tensor, axis: int, rows, O: int, K: int, stride: int, left: int, dilation: int):
    """``tensor`` read through the kept rows of a pattern P[i, o, k]: its axis ``axis`` (o)
    becomes two, the kept row j and k, holding the slice o = (rows[j] + left - dilation*k) / stride
    where that is a whole number in [0, O), else zeros."""
    shifted = rows[:, None] + left - dilation * torch.arange(K, device=rows.device)
    valid = (shifted % stride == 0) & (shifted >= 0) & (shifted < stride * O)
    taken = tensor.index_select(axis, torch.where(valid, shifted // stride, 0).flatten())
    mask = valid.to(tensor.dtype).view(valid.shape + (1,) * (tensor.dim() - axis - 1))
    return taken.unflatten(axis, valid.shape) * mask


def _keep(size: int, keep: float, norms, minimum: int, generator, device, dtype):
    """The indices of the kept slices of a leg of ``size`` and their weights 1/p. Each slice is
    kept independently with probability ``keep``, or proportional to ``norms`` (``keep * size``
    expected). With a ``minimum``, that many are kept surely (the largest by ``norms``, else
    chosen uniformly) and each of the rest as before (``keep * (size - minimum)`` expected); a
    uniformly chosen slice is then kept with p = (minimum + keep * (size - minimum)) / size."""
    minimum = min(minimum, size)
    p = torch.full((size,), keep, device=device, dtype=dtype)  # each slice's chance in the draw
    sure = torch.zeros(size, device=device, dtype=torch.bool)
    if norms is not None and float(norms.sum()) > 0:
        sure[torch.topk(norms, minimum).indices] = True
        p = _probabilities(norms.to(dtype).masked_fill(sure, 0), keep * (size - minimum))
        included = p.masked_fill(sure, 1)
    else:
        if minimum:
            sure[torch.randperm(size, generator=generator, device=device)[:minimum]] = True
        included = p * (1 - minimum / size) + minimum / size
    draw = torch.rand(size, generator=generator, device=device, dtype=dtype)
    kept = torch.nonzero((draw < p) | sure).flatten()
    return kept, 1 / included[kept]
'''


def drawn_in(program: Program, order: list[str]) -> list[Kept]:
    """The sampled legs that the definitions of ``order`` draw, in order."""
    return [k for name in order for k in program.kept.get(name, ())]


def sampling_lines(program: Program, kept: list[Kept], value: Callable[[str], str], size_name, py, expr, device: str, dtype: str) -> list[str]:
    """Statements that draw ``kept`` and make the SAMPLED tensors that read them; ``value(name)``
    spells an input, param or pattern of the program where the function holds it."""
    lines = draw_lines(program, kept, value, py, expr, device, dtype) + kept_sizes(kept, size_name)
    return lines + selection_lines(program, kept, value, py, expr)


def draw_lines(program: Program, kept: list[Kept], value: Callable[[str], str], py, expr, device: str, dtype: str) -> list[str]:
    """Statements that draw the kept indices ``_<index>`` and their weights."""
    lines = [f"_rng = _generator(seed, {device})"]
    for k in kept:
        norms = "None"
        if k.sample.by is not None:
            selection, position = next((s, p) for s in program.selections.values() if s.source == k.sample.by for p, j in s.legs if j == k)
            norms = f"_norms({_view(program, selection, value, expr)}, {position})"
        size = expr(program.size(k.sample.leg))
        keep = f"{k.sample.keep!r}, {norms}, {k.sample.minimum}"
        lines.append(f"_{k.index}, {py(k.weights)} = _keep({size}, {keep}, _rng, {device}, {dtype})")
    return lines


def kept_sizes(kept: list[Kept], size_name) -> list[str]:
    """Statements that set the number of kept slices of each leg, a size of the sampled network."""
    return [f"{size_name(k.size)} = _{k.index}.numel()" for k in kept]


def selection_lines(program: Program, kept: list[Kept], value: Callable[[str], str], py, expr, sources: set[str] | None = None) -> list[str]:
    """Statements that make the SAMPLED tensors of ``kept`` (of ``sources`` only, when given)."""
    lines = []
    for name, selection in selections_of(program, kept).items():
        if sources is None or selection.source in sources:
            text = _view(program, selection, value, expr)
            if selection.through is not None:
                text = _through(program, selection, text, expr)
            for position, k in selection.legs if selection.through is None else ():
                text += f".index_select({position}, _{k.index})"
            lines.append(f"{py(name)} = {text}")
    return lines


def sources_of(program: Program, kept: list[Kept]) -> list[str]:
    """The tensors whose slices the draws of ``kept`` keep, once each."""
    return list(dict.fromkeys(s.source for s in selections_of(program, kept).values()))


def selections_of(program: Program, kept: list[Kept]) -> dict[str, Selection]:
    """The SAMPLED tensors whose every sampled leg is among ``kept``."""
    drawn = {k.index for k in kept}
    return {n: s for n, s in program.selections.items() if all(k.index in drawn for _, k in s.legs)}


def _through(program: Program, selection: Selection, text: str, expr) -> str:
    """``text`` read through the kept rows of the pattern ``selection.through``."""
    tensor = program.tensors[selection.through]
    _, O, K = program.pattern_sizes(tensor.name)
    ((position, k),) = selection.legs
    left, pattern = tensor.pattern.pads(K)[0], tensor.pattern
    return f"_through_rows({text}, {position}, _{k.index}, {expr(O)}, {expr(K)}, {pattern.stride}, {expr(left)}, {pattern.dilation})"


def _view(program: Program, selection: Selection, value: Callable[[str], str], expr) -> str:
    """The source of ``selection`` with its grouped axes that hold a sampled leg split."""
    text = value(selection.source)
    for position, legs in selection.unflatten:
        text += f".unflatten({position}, ({', '.join(expr(program.size(leg)) for leg in legs)}))"
    return text
