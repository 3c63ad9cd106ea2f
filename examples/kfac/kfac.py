"""A KFAC preconditioner for ``nn.Conv2d`` and ``nn.Linear`` layers (bias included).

Every layer's gradient ``M = [dW | db]`` (as a ``[D, C*K*K + 1]`` matrix; ``dW`` alone for a layer
without bias) is replaced by ``(G + λI)⁻¹ M (A + λI)⁻¹``, where ``A`` is the input factor and ``G``
the output-gradient factor, both averaged over the batch and kept as running means; the inverses
are refreshed every ``inverse_every`` steps. The convolutions' input factors come from
code that tnc generates from one template, ``factors.tn`` (``factors="tnc"``), or from
``F.unfold`` (``factors="unfold"``, the standard of KFAC libraries); the rest is plain PyTorch.

``kind="expand"`` is KFAC-expand (KFC: every output position a sample), ``kind="reduce"`` is
KFAC-reduce (positions averaged in ``A``, summed in ``G``). Under ``torch.distributed`` (pass the
``group``) each rank holds a slice of the batch: the tnc factors are compiled with ``shard="N"``
and all-reduce themselves, the others are all-reduced here, and ``N`` is the global batch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import tnc

TEMPLATE = Path(__file__).with_name("factors.tn")
TEMPLATES = {False: tnc.Template(TEMPLATE), True: tnc.Template(TEMPLATE, shard="N")}  # by `distributed`


class KFAC:
    """Hooks on ``model``'s conv and linear layers; :meth:`step` preconditions their ``.grad``."""

    def __init__(
        self,
        model: nn.Module,
        factors: str = "tnc",
        kind: str = "reduce",
        damping: float = 1e-3,
        decay: float = 0.95,
        inverse_every: int = 1,
        group: dist.ProcessGroup | None = None,
        distributed: bool = False,
    ) -> None:
        if factors not in ("tnc", "unfold") or kind not in ("expand", "reduce"):
            raise ValueError(f"factors must be 'tnc' or 'unfold', kind 'expand' or 'reduce'; got {factors!r}, {kind!r}")
        self.factors, self.kind, self.damping, self.decay = factors, kind, damping, decay
        self.inverse_every, self.steps = inverse_every, 0
        self.distributed, self.group = distributed or group is not None, group
        self.template = TEMPLATES[self.distributed]  # each layer configuration compiled once per process
        self.layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.A: dict[nn.Module, torch.Tensor] = {}
        self.G: dict[nn.Module, torch.Tensor] = {}
        self.inverses: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.generated: dict[nn.Module, object] = {}  # each conv's factor function, looked up once
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d) and (layer.groups, layer.dilation, layer.padding_mode) != (1, (1, 1), "zeros"):
                raise ValueError(f"{layer}: this example handles plain convolutions (no groups, dilation, padding modes)")
            layer.register_forward_hook(self._forward)

    def _forward(self, layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            return
        x = inputs[0].detach()
        self._average(self.A, layer, self._input_factor(layer, x))
        output.register_hook(lambda g: self._average(self.G, layer, self._gradient_factor(layer, g, len(x))))

    def _input_factor(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``A`` of this batch: over the global batch, normalised by its size; the bias's row and
        column (the input's constant 1) dropped for a layer without bias."""
        A = self._augmented_input_factor(layer, x)
        return A if layer.bias is not None else A[:-1, :-1]

    def _augmented_input_factor(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, nn.Linear):
            a = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
            return self._sum(a.T @ a) / self._batch(len(x))
        (K, _), (S, _), (P, _) = layer.kernel_size, layer.stride, layer.padding
        if self.factors == "tnc":
            output = "KFC" if self.kind == "expand" else "KFAC_reduce"
            if layer not in self.generated:  # the template re-reads and hashes its file per lookup
                self.generated[layer] = self.template.function(output, K=K, S=S, P=P, C=layer.in_channels)
            factor = self.generated[layer]
            return factor(X=x, group=self.group) if self.distributed else factor(X=x)
        U = F.unfold(x, K, stride=S, padding=P)
        U = torch.cat([U, U.new_ones(len(x), 1, U.shape[2])], dim=1)
        if self.kind == "expand":
            return self._sum(torch.einsum("nil,njl->ij", U, U)) / self._batch(len(x))
        u = U.mean(2)
        return self._sum(u.T @ u) / self._batch(len(x))

    def _gradient_factor(self, layer: nn.Module, g: torch.Tensor, local: int) -> torch.Tensor:
        """``G`` of this batch from the gradient of the batch-mean loss by the layer's output."""
        g = g.detach() * local  # the gradients of the per-sample losses
        if isinstance(layer, nn.Conv2d):
            g = g.flatten(2)
            g = g.transpose(1, 2).flatten(0, 1) if self.kind == "expand" else g.sum(2)
        return self._sum(g.T @ g) / self._batch(local)

    def _batch(self, local: int) -> int:
        if not self.distributed:
            return local
        size = torch.tensor(local)
        dist.all_reduce(size, group=self.group)
        return int(size)

    def _sum(self, partial: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(partial, group=self.group)
        return partial

    def _average(self, running: dict, layer: nn.Module, new: torch.Tensor) -> None:
        old = running.get(layer)
        if old is None:
            running[layer] = new
        else:  # in place: a factor can be large
            old.mul_(self.decay).add_(new, alpha=1 - self.decay)

    def _inverse(self, factor: torch.Tensor) -> torch.Tensor:
        """``(factor + λI)⁻¹`` through its Cholesky factor (the factor is symmetric, at least PSD)."""
        damped = factor + self.damping * torch.eye(len(factor), dtype=factor.dtype, device=factor.device)
        return torch.cholesky_inverse(torch.linalg.cholesky(damped))

    @torch.no_grad()
    def step(self) -> None:
        """Replace each layer's gradient by its preconditioned gradient."""
        refresh = self.steps % self.inverse_every == 0
        self.steps += 1
        for layer in self.layers:
            if refresh:
                self.inverses[layer] = self._inverse(self.A[layer]), self._inverse(self.G[layer])
            A_inverse, G_inverse = self.inverses[layer]
            M = layer.weight.grad.flatten(1)
            if layer.bias is not None:
                M = torch.cat([M, layer.bias.grad[:, None]], dim=1)
            update = G_inverse @ M @ A_inverse
            layer.weight.grad.copy_(update[:, : M.shape[1] - (layer.bias is not None)].view_as(layer.weight))
            if layer.bias is not None:
                layer.bias.grad.copy_(update[:, -1])
