"""Check the generated module for examples/conv2d.tn against PyTorch: python examples/demo_check.py OUTDIR."""

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

path = Path(sys.argv[1] if len(sys.argv) > 1 else "out") / "conv2d.py"
spec = importlib.util.spec_from_file_location("conv2d", path)
conv2d = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conv2d)

torch.manual_seed(0)
X = torch.randn(4, 6, 9, 9, dtype=torch.float64)
W = torch.randn(8, 3, 3, 3, dtype=torch.float64)
Y = conv2d.Y(X=X, W=W)
reference = F.conv2d(X, W, stride=2, padding=1, groups=2)
error = (Y - reference).abs().max().item()
print(f"{path}: Y{tuple(Y.shape)} vs F.conv2d(stride=2, padding=1, groups=2), float64: max abs difference {error:.1e}")
sys.exit(0 if error < 1e-10 else 1)
