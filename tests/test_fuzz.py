"""Fuzzing (issue #17): generated programs, mutated examples, odd characters, hostile names and
``-o`` targets through every command. An outcome is exit status 0, 1 (a positioned error whose
excerpt is the right source line) or 2 (usage); never 70, a traceback, a hang or a destroyed file.

Deterministic (hypothesis is derandomized) and sized for CI; ``TNC_FUZZ_EXAMPLES=N`` multiplies
the number of cases for a longer local run, e.g. ``TNC_FUZZ_EXAMPLES=20 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_errors import HEADER, parse_diagnostics

from tnc.cli.main import main
from tnc.errors import WIDTH, printable
from tnc.frontend.grammar import lark_parser
from tnc.limits import MAX_CHAIN, MAX_INPUT_BYTES, MAX_NESTING, MAX_VALUE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.tn")) + sorted((ROOT / "examples" / "derived").glob("*.tn"))
SCALE = int(os.environ.get("TNC_FUZZ_EXAMPLES", "1"))
FUZZ = settings(
    max_examples=25 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
COMMANDS = [
    ("check",),
    ("compile", "--target", "einsum"),
    ("compile", "--target", "einsum", "--format", "json"),
    ("compile", "--target", "torch"),
    ("compile", "--target", "torch", "--no-simplify"),
    ("simplify", "--explain"),
    ("cost",),
    ("derive", "--wrt", "{wrt}"),
    ("derive", "--wrt", "{wrt}", "--vjp", "V_seed"),
    ("draw", "-o", "{tmp}/out.dot"),
]
ODD = ["\x0c", "\x0b", "\u2028", "\u2029", "\x85", "\x00", "\ufeff", "\r", "\t", "\u0430", "\u03bf", "\uff12", "\u2212", "\u00a0", "é", "\U0001f600"]


def outcome(source: str, path: Path, *command: str) -> tuple[int, str, str]:
    """Run one command in-process on ``source`` written to ``path``; check the outcome is clean."""
    path.write_text(source, encoding="utf-8", newline="")
    args = [a.replace("{tmp}", str(path.parent)) for a in command]
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            status = main([args[0], str(path), *args[1:]])
        except SystemExit as exit:  # argparse usage errors
            status = exit.code
    err_text = err.getvalue()
    assert status in (0, 1, 2), f"{command}: status {status}\n{err_text}\n--- source ---\n{source}"
    assert "Traceback" not in err_text
    if status == 1 and HEADER.match(err_text.split("\n", 1)[0]):
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
        for reported in parse_diagnostics(err_text, printable(str(path))):
            line = text.split("\n")[reported.line - 1].replace("\t", " ")
            if len(line) <= WIDTH:
                assert reported.excerpt == "    " + line, (err_text, source)
    elif status == 1:
        assert re.fullmatch(r"[^\n]+: error: [^\n]+\n", err_text), err_text  # FILE or OUT: one line
    return status, out.getvalue(), err_text


def wrt_of(source: str) -> str:
    """A param or input of the source to differentiate by (or a name that is not there)."""
    for word in ("param", "input"):
        for line in source.split("\n"):
            if line.startswith(word + " ") and "[" in line:
                return line.split()[1].split("[")[0]
    return "W"


def every_command(source: str, path: Path) -> list[int]:
    wrt = wrt_of(source)
    return [outcome(source, path, *(a.replace("{wrt}", wrt) for a in command))[0] for command in COMMANDS]


# ---------------------------------------------------------------- grammar-aware generation
LEGS = ["i", "j", "k", "c", "n", "o"]


def scalars(names: list[str]) -> st.SearchStrategy[str]:
    leaves = st.one_of(st.integers(0, 12).map(str), st.sampled_from(["0.5", "1.25", str(MAX_VALUE), "99999"]), st.sampled_from(names or ["2"]))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda s: f"(-{s})"),
        ),
        max_leaves=5,
    )


@st.composite
def programs(draw) -> str:
    """A `.tn` file built from the grammar's statements: usually valid, sometimes not quite."""
    legs = draw(st.lists(st.sampled_from(LEGS), min_size=1, max_size=4, unique=True))
    lines = []
    symbols = []
    if draw(st.booleans()):
        lines.append("size N = " + draw(scalars([])) if draw(st.booleans()) else "size N")
        symbols.append("N")
    sizes = [draw(st.one_of(st.integers(1, 4).map(str), scalars(symbols))) for _ in legs]
    lines.append("index " + ", ".join(f"{leg}: {size}" for leg, size in zip(legs, sizes)))
    tensors = {}
    for number in range(draw(st.integers(1, 3))):
        mine = draw(st.lists(st.sampled_from(legs), min_size=0, max_size=len(legs), unique=True))
        if len(mine) >= 2 and draw(st.booleans()):
            axes = [f"({mine[0]} {mine[1]})", *mine[2:]]
        else:
            axes = mine
        name = f"{draw(st.sampled_from(['X', 'W', 'A']))}{number}"
        lines.append(f"{draw(st.sampled_from(['input', 'param']))} {name}[{', '.join(axes)}]")
        tensors[name] = mine
    if draw(st.booleans()):
        stride, padding, dilation = draw(st.integers(1, 3)), draw(st.sampled_from(["0", "1", "same", "(1, 2)"])), draw(st.integers(1, 2))
        lines.append("index x: 7, w: 3")
        lines.append(f"pattern P[x, y, w] = conv(stride={stride}, padding={padding}, dilation={dilation})")
        tensors["P"] = ["x", "y", "w"]
    for number in range(draw(st.integers(1, 2))):
        factors = draw(st.lists(st.sampled_from(sorted(tensors)), min_size=1, max_size=3))
        carried = list(dict.fromkeys(leg for f in factors for leg in tensors[f]))
        left = draw(st.lists(st.sampled_from(carried), unique=True, max_size=len(carried))) if carried else []
        term = " * ".join(f"{f}[{', '.join(tensors[f])}]" for f in factors)
        terms = [f"{draw(scalars(symbols))} * {term}" if draw(st.booleans()) else term for _ in range(draw(st.integers(1, 2)))]
        sign = draw(st.sampled_from([" + ", " - "]))
        name = f"Y{number}"
        lines.append(f"{'output ' if draw(st.booleans()) else ''}{name}[{', '.join(left)}] = {sign.join(terms)}")
        tensors[name] = left
    return "\n".join(lines) + "\n"


