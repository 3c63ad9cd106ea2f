"""Writes the cookbook: one page per example with its diagram, derivation and generated code.

Run from the repository root: `python docs/cookbook/make.py [OUTDIR]` (default: docs/cookbook).
Every picture is drawn by `tnc draw`, every listing is real tnc output; tests/test_docs.py
regenerates the pages and checks that the committed ones are current.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

from tnc.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def tnc(*args: str) -> str:
    """Run a tnc command in-process and return what it printed."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(list(args))
    if status:
        raise SystemExit(f"tnc {' '.join(args)} failed with status {status}")
    return buffer.getvalue()


def _description(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


def _derivation(path: str, text: str) -> tuple[str, str] | None:
    """The command and output of a typical derivative of this example, if it has a param."""
    if "\nparam " not in text or "grad(" in text or "vjp(" in text:
        return None
    param = text.split("\nparam ", 1)[1].split("[", 1)[0].strip()
    command = ("derive", path, "--wrt", param, "--vjp", "V")
    return "tnc " + " ".join(command), tnc(*command).rstrip().splitlines()[-1]


def page(path: Path, out: Path) -> str:
    name = path.stem
    relative = str(path.relative_to(ROOT))
    text = path.read_text()
    tnc("draw", relative, "-o", str(out / f"{name}.svg"))
    parts = [f"# {name}", "", _description(text), "", f"![the diagram of {name}]({name}.svg)", "", "```", text.rstrip(), "```", ""]
    derivation = _derivation(relative, text)
    if derivation:
        command, result = derivation
        parts += ["## Derivation", "", "The gradient with respect to the param, derived by cutting it out of the diagram:", "",
                  "```console", f"$ {command} | tail -1", result, "```", ""]
    explain = tnc("simplify", relative, "--explain").splitlines()
    rewrites = [line[2:] for line in explain if line.startswith("# ")]
    parts += ["## Simplification", "", "```", *rewrites, "```", ""]
    parts += ["## Einsum", "", "```", tnc("compile", relative, "--target", "einsum").rstrip(), "```", ""]
    source = tnc("compile", relative, "--target", "torch")
    body = source[source.index("def _eval_") : source.index("\n\n\ndef ", source.index("def _eval_"))]
    parts += ["## Generated PyTorch (the evaluation function)", "", "```python", body.rstrip(), "```", ""]
    return "\n".join(parts)


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    examples = sorted((ROOT / "examples").glob("*.tn"))
    index = ["# Cookbook", "", "One page per example: what it computes, its diagram, a derivation, the rewrites and the generated code.", ""]
    for path in examples:
        (out / f"{path.stem}.md").write_text(page(path, out))
        written.append(out / f"{path.stem}.md")
        index.append(f"- [{path.stem}]({path.stem}.md): {_description(path.read_text())}")
    (out / "README.md").write_text("\n".join(index) + "\n")
    return written + [out / "README.md"]


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "cookbook")
