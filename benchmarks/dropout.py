"""Tensor dropout, the paper's experiment: ``python -m benchmarks.dropout``.

On the All-CNN-C layers of shared/reference/cnn-layers.md (rows 6-11, at half their channels by
default), the weight gradient of each convolution is estimated by tnc's sampled weight VJP
(``sample LEG in G with keep=P``) and compared with the exact one (autograd of ``F.conv2d``):

- *spatial*: the input's rows ``i1`` sampled (the kept rows of X and of its index pattern);
- *batch*: the samples ``n`` sampled, kept in proportion to the norms of their inputs (``by=X``);
- *channel*: the input channels dropped from the stored input, the classic channel dropout; the
  weight gradient's entries of a dropped channel are then 0 (the others scaled by 1/p), since a
  weight gradient does not sum over its channels.

Each keeps a fraction P of the input that the backward pass reads, so 1 - P of it need not be
stored. The error is ``|G_est - G| / |G|`` (Frobenius), the mean over ``--draws`` seeded draws,
for inputs that are Gaussian noise and for the digits bundled with scikit-learn (upsampled to
32×32, the layer inputs of All-CNN-C and the output gradients of its cross-entropy), once with the
network untrained and once after ``--train-steps`` of Adam on other digits (``digits, trained``).
The timing table compares the sampled weight VJP with the exact one (``torch.autograd.grad`` of
``F.conv2d``). Last, a small CNN trains on the digits with SGD whose conv weight gradients are
the sampled ones (spatial rows, keep 0.5 and 0.25), against exact gradients, from the same
start and batches. Writes benchmarks/dropout.md, dropout.json and dropout.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tnc
from benchmarks.measure import pyplot, time_methods

HERE = Path(__file__).resolve().parent
ROWS = {  # All-CNN-C, cnn-layers.md: id -> C_in, C_out, K, S, P, H=W in
    6: (3, 96, 3, 1, 1, 32), 7: (96, 96, 3, 1, 1, 32), 8: (96, 96, 3, 2, 1, 32),
    9: (96, 192, 3, 1, 1, 16), 10: (192, 192, 3, 1, 1, 16), 11: (192, 192, 3, 2, 1, 16),
}  # fmt: skip
KEEPS = (0.1, 0.25, 0.5, 0.75)
LEGS = ("spatial", "batch", "channel")


def _channels(row: int, width: float) -> tuple[int, int]:
    c_in, c_out = ROWS[row][:2]
    return (c_in if row == 6 else round(c_in * width)), round(c_out * width)


def weight_gradient(c_in: int, c_out: int, k: int, s: int, p: int, size: int, batch: str, statement: str) -> str:
    """The weight gradient of a square 2d convolution as a ``.tn`` file, then ``statement``."""
    return f"""size N{batch}
index n: N, c: {c_in}, d: {c_out}, i1: {size}, i2: {size}, k1: {k}, k2: {k}
pattern P1[i1, o1, k1] = conv(stride={s}, padding={p})
pattern P2[i2, o2, k2] = conv(stride={s}, padding={p})
input X[n, c, i1, i2]
param W[d, c, k1, k2]
input V[n, d, o1, o2]
Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]
output G[d, c, k1, k2] = vjp(Y, W, V)
{statement}
"""


def source(row: int, width: float, batch: int, leg: str, keep: float) -> str:
    """The layer's weight gradient with ``leg`` sampled (``channel``: no sampling, done outside)."""
    (c_in, c_out), (_, _, k, s, p, size) = _channels(row, width), ROWS[row]
    statement = {"spatial": f"sample i1 in G with keep={keep}", "batch": f"sample n in G with keep={keep}, by=X"}.get(leg, "")
    return weight_gradient(c_in, c_out, k, s, p, size, f" = {batch}", statement)


def all_cnn_c(width: float) -> nn.Sequential:
    """The six conv layers with ReLU (He-initialised, zero bias: with PyTorch's default
    initialisation the signal fades and SGD barely moves in 100 steps), then a linear classifier."""
    layers: list[nn.Module] = []
    for row, (_, _, k, s, p, _) in ROWS.items():
        c_in, c_out = _channels(row, width)
        conv = nn.Conv2d(c_in, c_out, k, s, p)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(_channels(11, width)[1], 10))