@FUZZ
@given(programs())
def test_generated_programs_through_every_command(tmp_path, source):
    every_command(source, tmp_path / "gen.tn")


# ------------------------------------------------------------------ token mutation
def tokens(text: str) -> list[str]:
    """The example as its tokens, each with the whitespace and comments before it."""
    pieces, end = [], 0
    for token in lark_parser().lex(text):
        pieces.append(text[end : token.end_pos])
        end = token.end_pos
    return pieces + [text[end:]]


TOKEN_POOL = ["size", "index", "input", "param", "pattern", "output", "delta", "grad", "vjp", "jvp", "conv", "same",
              "(", ")", "[", "]", ",", "=", ":", "*", "/", "+", "-", "**", "0", "1", "2.5", str(MAX_VALUE + 1), "9" * 40,
              "#", "\n", "x'", "_", "stride", "padding", "2*o + k - 1", "0.5*o + k", "/ 0", "** 65", *ODD]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@settings(FUZZ, max_examples=4 * SCALE)
@given(mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3), st.sampled_from(TOKEN_POOL)), min_size=1, max_size=4))
def test_mutated_example_tokens(tmp_path, example, mutations):
    """Delete, duplicate, replace or insert whole tokens of a real example."""
    pieces = tokens(example.read_text())
    for position, kind, token in mutations:
        at = position % len(pieces)
        if kind == 0:
            del pieces[at]
        elif kind == 1:
            pieces.insert(at, pieces[at])
        elif kind == 2:
            pieces[at] = " " + token + " "
        else:
            pieces.insert(at, " " + token)
        pieces = pieces or [""]
    source = "".join(pieces)
    for command in (("check",), ("compile", "--target", "torch"), ("derive", "--wrt", wrt_of(source))):
        outcome(source, tmp_path / "mutated.tn", *command)


@pytest.mark.parametrize("example", EXAMPLES[:8], ids=lambda p: p.stem)
@settings(FUZZ, max_examples=3 * SCALE)
@given(odd=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(ODD)), min_size=1, max_size=3))
def test_odd_characters(tmp_path, example, odd):
    """Form feeds, line separators, NUL, byte order marks and homoglyphs: positioned errors whose
    excerpt is the line the parser counted (only ``\\n`` ends a line)."""
    text = example.read_text()
    for position, char in odd:
        at = position % (len(text) + 1)
        text = text[:at] + char + text[at:]
    outcome(text, tmp_path / "odd.tn", "check")
    outcome(text, tmp_path / "odd.tn", "compile", "--target", "einsum")


def test_odd_characters_in_comments_keep_every_excerpt(tmp_path):
    """After a comment with each odd character, an error still shows its own line (a lone
    ``\r`` is a line break, as in Python's text files)."""
    for char in set(ODD) - {"\r"}:
        source = f"# before{char}after\nindex i: 2\ninput X[i]\nY[i] = Q[i]\n"
        status, _, err = outcome(source, tmp_path / "comment.tn", "check")
        assert status == 1 and err.split("\n")[1] == "    Y[i] = Q[i]", (repr(char), err)


