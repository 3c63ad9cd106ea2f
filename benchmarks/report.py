"""benchmarks/results.md and the printed summary, from the records of benchmarks/run.py."""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.networks import OPERATIONS, TITLES

MiB = 2**20

# The targets of the performance issue: (operation, limit on tnc/baseline per layer)
PER_LAYER_LIMIT = {"forward": 1.1, "input_vjp": 1.1, "weight_vjp": 1.25, "kfc": 1.0, "kfac_reduce": 1.0}
KFAC_REDUCE_MEDIAN = 1 / 3  # KFAC-reduce: at least 3x faster than unfold on the median layer
KFAC_REDUCE_MEMORY = 0.10  # ... with extra memory below 10% of unfold's


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / MiB:.3g}" if value < 100 * MiB else f"{value / MiB:.0f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def ratio(record: dict, other: str) -> float | None:
    t = record.get("time_s") or {}
    return t["tnc"] / t[other] if other in t and t[other] > 0 else None


def memory_ratio(record: dict, other: str) -> float | None:
    m = record.get("memory_bytes") or {}
    if other not in m or m[other] <= 0:
        return None
    return m["tnc"] / m[other]


def scratch(record: dict, name: str) -> int | None:
    """Peak extra memory beyond the result itself (which every method has to hold)."""
    m = record.get("memory_bytes") or {}
    return None if name not in m else max(0, m[name] - record.get("result_bytes", 0))


def label(record: dict) -> str:
    return f"{record['layer']} {record['net']}.{record['module']}"


def by_op(results: dict) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in results["records"]:
        grouped.setdefault(record["op"], []).append(record)
    return {op: grouped[op] for op in OPERATIONS if op in grouped}


def native_noise(results: dict) -> tuple[float, int, float, float] | None:
    """The run-to-run noise, seen where tnc calls the very PyTorch kernel its baseline runs (an A/A
    comparison): the 90th percentile of |ratio - 1| over those rows, their count, min and max ratio."""
    ratios = [ratio(r, r["baseline"]) for r in results["records"]
              if r["ok"] and r["op"] in ("forward", "weight_vjp") and r["strategy"].startswith("native") and r.get("time_s")]
    if len(ratios) < 5:
        return None
    deviations = sorted(abs(x - 1) for x in ratios)
    return deviations[int(0.9 * (len(deviations) - 1))], len(ratios), min(ratios), max(ratios)


_NOISE = [0.0]  # set by write_markdown / summary_table from the run's own A/A rows


def _miss(record: dict, value: float, limit: float, what: str) -> str:
    over = value / limit - 1
    marginal = " — marginal: within this run's noise" if over <= _NOISE[0] else ""
    return f"{label(record)} ({record['kind']}): {what} {value:.2f}, target ≤ {limit:.2f} (over by {100 * over:.0f}%){marginal}"


def targets(results: dict) -> list[dict]:
    """Each target of the performance issue: its text, whether it is met, and every miss."""
    noise = native_noise(results)
    _NOISE[0] = noise[0] if noise else 0.0
    ops = by_op(results)
    rows = []

    def per_layer(op: str, text: str) -> None:
        if op not in ops:
            return
        records = ops[op]
        base = records[0]["baseline"]
        limit = PER_LAYER_LIMIT[op]
        misses = [_miss(r, ratio(r, base), limit, f"tnc/{base}") for r in records if r["ok"] and ratio(r, base) > limit]
        misses += [f"{label(r)}: result does not match {base} ({r['mismatch']})" for r in records if not r["ok"]]
        rows.append({"target": text, "met": not misses, "misses": misses})

    per_layer("forward", "forward ≤ 1.1× PyTorch on every layer")
    per_layer("input_vjp", "input VJP ≤ 1.1× PyTorch on every layer")
    per_layer("weight_vjp", "weight VJP ≤ 1.25× PyTorch on every layer")
    if "kfac_reduce" in ops:
        records = [r for r in ops["kfac_reduce"] if r["ok"]]
        ratios = [ratio(r, "unfold") for r in records]
        median = statistics.median(ratios) if ratios else None
        ok = median is not None and median <= KFAC_REDUCE_MEDIAN and len(records) == len(ops["kfac_reduce"])
        rows.append({
            "target": "KFAC-reduce ≥ 3× faster than unfold-based on the median layer (tnc/unfold ≤ 0.33)",
            "met": ok,
            "misses": [] if ok else [f"median tnc/unfold {median:.2f} (speed-up {1 / median:.1f}×), target ≤ 0.33"] if median else ["no layer measured"],
        })
        per_layer("kfac_reduce", "KFAC-reduce never slower than unfold-based (tnc/unfold ≤ 1 on every layer)")
        if results["environment"].get("memory_measured"):
            misses = []
            for r in records:
                mine, theirs = scratch(r, "tnc"), scratch(r, "unfold")
                if mine is not None and theirs is not None and mine >= KFAC_REDUCE_MEMORY * theirs:
                    share = f"{100 * mine / theirs:.0f}%" if theirs else "more than"
                    misses.append(f"{label(r)} ({r['kind']}): tnc {_mib(mine)} MiB beyond the {_mib(r['result_bytes'])} MiB result = "
                                  f"{share} of unfold's {_mib(theirs)} MiB, target < 10%")
            rows.append({"target": "KFAC-reduce extra memory (beyond the result) < 10% of unfold-based's", "met": not misses, "misses": misses})
    if "kfc" in ops:
        per_layer("kfc", "KFC no slower than unfold-based (tnc/unfold ≤ 1 on every layer)")
        if results["environment"].get("memory_measured"):
            misses = []
            for r in (r for r in ops["kfc"] if r["ok"]):
                m = memory_ratio(r, "unfold")
                if m is not None and m >= 1:
                    misses.append(f"{label(r)} ({r['kind']}): tnc {_mib(r['memory_bytes']['tnc'])} MiB vs unfold "
                                  f"{_mib(r['memory_bytes']['unfold'])} MiB ({m:.2f}×), target < 1×")
            rows.append({"target": "KFC with less extra memory than unfold-based", "met": not misses, "misses": misses})
    if results["environment"].get("einconv"):
        misses = []
        for op, records in ops.items():
            for r in records:
                value = ratio(r, "einconv")
                if value is not None and value > 1:
                    misses.append(f"{TITLES[op]}, {_miss(r, value, 1.0, 'tnc/einconv')}")
                elif r["ok"] and value is None and r.get("einconv_note"):
                    misses.append(f"{TITLES[op]}, {label(r)}: not compared ({r['einconv_note']})")
        rows.append({"target": "every operation at least as fast as einconv, its result made contiguous (tnc/einconv ≤ 1 on every layer)", "met": not misses, "misses": misses})
    return rows


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for op, records in by_op(results).items():
        good = [r for r in records if r["ok"]]
        base = records[0]["baseline"]
        ratios = [(ratio(r, base), r) for r in good]
        limit = PER_LAYER_LIMIT[op]
        worst = max(ratios, key=lambda x: x[0]) if ratios else None
        e_ratios = [(ratio(r, "einconv"), r) for r in good if ratio(r, "einconv") is not None]
        e_worst = max(e_ratios, key=lambda x: x[0]) if e_ratios else None
        mems = [memory_ratio(r, base) for r in good if memory_ratio(r, base) is not None]
        rows.append([
            TITLES[op], base, f"{len(good)}/{len(records)}",
            _ratio(statistics.median([x for x, _ in ratios])) if ratios else "–",
            f"{worst[0]:.2f} ({worst[1]['layer']})" if worst else "–",
            f"{sum(x <= limit for x, _ in ratios)}/{len(ratios)} ≤ {limit:g}",
            _ratio(statistics.median([x for x, _ in e_ratios])) if e_ratios else "–",
            f"{e_worst[0]:.2f} ({e_worst[1]['layer']})" if e_worst else "–",
            _ratio(statistics.median(mems)) if mems else "–",
        ])
    return rows


SUMMARY_HEADER = ["operation", "baseline", "matched", "median tnc/base", "worst (layer)", "within target", "median tnc/einconv",
                  "worst vs einconv (layer)", "median memory tnc/base"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(results: dict) -> str:
    """The short plain-text summary that run.py prints."""
    rows = [SUMMARY_HEADER] + summary_rows(results)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(SUMMARY_HEADER))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for t in targets(results):
        lines.append(f"[{'met ' if t['met'] else 'MISS'}] {t['target']}" + (f": {len(t['misses'])} miss(es)" if t["misses"] else ""))
    return "\n".join(lines)


def compile_tables(results: dict) -> list[str]:
    """The compile-time sections: one row per example file, one per template (over its bindings)."""
    out: list[str] = []
    add = out.append
    add("## Compile time per example file")
    add("")
    add("`tnc compile FILE --target torch -o OUT` run in process (`tnc.cli.main.main`), parse to written module; the imports are "
        "done once before. Three runs per file; target < 0.5 s each.")
    add("")
    rows = [[r["file"], _ms(r["first_s"]), _ms(r["median_s"]), "ok" if not r["status"] else f"exit {r['status']}: {r['error']}"]
            for r in results["compile"]]
    add(_table(["file", "first ms", "median ms", "status"], rows))
    slow = [r for r in results["compile"] if r["median_s"] >= 0.5]
    worst = max(results["compile"], key=lambda r: r["median_s"]) if results["compile"] else None
    add("")
    if worst:
        add(f"Slowest: {worst['file']} at {worst['median_s'] * 1e3:.0f} ms; " + (f"{len(slow)} file(s) at or over 0.5 s: "
            + ", ".join(r["file"] for r in slow) if slow else "every file under 0.5 s."))
    templates = results.get("templates") or []
    if not templates:
        return out
    add("")
    add("## Compile time per template")
    add("")
    add("The templates of `benchmarks/templates.py` (free N, C, D and spatial sizes; kernel K, stride S, padding P and "
        "dilation L bound with `sizes=`, as `--size` does), each bound to every configuration of its `BINDINGS`: "
        "parse, check, simplify and generate the torch module in process through the API, three runs each. "
        "\"first\" is the first compile of that template and binding in the process (other templates warm "
        "tnc's caches, as the layers of one model do); target < 0.5 s each.")
    add("")
    rows = []
    for name in dict.fromkeys(r["template"] for r in templates):
        mine = [r for r in templates if r["template"] == name]
        worst = max(mine, key=lambda r: r["first_s"])
        errors = [f"{r['sizes']}: {r['error']}" for r in mine if r["error"]]
        rows.append([name, str(len(mine)), _ms(statistics.median(r["median_s"] for r in mine)), _ms(worst["first_s"]),
                     worst["sizes"], "ok" if not errors else "; ".join(errors)])
    add(_table(["template", "bindings", "median ms", "max first ms", "slowest binding", "status"], rows))
    slow = [r for r in templates if r["first_s"] >= 0.5]
    worst = max(templates, key=lambda r: r["first_s"])
    add("")
    add(f"Slowest: {worst['template']} with {worst['sizes']} at {worst['first_s'] * 1e3:.0f} ms; "
        + (f"{len(slow)} compile(s) at or over 0.5 s." if slow else f"all {len(templates)} compiles under 0.5 s."))
    return out


def write_markdown(results: dict, path: Path, plots: list[Path]) -> None:
    env = results["environment"]
    ops = by_op(results)
    out: list[str] = []
    add = out.append
    add("# tnc benchmark results")
    add("")
    add("Generated by `make bench` (`python -m benchmarks.run`); do not edit by hand. Raw numbers: `results.json`.")
    add("")
    add("## Machine and settings")
    add("")
    sizes = "the real input sizes of cnn-layers.md" if env["scale"] == 1 else f"spatial input sizes scaled by {env['scale']} (not the real sizes)"
    add(f"- machine: {env['cpu']}, {env['cores']} cores, {env['memory']} memory; {env['platform']}")
    add(f"- tnc: {env.get('tnc', '?')}")
    add(f"- Python {env['python']}, torch {env['torch']} (CPU, {env['threads']} threads, `torch.set_num_threads` left at default); "
        f"einconv {env['einconv'] or 'not installed / not used'}")
    add(f"- float32, batch {env['batch']}, {sizes}; {len({r['layer'] for r in results['records']})} layers × {len(ops)} operations; "
        f"run on {env['date']}, took {env['duration_s']:.0f} s")
    if env.get("other_load") is not None:
        busy = [r for r in results["records"] if (r.get("other_load") or 0) > 0.3]
        add(f"- other processes on the machine used {env['other_load']:.2f} of its {env['cores']} cores on average during the run "
            f"(from /proc/stat, this process excluded). A measurement during which they used more than 0.3 cores was repeated "
            f"after waiting for quiet (at most twice; {env.get('retries', 0)} repeats, {env.get('waited_s', 0):.0f} s waited in all), "
            f"keeping the least disturbed one; {len(busy)} of {len(results['records'])} measurements still ran beside more than "
            "0.3 busy cores (column \"load\"): their times are noisier.")
    add(f"- time: {env['warmup']} warm-up call(s) per method; then tnc and its baseline take turns in blocks, 3 rounds with "
        "the order rotating, each block one untimed call and then consecutive timed calls, "
        f"{env['min_repeats']}–{env['repeats']} timed calls per method in all (as many as fit {env['budget_s']} s per layer "
        "and operation); einconv is timed after them on its own (a call right after einconv's large allocations is slowed "
        "for several calls by page faults, which would be charged to the method that follows it). Each time is the median "
        "of `time.perf_counter` around each call; only the generated function is timed (compilation is not). A ratio is "
        "tnc's median over the other method's median, measured in the same process: below 1 tnc is faster.")
    add("- baselines: forward `F.conv2d`; VJPs `torch.autograd.grad` through `F.conv2d` (the graph built once, each timed call the "
        "backward alone); KFC `U = F.unfold(X)`, per group `U Uᵀ` over positions / N; KFAC-reduce `u = F.unfold(X).mean(-1)`, "
        "per group `uᵀu / N`; einconv: its einsum expression of the same operation built once outside the timed region, the "
        "timed call being the `torch.einsum(equation, *operands)` its functionals make.")
    add("- check: before timing, every tnc result is compared with its baseline (`torch.allclose`, rtol = atol/max|ref| = 1e-4); "
        "the \"err\" columns give max|tnc − ref| / max|ref|. A mismatch fails the run.")
    if env.get("memory_measured"):
        add("- memory: peak extra memory of one call, from the allocation events of `torch.profiler.profile(profile_memory=True)`: "
            "the allocations and frees of PyTorch's CPU allocator, ordered by time and summed; the peak of that running sum "
            "(result included, the inputs and anything made before the call excluded). Scratch space that oneDNN or the BLAS "
            "library allocate outside PyTorch's allocator is not seen. The tables give this peak; the KFAC-reduce memory "
            "target compares the peak beyond the result (peak minus the result's size), the part the methods can differ in.")
    add("")
    add("## Summary")
    add("")
    add(_table(SUMMARY_HEADER, summary_rows(results)))
    add("")
    strided = [r for r in results["records"] if r.get("contiguous") is False and "tnc+contiguous" in (r.get("time_s") or {})]
    if strided:
        add("Results that are strided views: " + "; ".join(
            f"{TITLES[r['op']]} {label(r)} (tnc/{r['baseline']} {ratio(r, r['baseline']):.2f}, "
            f"{ratio(r, r['baseline']) * r['time_s']['tnc+contiguous'] / r['time_s']['tnc']:.2f} with `.contiguous()`)" for r in strided)
            + ". The ratios in this report time the function as generated (the view); a caller that needs NCHW memory pays the copy.")
        add("")
    add("## Targets of the performance issue")
    add("")
    noise = native_noise(results)
    if noise:
        add(f"Noise: where tnc's generated code calls the same PyTorch kernel as its baseline (the `native` rows of the forward "
            f"and the weight VJP, {noise[1]} of them), the ratio should be 1; it ranged from {noise[2]:.2f} to {noise[3]:.2f}, 90% of them "
            f"within ±{100 * noise[0]:.0f}%. A miss by no more than that is marked *marginal*: it may not reproduce.")
        add("")
    for t in targets(results):
        add(f"- **{'met' if t['met'] else 'MISSED'}**: {t['target']}" + ("" if t["met"] else f" — {len(t['misses'])} miss(es):"))
        for miss in t["misses"]:
            add(f"  - {miss}")
    add("")
    for op, records in ops.items():
        base = records[0]["baseline"]
        has_e = any("einconv" in (r.get("time_s") or {}) for r in records)
        mem = env.get("memory_measured")
        add(f"## {TITLES[op]}")
        add("")
        plot = next((p for p in plots if p.stem.endswith(op)), None)
        if plot:
            add(f"![{TITLES[op]}: tnc/{base} per layer]({plot.name})")
            add("")
        header = ["layer", "class", "config", "tnc ms", f"{base} ms", f"tnc/{base}"]
        if has_e:
            header += ["einconv ms", "tnc/einconv"]
        if mem:
            header += ["result MiB", "tnc MiB", f"{base} MiB"] + (["einconv MiB"] if has_e else [])
        header += ["err", "calls", "load", "tnc strategy"]
        rows = []
        for r in records:
            t, m = r.get("time_s") or {}, r.get("memory_bytes") or {}
            row = [label(r), r["kind"], r["config"], _ms(t.get("tnc")), _ms(t.get(base)), _ratio(ratio(r, base))]
            if has_e:
                row += [_ms(t.get("einconv")), _ratio(ratio(r, "einconv"))]
            if mem:
                row += [_mib(r.get("result_bytes")), _mib(m.get("tnc")), _mib(m.get(base))] + ([_mib(m.get("einconv"))] if has_e else [])
            err = f"{r['rel_error']:.0e}" if r["ok"] else f"**MISMATCH** {r['mismatch']}"
            calls = (r.get("calls") or {}).get("tnc", "–")
            note = r["strategy"] + (f"; {r['duplicate_steps']} repeated step(s)" if r.get("duplicate_steps") else "")
            if r.get("contiguous") is False:
                c = ratio(r, base) * t["tnc+contiguous"] / t["tnc"] if "tnc+contiguous" in t else None
                note += f"; result not contiguous (strides {tuple(r['result_strides'])})" + (f", with `.contiguous()` {c:.2f}×" if c else "")
            load = r.get("other_load")
            row += [err, calls, "–" if load is None else f"{load:.2f}", note]
            rows.append(row)
        add(_table(header, rows))
        notes = [f"{label(r)}: {r['einconv_note']}" for r in records if r.get("einconv_note")]
        if notes:
            add("")
            add("einconv notes: " + "; ".join(notes))
        add("")
    out.extend(compile_tables(results))
    compiles = [r["compile_s"] for r in results["records"]]
    if compiles:
        add(f"The benchmark's own programs (parse, derive, simplify, generate, exec via the Python API): median "
            f"{statistics.median(compiles) * 1e3:.0f} ms, max {max(compiles) * 1e3:.0f} ms (the first includes imports).")
    add("")
    add("## First-call overhead of a generated module")
    add("")
    add("The generated source executed afresh (its pattern and constant caches empty) after the timing, so torch's own "
        "kernels are warm; the overhead is that first call minus the call right after it, the median over 5 fresh modules "
        "(3 for calls over 50 ms). Target < 5 ms. An overhead smaller than three times the spread of the "
        "operation's timed calls (interquartile range) is within noise.")
    add("")
    firsts = [r for r in results["records"] if r.get("first_call_overhead_s") is not None]
    if firsts:

        def noise(r: dict) -> float:
            return 3 * (r.get("spread") or {}).get("tnc", 0.0) * r["time_s"]["tnc"]

        overheads = sorted(r["first_call_overhead_s"] for r in firsts)
        over = [r for r in firsts if r["first_call_overhead_s"] >= 5e-3]
        real = [r for r in over if r["first_call_overhead_s"] > noise(r)]
        add(f"Over {len(firsts)} generated functions: median {statistics.median(overheads) * 1e3:.2f} ms, "
            f"max {overheads[-1] * 1e3:.2f} ms; {len(over)} at or over 5 ms, {len(real)} of them beyond the noise.")
        add("")
        rows = []
        for op, records in ops.items():
            found = [r for r in records if r.get("first_call_overhead_s") is not None]
            if found:
                w = max(found, key=lambda r: r["first_call_overhead_s"])
                rows.append([TITLES[op], f"{statistics.median(r['first_call_overhead_s'] for r in found) * 1e3:.2f}",
                             f"{w['first_call_overhead_s'] * 1e3:.2f} ({label(w)})",
                             f"{sum(r['first_call_overhead_s'] >= 5e-3 for r in found)}/{len(found)}"])
        add(_table(["operation", "median ms", "max ms (layer)", "≥ 5 ms"], rows))
        if over:
            add("")
            add("At or over 5 ms: " + "; ".join(
                f"{TITLES[r['op']]} {label(r)} {r['first_call_overhead_s'] * 1e3:.1f} ms"
                + (f" (call {r['time_s']['tnc'] * 1e3:.0f} ms; within noise ±{noise(r) * 1e3:.0f} ms)" if r in over and r not in real else
                   f" (call {r['time_s']['tnc'] * 1e3:.0f} ms)")
                for r in over))
    add("")
    path.write_text("\n".join(out))
