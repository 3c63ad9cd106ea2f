"""Train a small CNN on scikit-learn's bundled digits with KFAC, its conv input factors from tnc.

    python examples/kfac/train_digits.py                  # tnc against unfold, KFAC-reduce and KFC
    python examples/kfac/train_digits.py --processes 2    # the same under DistributedDataParallel

Each run trains the same network from the same seed on the same batches twice, once with the
input factors tnc generates from factors.tn and once with the unfold-based ones, and prints both
loss curves: they are the same mathematics, so they agree to float rounding. With
``--processes 2`` every batch is split across two gloo processes (DistributedDataParallel
averages the gradients, the generated code all-reduces the factors) and the curve is compared
with one process on the whole batch.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from kfac import KFAC  # noqa: E402


def digits(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 8×8 digit images shipped with scikit-learn, scaled to [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=dtype)[:, None] / 16
    return images, torch.tensor(data.target)


def network(seed: int, dtype: torch.dtype) -> nn.Module:
    """Three convolutions (3×3, 3×3 stride 2, 2×2 stride 2; each a binding of the template) and a
    linear classifier."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 2, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64, 10),
    ).to(dtype)  # fmt: skip


HELD_OUT = 297  # the last images, never trained on


def train(options: argparse.Namespace, factors: str, kind: str, rank: int = 0, world: int = 1) -> tuple[list[float], float]:
    """The loss of each step on the whole batch and the accuracy on the held-out images; with
    ``world > 1`` this rank trains on its slice of every batch."""
    dtype = getattr(torch, options.dtype)
    images, labels = digits(dtype)
    (images, test_images), (labels, test_labels) = images.split(len(images) - HELD_OUT), labels.split(len(labels) - HELD_OUT)
    model = network(options.seed, dtype)
    preconditioner = KFAC(model, factors, kind, damping=options.damping, distributed=world > 1)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(options.seed))
    losses = []
    for step in range(options.steps):
        batch = order[torch.arange(step * options.batch, (step + 1) * options.batch) % len(images)]
        mine = batch.tensor_split(world)[rank]
        loss = nn.functional.cross_entropy(model(images[mine]), labels[mine])
        optimizer.zero_grad()
        loss.backward()
        preconditioner.step()
        optimizer.step()
        total = loss.detach() * len(mine) / len(batch)
        if world > 1:
            dist.all_reduce(total)
        losses.append(float(total))
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).double().mean()
    return losses, float(accuracy)


def _worker(rank: int, world: int, port: int, options: argparse.Namespace, kind: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        losses = train(options, "tnc", kind, rank, world)
        if rank == 0:
            results[kind] = losses
    finally:
        dist.destroy_process_group()


def distributed(options: argparse.Namespace, kind: str) -> tuple[list[float], float]:
    """The loss curve of ``train`` with tnc factors on ``options.processes`` gloo processes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, (options.processes, port, options, kind, results), nprocs=options.processes)
        return results[kind]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64, help="the global batch (split across processes)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--damping", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--kind", choices=["reduce", "expand", "both"], default="both")
    parser.add_argument("--processes", type=int, default=1, help="train under DistributedDataParallel")
    options = parser.parse_args(argv)
    tolerance = 1e-4 if options.dtype == "float32" else 1e-9
    worst = 0.0
    for kind in ["reduce", "expand"] if options.kind == "both" else [options.kind]:
        reference = train(options, "unfold", kind)
        if options.processes > 1:
            other, labels = distributed(options, kind), ("1 process, unfold", f"{options.processes} processes, tnc")
        else:
            other, labels = train(options, "tnc", kind), ("unfold factors", "tnc factors")
        (reference, accuracy), (other, other_accuracy) = reference, other
        gap = max(abs(a - b) / abs(a) for a, b in zip(reference, other))
        worst = max(worst, gap)
        print(f"KFAC-{kind}: loss per step ({labels[0]} | {labels[1]})")
        for step in range(0, options.steps, max(1, options.steps // 10)):
            print(f"  step {step:4d}  {reference[step]:.6f}  {other[step]:.6f}")
        print(f"  last      {reference[-1]:.6f}  {other[-1]:.6f}   largest relative gap {gap:.1e}")
        print(f"  held-out accuracy {accuracy:.1%} | {other_accuracy:.1%}")
    print(f"curves agree to {worst:.1e} (tolerance {tolerance:.0e})" if worst <= tolerance else "curves DIFFER")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