def _digits(start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` digits from ``start`` on, upsampled to 3×32×32, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[start : start + count], dtype=torch.float32)[:, None] / 16
    images = F.interpolate(images, size=32, mode="bilinear").expand(-1, 3, -1, -1).contiguous()
    return images, torch.tensor(digits.target[start : start + count])


def _trained(model: nn.Sequential, steps: int, batch: int) -> float:
    """Adam on the digits after the first 256 (never those measured): the mean loss of the last
    10 steps."""
    images, labels = _digits(256, 1024)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator, losses = torch.Generator().manual_seed(1), [float("nan")]
    for _ in range(steps):
        chosen = torch.randint(len(images), (batch,), generator=generator)
        loss = F.cross_entropy(model(images[chosen]), labels[chosen])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses[-10:]) / len(losses[-10:])


def layer_data(kind: str, width: float, batch: int, train_steps: int = 0) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per row: the layer's input X and output gradient V, from noise or from the digits
    (``digits, trained``: after ``train_steps`` of Adam)."""
    generator = torch.Generator().manual_seed(0)
    if kind == "noise":
        data = {}
        for row, (_, _, k, s, p, size) in ROWS.items():
            c_in, c_out = _channels(row, width)
            out = (size + 2 * p - k) // s + 1
            data[row] = (torch.randn(batch, c_in, size, size, generator=generator), torch.randn(batch, c_out, out, out, generator=generator))
        return data
    images, labels = _digits(0, batch)
    torch.manual_seed(0)
    model = all_cnn_c(width)
    if kind == "digits, trained":
        print(f"All-CNN-C trained {train_steps} steps: loss {_trained(model, train_steps, 32):.3f}", flush=True)
    inputs, outputs = {}, {}
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    def keep(row: int):
        def hook(module: nn.Module, given: tuple, output: torch.Tensor) -> None:
            inputs[row] = given[0].detach()
            output.retain_grad()
            outputs[row] = output

        return hook

    for row, conv in zip(ROWS, convs):
        conv.register_forward_hook(keep(row))
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    return {row: (inputs[row], outputs[row].grad.detach()) for row in ROWS}


def errors(row: int, args: argparse.Namespace, X: torch.Tensor, V: torch.Tensor) -> dict[str, dict[float, float]]:
    W = torch.zeros(V.shape[1], X.shape[1], ROWS[row][2], ROWS[row][2], requires_grad=True)
    k, s, p = ROWS[row][2:5]
    (exact,) = torch.autograd.grad(F.conv2d(X, W, stride=s, padding=p), W, V)
    result = {}
    for leg in LEGS:
        result[leg] = {}
        for keep in KEEPS:
            gradient = getattr(tnc.parse(source(row, args.width, len(X), leg, keep)).to_module(), "G")
            draws = []
            for seed in range(args.draws):
                if leg == "channel":
                    kept = torch.rand(X.shape[1], generator=torch.Generator().manual_seed(seed)) < keep
                    estimate = gradient(X=X * kept[None, :, None, None], V=V) / keep
                else:
                    estimate = gradient(X=X, V=V, seed=seed)
                draws.append(float((estimate - exact).norm() / exact.norm()))
            result[leg][keep] = sum(draws) / len(draws)
    return result


def timing(row: int, args: argparse.Namespace, X: torch.Tensor, V: torch.Tensor) -> dict[str, float]:
    k, s, p = ROWS[row][2:5]
    W = torch.zeros(V.shape[1], X.shape[1], k, k, requires_grad=True)
    methods = {"autograd": lambda: torch.autograd.grad(F.conv2d(X, W, stride=s, padding=p), W, V)}
    for keep in (0.25, 0.5):
        fn = tnc.parse(source(row, args.width, len(X), "spatial", keep)).to_module().G
        methods[f"tnc spatial keep={keep}"] = lambda fn=fn: fn(X=X, V=V, seed=0)
    times, _, _ = time_methods(methods, 9, 3, 1, 4.0)
    return times


def train(keep: float | None, steps: int, seed: int = 0) -> list[float]:
    """Losses of SGD on the digits (8×8, batch 64) with each conv's weight gradient estimated by
    the sampled weight VJP of its layer (``keep=None``: the exact gradient)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    labels = torch.tensor(digits.target)
    torch.manual_seed(seed)
    convs = [nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, stride=2, padding=1)]
    model = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sampled = {}
    if keep is not None:
        for conv, size in zip(convs, (8, 8)):
            text = weight_gradient(conv.in_channels, conv.out_channels, 3, conv.stride[0], 1, size, "", f"sample i1 in G with keep={keep}")
            sampled[conv] = tnc.parse(text).to_module().G
    stored: dict[nn.Module, tuple] = {}

    def hook(conv: nn.Module, given: tuple, output: torch.Tensor) -> None:
        if conv in sampled:
            output.register_hook(lambda V: stored.__setitem__(conv, (given[0].detach(), V.detach())))

    for conv in convs:
        conv.register_forward_hook(hook)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    losses = []
    for step in range(steps):
        batch = order[torch.arange(step * 64, (step + 1) * 64) % len(images)]
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        for conv, gradient in sampled.items():
            X, V = stored[conv]
            conv.weight.grad = gradient(X=X, V=V, seed=step)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    kinds = list(dict.fromkeys(r["data"] for r in rows))
    figure, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for leg, style in zip(LEGS, ("o-", "s--", "^:")):
            chosen = [r for r in rows if r["data"] == kind]
            mean = [sum(r["errors"][leg][str(keep)] for r in chosen) / len(chosen) for keep in KEEPS]
            ax.plot([1 - keep for keep in KEEPS], mean, style, label=leg)
        ax.set_xlabel("fraction of the stored input saved (1 - keep)")
        ax.set_ylabel("relative error of the weight gradient")
        ax.set_yscale("log")
        ax.set_title(f"All-CNN-C, {kind} (mean over layers)", fontsize=10)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Tensor dropout: weight-gradient error against memory saved",
        "",
        f"`python -m benchmarks.dropout` (All-CNN-C rows {', '.join(map(str, args.rows))}, width {args.width}, batch {args.batch}, float32, "
        f"{args.draws} draws, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}). Error: mean over draws of |G_est - G| / |G|; keep is the "
        "fraction of the stored input kept. Spatial: rows i1 sampled uniformly; batch: samples kept by the norms of "
        "their inputs; channel: input channels dropped (classic channel dropout). Data: Gaussian noise, and the "
        f"digits through All-CNN-C untrained and after {args.train_steps} Adam steps (batch 32) on other digits.",
        "",
        "| data | layer | leg | " + " | ".join(f"keep {k}" for k in KEEPS) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in KEEPS) + " |",
    ]
    for r in rows:
        for leg in LEGS:
            lines.append(f"| {r['data']} | {r['row']} | {leg} | " + " | ".join(f"{r['errors'][leg][str(k)]:.3f}" for k in KEEPS) + " |")
    lines += ["", "Run time of the weight VJP (median ms; noise inputs):", "", "| layer | method | ms |", "| --- | --- | ---: |"]
    for r in rows:
        for method, seconds in r.get("times", {}).items():
            lines.append(f"| {r['row']} | {method} | {seconds * 1e3:.1f} |")
    lines += ["", f"Training on the digits ({args.steps} steps, SGD, conv weight gradients sampled on the rows):", "",
              "| weight gradients | loss, first 10 steps | loss, last 10 steps |", "| --- | ---: | ---: |"]
    for name, losses in args.curves.items():
        lines.append(f"| {name} | {sum(losses[:10]) / 10:.3f} | {sum(losses[-10:]) / 10:.3f} |")
    lines += ["", "![error against memory saved](dropout.png)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150, help="training steps on the digits")
    parser.add_argument("--train-steps", type=int, default=120, help="Adam steps before the 'digits, trained' run")
    parser.add_argument("--rows", type=lambda text: [int(r) for r in text.split(",")], default=list(ROWS), help="e.g. 6,9")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    rows = []
    for kind in ("noise", "digits", "digits, trained"):
        for row, (X, V) in layer_data(kind, args.width, args.batch, args.train_steps).items():
            if row not in args.rows:
                continue
            entry = {"data": kind, "row": row, "errors": {leg: {str(k): e for k, e in v.items()} for leg, v in errors(row, args, X, V).items()}}
            if kind == "noise":
                entry["times"] = timing(row, args, X, V)
            rows.append(entry)
            print(kind, row, {leg: round(v["0.25"], 3) for leg, v in entry["errors"].items()}, flush=True)
    args.curves = {name: train(keep, args.steps) for name, keep in (("exact", None), ("sampled, keep 0.5", 0.5), ("sampled, keep 0.25", 0.25))}
    print({name: round(sum(c[-10:]) / 10, 3) for name, c in args.curves.items()}, flush=True)
    out = Path(args.out)
    (out / "dropout.json").write_text(json.dumps({"layers": rows, "training": args.curves}, indent=1) + "\n")
    (out / "dropout.md").write_text(report(rows, args))
    plot(rows, out / "dropout.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
