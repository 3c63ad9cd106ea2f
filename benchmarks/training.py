"""Second-order training end to end: ``python -m benchmarks.training``.

The paper's end-to-end measurement on this CPU: time per optimizer step and peak memory of SGD,
of KFAC with unfold-based input factors and of KFAC with the factors tnc generates from
examples/kfac/factors.tn (the preconditioner of examples/kfac/kfac.py), on two architectures of
shared/reference/cnn-layers.md: All-CNN-C at its CIFAR resolution 32×32 and a ResNet18 at a reduced
resolution and width that fit this machine. Synthetic images and labels, cross-entropy, float32,
SGD with momentum after the preconditioner; the factors are updated every step, the inverses
every ``--inverse-every`` steps, so a timed call is that many steps (the inverse amortised) and
the memory is the peak over such a block. tnc's compile time (every layer configuration of the
network, once per process) is reported on its own. Writes benchmarks/training.md, training.json
and training.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmarks.measure import (
    OtherLoad,
    peak_memory,
    pyplot,
    time_methods,
    wait_for_quiet,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "kfac"))
from kfac import KFAC, TEMPLATES  # noqa: E402

OVERHEAD_TARGET, MEMORY_TARGET = 0.5, 1.1  # tnc overhead / unfold overhead; KFAC-reduce memory / SGD


def all_cnn_c(width: float = 1.0) -> nn.Module:
    """All-CNN-C (rows 6-14 of cnn-layers.md: 3×32×32 in, 100 classes), conv layers with bias."""
    a, b = round(96 * width), round(192 * width)
    spec = [(3, a, 3, 1, 1), (a, a, 3, 1, 1), (a, a, 3, 2, 1), (a, b, 3, 1, 1), (b, b, 3, 1, 1),
            (b, b, 3, 2, 1), (b, b, 3, 1, 0), (b, b, 1, 1, 0), (b, 100, 1, 1, 0)]  # fmt: skip
    layers: list[nn.Module] = []
    for c_in, c_out, k, s, p in spec:
        layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), nn.ReLU()]
    return nn.Sequential(*layers[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())


class _Block(nn.Module):
    """ResNet's basic block: two 3×3 convolutions, a 1×1 stride-2 shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet18(width: float = 1.0, classes: int = 100) -> nn.Module:
    """ResNet18 (rows 20-30 of cnn-layers.md; stem 7×7 stride 2, max-pool, four stages of two
    basic blocks), its channels scaled by ``width``."""
    c = [round(64 * width * 2**i) for i in range(4)]
    stages = []
    for i, channels in enumerate(c):
        previous = c[max(i - 1, 0)]
        stages += [_Block(previous, channels, 1 if i == 0 else 2), _Block(channels, channels, 1)]
    stem = [nn.Conv2d(3, c[0], 7, 2, 3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    return nn.Sequential(*stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[3], classes))


NETWORKS: dict[str, tuple[Callable[[float], nn.Module], int]] = {  # name: (builder, resolution)
    "All-CNN-C": (all_cnn_c, 32),
    "ResNet18": (resnet18, 128),
}
METHODS = ("SGD", "KFAC-reduce fixed", "KFAC-reduce unfold", "KFAC-reduce tnc", "KFC unfold", "KFC tnc")


class FixedInputFactors(KFAC):
    """KFAC whose input factors are computed once and then reused (copied): its time is that of
    everything KFAC does besides computing them, which unfold and tnc share."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fixed: dict[nn.Module, torch.Tensor] = {}

    def _input_factor(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if layer not in self.fixed:
            self.fixed[layer] = super()._input_factor(layer, x)
        return self.fixed[layer].clone()


def trainer(name: str, method: str, args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], int], nn.Module]:
    """A block of ``args.inverse_every`` optimizer steps of ``method`` on network ``name``, the
    bytes it holds between blocks (model, gradients, optimizer and preconditioner state, data),
    and the model it trains."""
    build, resolution = NETWORKS[name]
    torch.manual_seed(0)
    model = build(args.width)
    images = torch.randn(args.batch, 3, resolution, resolution)
    labels = torch.randint(0, 100, (args.batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    preconditioner = None
    if method != "SGD":
        kind, factors = method.split()
        build = FixedInputFactors if factors == "fixed" else KFAC
        preconditioner = build(model, "unfold" if factors == "fixed" else factors, "reduce" if kind == "KFAC-reduce" else "expand",
                               damping=1.0, inverse_every=args.inverse_every)

    def steps() -> None:
        for _ in range(args.inverse_every):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            if preconditioner is not None:
                preconditioner.step()
            optimizer.step()

    def held() -> int:
        tensors = [images, labels, *model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None)]
        tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        if preconditioner is not None:
            tensors += [*preconditioner.A.values(), *preconditioner.G.values()]
            tensors += [t for pair in preconditioner.inverses.values() for t in pair]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    return steps, held, model


def compile_seconds(name: str, args: argparse.Namespace) -> float:
    """Seconds to compile every conv layer configuration of the network, both factors, in a
    fresh cache (what the first step of a process pays)."""
    model = NETWORKS[name][0](args.width)
    for template in TEMPLATES.values():
        template._modules.clear()
    start = time.perf_counter()
    for layer in {(m.kernel_size[0], m.stride[0], m.padding[0], m.in_channels) for m in model.modules() if isinstance(m, nn.Conv2d)}:
        K, S, P, C = layer
        for output in ("KFC", "KFAC_reduce"):
            TEMPLATES[False].function(output, K=K, S=S, P=P, C=C)
    return time.perf_counter() - start


def measure(name: str, args: argparse.Namespace) -> dict:
    seconds = compile_seconds(name, args)
    trainers = {method: trainer(name, method, args) for method in METHODS}
    methods = {method: steps for method, (steps, _, _) in trainers.items()}
    wait_for_quiet(args.wait, 0.3)
    load = OtherLoad()
    times, counts, spread = time_methods(methods, args.repeats, args.min_repeats, 1, args.budget, rounds=args.rounds)
    state = {method: held() for method, (_, held, _) in trainers.items()}
    memory = {method: peak_memory(steps) + state[method] for method, (steps, _, _) in trainers.items()}
    state = {method: state[method] - state["SGD"] for method in METHODS}  # the preconditioner's factors and inverses
    step = {method: t / args.inverse_every for method, t in times.items()}
    overhead = {method: step[method] - step["SGD"] for method in METHODS[1:]}
    return {
        "network": name, "compile_seconds": seconds, "step": step, "calls": counts, "spread": spread,
        "memory": memory, "state": state, "overhead": overhead, "other_cores": load.cores(),
        "overhead_ratio": {kind: overhead[f"{kind} tnc"] / overhead[f"{kind} unfold"] for kind in ("KFAC-reduce", "KFC")},
        "memory_ratio": memory["KFAC-reduce tnc"] / memory["SGD"],
        "memory_ratio_without_state": (memory["KFAC-reduce tnc"] - state["KFAC-reduce tnc"]) / memory["SGD"],
        # the input factors alone: each optimizer's step beyond the one that reuses fixed factors
        "input_factors": {f: step[f"KFAC-reduce {f}"] - step["KFAC-reduce fixed"] for f in ("unfold", "tnc")},
    }


def report(rows: list[dict], args: argparse.Namespace) -> str:
    misses = [
        f"{r['network']} (overhead ratio {r['overhead_ratio']['KFAC-reduce']:.2f}, memory {r['memory_ratio']:.2f}x SGD)"
        for r in rows if r["overhead_ratio"]["KFAC-reduce"] > OVERHEAD_TARGET or r["memory_ratio"] > MEMORY_TARGET
    ]
    lines = [
        "# Second-order training: SGD, KFAC with unfold-based factors, KFAC with tnc factors",
        "",
        f"`python -m benchmarks.training` (batch {args.batch}, width {args.width}, float32, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}): "
        "All-CNN-C at 3×32×32, ResNet18 at 3×128×128, synthetic data, 100 classes. Time per step is the median over "
        f"blocks of {args.inverse_every} steps (factors every step, inverses once per block; interquartile spread "
        "over the median in brackets); peak memory is what the model, its gradients, the data and the optimizer's "
        "and preconditioner's state hold, plus the peak the CPU allocator held on top during such a block. "
        "Overhead is the time per step beyond SGD's.",
        "",
        f"Targets (KFAC-reduce, the paper's): tnc's overhead at most {OVERHEAD_TARGET}x the unfold-based "
        f"optimizer's, tnc's peak memory at most {MEMORY_TARGET}x SGD's. "
        + ("All met." if not misses else f"Missed on: {'; '.join(misses)}."),
        "",
        "| network | method | ms per step | overhead ms | tnc / unfold overhead | peak MB | / SGD | KFAC state MB | peak without state / SGD |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sgd = r["memory"]["SGD"]
        for method in METHODS:
            spread = r["spread"].get(method)
            time_text = f"{r['step'][method] * 1e3:.0f}" + (f" ({spread:.0%})" if spread is not None else "")
            overhead = f"{r['overhead'][method] * 1e3:.0f}" if method != "SGD" else ""
            kind = method.split()[0]
            ratio = f"{r['overhead_ratio'][kind]:.2f}" if method.endswith("tnc") else ""
            state = r["state"][method]
            lines.append(f"| {r['network']} | {method} | {time_text} | {overhead} | {ratio} | "
                         f"{r['memory'][method] / 2**20:.0f} | {r['memory'][method] / sgd:.2f} | "
                         f"{state / 2**20:.0f} | {(r['memory'][method] - state) / sgd:.2f} |")
    lines += ["", "Where the time goes (KFAC-reduce, ms per step): *fixed* reuses the input factors of its first step, so "
              "its overhead over SGD is what unfold and tnc share (output-gradient factors, running means, the "
              "preconditioned gradient, the inverses); the rest is the input factors' own cost.", "",
              "| network | shared overhead | unfold's input factors | tnc's input factors | tnc / unfold |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        shared, own = r["step"]["KFAC-reduce fixed"] - r["step"]["SGD"], r["input_factors"]
        lines.append(f"| {r['network']} | {shared * 1e3:.0f} | {own['unfold'] * 1e3:.0f} | {own['tnc'] * 1e3:.0f} | "
                     f"{own['tnc'] / own['unfold']:.2f} |")
    lines += ["", "Memory of the input factors alone (KFAC-reduce peak beyond the fixed-factor optimizer's): " + "; ".join(
        f"{r['network']}: tnc {(r['memory']['KFAC-reduce tnc'] - r['memory']['KFAC-reduce fixed']) / 2**20:.1f} MB, "
        f"unfold {(r['memory']['KFAC-reduce unfold'] - r['memory']['KFAC-reduce fixed']) / 2**20:.1f} MB" for r in rows) + "."]
    lines += [
        "",
        "KFAC state is what the preconditioner holds beyond SGD (its dense factors A and G and their inverses, "
        "the same for both factor sources); the last column is the peak without it, which is what the factor "
        "computation costs. Where the memory target is missed, compare it: the state of dense KFAC grows with the "
        "square of every layer's C·K² + 1 and not with the batch, so at small batches and resolutions it "
        "outweighs the activations.",
    ]
    lines += ["", "Compile time of the tnc factors (every conv layer configuration, KFC and KFAC-reduce, one process):", ""]
    lines += [f"- {r['network']}: {r['compile_seconds']:.1f} s" for r in rows]
    cores = ", ".join(f"{r['network']} {'?' if r['other_cores'] is None else format(r['other_cores'], '.2f')}" for r in rows)
    lines += ["", f"Other processes' load while timing (cores): {cores}.", "", "![step time and memory](training.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Bars of time per step and peak memory, relative to SGD, per network and method."""
    plt = pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(METHODS)
    for j, method in enumerate(METHODS):
        x = [i + (j - len(METHODS) / 2 + 0.5) * width for i in range(len(rows))]
        axes[0].bar(x, [r["step"][method] / r["step"]["SGD"] for r in rows], width, label=method)
        axes[1].bar(x, [r["memory"][method] / r["memory"]["SGD"] for r in rows], width, label=method)
    for ax, title in zip(axes, ("time per step / SGD", "peak memory / SGD")):
        ax.set_xticks(range(len(rows)), [r["network"] for r in rows])
        ax.axhline(1, color="gray", lw=0.8)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.5, help="channels relative to the real network's")
    parser.add_argument("--inverse-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per network, all methods")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait, at most, for other processes to go quiet")
    parser.add_argument("--nets", help="comma-separated network names (default: all)")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    rows = []
    for name in args.nets.split(",") if args.nets else NETWORKS:
        row = measure(name, args)
        rows.append(row)
        print(f"{name}: KFAC-reduce overhead tnc/unfold {row['overhead_ratio']['KFAC-reduce']:.2f}, "
              f"KFC {row['overhead_ratio']['KFC']:.2f}, memory tnc/SGD {row['memory_ratio']:.2f}", flush=True)
    out = Path(args.out)
    (out / "training.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "training.md").write_text(report(rows, args))
    plot(rows, out / "training.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
