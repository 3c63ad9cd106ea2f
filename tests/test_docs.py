"""The documentation's console examples are real: every `$ tnc ...` block runs and prints what it shows."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tnc.passes.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


def test_every_rule_is_documented():
    table = (ROOT / "docs" / "rewrites.md").read_text()
    for rule in RULES:
        assert f"| `{rule.name}` |" in table, rule.name
