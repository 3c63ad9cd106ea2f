"""Every network in examples/ against an independent PyTorch reference.

One row per example: the `.tn` file, the shapes of its inputs (PyTorch layouts, batch BATCH) and a
reference written with torch.nn.functional, unfold, autograd or plain loops. Each row is checked
three ways: the generated output function, the generated nn.Module, and the einsum target
evaluated here with torch.einsum.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import sympy
import torch
import torch.nn.functional as F

from tnc.codegen.einsum import einsum_outputs, pattern_parameters
from tnc.codegen.torch_module import class_name, to_torch_source
from tnc.frontend import compile_source
from tnc.ir.network import Kind

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BATCH = 3
TOLERANCE = dict(atol=1e-10, rtol=1e-10)

# PyTorch warns that padding="same" with an even kernel copies the input; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")


# ----------------------------------------------------------------------------- references


def unfold_per_group(X: torch.Tensor, groups: int, **unfold_args) -> list[torch.Tensor]:
    """F.unfold of each group's channels: G tensors [N, C*K1*K2, O1*O2]."""
    return [F.unfold(part, **unfold_args) for part in X.chunk(groups, dim=1)]


def kfc_reference(X: torch.Tensor) -> torch.Tensor:
    """KFAC-expand: per group, U U^T / N summed over the output positions."""
    Us = unfold_per_group(X, 2, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))
    return torch.stack([torch.einsum("nip,njp->ij", U, U) / X.shape[0] for U in Us])


def kfac_reduce_reference(X: torch.Tensor) -> torch.Tensor:
    """KFAC-reduce: per group, u = unfold(X).mean over positions, then u^T u / N."""
    Us = unfold_per_group(X, 2, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))
    return torch.stack([U.mean(-1).T @ U.mean(-1) / X.shape[0] for U in Us])


def kfac_reduce_circular_reference(X: torch.Tensor) -> torch.Tensor:
    """KFAC-reduce of the circularly padded input: F.pad(mode="circular"), then unfold."""
    Us = unfold_per_group(F.pad(X, (0, 0, 1, 1), mode="circular"), 2, kernel_size=(3, 2), stride=(2, 1))
    return torch.stack([U.mean(-1).T @ U.mean(-1) / X.shape[0] for U in Us])


def conv2d_reflect_reference(X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """nn.Conv2d with padding_mode="reflect", its weight set to W."""
    layer = torch.nn.Conv2d(6, 8, (3, 3), stride=2, padding=1, groups=2, bias=False, padding_mode="reflect", dtype=X.dtype)
    return torch.func.functional_call(layer, {"weight": W}, (X,))


def with_ones(U: torch.Tensor) -> torch.Tensor:
    """The unfolded input [N, C*K1*K2, O] augmented by a row of ones (the bias's input)."""
    return torch.cat([U, torch.ones(U.shape[0], 1, U.shape[-1], dtype=U.dtype)], dim=1)


def kfc_bias_reference(X: torch.Tensor) -> torch.Tensor:
    Us = [with_ones(U) for U in unfold_per_group(X, 2, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))]
    return torch.stack([torch.einsum("nip,njp->ij", U, U) / X.shape[0] for U in Us])


def kfac_reduce_bias_reference(X: torch.Tensor) -> torch.Tensor:
    Us = [with_ones(U) for U in unfold_per_group(X, 2, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))]
    return torch.stack([U.mean(-1).T @ U.mean(-1) / X.shape[0] for U in Us])


def conv_bias_gradient(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor, V: torch.Tensor, wrt: str) -> torch.Tensor:
    """torch.autograd.grad of F.conv2d(X, W, b, stride=2, padding=1, groups=2) for the seed V."""
    X, W, b = (t.clone().requires_grad_() for t in (X, W, b))
    (gradient,) = torch.autograd.grad(F.conv2d(X, W, b, stride=2, padding=1, groups=2), dict(X=X, W=W, b=b)[wrt], V)
    return gradient


def transpose_unfold_reference(Z: torch.Tensor) -> torch.Tensor:
    """F.conv_transpose2d of Z with one-hot weights [G*C, C*K1*K2, K1, K2]: [N, G, C*K1*K2, I1, I2]."""
    eye = torch.eye(2 * 3 * 2, dtype=Z.dtype).reshape(12, 2, 3, 2).transpose(0, 1).repeat(2, 1, 1, 1)
    return F.conv_transpose2d(Z, eye, stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2).unflatten(1, (2, 12))


