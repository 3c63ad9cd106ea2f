"""Shared by the tests: a spatial axis of a reference convolution."""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceAxis:
    """One spatial axis of a reference convolution, with PyTorch's padding rules."""

    size: int
    kernel: int
    stride: int
    dilation: int
    padding: object  # int, "same", "valid" or (left, right)

    def pads(self) -> tuple[int, int]:
        """PyTorch's rule: ``same`` pads dilation*(K-1) in total, the smaller half on the left."""
        if self.padding == "same":
            total = self.dilation * (self.kernel - 1)
            return total // 2, total - total // 2
        if self.padding == "valid":
            return 0, 0
        if isinstance(self.padding, tuple):
            return self.padding
        return self.padding, self.padding

    def output(self) -> int:
        left, right = self.pads()
        return (self.size + left + right - self.dilation * (self.kernel - 1) - 1) // self.stride + 1


def random_axis(rng: random.Random, size: int) -> ReferenceAxis:
    """A random axis (kernel, stride, dilation, padding incl. same and asymmetric) with 2+ outputs."""
    while True:
        kernel, stride, dilation = rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.choice([1, 2])
        padding = rng.choice([0, 1, "same", (1, 0), (0, 2)] if stride == 1 else [0, 1, (1, 0)])
        axis = ReferenceAxis(size, kernel, stride, dilation, padding)
        if axis.output() >= 2:
            return axis
