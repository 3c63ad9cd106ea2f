"""Warnings: what is legal but almost always a mistake (tnc/frontend/lints.py).

Each case in ``WARNINGS`` is written to a file and checked through ``tnc.cli.main.main``: it
prints ``FILE:LINE:COL: warning: MESSAGE``, the source line and a caret, exits with status 0,
and with ``--Werror`` prints the same as an ``error:`` and exits with status 1. ``QUIET`` are
files that look alike and warn of nothing; neither do the examples and the benchmarks' texts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import tnc
from tnc.cli.main import main
from tnc.frontend import compile_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

CONV = """\
size N
index n: N, c: 3, d: 4
index i1: 9, i2: 9, k1: 3, k2: 3
input X[n, c, i1, i2]
param W[d, c, k1, k2]
pattern P1[i1, o1, k1] = conv(stride=2, padding=1)
pattern P2[i2, o2, k2] = conv(stride=2, padding=1)
"""

SAME = """\
size N
index n: N, c: 3, d: 4
index i1: 9, k1: 3
input X[n, c, i1]
param W[d, c, k1]
"""

SWAPPED = (
    "pattern 'P1' is used with legs [o1, i1, k1] but declared [i1, o1, k1]: its input and output legs are swapped, "
    "which makes it a transpose convolution; write P1[i1, o1, k1] or declare it so"
)


def case(id: str, source: str, *expected: tuple[int, int, int, str]):
    """``expected``: (line, column, caret length, message) of each warning, in order."""
    return pytest.param(source, expected, id=id)


WARNINGS = [
    # ------------------------------------------------------------- a lone index
    case(
        "typo-in-conv-weight",
        CONV + "output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k3]\n",
        (8, 90, 2, "index 'k3' occurs once and is summed over on its own; did you mean 'k2'?"),
    ),
    case(
        "typo-in-input",  # the leg declared at that place, k1, is suggested before i2 (as close)
        CONV + "output Y[n, d, o1, o2] = X[n, c, i3, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]\n",
        (8, 34, 2, "index 'i3' occurs once and is summed over on its own; did you mean 'i1'?"),
    ),
    case(
        "suggestion-by-name",  # the declared leg 'c' is not close: the closest name of the file
        "index n: 2, c: 3, width: 3\ninput X[n, c]\ninput Z[width]\noutput Y[n] = X[n, widht] * Z[width]\n",
        (4, 20, 5, "index 'widht' occurs once and is summed over on its own; did you mean 'width'?"),
    ),
    case(
        "no-suggestion",
        "index n: 2, c: 3\ninput X[n, c]\noutput Y[n] = X[n, zz]\n",
        (3, 20, 2, "index 'zz' occurs once and is summed over on its own"),
    ),
    case(
        "inside-a-function",
        "index n: 2, c: 3\ninput X[n, c]\nparam W[c]\noutput Y[n] = relu(X[n, cc]) * W[c]\n",
        (4, 25, 2, "index 'cc' occurs once and is summed over on its own; did you mean 'c'?"),
    ),
    case(
        "two-in-one-term",
        "index n: 2, c: 3, d: 4\ninput X[n, c, d]\noutput Y[n] = X[n, c1, d1]\n",
        (3, 20, 2, "index 'c1' occurs once and is summed over on its own; did you mean 'c'?"),
        (3, 24, 2, "index 'd1' occurs once and is summed over on its own; did you mean 'd'?"),
    ),
    # ---------------------------------------------------------- a swapped pattern
    case(
        "pattern-swapped-same-padding",
        SAME + "pattern P1[i1, o1, k1] = conv(padding=same)\noutput Y[n, d, o1] = X[n, c, i1] * P1[o1, i1, k1] * W[d, c, k1]\n",
        (7, 36, 14, SWAPPED),
    ),
    case(
        "pattern-swapped-padding-1",
        SAME + "pattern P1[i1, o1, k1] = conv(padding=1)\noutput Y[n, d, o1] = X[n, c, i1] * W[d, c, k1] * P1[o1, i1, k1]\n",
        (7, 50, 14, SWAPPED),
    ),
]

QUIET = [
    pytest.param(CONV + "output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]\n", id="conv"),
    pytest.param("index n: 2, c: 3\ninput X[n, c]\noutput Y[n] = X[n, c]\n", id="sum-over-a-declared-leg"),
    pytest.param("index n: 2, i: 3\ninput X[n, i]\noutput Y[n] = X[n, j] * X[n, j]\n", id="undeclared-index-twice"),
    pytest.param("index n: 2, i: 3\ninput X[n, i]\nY[n, j] = X[n, j]\noutput Z[n] = Y[n, q] * Y[n, q]\n", id="undeclared-on-the-left"),
    pytest.param(  # the pattern summed over its outputs, as in the KFAC-reduce factor
        CONV + "output A[(c k1 k2)] = X[n, c, i1, i2] * P1[i1, o1', k1] * P2[i2, o2', k2]\n", id="pattern-summed-over-outputs"
    ),
    pytest.param(  # a deliberate transpose convolution: other names in the swapped places
        SAME + "pattern P1[i1, o1, k1] = conv(padding=same)\noutput Y[n, d, j] = X[n, c, h] * P1[j, h, k1] * W[d, c, k1]\n",
        id="transpose-with-other-names",
    ),
    pytest.param(SAME + "pattern P1[i1, o1, k1] = conv(padding=same)\noutput Y[n, d, o1] = X[n, c, i1] * P1[i1, o1, k1] * W[d, c, k1]\n",
                 id="pattern-as-declared"),
]

COMMANDS = [["check"], ["cost"], ["simplify"], ["compile", "--target", "einsum"], ["derive", "--wrt", "X"], ["draw", "-o", "{tmp}/out.dot"]]


def run_cli(tmp_path: Path, capsys, source: str, command: list[str], *options: str) -> tuple[int, str, str, str]:
    path = tmp_path / "warn.tn"
    path.write_text(source, encoding="utf-8")
    command = [part.format(tmp=tmp_path) for part in command]
    status = main([command[0], str(path), *command[1:], *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err, str(path)


def expected_text(path: str, source: str, expected, kind: str) -> str:
    lines = source.split("\n")
    parts = []
    for line, column, length, message in expected:
        parts += [f"{path}:{line}:{column}: {kind}: {message}", "    " + lines[line - 1], "    " + " " * (column - 1) + "^" + "~" * (length - 1)]
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize("source, expected", WARNINGS)
def test_warning_is_printed_and_the_file_accepted(tmp_path, capsys, source, expected):
    status, out, err, path = run_cli(tmp_path, capsys, source, ["check"])
    assert status == 0, err
    assert err == expected_text(path, source, expected, "warning")
    assert out  # the file is described as without a warning


@pytest.mark.parametrize("source, expected", WARNINGS)
def test_werror_makes_it_an_error(tmp_path, capsys, source, expected):
    status, out, err, path = run_cli(tmp_path, capsys, source, ["check"], "--Werror")
    assert status == 1
    assert err == expected_text(path, source, expected, "error")
    assert out == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_warns_and_takes_werror(tmp_path, capsys, command):
    source, expected = WARNINGS[0].values
    status, _, err, path = run_cli(tmp_path, capsys, source, command)
    assert status == 0, err
    assert err == expected_text(path, source, expected, "warning")
    status, out, err, path = run_cli(tmp_path, capsys, source, command, "--Werror")
    assert status == 1
    assert err == expected_text(path, source, expected, "error") and out == ""


@pytest.mark.parametrize("source", QUIET)
def test_no_warning(tmp_path, capsys, source):
    status, _, err, _ = run_cli(tmp_path, capsys, source, ["check"], "--Werror")
    assert (status, err) == (0, "")


def test_a_file_with_errors_reports_only_its_errors(tmp_path, capsys):
    source = CONV + "output Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k3] * V[d]\n"
    status, _, err, _ = run_cli(tmp_path, capsys, source, ["check"])
    assert status == 1
    assert "unknown tensor 'V'" in err and "warning" not in err


# ------------------------------------------------------------------ examples
def example_texts():
    for path in sorted(EXAMPLES.rglob("*.tn")):
        sizes = {"K": 3, "S": 2, "P": 1, "C": 2} if path.name == "factors.tn" else None
        yield pytest.param(path.read_text(), str(path), sizes, id=str(path.relative_to(EXAMPLES)))


def benchmark_texts():
    from benchmarks.layers import LAYERS
    from benchmarks.networks import OPERATIONS, source_text
    from benchmarks.templates import BINDINGS, TEMPLATES

    for name, text in TEMPLATES.items():
        for sizes in BINDINGS:
            yield text, f"{name}.tn", sizes
    for layer in LAYERS:
        for op in OPERATIONS:
            yield source_text(layer, op, 8), f"layer{layer.id}_{op}.tn", None


@pytest.mark.parametrize("text, name, sizes", list(example_texts()))
def test_no_warning_on_the_examples(text, name, sizes):
    from tnc.codegen.tn import to_tn

    program = compile_source(text, name, sizes)
    assert program.warnings == []
    if sizes is None:  # and the text tnc writes of it (its derivatives, as tnc derive does)
        assert compile_source(to_tn(program), name).warnings == []


def test_no_warning_on_the_examples_through_the_cli(capsys):
    for path in sorted(EXAMPLES.glob("*.tn")):
        assert main(["check", str(path), "--Werror"]) == 0, path
        assert capsys.readouterr().err == "", path


def test_no_warning_on_the_benchmarks():
    warned = [(name, sizes) for text, name, sizes in benchmark_texts() if compile_source(text, name, sizes).warnings]
    assert warned == []


# ------------------------------------------------------------------------ API
def test_api_warns_and_keeps_the_warnings(tmp_path, capsys):
    source, expected = WARNINGS[0].values
    _, _, err, path = run_cli(tmp_path, capsys, source, ["check"])
    with pytest.warns(tnc.TncWarning) as record:
        network = tnc.load(path)
    assert [str(w.message) for w in record] == [err.rstrip("\n")]
    assert network.warnings == [err.rstrip("\n")]
    assert record[0].filename == __file__  # issued at the caller of load
    assert network.derive("W").warnings == network.warnings  # a derived network keeps them
    with pytest.warns(tnc.TncWarning, match="did you mean 'k2'"):
        assert len(tnc.parse(source, "typo.tn").warnings) == 1


def test_api_warnings_as_exceptions():
    source, _ = WARNINGS[6].values
    with warnings.catch_warnings():
        warnings.simplefilter("error", tnc.TncWarning)
        with pytest.raises(tnc.TncWarning, match="its input and output legs are swapped"):
            tnc.parse(source)


def test_api_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        network = tnc.load(EXAMPLES / "conv2d.tn")
    assert network.warnings == []
