"""The documentation's console examples are real: every `$ tnc ...` block runs and prints what it shows."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tnc.passes.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def console_examples():
    for page in PAGES:
        for block in re.findall(r"```console\n(.*?)```", page.read_text(), re.S):
            for command, output in re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, re.M):
                yield pytest.param(command, output, id=f"{page.name}: {command[:60]}")


@pytest.mark.parametrize("command, output", list(console_examples()))
def test_console_example(command, output, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tnc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tnc "$@"\n')
    (bin_dir / "tnc").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == output


def python_pages():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:  # the cookbook shows generated code
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        if blocks:
            yield pytest.param(blocks, id=page.name)


@pytest.mark.parametrize("blocks", list(python_pages()))
def test_python_examples_run(blocks, tmp_path, monkeypatch):
    """Each page's Python blocks run in order, in one namespace, from a folder with examples/."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "<docs>", "exec"), namespace)


def test_cookbook_is_current(tmp_path):
    """Every cookbook page and picture is what docs/cookbook/make.py (tnc draw, derive, compile) writes now."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_cookbook", ROOT / "docs" / "cookbook" / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    for written in make.build(tmp_path):
        assert written.read_text() == (ROOT / "docs" / "cookbook" / written.name).read_text(), written.name
    for picture in tmp_path.glob("*.svg"):
        assert picture.read_bytes() == (ROOT / "docs" / "cookbook" / picture.name).read_bytes(), picture.name


def test_docs_pictures_are_drawn_by_tnc(tmp_path):
    """docs/images holds exactly what `tnc draw` makes of the examples it names."""
    from tnc.cli.main import main

    sources = {"conv2d.svg": ["examples/conv2d.tn"], "per_sample_grad.svg": ["examples/per_sample_grad.tn"],
               "kfac_reduce_simplified.svg": ["examples/kfac_reduce.tn", "--simplify"]}
    assert {p.name for p in (ROOT / "docs" / "images").iterdir()} == set(sources)
    for name, arguments in sources.items():
        out = tmp_path / name
        assert main(["draw", str(ROOT / arguments[0]), *arguments[1:], "-o", str(out)]) == 0
        assert out.read_bytes() == (ROOT / "docs" / "images" / name).read_bytes(), name


def test_every_rule_is_documented():
    table = (ROOT / "docs" / "rewrites.md").read_text()
    for rule in RULES:
        assert f"| `{rule.name}` |" in table, rule.name


def test_site_builds_strictly(tmp_path):
    """`make docs`: mkdocs builds every page in strict mode (a broken link or missing page fails)."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for page in ("index.html", "language/index.html", "cookbook/kfc/index.html", "benchmarks/results/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
