"""mkdocs hook for `make docs`: the benchmark report (benchmarks/results.md and its plots, written
by `make bench`) joins the site as it is, so the site never holds a second copy of the numbers."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def on_files(files: Files, config) -> Files:
    for path in sorted([*BENCHMARKS.glob("*results.md"), *BENCHMARKS.glob("*.png")]):
        files.append(File.generated(config, f"benchmarks/{path.name}", abs_src_path=str(path)))
    return files
