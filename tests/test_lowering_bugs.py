"""Minimal reproducers of lowering bugs in the PyTorch target (these fail until tnc is fixed).

Each compares the generated code (default strategies) with an explicit computation; the dense
reference (``strategies=()``) is checked too, to show that only the lowering is wrong.
"""

from __future__ import annotations

import types

import torch

from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source

TOL = dict(atol=1e-10, rtol=1e-10)


def generated(text: str, strategies=("native", "window")):
    program = compile_source(text, "bug.tn", {})
    module = types.ModuleType("tnc_generated_lowering_bug")
    exec(compile(to_torch_source(program, "bug", strategies=strategies), "<bug>", "exec"), module.__dict__)
    return getattr(module, program.outputs[0])


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# Bug 1: lowering._input_vjp never checks that the kernel's second channel leg (the result's
# channel leg) differs from the legs it already matched. W[d, d, k] (the diagonal of W: a
# depthwise transpose convolution, d is not summed) is lowered to conv_transpose1d(V, W), which
# sums over d with the whole of W.
DEPTHWISE_TRANSPOSE = """
index n: 1, d: 2, e: 2, o: 2, k: 1
input V[n, d, o]
input W[d, e, k]
pattern P[i, o, k] = conv()
output Y[n, d, i] = V[n, d, o] * P[i, o, k] * W[d, d, k]
"""


def test_input_vjp_native_with_diagonal_kernel_channels() -> None:
    V, W = rand(1, 2, 2, seed=1), rand(2, 2, 1, seed=2)
    expected = V * torch.diagonal(W[..., 0])[None, :, None]  # K = 1, stride 1: i = o
    torch.testing.assert_close(generated(DEPTHWISE_TRANSPOSE, ())(V=V, W=W), expected, **TOL)
    torch.testing.assert_close(generated(DEPTHWISE_TRANSPOSE)(V=V, W=W), expected, **TOL)


# Bug 1b: the same unchecked leg when it is the pattern's output leg o: W[d, o, k].
TRANSPOSE_KERNEL_ON_O = """
index n: 1, d: 1, e: 2, o: 2, k: 1
input V[n, d, o]
input W[d, e, k]
pattern P[i, o, k] = conv()
output Y[n, o, i] = V[n, d, o] * P[i, o, k] * W[d, o, k]
"""


def test_input_vjp_native_with_kernel_channel_on_the_output_leg() -> None:
    V, W = rand(1, 1, 2, seed=3), rand(1, 2, 1, seed=4)
    expected = torch.diag_embed(torch.einsum("ndo,do->no", V, W[..., 0]))  # Y[n, o, i] nonzero at i = o
    torch.testing.assert_close(generated(TRANSPOSE_KERNEL_ON_O, ())(V=V, W=W), expected, **TOL)
    torch.testing.assert_close(generated(TRANSPOSE_KERNEL_ON_O)(V=V, W=W), expected, **TOL)


# Bug 2: lowering._weight_vjp never checks that the seed's channel leg differs from the other
# legs. V[n, o, o] (a diagonal of the seed) is lowered to conv1d_weight(X, ..., V), which reads V
# as a full [N, D, O] seed.
WEIGHT_VJP_DIAGONAL_SEED = """
index n: 1, c: 1, e: 2, i: 2, k: 1
input X[n, c, i]
input V[n, e, o]
pattern P[i, o, k] = conv()
output G[o, c, k] = X[n, c, i] * P[i, o, k] * V[n, o, o]
"""


def test_weight_vjp_native_with_seed_channel_on_the_output_leg() -> None:
    X, V = rand(1, 1, 2, seed=5), rand(1, 2, 2, seed=6)
    expected = torch.einsum("nco,noo->oc", X, V)[..., None]  # K = 1, stride 1: i = o
    torch.testing.assert_close(generated(WEIGHT_VJP_DIAGONAL_SEED, ())(X=X, V=V), expected, **TOL)
    torch.testing.assert_close(generated(WEIGHT_VJP_DIAGONAL_SEED)(X=X, V=V), expected, **TOL)


# Bug 3: a window on an axis whose size is free, when no leg of the term has that size:
# views.operand_view pads with max(0, 2 - I), but TorchGenerator.eval_sizes collects only the
# sizes of legs and coefficients, so _eval_Y has no parameter I and raises NameError.
FREE_WINDOWED_AXIS = """
size I
index o: 2, k: 1
input X[i]
index i: I
output Y[o, k] = X[o + k]
"""


def test_window_on_an_axis_of_free_size() -> None:
    X = rand(3, seed=7)
    torch.testing.assert_close(generated(FREE_WINDOWED_AXIS)(X=X), X[:2, None], **TOL)
