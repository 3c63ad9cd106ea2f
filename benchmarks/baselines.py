"""The reference implementations tnc is timed against, in the same process.

- forward: ``F.conv2d``; input and weight VJP: ``torch.autograd.grad`` through ``F.conv2d``
  (the graph is built once; each timed call is the backward alone, ``retain_graph=True``), which
  computes only the gradient asked for;
- KFC: the unfold-based standard, ``U = F.unfold(X)``, per group ``U U^T`` summed over the
  output positions, divided by N;
- KFAC-reduce: the unfold-based standard, ``u = F.unfold(X).mean(-1)``, per group ``u^T u / N``;
- einconv (when installed): its einsum expression of the same operation, built once outside the
  timed region (index patterns and einconv's own simplifications included), then timed as the
  ``torch.einsum`` call its functionals make (the contraction order chosen by opt_einsum per call),
  its result made contiguous (``.contiguous()``, timed) as tnc's is.

Every function returns a callable without arguments, so the timing loop treats all methods alike.
KFC and KFAC-reduce results have shape [G, C/G*K1*K2, C/G*K1*K2] (one factor per group).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from benchmarks.layers import Layer

BASELINE_NAME = {
    "forward": "PyTorch",
    "input_vjp": "PyTorch",
    "weight_vjp": "PyTorch",
    "kfc": "unfold",
    "kfac_reduce": "unfold",
}


def conv_args(layer: Layer) -> dict:
    return dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)


def make_tensors(layer: Layer, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """X, W and the VJP seed V (float32), with W at the usual 1/fan-in scale."""
    generator = torch.Generator().manual_seed(seed + layer.id)
    (K1, K2), (O1, O2) = layer.kernel, layer.out_size
    fan_in = layer.c_in // layer.groups * K1 * K2
    X = torch.randn(batch, layer.c_in, *layer.size, generator=generator)
    W = torch.randn(layer.c_out, layer.c_in // layer.groups, K1, K2, generator=generator) / fan_in**0.5
    V = torch.randn(batch, layer.c_out, O1, O2, generator=generator)
    return {"X": X, "W": W, "V": V}


def baseline(layer: Layer, op: str, t: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    X, W, V = t["X"], t["W"], t["V"]
    args = conv_args(layer)
    if op == "forward":
        return lambda: F.conv2d(X, W, **args)
    if op in ("input_vjp", "weight_vjp"):
        wrt = (X if op == "input_vjp" else W).detach().requires_grad_(True)
        Xg, Wg = (wrt, W) if op == "input_vjp" else (X, wrt)
        Y = F.conv2d(Xg, Wg, **args)
        return lambda: torch.autograd.grad(Y, wrt, V, retain_graph=True)[0]
    if op == "kfc":
        return lambda: kfc_unfold(layer, X)
    if op == "kfac_reduce":
        return lambda: kfac_reduce_unfold(layer, X)
    raise ValueError(op)


def _unfold(layer: Layer, X: torch.Tensor) -> torch.Tensor:
    """F.unfold reshaped per group: [N, G, C/G*K1*K2, O1*O2]."""
    U = F.unfold(X, layer.kernel, padding=layer.padding, stride=layer.stride)
    return U.reshape(X.shape[0], layer.groups, -1, U.shape[-1])


def kfc_unfold(layer: Layer, X: torch.Tensor) -> torch.Tensor:
    U = _unfold(layer, X)
    return torch.einsum("ngil,ngjl->gij", U, U) / X.shape[0]


def kfac_reduce_unfold(layer: Layer, X: torch.Tensor) -> torch.Tensor:
    u = _unfold(layer, X).mean(-1)
    return torch.einsum("ngi,ngj->gij", u, u) / X.shape[0]


def einconv_available() -> str | None:
    """einconv's version, or None when it is not installed."""
    try:
        from importlib.metadata import version

        import einconv  # noqa: F401

        return version("einconv")
    except Exception:  # noqa: BLE001 - any import problem means: no einconv baseline
        return None


def einconv_fn(layer: Layer, op: str, t: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    from einconv.expressions import (
        convNd_forward,
        convNd_input_vjp,
        convNd_kfac_reduce,
        convNd_kfc,
        convNd_weight_vjp,
    )

    X, W, V = t["X"], t["W"], t["V"]
    s, p, g = layer.stride, layer.padding, layer.groups
    if op == "forward":
        equation, operands, shape = convNd_forward.einsum_expression(X, W, stride=s, padding=p, groups=g)
    elif op == "input_vjp":
        equation, operands, shape = convNd_input_vjp.einsum_expression(W, V, layer.size, stride=s, padding=p, groups=g)
    elif op == "weight_vjp":
        equation, operands, shape = convNd_weight_vjp.einsum_expression(X, V, layer.kernel, padding=p, stride=s, groups=g)
    elif op == "kfc":
        equation, operands, shape = convNd_kfc.einsum_expression(X, layer.kernel, stride=s, padding=p, groups=g)
    elif op == "kfac_reduce":
        equation, operands, shape = convNd_kfac_reduce.einsum_expression(X, layer.kernel, stride=s, padding=p, groups=g)
    else:
        raise ValueError(op)
    # torch.einsum may return a strided view (no copy); tnc's native kernels write contiguous
    # results, so the timed call makes einconv's contiguous too (a no-op where it already is)
    return lambda: torch.einsum(equation, *operands).reshape(shape).contiguous()
