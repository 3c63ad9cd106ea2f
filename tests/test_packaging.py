"""The grammar travels inside the wheel, and the installed package finds it there."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_grammar(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("tnc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("tnc/grammar/tn.lark").decode() == (ROOT / "grammar" / "tn.lark").read_text()
        assert "tnc/cli/main.py" in archive.namelist()


def test_editable_install_reads_the_source_grammar():
    from tnc.frontend.grammar import grammar_text

    assert grammar_text() == (ROOT / "grammar" / "tn.lark").read_text()
