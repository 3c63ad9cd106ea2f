"""Per-sample quantities against BackPACK: ``python -m benchmarks.per_sample``.

On the real layers of benchmarks/layers.py (every layer, both depthwise spellings), float32,
batch 8, for a loss whose gradient with respect to the layer's output is V (``L = sum(Y * V)``,
so sample n's gradient is ``J_n^T V[n]``), tnc's ``.tn`` programs (compiled once, compile time
reported apart) against BackPACK's extensions of the same ``nn.Conv2d``, each its own backward:

- ``batch_grad``: per-sample weight gradients (``BatchGrad``);
- ``batch_l2``: their squared norms (``BatchL2Grad``);
- ``sum_grad_squared``: the sum over the batch of their squares (``SumGradSquared``);
- ``variance``: ``SGS / N - (sum_n g_n / N)^2`` (``Variance``, BackPACK's formula).

BackPACK's call is a forward and a backward with its extension; the plain forward and backward
(no extension) are timed too, so the report gives tnc's time over BackPACK's whole call (the
table's ``tnc/BackPACK``) and over BackPACK's call minus the plain one (its extension's own
work). For the depthwise layers the weight VJP is also timed against ``torch.autograd.grad`` of
``F.conv2d`` with respect to the weight only. Every value is checked against BackPACK first
(float32: max |tnc - BackPACK| <= 1e-4 max |BackPACK| for gradients, 1e-3 for the squared
quantities; for the variance, relative to the largest ``SGS / N``), and both against torch.func's per-sample gradients; a mismatch is reported in the table. Writes benchmarks/per_sample.md, .json, .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import tnc
from benchmarks.baselines import baseline, conv_args, make_tensors
from benchmarks.layers import Layer, select
from benchmarks.measure import OtherLoad, pyplot, time_methods, wait_for_quiet
from benchmarks.networks import _channels, compile_op, forward_text

HERE = Path(__file__).resolve().parent
RTOL = 1e-4  # float32, relative to the largest entry of the reference: gradients
RTOL_SQUARED = 1e-3  # ... and the squared quantities, which tnc may contract in another order
# (float64 agrees to 1e-14; in float32 the sums of squares differ by up to ~2e-3)
QUANTITIES = {  # name: (BackPACK extension, the attribute it writes on the weight)
    "batch_grad": ("BatchGrad", "grad_batch"),
    "batch_l2": ("BatchL2Grad", "batch_l2"),
    "sum_grad_squared": ("SumGradSquared", "sum_grad_squared"),
    "variance": ("Variance", "variance"),
}


def source(layer: Layer, quantity: str, batch: int) -> str:
    """The layer's forward network, ``L[n] = <Y[n], V[n]>``, then ``quantity`` as the output."""
    d = _channels(layer, "d")
    w = f"{d}, {'one' if layer.spelling == 'torch' else 'c'}, k1, k2"
    lines = forward_text(layer, batch).replace("output Y[", "Y[").splitlines()
    lines.insert(6, f"input V[n, {d}, o1, o2]")
    lines += [f"L[n] = Y[n, {d}, o1, o2] * V[n, {d}, o1, o2]"]
    psg = f"PSG[n, {w}]"
    definitions = {
        "batch_grad": [f"output {psg} = grad(L, W)"],
        "batch_l2": [f"{psg} = grad(L, W)", f"output Norms[n] = {psg} * {psg}"],
        "sum_grad_squared": [f"{psg} = grad(L, W)", f"output SGS[{w}] = {psg} * {psg}"],
        "variance": [f"{psg} = grad(L, W)", f"SGS[{w}] = {psg} * {psg}", f"Sum[{w}] = {psg}",
                     f"output Var[{w}] = (1/N) * SGS[{w}] - (1/N**2) * Sum[{w}] * Sum[{w}]"],
    }
    return "\n".join(lines + definitions[quantity]) + "\n"


def compiled(layer: Layer, quantity: str, batch: int):
    """The generated function of ``quantity`` and its compile time (parse to exec)."""
    start = time.perf_counter()
    network = tnc.parse(source(layer, quantity, batch), f"layer{layer.id}_{quantity}.tn")
    function = getattr(network.to_module(), network.outputs[0])
    return function, time.perf_counter() - start


def backpack_calls(layer: Layer, t: dict[str, torch.Tensor]):
    """BackPACK's call per quantity (forward, backward with the extension; the weight's attribute)
    and the plain forward and backward."""
    import backpack
    from torch import nn

    conv = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, bias=False, groups=layer.groups, **{
        k: v for k, v in conv_args(layer).items() if k != "groups"})
    with torch.no_grad():
        conv.weight.copy_(t["W"])
    conv = backpack.extend(conv)
    # X needs no gradient, so the module's full backward hook warns on every call
    warnings.filterwarnings("ignore", message="Full backward hook is firing")

    def run(extension=None, attribute=None):
        conv.weight.grad = None
        loss = (conv(t["X"]) * t["V"]).sum()
        if extension is None:
            loss.backward()
            return conv.weight.grad
        with backpack.backpack(getattr(backpack.extensions, extension)()):
            loss.backward()
        return getattr(conv.weight, attribute)

    calls = {q: (lambda e=e, a=a: run(e, a)) for q, (e, a) in QUANTITIES.items()}
    return calls, run


