"""The benchmark driver: ``make bench``, or ``python -m benchmarks.run [options]``.

For every layer of benchmarks/layers.py and every operation (forward, input VJP, weight VJP, KFC,
KFAC-reduce) it compiles tnc's program with the Python API, checks the generated function against
the baselines of benchmarks/baselines.py, and times and measures both (and einconv, when
installed) in this process. It then measures tnc's compile time per example file and the
first-call overhead of generated modules, and writes benchmarks/results.json, results.md and one
plot per operation. Exit status 1 when a tnc result does not match its baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from benchmarks.baselines import (
    BASELINE_NAME,
    baseline,
    einconv_available,
    einconv_fn,
    make_tensors,
)
from benchmarks.layers import select
from benchmarks.measure import (
    OtherLoad,
    once,
    peak_memory,
    time_methods,
    wait_for_quiet,
)
from benchmarks.networks import OPERATIONS, compile_op

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RTOL = 1e-4  # float32: relative to the largest entry of the reference
BUSY = 0.3  # other processes using more cores than this during a measurement: measure again
RETRIES = 2  # ... at most this often per layer and operation
WAIT_TOTAL = 150.0  # seconds the whole run may spend waiting for other processes to go quiet


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="batch size N (default 8)")
    parser.add_argument("--layers", help="comma-separated layer ids, net names or classes (default: all)")
    parser.add_argument("--ops", default=",".join(OPERATIONS), help=f"comma-separated operations (default: {','.join(OPERATIONS)})")
    parser.add_argument("--repeats", type=int, default=15, help="at most this many timed calls per method (default 15)")
    parser.add_argument("--min-repeats", type=int, default=5, help="at least this many timed calls per method (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls per method (default 2)")
    parser.add_argument("--budget", type=float, default=2.5, help="seconds of timed calls per layer and operation, all methods (default 2.5)")
    parser.add_argument("--scale", type=float, default=1.0, help="scale the spatial input sizes (default 1: the real sizes)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: half the spatial sizes, batch 2, 3 timed calls, no einconv")
    parser.add_argument("--no-einconv", action="store_true", help="skip the einconv baseline even when installed")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--out", default=str(HERE), help="folder for results.json, results.md and the plots (default benchmarks/)")
    parser.add_argument("--dump", metavar="DIR", help="also write every .tn program and generated module to DIR")
    parser.add_argument("--no-wait", action="store_true", help="do not re-measure when other processes load the machine")
    parser.add_argument("--compile-only", action="store_true",
                        help="only the compile times (examples and templates), printed; no results are written")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.batch, args.repeats, args.min_repeats, args.warmup, args.no_einconv = 0.5, 2, 3, 3, 1, True
    unknown = set(args.ops.split(",")) - set(OPERATIONS)
    if unknown:
        parser.error(f"--ops: unknown {', '.join(sorted(unknown))}")
    return args


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().item() or 1.0
    return (result.double() - reference.double()).abs().max().item() / scale


def matches(result: torch.Tensor, reference: torch.Tensor) -> tuple[bool, float, str]:
    """allclose with float32 tolerances (relative to the largest entry); shapes must agree."""
    if result.shape != reference.shape:
        if result.numel() == reference.numel() and reference.shape[0] == 1 and tuple(result.shape) == tuple(reference.shape[1:]):
            result = result.reshape(reference.shape)  # one group: tnc's A has no group axis
        else:
            return False, float("inf"), f"shape {tuple(result.shape)} != {tuple(reference.shape)}"
    scale = reference.abs().max().item()
    ok = torch.allclose(result, reference, rtol=RTOL, atol=RTOL * scale)
    return ok, relative_error(result, reference), ""


def strategy(source: str) -> str:
    """How the generated function computes the output: the strategy comments of its terms."""
    found = []
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("# term") and "strategy" in line:
            text = line.split("strategy", 1)[1].strip(" :")
            found.append(text.split(":")[0].strip())
        elif line.startswith("# term") and "path [" in line and not any("window" in f for f in found[-1:]):
            found.append("einsum")
    constants = sorted({line.split("_constant_")[1].split("(")[0] for line in source.splitlines() if "= _constant_" in line})
    if "_cached((\"C_" in source or constants:
        found.append("constants " + ",".join(constants) if constants else "constant pattern products")
    return "; ".join(dict.fromkeys(found)) or "?"


def duplicate_steps(source: str) -> int:
    """Contraction steps of the generated code that repeat an earlier one exactly (same equation, same operands)."""
    seen, repeats = set(), 0
    for line in source.splitlines():
        line = line.strip()
        if "torch.einsum(" in line and "=" in line:
            call = line.split("=", 1)[1].split("#")[0].strip()
            repeats += call in seen
            seen.add(call)
    return repeats


def first_call_overhead(source: str, function: str, parameters: list[str], tensors: dict, name: str, pairs: int) -> tuple[float, float]:
    """The first call of a freshly executed generated module (its caches empty; torch's kernels
    warm) and its overhead: that call minus the call right after it, the median over ``pairs``
    fresh modules."""
    firsts, overheads = [], []
    for i in range(pairs):
        module = types.ModuleType(f"{name}_{i}")
        exec(compile(source, f"<tnc {name}>", "exec"), module.__dict__)
        fn = getattr(module, function)
        args = {p: tensors[p] for p in parameters}
        first = once(lambda: fn(**args))
        second = once(lambda: fn(**args))
        firsts.append(first)
        overheads.append(first - second)
    return statistics.median(firsts), statistics.median(overheads)


class Waiting:
    """The run's budget for waiting until other processes leave the cores alone."""

    def __init__(self, total: float) -> None:
        self.left = total
        self.waited = 0.0
        self.retries = 0

    def wait(self) -> None:
        spent = wait_for_quiet(min(20.0, self.left), BUSY)
        self.left -= spent
        self.waited += spent
        self.retries += 1


