"""The convolution index pattern Π[i, o, k] and its size rules (contract §3)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

Size = sympy.Expr

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv{1,2,3}d's padding_mode


@dataclass(frozen=True)
class ConvPattern:
    """``Π[i, o, k] = 1`` exactly when ``i = m(stride*o + dilation*k - left)``, where ``m`` maps a
    position of the padded axis to the input position the padding mode reads there: itself inside
    ``[0, I)``; outside, nothing for ``zeros``, the mirror image without the edge for ``reflect``,
    the nearest edge for ``replicate``, the position modulo I for ``circular``.

    ``padding`` is ``"same"`` or a ``(left, right)`` pair of non-negative integers. A summed
    pattern ``M[i, k] = sum_o Π[i, o, k]`` has no output leg; its output count follows from I and K.
    """

    stride: int = 1
    dilation: int = 1
    padding: tuple[int, int] | str = (0, 0)
    output_padding: int = 0
    summed: bool = False  # legs [i, k]: the pattern summed over its output leg
    padding_mode: str = "zeros"  # one of PADDING_MODES

    def pads(self, kernel: Size) -> tuple[Size, Size]:
        """Left and right padding; ``same`` pads ``dilation*(K-1)``, the smaller half on the left."""
        if self.padding == "same":
            total = self.dilation * (sympy.sympify(kernel) - 1)
            left = sympy.floor(total / 2)
            return left, total - left
        left, right = self.padding
        return sympy.Integer(left), sympy.Integer(right)

    def moded(self, kernel: Size) -> bool:
        """Whether the padding reads the input (a mode other than zeros, and some padding)."""
        return self.padding_mode != "zeros" and any(p != 0 for p in self.pads(kernel))

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
        if self.padding_mode != "zeros":
            args.append(f"padding_mode={self.padding_mode}")
        return f"conv({', '.join(args)})"