def kfac_reduce_transpose_reference(Z: torch.Tensor) -> torch.Tensor:
    u = transpose_unfold_reference(Z).flatten(3).mean(-1)
    return torch.einsum("ngi,ngj->gij", u, u) / Z.shape[0]


def ggn_gram_reference(S: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients J_n^T S[v, n] by autograd, then the Gram matrix of their vectors."""
    W = torch.randn(4, 2, 3, 2, dtype=X.dtype, requires_grad=True)  # [G*D, C, K1, K2]; the result does not depend on it
    V, N = S.shape[:2]
    gradients = []
    for v, n in itertools.product(range(V), range(N)):  # rows in (v n) order
        Y = F.conv2d(X[n : n + 1], W, stride=(1, 2), padding=1, groups=2)[0]
        (gradient,) = torch.autograd.grad(Y, W, grad_outputs=S[v, n])
        gradients.append(gradient.flatten())
    J = torch.stack(gradients)
    return J @ J.T


def toeplitz_loops(W: torch.Tensor, groups: int, in_size, stride, padding, dilation) -> torch.Tensor:
    """T[g, (d o1 o2), (c i1 i2)] of F.conv2d(X, W, stride, padding, dilation, groups), entry by entry."""
    GD, C, K1, K2 = W.shape
    D = GD // groups
    I1, I2 = in_size
    O1, O2 = ((I + 2 * p - d * (K - 1) - 1) // s + 1 for I, K, s, p, d in zip(in_size, (K1, K2), stride, padding, dilation))
    T = torch.zeros(groups, D * O1 * O2, C * I1 * I2, dtype=W.dtype)
    for g, d, c, o1, o2, k1, k2 in itertools.product(range(groups), range(D), range(C), range(O1), range(O2), range(K1), range(K2)):
        i1 = stride[0] * o1 + dilation[0] * k1 - padding[0]
        i2 = stride[1] * o2 + dilation[1] * k2 - padding[1]
        if 0 <= i1 < I1 and 0 <= i2 < I2:
            T[g, (d * O1 + o1) * O2 + o2, (c * I1 + i1) * I2 + i2] += W[g * D + d, c, k1, k2]
    return T


KERNEL_UNFOLD = dict(groups=2, in_size=(6, 5), stride=(2, 1), padding=(1, 1), dilation=(1, 2))


# ----------------------------------------------------------------------------- the table


@dataclass
class Case:
    file: str
    inputs: dict[str, tuple[int, ...]]  # every input and param, in PyTorch's layout
    reference: Callable[..., torch.Tensor]  # called with the inputs as keywords
    sizes: dict[str, int] = field(default_factory=lambda: {"N": BATCH})  # free sizes, for the einsum target


N = BATCH
CASES = [
    Case("conv1d.tn", {"X": (N, 6, 11), "W": (6, 2, 3)},
         lambda X, W: F.conv1d(X, W, stride=2, padding=2, dilation=2, groups=3)),
    Case("conv2d.tn", {"X": (N, 6, 9, 9), "W": (8, 3, 3, 3)},
         lambda X, W: F.conv2d(X, W, stride=2, padding=1, groups=2)),
    Case("conv2d_same.tn", {"X": (N, 4, 10, 7), "W": (6, 2, 4, 3)},
         lambda X, W: F.conv2d(X, W, padding="same", dilation=(3, 2), groups=2)),
    Case("conv2d_asymmetric.tn", {"X": (N, 3, 8, 6), "W": (2, 3, 3, 2)},
         lambda X, W: F.conv2d(F.pad(X, (0, 3, 1, 2)), W, stride=(2, 1))),
    Case("conv3d.tn", {"X": (N, 4, 5, 4, 6), "W": (4, 2, 3, 2, 3)},
         lambda X, W: F.conv3d(X, W, stride=(2, 1, 2), padding=(1, 0, 1), groups=2)),
    Case("unfold.tn", {"X": (N, 3, 7, 5)},
         lambda X: F.unfold(X, kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(2, 1))),
    Case("kernel_unfold.tn", {"W": (6, 2, 3, 2)},
         lambda W: toeplitz_loops(W, **KERNEL_UNFOLD), sizes={}),
    Case("fold.tn", {"U": (N, 12, 24)},
         lambda U: F.fold(U, output_size=(7, 6), kernel_size=(3, 2), dilation=(1, 2), padding=(1, 1), stride=(2, 1))),
    Case("conv_transpose2d.tn", {"Z": (N, 4, 4, 3), "W": (4, 3, 3, 2)},
         lambda Z, W: F.conv_transpose2d(Z, W, stride=(2, 3), padding=1, output_padding=(1, 2), dilation=(1, 2), groups=2)),
    Case("avg_pool2d.tn", {"X": (N, 3, 7, 8)},
         lambda X: F.avg_pool2d(X, kernel_size=(2, 3), stride=2, padding=1, count_include_pad=True)),
    Case("kfc.tn", {"X": (N, 4, 6, 5)}, kfc_reference),
    Case("kfac_reduce.tn", {"X": (N, 4, 6, 5)}, kfac_reduce_reference),
    Case("conv2d_bias.tn", {"X": (N, 6, 9, 9), "W": (8, 3, 3, 3), "b": (8,)},
         lambda X, W, b: F.conv2d(X, W, b, stride=2, padding=1, groups=2)),
    Case("conv2d_bias_grad_X.tn", {"V": (N, 8, 5, 5), "W": (8, 3, 3, 3), "b": (8,)},
         lambda V, W, b: conv_bias_gradient(torch.zeros(N, 6, 9, 9, dtype=V.dtype), W, b, V, "X")),
    Case("conv2d_bias_grad_W.tn", {"X": (N, 6, 9, 9), "V": (N, 8, 5, 5), "W": (8, 3, 3, 3), "b": (8,)},
         lambda X, V, W, b: conv_bias_gradient(X, W, b, V, "W")),
    Case("conv2d_bias_grad_b.tn", {"V": (N, 8, 5, 5), "W": (8, 3, 3, 3), "b": (8,)},
         lambda V, W, b: conv_bias_gradient(torch.zeros(N, 6, 9, 9, dtype=V.dtype), W, b, V, "b")),
    Case("kfc_bias.tn", {"X": (N, 4, 6, 5)}, kfc_bias_reference),
    Case("kfac_reduce_bias.tn", {"X": (N, 4, 6, 5)}, kfac_reduce_bias_reference),
    Case("transpose_unfold.tn", {"Z": (N, 4, 4, 3)}, transpose_unfold_reference),
    Case("kfac_reduce_transpose.tn", {"Z": (N, 4, 4, 3)}, kfac_reduce_transpose_reference),
    Case("conv2d_reflect.tn", {"X": (N, 6, 9, 9), "W": (8, 3, 3, 3)}, conv2d_reflect_reference),
    Case("kfac_reduce_circular.tn", {"X": (N, 4, 6, 5)}, kfac_reduce_circular_reference),
    Case("ggn_gram.tn", {"S": (2, N, 4, 5, 4), "X": (N, 4, 5, 6)}, ggn_gram_reference),
]
IDS = [case.file.removesuffix(".tn") for case in CASES]


# ----------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def program_of(file: str, sizes: tuple[tuple[str, int], ...] = ()):
    return compile_source((EXAMPLES / file).read_text(), file, dict(sizes) or None)


@functools.lru_cache(maxsize=None)
def generated_module(file: str) -> types.ModuleType:
    stem = file.removesuffix(".tn")
    source = to_torch_source(program_of(file), stem)
    assert "tnc" not in {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    module = types.ModuleType(f"generated_{stem}")
    exec(compile(source, f"<{stem}.py generated by tnc>", "exec"), module.__dict__)
    return module


def random_inputs(case: Case) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(sum(map(ord, case.file)))
    return {name: torch.randn(shape, generator=generator, dtype=torch.float64) for name, shape in case.inputs.items()}


def the_output(program) -> str:
    assert len(program.outputs) == 1, "each example defines one network"
    return program.outputs[0]


def conv_pattern(I: int, O: int, K: int, stride: int, left: int, dilation: int, right: int = 0, mode: str = "zeros") -> torch.Tensor:
    """Π[i, o, k] = 1 where i = stride*o + dilation*k - left, 0 <= i < I (written out entry by entry);
    with a padding mode, i is the position F.pad(mode=...) of the positions 0..I-1 reads there."""
    P = torch.zeros(I, O, K, dtype=torch.float64)
    read = list(range(I))
    if mode != "zeros":
        read = F.pad(torch.arange(I, dtype=torch.float64).view(1, 1, I), (left, right), mode=mode).view(-1).long().tolist()
    for o, k in itertools.product(range(O), range(K)):
        i = stride * o + dilation * k - (left if mode == "zeros" else 0)
        if 0 <= i < len(read):
            P[read[i], o, k] = 1
    return P


def evaluate_einsum_target(program, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run the einsum target's terms: operands reshaped to their views, one torch.einsum per term."""
    values = dict(inputs)
    for row in pattern_parameters(program):
        left, right = row["padding"]
        sizes = (int(row["input_size"]), int(row["output_size"]), int(row["kernel_size"]))
        mode = row.get("padding_mode", "zeros")
        values[row["name"]] = conv_pattern(*sizes, row["stride"], int(left), row["dilation"], int(right), mode)
    for output in einsum_outputs(program):
        total = 0
        for term in output.terms:
            operands = [
                torch.ones([int(s) for s in op.view], dtype=torch.float64) if op.name == "ones" else values[op.name].reshape([int(s) for s in op.view])
                for op in term.operands
            ]
            coefficient = program.concrete(sympy.sympify(term.coefficient, locals=dict(program.symbols)))
            total = total + float(coefficient) * torch.einsum(term.equation, *operands)
        values[output.name] = total.reshape([int(program.axis_size(tuple(axis))) for axis in output.axes])
    return {name: values[name] for name in program.outputs}


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_function_matches_reference(case: Case) -> None:
    program = program_of(case.file)
    output = getattr(generated_module(case.file), the_output(program))
    inputs = random_inputs(case)
    taken = inspect.signature(output).parameters  # a gradient takes only what it reads (gb: V alone)
    torch.testing.assert_close(output(**{k: v for k, v in inputs.items() if k in taken}), case.reference(**inputs), **TOLERANCE)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_module_forward_matches_reference(case: Case) -> None:
    program = program_of(case.file)
    Module = getattr(generated_module(case.file), class_name(case.file.removesuffix(".tn")))
    module = Module().double()
    inputs = random_inputs(case)
    params = {name for name, tensor in program.tensors.items() if tensor.kind is Kind.PARAM}
    held = {name for name, _ in module.named_parameters()}
    assert held == params or case.file.startswith("conv2d_bias_grad"), held  # a gradient holds what it reads
    assert held <= params
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(inputs[name])
    taken = inspect.signature(module.forward).parameters
    result = module(**{name: value for name, value in inputs.items() if name not in params and name in taken})
    torch.testing.assert_close(result, case.reference(**inputs), **TOLERANCE)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_einsum_target_matches_reference(case: Case) -> None:
    program = program_of(case.file, tuple(case.sizes.items()))
    assert not program.free_symbols()
    inputs = random_inputs(case)
    result = evaluate_einsum_target(program, inputs)[the_output(program)]
    torch.testing.assert_close(result, case.reference(**inputs), **TOLERANCE)


def test_toeplitz_loops_reproduce_conv2d() -> None:
    """The kernel-unfold reference itself: vec Y[n, g] = T[g] vec X[n, g] for F.conv2d."""
    G = KERNEL_UNFOLD["groups"]
    W = torch.randn(6, 2, 3, 2, dtype=torch.float64)
    X = torch.randn(BATCH, 4, *KERNEL_UNFOLD["in_size"], dtype=torch.float64)
    Y = F.conv2d(X, W, stride=KERNEL_UNFOLD["stride"], padding=KERNEL_UNFOLD["padding"], dilation=KERNEL_UNFOLD["dilation"], groups=G)
    T = toeplitz_loops(W, **KERNEL_UNFOLD)
    vec_X = X.reshape(BATCH, G, -1)
    torch.testing.assert_close(torch.einsum("gyx,ngx->ngy", T, vec_X).reshape(Y.shape), Y, **TOLERANCE)