def bench_layer_op(layer, op, tensors, args, use_einconv: bool, dump: Path | None, waiting: Waiting) -> dict:
    compiled = compile_op(layer, op, args.batch)
    if dump:
        stem = f"layer{layer.id}{'' if layer.spelling == 'standard' else '_' + layer.spelling}_{op}"
        (dump / f"{stem}.tn").write_text(compiled.text)
        (dump / f"{stem}.py").write_text(compiled.source)
    base_name = BASELINE_NAME[op]
    methods = {"tnc": lambda: compiled(tensors), base_name: baseline(layer, op, tensors)}
    record = {
        "layer": layer.id, "net": layer.net, "module": layer.name.split(".", 1)[1], "kind": layer.kind, "config": layer.describe(),
        "spelling": layer.spelling,
        "op": op, "baseline": base_name, "compile_s": compiled.seconds, "strategy": strategy(compiled.source),
        "duplicate_steps": duplicate_steps(compiled.source), "ok": False,
    }
    reference = methods[base_name]()
    start = time.perf_counter()
    result = methods["tnc"]()
    record["first_call_cold_s"] = time.perf_counter() - start
    ok, error, why = matches(result, reference)
    record.update(ok=ok, rel_error=error, mismatch=why or (None if ok else f"max error {error:.2e} of the largest entry"))
    if use_einconv:
        try:
            methods["einconv"] = einconv_fn(layer, op, tensors)
            e_result = methods["einconv"]()
            e_ok, e_error, e_why = matches(e_result, reference)
            del e_result
            record["einconv_ok"], record["einconv_rel_error"] = e_ok, e_error
            if not e_ok:
                record["einconv_note"] = f"einconv disagrees with {base_name}: {e_why or f'{e_error:.2e}'}; not timed"
                del methods["einconv"]
        except Exception as error:  # noqa: BLE001 - einconv failing is noted, not fatal
            record["einconv_note"] = f"einconv failed: {type(error).__name__}: {error}"
            methods.pop("einconv", None)
    record["result_bytes"] = reference.numel() * reference.element_size()
    record["contiguous"] = result.is_contiguous()
    if not record["contiguous"]:  # a strided view (channels-last, say): also time what making it NCHW costs
        record["result_strides"] = list(result.stride())
        methods["tnc+contiguous"] = lambda: compiled(tensors).contiguous()
    del result, reference
    if not ok:
        return record
    best = None
    for attempt in range(RETRIES + 1):
        load = OtherLoad()
        pair = {name: fn for name, fn in methods.items() if name != "einconv"}
        medians, counts, spread = time_methods(pair, args.repeats, args.min_repeats, args.warmup, args.budget)
        if "einconv" in methods:  # on its own: see time_methods
            more = time_methods({"einconv": methods["einconv"]}, args.repeats, args.min_repeats, args.warmup, args.budget / 2, rounds=1)
            for found, extra in zip((medians, counts, spread), more):
                found.update(extra)
        cores = load.cores() or 0.0
        if best is None or cores < best[3]:
            best = (medians, counts, spread, cores)
        if args.no_wait or cores <= BUSY or attempt == RETRIES or waiting.left <= 0:
            break
        waiting.wait()
    record["time_s"], record["calls"], record["spread"], record["other_load"] = best
    record["attempts"] = attempt + 1
    pairs = 5 if best[0]["tnc"] < 0.05 else 3
    record["first_call_s"], record["first_call_overhead_s"] = first_call_overhead(
        compiled.source, compiled.function.__name__, compiled.parameters, tensors, f"fresh{layer.id}_{op}", pairs
    )
    if not args.no_memory:
        record["memory_bytes"] = {name: peak_memory(fn) for name, fn in methods.items()}
    return record


