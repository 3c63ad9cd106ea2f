"""Whole-network derivatives against autograd: ``python -m benchmarks.multilayer``.

Chains of real convolution layers (rows of shared/reference/cnn-layers.md whose sizes chain),
with and without a ReLU after every layer but the last, and a quadratic loss
``L = 1/2 * sum(Y**2)``. Per network, float32, batch 8 by default:

- *gradients*: every weight gradient at once (the ``.tn`` file writes ``G1 = grad(L, W1)``, ...,
  one output each; tnc runs reverse mode on the definitions) against ``torch.autograd.grad`` of
  the same forward pass; time and peak memory;
- *HVP*: the Hessian-vector product of the loss with respect to the first layer's weight
  (``jvp`` of the derived gradient, forward mode over its steps) against ``torch.func.jvp`` of
  ``torch.func.grad``; time.

Each tnc result is checked against its reference before it is timed. Writes
benchmarks/multilayer.md and multilayer.json; exit status 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import tnc
from benchmarks.layers import LAYERS, Layer
from benchmarks.measure import OtherLoad, peak_memory, time_methods, wait_for_quiet

HERE = Path(__file__).resolve().parent
TIME_TARGET, MEMORY_TARGET, HVP_TARGET = 1.2, 1.2, 1.5
RTOL = 1e-4


def _all_cnn_c(id: int) -> Layer:
    """A layer of All-CNN-C (CIFAR-100, 3x32x32), rows 6-14 of cnn-layers.md."""
    rows = {  # id: C_in, C_out, K, S, P, H=W in
        6: (3, 96, 3, 1, 1, 32), 7: (96, 96, 3, 1, 1, 32), 8: (96, 96, 3, 2, 1, 32),
        9: (96, 192, 3, 1, 1, 16), 10: (192, 192, 3, 1, 1, 16), 11: (192, 192, 3, 2, 1, 16),
    }
    c_in, c_out, k, s, p, size = rows[id]
    return Layer(id, "All-CNN-C", str(id - 6), c_in, c_out, (k, k), (s, s), (p, p), 1, (size, size), "general")


def _resnet(id: int) -> Layer:
    return next(layer for layer in LAYERS if layer.id == id and layer.spelling == "standard")


@dataclass(frozen=True)
class Chain:
    name: str
    layers: tuple[Layer, ...]
    relu: bool

    @property
    def title(self) -> str:
        rows = ",".join(str(layer.id) for layer in self.layers)
        return f"{self.name} ({len(self.layers)} layers, rows {rows}{', ReLU' if self.relu else ''})"


def chains() -> list[Chain]:
    nets = [
        ("All-CNN-C 0-1", (6, 7), _all_cnn_c),
        ("ResNet18 layer1", (21, 21), _resnet),
        ("All-CNN-C 0-2", (6, 7, 8), _all_cnn_c),
        ("All-CNN-C 0-4", (6, 7, 8, 9, 10), _all_cnn_c),
    ]
    return [Chain(name, tuple(make(i) for i in ids), relu) for name, ids, make in nets for relu in (False, True)]


def source(chain: Chain, batch: int) -> str:
    """The ``.tn`` program: the forward chain, the loss and one gradient output per weight."""
    first = chain.layers[0]
    lines = [f"# {chain.title}, batch {batch}", f"index n: {batch}"]
    channels = [first.c_in] + [layer.c_out for layer in chain.layers]
    lines.append("index " + ", ".join(f"c{j}: {c}" for j, c in enumerate(channels)))
    sizes = [first.size]
    for layer in chain.layers:
        sizes.append(layer.out_size)
    lines.append("index " + ", ".join(f"i{j}{a}: {s[a - 1]}" for j, s in enumerate(sizes) for a in (1, 2)))
    lines.append("index " + ", ".join(f"k{j}{a}: {layer.kernel[a - 1]}" for j, layer in enumerate(chain.layers, 1) for a in (1, 2)))
    lines.append("input X[n, c0, i01, i02]")
    for j, layer in enumerate(chain.layers, 1):
        lines.append(f"param W{j}[c{j}, c{j - 1}, k{j}1, k{j}2]")
    for j, layer in enumerate(chain.layers, 1):
        for a in (1, 2):
            args = [f"stride={layer.stride[a - 1]}"] if layer.stride[a - 1] != 1 else []
            args += [f"padding={layer.padding[a - 1]}"] if layer.padding[a - 1] else []
            lines.append(f"pattern P{j}{a}[i{j - 1}{a}, i{j}{a}, k{j}{a}] = conv({', '.join(args)})")
    previous = "X"
    for j, layer in enumerate(chain.layers, 1):
        legs = f"n, c{j - 1}, i{j - 1}1, i{j - 1}2"
        mine = f"n, c{j}, i{j}1, i{j}2"
        lines.append(f"Z{j}[{mine}] = {previous}[{legs}] * P{j}1[i{j - 1}1, i{j}1, k{j}1] * P{j}2[i{j - 1}2, i{j}2, k{j}2] * W{j}[c{j}, c{j - 1}, k{j}1, k{j}2]")
        previous = f"Z{j}"
        if chain.relu and j < len(chain.layers):
            lines.append(f"A{j}[{mine}] = relu(Z{j}[{mine}])")
            previous = f"A{j}"
    last = f"n, c{len(chain.layers)}, i{len(chain.layers)}1, i{len(chain.layers)}2"
    lines.append(f"L[] = 0.5 * {previous}[{last}] * {previous}[{last}]")
    for j in range(1, len(chain.layers) + 1):
        lines.append(f"output G{j}[c{j}, c{j - 1}, k{j}1, k{j}2] = grad(L, W{j})")
    return "\n".join(lines) + "\n"


def reference_loss(chain: Chain, X: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    Y = X
    for j, (layer, W) in enumerate(zip(chain.layers, weights), 1):
        Y = F.conv2d(Y, W, stride=layer.stride, padding=layer.padding)
        if chain.relu and j < len(chain.layers):
            Y = torch.relu(Y)
    return 0.5 * (Y**2).sum()


def tensors(chain: Chain, batch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    first = chain.layers[0]
    X = torch.randn(batch, first.c_in, *first.size, generator=generator)
    weights = []
    for layer in chain.layers:
        fan_in = layer.c_in * layer.kernel[0] * layer.kernel[1]
        weights.append(torch.randn(layer.c_out, layer.c_in, *layer.kernel, generator=generator) / fan_in**0.5)
    return X, weights


def close(result: torch.Tensor, reference: torch.Tensor) -> bool:
    scale = reference.abs().max().item()
    return result.shape == reference.shape and torch.allclose(result, reference, rtol=RTOL, atol=RTOL * scale)


def measure_chain(chain: Chain, batch: int, args: argparse.Namespace) -> dict:
    text = source(chain, batch)
    network = tnc.parse(text, f"{chain.name}.tn")
    module = network.to_module()
    X, weights = tensors(chain, batch)
    named = {f"W{j}": W for j, W in enumerate(weights, 1)}
    step = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module))()
    with torch.no_grad():
        for name, W in named.items():
            getattr(step, name).copy_(W)

    def tnc_grads():  # the module's forward: one pass computing every gradient
        with torch.no_grad():
            return step(X)

    def autograd_grads():
        leaves = [W.detach().requires_grad_() for W in weights]
        return torch.autograd.grad(reference_loss(chain, X, leaves), leaves)

    ok = all(close(mine, ref) for mine, ref in zip(tnc_grads(), autograd_grads()))

    gradient = network.derive("W1", of="L")
    hvp_net = gradient.derive("W1", of=gradient.outputs[0], jvp="U")
    hvp_fn = getattr(hvp_net.to_module(), hvp_net.outputs[0])
    U = torch.randn_like(weights[0])

    takes = inspect.signature(hvp_fn).parameters  # a linear network's HVP does not read W1
    hvp_args = {k: v for k, v in {"X": X, "U": U, **named}.items() if k in takes}

    def tnc_hvp():
        return hvp_fn(**hvp_args)

    def loss_of_first(W1):
        return reference_loss(chain, X, [W1] + weights[1:])

    def func_hvp():
        return torch.func.jvp(torch.func.grad(loss_of_first), (weights[0],), (U,))[1]

    ok = ok and close(tnc_hvp(), func_hvp())
    wait_for_quiet(args.wait, 0.3)
    load = OtherLoad()
    times, counts, spread = time_methods(
        {"tnc": tnc_grads, "autograd": autograd_grads, "tnc HVP": tnc_hvp, "torch.func HVP": func_hvp},
        args.repeats, args.min_repeats, args.warmup, args.budget,
    )
    memory = {"tnc": peak_memory(tnc_grads), "autograd": peak_memory(autograd_grads)}
    return {
        "network": chain.title, "ok": ok, "times": times, "calls": counts, "spread": spread, "memory": memory,
        "other_cores": load.cores(),
        "time_ratio": times["tnc"] / times["autograd"],
        "memory_ratio": memory["tnc"] / memory["autograd"],
        "hvp_ratio": times["tnc HVP"] / times["torch.func HVP"],
    }


def report(rows: list[dict], args: argparse.Namespace) -> str:
    misses = [r["network"] for r in rows if r["time_ratio"] > TIME_TARGET or r["memory_ratio"] > MEMORY_TARGET or r["hvp_ratio"] > HVP_TARGET]
    lines = [
        "# Whole-network derivatives: tnc against autograd and torch.func",
        "",
        f"`python -m benchmarks.multilayer` (batch {args.batch}, float32, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}). Times are medians "
        "(interquartile spread over the median in brackets); memory is the peak the CPU allocator held during "
        "one call, results included. Gradients: every weight gradient of the network at once; HVP: the "
        "Hessian-vector product of the loss with respect to the first weight.",
        "",
        f"Targets: time and memory at most {TIME_TARGET}x autograd's, HVP at most {HVP_TARGET}x torch.func's. "
        + ("All met." if not misses else f"Missed on: {'; '.join(misses)}."),
        "",
        "| network | tnc ms | autograd ms | time ratio | tnc MB | autograd MB | memory ratio | tnc HVP ms | torch.func HVP ms | HVP ratio | other cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ms(row: dict, name: str) -> str:
        spread = row["spread"].get(name)
        return f"{row['times'][name] * 1e3:.1f}" + (f" ({spread:.0%})" if spread is not None else "")

    for r in rows:
        cores = "?" if r["other_cores"] is None else f"{r['other_cores']:.2f}"
        lines.append(
            f"| {r['network']} | {ms(r, 'tnc')} | {ms(r, 'autograd')} | {r['time_ratio']:.2f} | "
            f"{r['memory']['tnc'] / 2**20:.1f} | {r['memory']['autograd'] / 2**20:.1f} | {r['memory_ratio']:.2f} | "
            f"{ms(r, 'tnc HVP')} | {ms(r, 'torch.func HVP')} | {r['hvp_ratio']:.2f} | {cores} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multilayer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--min-repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timed calls per network, all methods")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait, at most, for other processes to go quiet")
    parser.add_argument("--nets", help="comma-separated substrings of the network names (default: all)")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    selected = [c for c in chains() if not args.nets or any(s in c.title for s in args.nets.split(","))]
    rows = []
    for chain in selected:
        row = measure_chain(chain, args.batch, args)
        rows.append(row)
        print(f"{row['network']}: time {row['time_ratio']:.2f}x, memory {row['memory_ratio']:.2f}x, "
              f"HVP {row['hvp_ratio']:.2f}x{'' if row['ok'] else '  MISMATCH'}", flush=True)
    out = Path(args.out)
    (out / "multilayer.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    (out / "multilayer.md").write_text(report(rows, args))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