def func_references(layer: Layer, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every quantity from torch.func's per-sample gradients (vmap of grad), an independent check
    of both tnc and BackPACK."""
    def loss(W, x, v):
        return (F.conv2d(x[None], W, **conv_args(layer))[0] * v).sum()

    psg = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(t["W"], t["X"], t["V"])
    N = len(psg)
    sgs = (psg**2).sum(0)
    return {"batch_grad": psg, "batch_l2": psg.flatten(1).pow(2).sum(1), "sum_grad_squared": sgs,
            "variance": sgs / N - (psg.sum(0) / N) ** 2}


def relative_error(mine: torch.Tensor, reference: torch.Tensor, scale: float) -> float:
    mine = mine.reshape(reference.shape)
    return (mine.double() - reference.double()).abs().max().item() / (scale or 1.0)


def measure_layer(layer: Layer, args: argparse.Namespace) -> list[dict]:
    t = make_tensors(layer, args.batch)
    calls, run = backpack_calls(layer, t)
    func = func_references(layer, t)
    records = []
    for quantity in QUANTITIES:
        function, seconds = compiled(layer, quantity, args.batch)
        def mine(function=function):
            return function(X=t["X"], V=t["V"])
        reference = calls[quantity]().detach().clone()
        scale = reference.abs().max().item()
        if quantity == "variance":
            scale = (calls["sum_grad_squared"]() / args.batch).abs().max().item()
        value = mine()
        error = relative_error(value, reference, scale)
        errors = {"tnc-func": relative_error(value, func[quantity], scale),
                  "BackPACK-func": relative_error(reference, func[quantity], scale)}
        wait_for_quiet(args.wait, 0.3)
        load = OtherLoad()
        times, counts, spread = time_methods({"tnc": mine, "BackPACK": calls[quantity], "plain backward": run},
                                             args.repeats, args.min_repeats, args.warmup, args.budget)
        records.append(dict(_record(layer, quantity, seconds, error, times, counts, spread, load.cores()), func_errors=errors))
    if layer.kind == "depthwise":
        compiled_vjp = compile_op(layer, "weight_vjp", args.batch)
        autograd = baseline(layer, "weight_vjp", t)
        reference = autograd()
        error = relative_error(compiled_vjp(t), reference, reference.abs().max().item())
        load = OtherLoad()
        times, counts, spread = time_methods({"tnc": lambda: compiled_vjp(t), "autograd": autograd},
                                             args.repeats, args.min_repeats, args.warmup, args.budget)
        records.append(_record(layer, "weight_vjp", compiled_vjp.seconds, error, times, counts, spread, load.cores()))
    return records


def _record(layer, quantity, seconds, error, times, counts, spread, cores) -> dict:
    record = {
        "layer": layer.id, "name": layer.name, "kind": layer.kind, "config": layer.describe(), "quantity": quantity,
        "compile_s": seconds, "rel_error": error, "ok": error <= tolerance(quantity), "time_s": times, "calls": counts,
        "spread": spread, "other_cores": cores,
    }
    if "BackPACK" in times:
        record["ratio"] = times["tnc"] / times["BackPACK"]
        extension = times["BackPACK"] - times["plain backward"]
        record["ratio_extension"] = times["tnc"] / extension if extension > 0 else None
    else:
        record["ratio"] = times["tnc"] / times["autograd"]
    return record


def tolerance(quantity: str) -> float:
    return RTOL if quantity in ("batch_grad", "weight_vjp") else RTOL_SQUARED


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3g}"


def report(records: list[dict], args: argparse.Namespace, uptime: str) -> str:
    lines = [
        "# Per-sample quantities: tnc against BackPACK",
        "",
        f"`python -m benchmarks.per_sample` (batch {args.batch}, float32, {torch.get_num_threads()} threads "
        f"(`torch.set_num_threads` left at its default, as the other benchmarks), torch {torch.__version__}, "
        f"BackPACK {_backpack_version()}, {platform.processor() or platform.machine()}; load before the run: {uptime}).",
        "",
        "Loss `L = sum(Y * V)` (V: the output gradient). tnc's time is its generated function alone; BackPACK's "
        "is a forward and a backward with its extension (each extension its own backward), *plain* the same forward "
        "and backward without an extension. **tnc/BackPACK** (the table's ratio) is tnc over BackPACK's whole call; "
        "*tnc/ext* is tnc over BackPACK's call minus the plain one (the extension's own work; the plain backward also "
        "X does not require a gradient, so neither backward computes the input gradient). The weight VJP rows compare with "
        "`torch.autograd.grad` of `F.conv2d` with respect to the weight only (the graph built once). err: "
        "max |tnc - ref| / max |ref| (variance: / max SGS/N), float32 tolerance 1e-4 for gradients, 1e-3 for the "
        "squared quantities (tnc sums the squares of its per-sample gradients in another order than BackPACK; "
        "exact to 1e-14 in float64); a mismatch is marked, with both "
        "methods' errors against torch.func's per-sample gradients (`vmap(grad)`), which say which one is wrong.",
        "",
    ]
    for quantity in list(QUANTITIES) + ["weight_vjp"]:
        rows = [r for r in records if r["quantity"] == quantity]
        if not rows:
            continue
        ratios = [r["ratio"] for r in rows if r["ok"]]
        median = f", median tnc/{'BackPACK' if quantity != 'weight_vjp' else 'autograd'} {statistics.median(ratios):.2f}" if ratios else ""
        lines += [f"## {quantity}{median}", ""]
        if quantity == "weight_vjp":
            lines += ["| layer | config | tnc ms | autograd ms | tnc/autograd | err | compile s | other cores |",
                      "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
        else:
            lines += ["| layer | config | tnc ms | BackPACK ms | plain ms | tnc/BackPACK | tnc/ext | err | compile s | other cores |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in rows:
            t = r["time_s"]
            err = f"{r['rel_error']:.0e}" if r["ok"] else f"**MISMATCH** {r['rel_error']:.1e}"
            if not r["ok"] and "func_errors" in r:
                func = r["func_errors"]
                err += f" (vs torch.func: tnc {func['tnc-func']:.0e}, BackPACK {func['BackPACK-func']:.0e})"
            cores = "?" if r["other_cores"] is None else f"{r['other_cores']:.2f}"
            if quantity == "weight_vjp":
                cells = [_ms(t["tnc"]), _ms(t["autograd"]), f"{r['ratio']:.2f}"]
            else:
                ext = "–" if r["ratio_extension"] is None else f"{r['ratio_extension']:.2f}"
                cells = [_ms(t["tnc"]), _ms(t["BackPACK"]), _ms(t["plain backward"]), f"{r['ratio']:.2f}", ext]
            lines.append(f"| {r['layer']} {r['name']} | {r['config']} | " + " | ".join(cells) + f" | {err} | {r['compile_s']:.2f} | {cores} |")
        lines.append("")
    lines += ["![tnc/BackPACK per layer](per_sample.png)", ""]
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    figure, ax = plt.subplots(figsize=(11, 3.8))
    labels = list(dict.fromkeys(f"{r['layer']}{'t' if 'torch' in r['name'] else ''}" for r in records))
    for quantity, marker in zip(list(QUANTITIES) + ["weight_vjp"], "osv^D"):
        rows = {f"{r['layer']}{'t' if 'torch' in r['name'] else ''}": r["ratio"] for r in records if r["quantity"] == quantity}
        xs = [n for n, label in enumerate(labels) if label in rows]
        ax.plot(xs, [rows[labels[n]] for n in xs], marker, label=quantity if quantity != "weight_vjp" else "weight VJP / autograd")
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("tnc / BackPACK time")
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def _backpack_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backpack-for-pytorch")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layers", help="comma-separated layer ids, net names or classes (default: all)")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per layer and quantity, all methods")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait, at most, for other processes to go quiet")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a quarter of the spatial sizes, batch 2, 3 timed calls")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    try:
        import backpack  # noqa: F401
    except ImportError:
        parser.error("BackPACK is not installed: pip install -e '.[backpack]'")
    layers = select(args.layers)
    if args.quick:
        args.batch, args.repeats, args.min_repeats, args.warmup, args.wait = 2, 3, 3, 1, 0.0
        layers = [layer.scaled(0.25) for layer in layers]
    uptime = os.popen("uptime").read().strip() or "?"
    records = []
    for layer in layers:
        for r in measure_layer(layer, args):
            records.append(r)
            print(f"{r['layer']} {r['name']} {r['quantity']}: tnc/ref {r['ratio']:.2f}"
                  f"{'' if r['ok'] else '  MISMATCH'}", flush=True)
    out = Path(args.out)
    environment = {"batch": args.batch, "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "backpack": _backpack_version(), "uptime": uptime}
    (out / "per_sample.json").write_text(json.dumps({"environment": environment, "records": records}, indent=1) + "\n")
    (out / "per_sample.md").write_text(report(records, args, uptime))
    plot(records, out / "per_sample.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