def bench_compile() -> list[dict]:
    """``tnc compile FILE --target torch -o OUT`` in process, per example file: parse to written module."""
    from tnc.cli.main import main as tnc_main

    rows = []
    examples = sorted((ROOT / "examples").glob("*.tn"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "module.py"
        with contextlib.redirect_stderr(io.StringIO()):
            tnc_main(["compile", str(examples[0]), "--target", "torch", "-o", str(out)])  # imports, once
        for path in examples:
            times, status = [], 0
            for _ in range(3):
                start = time.perf_counter()
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    status = tnc_main(["compile", str(path), "--target", "torch", "-o", str(out)])
                times.append(time.perf_counter() - start)
            rows.append({"file": f"examples/{path.name}", "first_s": times[0], "median_s": statistics.median(times), "status": status,
                         "error": err.getvalue().strip()[:200] if status else None})
    return rows


def bench_templates(runs: int = 3) -> list[dict]:
    """Each template of benchmarks/templates.py bound to each layer configuration, in process
    through the API (check, simplify, generate the torch module): ``runs`` compiles each."""
    from benchmarks.templates import BINDINGS, TEMPLATES
    from tnc.codegen.torch_module import to_torch_source
    from tnc.frontend import compile_source
    from tnc.passes.simplify import simplify

    rows = []
    for name, text in TEMPLATES.items():
        for sizes in BINDINGS:
            times, error = [], None
            for _ in range(runs):
                start = time.perf_counter()
                try:
                    program = compile_source(text, f"{name}.tn", sizes)
                    simplify(program)
                    to_torch_source(program, name)
                except Exception as exc:  # noqa: BLE001 - reported in the table, never hidden
                    error = f"{type(exc).__name__}: {exc}"[:200]
                times.append(time.perf_counter() - start)
            rows.append({"template": name, "sizes": " ".join(f"{k}={v}" for k, v in sizes.items()), "first_s": times[0],
                         "median_s": statistics.median(times), "error": error})
    return rows


def tnc_version() -> str:
    """The commit of the checkout, and whether tnc/ differs from it (other work in progress)."""
    import hashlib
    import subprocess

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "tnc").splitlines()]
    if not changed:
        return f"{commit} (tnc/ as committed)"
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tnc").rglob("*.py")):
        digest.update(path.read_bytes())
    return f"{commit} with uncommitted changes in {len(changed)} file(s) of tnc/ (sources sha256 {digest.hexdigest()[:12]})"


