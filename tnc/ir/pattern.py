"""The convolution index pattern Π[i, o, k] and its size rules (contract §3)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

Size = sympy.Expr


@dataclass(frozen=True)
class ConvPattern:
    """``Π[i, o, k] = 1`` exactly when ``i = stride*o + dilation*k - left`` and ``0 <= i < I``.

    ``padding`` is ``"same"`` or a ``(left, right)`` pair of non-negative integers. A summed
    pattern ``M[i, k] = sum_o Π[i, o, k]`` has no output leg; its output count follows from I and K.
    """

    stride: int = 1
    dilation: int = 1
    padding: tuple[int, int] | str = (0, 0)
    output_padding: int = 0
    summed: bool = False  # legs [i, k]: the pattern summed over its output leg

    def pads(self, kernel: Size) -> tuple[Size, Size]:
        """Left and right padding; ``same`` pads ``dilation*(K-1)``, the smaller half on the left."""
        if self.padding == "same":
            total = self.dilation * (sympy.sympify(kernel) - 1)
            left = sympy.floor(total / 2)
            return left, total - left
        left, right = self.padding
        return sympy.Integer(left), sympy.Integer(right)

    def output_size(self, input_size: Size, kernel: Size) -> Size:
        left, right = self.pads(kernel)
        span = input_size + left + right - self.dilation * (kernel - 1) - 1
        return sympy.floor(span / self.stride) + 1

    def input_size(self, output_size: Size, kernel: Size) -> Size:
        """The input size of a transpose convolution with this pattern."""
        left, right = self.pads(kernel)
        return (output_size - 1) * self.stride - left - right + self.dilation * (kernel - 1) + 1 + self.output_padding

    def arguments(self) -> str:
        """The pattern as it is written in a ``.tn`` file, defaults omitted."""
        args = []
        if self.stride != 1:
            args.append(f"stride={self.stride}")
        if self.padding == "same":
            args.append("padding=same")
        elif self.padding != (0, 0):
            left, right = self.padding
            args.append(f"padding={left}" if left == right else f"padding=({left}, {right})")
        if self.dilation != 1:
            args.append(f"dilation={self.dilation}")
        if self.output_padding:
            args.append(f"output_padding={self.output_padding}")
        return f"conv({', '.join(args)})"