# ------------------------------------------------------------------ generated modules
ALLOWED_TOP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign, ast.Expr)


def check_module_text(text: str) -> None:
    """Import only torch; at import time define functions and classes, evaluate nothing else
    (two cache variables, built with getattr)."""
    tree = ast.parse(text)
    for node in tree.body:
        assert isinstance(node, ALLOWED_TOP), ast.dump(node)
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] == ["torch"]
        assert not isinstance(node, ast.ImportFrom)
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            assert all(isinstance(c.func, ast.Name) and c.func.id == "getattr" for c in calls), ast.dump(node)
        if isinstance(node, ast.ClassDef):
            assert all(isinstance(b, (ast.FunctionDef, ast.Expr)) for b in node.body)
            assert [ast.unparse(b) for b in node.bases] == ["torch.nn.Module"] and not node.decorator_list
        if isinstance(node, ast.FunctionDef):
            assert not node.decorator_list
            assert all(isinstance(d, ast.Constant) for d in node.args.defaults + node.args.kw_defaults if d is not None)


@FUZZ
@given(programs(), st.text(st.sampled_from('"\\\'Nx \n\t\u2028{}$#;') , min_size=1, max_size=12))
def test_generated_modules_import_only_torch(tmp_path, source, stem):
    path = tmp_path / f"{stem.replace('/', '_')}.tn"
    status, _, _ = outcome(source, path, "compile", "--target", "torch", "-o", str(tmp_path / "gen.py"))
    if status == 0:
        check_module_text((tmp_path / "gen.py").read_text())


def test_compiled_examples_import_nothing_but_torch(tmp_path):
    """Every example's module, imported in a fresh interpreter after torch: no new module loads,
    nothing prints, and no file appears."""
    names = []
    for number, example in enumerate(EXAMPLES):
        target = tmp_path / f"gen{number}.py"
        status, _, err = outcome(example.read_text(), tmp_path / f"{example.stem}.tn", "compile", "--target", "torch", "-o", str(target))
        assert status == 0, err
        check_module_text(target.read_text())
        names.append(target.stem)
    script = textwrap.dedent(f"""
        import importlib, json, sys, torch
        before = set(sys.modules)
        for name in {names!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(set(sys.modules) - before - set({names!r}))))
    """)
    before = set(os.listdir(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [] and result.stderr == ""
    assert {p for p in os.listdir(tmp_path) if p != "__pycache__"} == before


# ------------------------------------------------------------ hostile -o targets, every command
def _targets(tmp_path: Path, source: Path) -> dict[str, str]:
    (tmp_path / "real.dot").write_text("real")
    (tmp_path / "link.dot").symlink_to(tmp_path / "real.dot")
    (tmp_path / "readonly.dot").write_text("keep")
    (tmp_path / "readonly.dot").chmod(0o444)
    os.mkfifo(tmp_path / "fifo.dot")
    (tmp_path / "folder.dot").mkdir()
    return {"device": "/dev/null", "fifo": str(tmp_path / "fifo.dot"), "symlink": str(tmp_path / "link.dot"),
            "read-only": str(tmp_path / "readonly.dot"), "input": str(source), "folder": str(tmp_path / "folder.dot")}


@pytest.mark.parametrize("command", [c for c in COMMANDS if "-o" not in c and c[0] not in ("check", "cost")] + [("draw",)], ids=" ".join)
def test_hostile_output_targets(tmp_path, command):
    source = tmp_path / "net.dot"  # a .tn file that `draw -o` could also take as its output
    text = (ROOT / "examples" / "conv2d.tn").read_text()
    source.write_text(text)
    args = [a.replace("{wrt}", "W") for a in command]
    for kind, target in _targets(tmp_path, source).items():
        reader = None
        if kind == "fifo":  # a reader, so the write can complete
            reader = threading.Thread(target=lambda: Path(target).read_bytes(), daemon=True)
            reader.start()
        status, _, err = outcome(text, source, *args, "-o", target)
        if reader is not None:
            if status != 0:
                with open(target, "wb"):  # release the reader
                    pass
            reader.join(timeout=30)
        in_place = kind == "input" and args[0] in ("simplify", "derive")
        expected = {"read-only": 1, "folder": 1, "input": 0 if in_place else 1}.get(kind, 0)
        if kind == "device" and args[0] == "draw":
            expected = 2  # draw takes its format from the suffix, and /dev/null has none
        assert status == expected, (kind, err)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "fifo.dot").st_mode)
        assert (tmp_path / "link.dot").is_symlink() and (tmp_path / "readonly.dot").read_text() == "keep"
        assert not [p for p in os.listdir(tmp_path) if ".tnc-" in p]
        if not in_place:
            assert source.read_text() == text