def environment(args, einconv_version) -> dict:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kb / 2**20:.0f} GiB"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": memory, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "tnc": tnc_version(), "threads": torch.get_num_threads(),
        "einconv": einconv_version, "batch": args.batch, "scale": args.scale, "repeats": args.repeats,
        "min_repeats": args.min_repeats, "warmup": args.warmup, "budget_s": args.budget, "quick": args.quick,
        "memory_measured": not args.no_memory, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compile_only:
        from benchmarks.report import compile_tables

        results = {"compile": bench_compile(), "templates": bench_templates()}
        print("\n".join(compile_tables(results)))
        return 1 if any(r["status"] for r in results["compile"]) or any(r["error"] for r in results["templates"]) else 0
    started = time.perf_counter()
    load = OtherLoad()
    torch.manual_seed(0)
    layers = [layer.scaled(args.scale) for layer in select(args.layers)]
    ops = args.ops.split(",")
    einconv_version = None if args.no_einconv else einconv_available()
    dump = Path(args.dump) if args.dump else None
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
    env = environment(args, einconv_version)
    print(f"tnc benchmark: {len(layers)} layers x {len(ops)} operations, batch {args.batch}, "
          f"{'real spatial sizes' if args.scale == 1 else f'spatial sizes x{args.scale}'}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), einconv {einconv_version or 'not used'}", flush=True)
    records = []
    waiting = Waiting(0.0 if args.no_wait else WAIT_TOTAL)
    for layer in layers:
        tensors = make_tensors(layer, args.batch)
        for op in ops:
            record = bench_layer_op(layer, op, tensors, args, einconv_version is not None, dump, waiting)
            records.append(record)
            print(progress_line(record), flush=True)
        del tensors
    print("compile time per example file ...", flush=True)
    compile_rows = bench_compile()
    print("compile time per template and layer configuration ...", flush=True)
    template_rows = bench_templates()
    env["duration_s"] = time.perf_counter() - started
    env["other_load"] = load.cores()
    env["waited_s"], env["retries"] = waiting.waited, waiting.retries
    results = {"environment": env, "records": records, "compile": compile_rows, "templates": template_rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")

    from benchmarks.report import summary_table, write_markdown

    plots = []
    try:
        from benchmarks.plot import plot_all

        plots = plot_all(results, out)
    except ImportError as error:
        print(f"no plots: {error} (install the bench extra: pip install -e '.[bench]')", file=sys.stderr)
    write_markdown(results, out / "results.md", plots)
    print()
    print(summary_table(results))
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'}" + (f" and {len(plots)} plots" if plots else "")
          + f" in {env['duration_s']:.0f} s")
    failures = [r for r in records if not r["ok"]]
    for r in failures:
        print(f"MISMATCH layer {r['layer']} {r['op']}: {r['mismatch']}", file=sys.stderr)
    bad_compiles = [r for r in compile_rows if r["status"]] + [r for r in template_rows if r["error"]]
    for r in bad_compiles:
        print(f"COMPILE FAILED {r.get('file') or r['template'] + ' ' + r['sizes']}: {r['error']}", file=sys.stderr)
    return 1 if failures or bad_compiles else 0


def progress_line(r: dict) -> str:
    head = f"  {r['layer']:>4} {r['net'] + '.' + r['module']:<40.40} {r['op']:<12}"
    if not r["ok"]:
        return f"{head} MISMATCH: {r['mismatch']}"
    t = r["time_s"]
    base = r["baseline"]
    text = f"{head} tnc {t['tnc'] * 1e3:9.2f} ms  {base} {t[base] * 1e3:9.2f} ms  ratio {t['tnc'] / t[base]:6.2f}"
    if "einconv" in t:
        text += f"  einconv {t['einconv'] * 1e3:9.2f} ms ({t['tnc'] / t['einconv']:5.2f})"
    if r.get("other_load", 0) > BUSY:
        text += f"  [others used {r['other_load']:.1f} cores]"
    return text


if __name__ == "__main__":
    sys.exit(main())
