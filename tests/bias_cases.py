"""Shared by the bias tests: random convolution hyperparameters and the `.tn` text of a layer."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from conv_reference import ReferenceAxis


@dataclass(frozen=True)
class Layer:
    """A grouped convolution of any dimension: channels per group C -> D, spatial axes."""

    groups: int
    C: int
    D: int
    axes: tuple[ReferenceAxis, ...]

    @property
    def dims(self) -> int:
        return len(self.axes)

    def padding_text(self, axis: ReferenceAxis) -> str:
        if isinstance(axis.padding, tuple):
            return f"({axis.padding[0]}, {axis.padding[1]})"
        return str(axis.padding)

    def patterns(self) -> list[str]:
        return [
            f"pattern P{j}[i{j}, o{j}, k{j}] = conv(stride={a.stride}, padding={self.padding_text(a)}, dilation={a.dilation})"
            for j, a in enumerate(self.axes, start=1)
        ]

    def legs(self, letter: str, prime: str = "") -> str:
        return ", ".join(f"{letter}{j}{prime}" for j in range(1, self.dims + 1))

    def header(self) -> list[str]:
        sizes = ", ".join(f"i{j}: {a.size}, k{j}: {a.kernel}" for j, a in enumerate(self.axes, start=1))
        return ["size N", f"size G = {self.groups}, C = {self.C}, D = {self.D}", "index n: N, g: G, c: C, d: D", f"index {sizes}"]

    def unfolded(self, prime: str = "", out: str = "") -> str:
        """X * P1 * ...: the unfolded input; ``prime`` primes the copy's legs, ``out`` its output legs."""
        patterns = " * ".join(f"P{j}[i{j}{prime}, o{j}{out}, k{j}{prime}]" for j in range(1, self.dims + 1))
        return f"X[n, (g c{prime}), {self.legs('i', prime)}] * {patterns}"

    def reference_input(self, X: torch.Tensor) -> torch.Tensor:
        """X padded as every axis says (PyTorch's rules, also for 'same' and asymmetric)."""
        pads = [p for a in reversed(self.axes) for p in a.pads()]
        return F.pad(X, pads)

    def conv(self, X: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        stride = tuple(a.stride for a in self.axes)
        dilation = tuple(a.dilation for a in self.axes)
        return conv(self.reference_input(X), W, b, stride=stride, dilation=dilation, groups=self.groups)

    def unfold(self, X: torch.Tensor) -> list[torch.Tensor]:
        """Per group, the unfolded input [N, C*K.., O..] (a direct loop over the kernel offsets)."""
        padded = self.reference_input(X)
        groups = []
        for part in padded.chunk(self.groups, dim=1):
            windows = part
            for j, a in enumerate(self.axes):
                span = a.dilation * (a.kernel - 1) + 1
                windows = windows.unfold(2 + j, span, a.stride)  # [..., O_j, span]
            # windows: [N, C, O.., span..]; keep every dilation-th entry of each span
            index = tuple(slice(None, None, a.dilation) for a in self.axes)
            windows = windows[(Ellipsis, *index)]
            N, C = windows.shape[:2]
            outs = windows.shape[2 : 2 + self.dims]
            # [N, C, O.., K..] -> [N, C*K.., O..]
            order = [0, 1, *range(2 + self.dims, 2 + 2 * self.dims), *range(2, 2 + self.dims)]
            groups.append(windows.permute(order).reshape(N, -1, *outs).flatten(2))
        return groups


def random_layer(seed: int, dims: int) -> Layer:
    """Random groups, channels and per-axis size, kernel, stride, dilation and padding (an integer,
    'same' at stride 1, or an asymmetric pair), always with an output of at least 1."""
    rng = random.Random(seed)
    groups = rng.choice((1, 2, 3))
    axes = []
    for _ in range(dims):
        while True:
            kernel, stride, dilation = rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 2)
            padding = rng.choice((0, 1, "pair", "same"))
            if padding == "same":
                stride = 1
            elif padding == "pair":
                padding = (rng.randint(0, 2), rng.randint(0, 2))
            axis = ReferenceAxis(rng.randint(3, 7), kernel, stride, dilation, padding)
            if axis.output() >= 1:
                axes.append(axis)
                break
    return Layer(groups, rng.randint(1, 3), rng.randint(1, 3), tuple(axes))