# ------------------------------------------------------------------ resources per input
def _deep(depth: int) -> str:
    """``depth`` nested additions: ``size N = (1 + (1 + ... 1))``."""
    return f"size N = {'(1 + ' * depth}1{')' * depth}\nindex i: N\ninput A[i]\noutput B[i] = A[i]\n"


def _chain(length: int) -> str:
    return "index i: 2\ninput A0[i]\n" + "".join(f"A{k + 1}[i] = A{k}[i]\n" for k in range(length))


LONG = os.environ.get("TNC_FUZZ_EXAMPLES") is not None
HOSTILE_INPUTS = {
    "largest-file": "index i: 2\ninput A[i]\noutput B[i] = A[i]\n" + ("#" * 1000 + "\n") * (MAX_INPUT_BYTES // 1001 - 1),
    "largest-file-of-statements": "index i: 2\ninput A[i]\n" + "".join(f"output B{k}[i] = A[i]\n" for k in range(2_000)),
    "deepest-nesting": _deep(MAX_NESTING),
    "too-deep": _deep(MAX_NESTING + 1),
    "largest-size": f"index i: {MAX_VALUE}\ninput A[i]\noutput B[i] = A[i]\n",
    "size-too-large": f"index i: {MAX_VALUE} + 1\n",
    "exponent-tower": "index i: 9**9**9\n",
    "huge-product": "index i: 7 * 100000000 * 100000000 * 100000000\n",
    "long-literal": "index i: " + "1" * 5000 + "\n",
    "coefficient": "index i: 2\ninput A[i]\noutput B[i] = (10**400) * A[i]\n",
    "minus-signs": "index i: " + "-" * 1000 + "2\n",
    "grad-nesting": "index i: 2\nparam W[i]\ninput A[i]\nY[i] = A[i] * W[i]\nJ[i] = " + "grad(" * 2000 + "Y" + ", W)" * 2000 + "\n",
    "chain": _chain(MAX_CHAIN if LONG else 1_000),
    "too-long-chain": _chain(MAX_CHAIN + 1),
}
WORKER = """
import io, json, resource, sys, time
from contextlib import redirect_stderr, redirect_stdout
from tnc.cli.main import main
results = {}
for name, path, command in json.loads(sys.argv[1]):
    err = io.StringIO()
    start = time.process_time()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        status = main([command[0], path, *command[1:]])
    results[name] = [status, time.process_time() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, err.getvalue()[:300]]
print(json.dumps(results))
"""
MEMORY = 3 * 2**30  # address space of the worker, torch not loaded
SECONDS = 60  # CPU seconds per input, the bound of the resource contract (docs/cli.md)


def test_resources_per_input(tmp_path):
    """Each hostile input, checked and compiled in a worker under RLIMIT_AS and RLIMIT_CPU: a clean
    outcome within the CPU time and memory the CLI reference promises."""
    jobs = []
    for name, text in HOSTILE_INPUTS.items():
        path = tmp_path / f"{name}.tn"
        path.write_text(text)
        commands = [("check",)] if "chain" in name or "largest-file" in name else [("check",), ("compile", "--target", "torch", "-o", str(tmp_path / "out.py"))]
        jobs += [(f"{name} {' '.join(c[:3])}", str(path), c) for c in commands]
    limits = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY}, {MEMORY})); resource.setrlimit(resource.RLIMIT_CPU, ({SECONDS * 4}, {SECONDS * 4}))\n"
    result = subprocess.run(
        [sys.executable, "-c", limits + WORKER, json.dumps(jobs)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=SECONDS * 5,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)
    for name, (status, seconds, peak_kib, err) in results.items():
        too = name.split()[0] in ("too-deep", "size-too-large", "exponent-tower", "huge-product", "long-literal", "coefficient",
                                  "minus-signs", "grad-nesting", "too-long-chain")
        assert status == (1 if too else 0), (name, err)
        if too:
            assert HEADER.match(err.split("\n", 1)[0]), (name, err)
        assert seconds < SECONDS, (name, seconds)
        assert peak_kib * 1024 < MEMORY, (name, peak_kib)
    (tmp_path / "measured.json").write_text(json.dumps(results, indent=1))
    if LONG:
        print(json.dumps({n: [round(s, 2), p // 1024] for n, (_, s, p, _) in results.items()}, indent=1))
