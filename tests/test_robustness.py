"""Any input gets exit 0 or a positioned error with exit 1: never a traceback, a crash or a hang."""

import io
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tnc.cli.main import main
from tnc.limits import MAX_INPUT_BYTES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.tn"))
TOKENS = [
    "size", "index", "input", "param", "pattern", "output", "conv", "grad", "vjp", "jvp", "delta", "same",
    "N", "X", "W", "Y", "i", "o", "k", "c'", "(", ")", "[", "]", ",", "=", ":", "*", "/", "+", "-", "**",
    "0", "1", "2", "3", "0.5", "#", "\n", " ", "stride", "padding", "2*o + k",
]


def run(text: str, tmp_path: Path, *command: str) -> tuple[int, str]:
    path = tmp_path / "fuzz.tn"
    path.write_text(text)
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            status = main([*command[:1], str(path), *command[1:]])
        except SystemExit as exit:  # argparse usage errors
            status = exit.code
    return status, err.getvalue()


def check_outcome(status: int, err: str, path_name: str = "fuzz.tn") -> None:
    assert status in (0, 1, 2), err  # 70 would be an internal error
    assert "Traceback" not in err
    if status == 1:
        first = err.splitlines()[0]
        assert re.match(rf".*{path_name}:\d+:\d+: error: ", first), first
        assert "^" in err


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_streams(tmp_path, tokens):
    check_outcome(*run(" ".join(tokens), tmp_path, "check"))


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(EXAMPLES),
    st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.integers(min_value=0, max_value=3), st.sampled_from(TOKENS + list("xyz[]()=*,'0"))), min_size=1, max_size=4),
)
def test_mutated_examples(tmp_path, example, mutations):
    """Delete, insert or replace a few characters of a real example, then check and compile it."""
    text = example.read_text()
    for position, kind, token in mutations:
        at = position % (len(text) + 1)
        if kind == 0:
            text = text[:at] + text[at + 1 :]
        elif kind == 1:
            text = text[:at] + token + text[at:]
        else:
            text = text[:at] + token + text[at + len(token) :]
    check_outcome(*run(text, tmp_path, "check"))
    check_outcome(*run(text, tmp_path, "compile", "--target", "torch"))


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "fuzz.tn"
    path.write_bytes(data)
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        status = main(["check", str(path)])
    assert status in (0, 1), err.getvalue()
    assert "Traceback" not in err.getvalue()


def chain(length: int) -> str:
    lines = ["index " + ", ".join(f"i{k}: {2 + k % 3}" for k in range(length + 1))]
    lines += [f"input A{k}[i{k}, i{k + 1}]" for k in range(length)]
    lines.append(f"output Y[i0, i{length}] = " + " * ".join(f"A{k}[i{k}, i{k + 1}]" for k in range(length)))
    return "\n".join(lines) + "\n"


def test_a_300_tensor_chain_compiles_and_is_right(tmp_path):
    import torch

    import tnc

    module = tnc.parse(chain(300), "chain.tn").simplify().to_module()
    generator = torch.Generator().manual_seed(0)
    tensors = {f"A{k}": torch.rand(2 + k % 3, 2 + (k + 1) % 3, generator=generator, dtype=torch.float64) / 2 for k in range(300)}
    expected = tensors["A0"]
    for k in range(1, 300):
        expected = expected @ tensors[f"A{k}"]
    torch.testing.assert_close(module.Y(**tensors), expected, rtol=1e-10, atol=1e-300)
    status, err = run(chain(300), tmp_path, "compile", "--target", "einsum")
    assert status == 1 and "only the 52 letters" in err


# ------------------------------------------------------------------ issue #17: hostile input
SIMPLE = "index i: 2\ninput A[i]\noutput B[i] = A[i]\n"
CONV = (ROOT / "examples" / "conv2d.tn").read_text()
HOSTILE_STEMS = [
    'x""";__import__("os").system("echo PWNED > PWNED");"""',
    "tn\\N",
    "back\\",
    "new\nline",
    "quote\"",
    "'single'''",
    "sep\u2028\x0c\x0b\x85",
    "tab\tand\x7f",
]


def run_tnc(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TNC_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tnc", *args], env=env, cwd=cwd, timeout=120, **kwargs)


def cli(*args: str) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            status = main(list(args))
        except SystemExit as exit:
            status = exit.code
    return status, out.getvalue(), err.getvalue()


def test_hostile_file_names_are_not_code(tmp_path):
    """Each stem compiles to a module that imports, executes nothing, and reads the name back."""
    for number, stem in enumerate(HOSTILE_STEMS):
        (tmp_path / f"{stem}.tn").write_text(SIMPLE)
        assert cli("compile", str(tmp_path / f"{stem}.tn"), "--target", "torch", "-o", str(tmp_path / f"gen{number}.py"))[0] == 0
    script = (
        "import importlib, json, sys\n"
        f"docs = [importlib.import_module(f'gen{{n}}').__doc__ for n in range({len(HOSTILE_STEMS)})]\n"
        "print(json.dumps(docs))\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "PWNED").exists()
    for stem, doc in zip(HOSTILE_STEMS, json.loads(result.stdout)):
        assert doc.startswith(f"Generated by tnc from {stem}.tn;")


@pytest.mark.parametrize("command", [("simplify", "--explain"), ("derive", "--wrt", "A")])
def test_hostile_file_names_stay_in_comments(tmp_path, command):
    """The name in a printed .tn file's header cannot end the comment it is in."""
    path = tmp_path / "a\noutput Z[i] = A[i]\n.tn"
    path.write_text(SIMPLE)
    status, out, _ = cli(command[0], str(path), *command[1:])
    assert status == 0
    assert not any(line.startswith("output Z") for line in out.split("\n")), out
    (tmp_path / "printed.tn").write_text(out)
    status, described, _ = cli("check", str(tmp_path / "printed.tn"))
    assert status == 0 and " Z[" not in described


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tnc-" in p.name]


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "net.tn"
    path.write_text(CONV)
    return path


@pytest.mark.parametrize(
    "command",
    [("compile", "--target", "torch"), ("compile", "--target", "einsum"), ("simplify",), ("derive", "--wrt", "W"), ("draw",)],
)
def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, command):
    target, link = tmp_path / "real.dot", tmp_path / "link.dot"
    target.write_text("old")
    target.chmod(0o640)
    link.symlink_to(target)
    status, _, err = cli(command[0], str(_source(tmp_path)), *command[1:], "-o", str(link))
    assert status == 0, err
    assert link.is_symlink() and target.read_text() != "old"
    assert target.stat().st_mode & 0o777 == 0o640
    assert _temporaries(tmp_path) == []


def test_output_to_a_device_writes_into_it(tmp_path):
    before = os.stat("/dev/null")
    status, _, err = cli("compile", str(_source(tmp_path)), "--target", "torch", "-o", "/dev/null")
    assert status == 0, err
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino and after.st_mode == before.st_mode


def test_output_to_a_fifo_writes_into_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    status, _, err = cli("compile", str(_source(tmp_path)), "--target", "einsum", "-o", str(fifo))
    reader.join(timeout=60)
    assert status == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and received and "einsum(" in received[0]


def test_output_to_dev_stdout():
    result = run_tnc("compile", str(ROOT / "examples" / "conv2d.tn"), "--target", "einsum", "-o", "/dev/stdout", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli("compile", str(ROOT / "examples" / "conv2d.tn"), "--target", "einsum")[1]


@pytest.mark.parametrize(
    "command, output, message",
    [
        (("compile", "--target", "torch"), "{input}", "this is the input file"),
        (("compile", "--target", "einsum"), "{input}", "this is the input file"),
        (("draw",), "{input}", "this is the input file"),
        (("compile", "--target", "torch"), "read-only.py", "the file is read-only"),
        (("compile", "--target", "torch"), "missing/x.py", "there is no folder"),
        (("draw",), "missing/x.svg", "there is no folder"),
        (("draw",), "folder.svg", "it is a folder"),
        (("compile", "--target", "torch"), "folder.svg", "it is a folder"),
    ],
)
def test_output_that_must_not_be_replaced(tmp_path, command, output, message):
    source = tmp_path / "net.dot"  # a .tn file with a suffix that draw also writes
    source.write_text(CONV)
    (tmp_path / "read-only.py").write_text("keep")
    (tmp_path / "read-only.py").chmod(0o444)
    (tmp_path / "folder.svg").mkdir()
    target = str(source) if output == "{input}" else str(tmp_path / output)
    status, out, err = cli(command[0], str(source), *command[1:], "-o", target)
    assert (status, out) == (1, "")
    assert err.startswith(f"{target}: error: ") and message in err, err
    assert source.read_text() == CONV and (tmp_path / "read-only.py").read_text() == "keep"
    assert (tmp_path / "read-only.py").stat().st_mode & 0o777 == 0o444
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("command", [("simplify",), ("derive", "--wrt", "W"), ("derive", "--wrt", "X", "--vjp", "V")])
def test_in_place_rewrites_of_the_input_work(tmp_path, command):
    source = _source(tmp_path)
    status, _, err = cli(command[0], str(source), *command[1:], "-o", str(source))
    assert status == 0, err
    assert source.read_text() != CONV and cli("check", str(source))[0] == 0


def test_sigterm_during_output_leaves_no_temporary(tmp_path, monkeypatch):
    def terminated(*args):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "replace", terminated)
    status, _, _ = cli("compile", str(_source(tmp_path)), "--target", "torch", "-o", str(tmp_path / "out.py"))
    assert status == 143
    assert _temporaries(tmp_path) == [] and not (tmp_path / "out.py").exists()


def test_ctrl_c_exits_quietly_with_130(tmp_path):
    """Interrupted while it waits for standard input (or while it starts): status 130, silence."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tnc", "compile", "-", "--target", "torch", "-o", str(tmp_path / "out.py")],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err == ""
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize(
    "shell, status, message",
    [
        ("> /dev/full", 1, "<stdout>: error: cannot write standard output: No space left on device"),
        (">&-", 1, "<stdout>: error: cannot write standard output: it is closed"),
        ("| head -c1 > /dev/null", 0, ""),
    ],
    ids=["full", "closed", "closed-by-reader"],
)
def test_standard_output_that_cannot_be_written(shell, status, message):
    command = f"set -o pipefail; {shlex.quote(sys.executable)} -m tnc compile examples/conv2d.tn --target torch {shell}; echo \"status $?\" >&2"
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().split("\n")
    assert lines[-1] == f"status {status}", result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert lines[:-1] == ([message] if message else [])


def test_an_endless_input_is_refused_before_it_is_read(tmp_path):
    start = time.process_time()
    status, _, err = cli("check", "/dev/zero")
    assert status == 1 and err.startswith("/dev/zero: error: the file is larger than 4 MiB")
    assert time.process_time() - start < 5
    big = tmp_path / "big.tn"
    big.write_text("#" * MAX_INPUT_BYTES + "\n")
    assert cli("check", str(big))[2].startswith(f"{big}: error: the file is larger than 4 MiB")
    big.write_text("#" * (MAX_INPUT_BYTES - 1) + "\n")
    assert cli("check", str(big))[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("derive", "{conv}", "--wrt", "W", "--vjp", "1x"), "--vjp 1x: a seed must be a tensor name"),
        (("derive", "{conv}", "--wrt", "W", "--jvp", "delta"), "--jvp delta: a seed must be a tensor name"),
        (("derive", "{conv}", "--wrt", "W", "--vjp", "input"), "a seed must be a tensor name"),
        (("draw", "{conv}", "--term", "0", "-o", "{tmp}/x.svg"), "--term 0: there is no term to draw"),
        (("draw", "{conv}", "--term", "-1", "-o", "{tmp}/x.dot"), "--term -1: there is no term to draw"),
        (("draw", "{conv}", "--term", "99", "-o", "{tmp}/x.dot"), "the terms are numbered from 1 to 1"),
        (("check", "{conv}", "--size", "N=" + "9" * 30), "0 to 2**62"),
        (("check", "{conv}", "--size", "N=\u00b2"), "NAME=INTEGER"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    args = [a.replace("{conv}", str(ROOT / "examples" / "conv2d.tn")).replace("{tmp}", str(tmp_path)) for a in args]
    status, out, err = cli(*args)
    assert (status, out) == (2, "") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_scalar_param_gives_a_working_module():
    import torch

    import tnc

    module = tnc.parse("index i: 3\nparam s[]\ninput A[i]\noutput B[i] = s[] * A[i]\n", "scalar.tn").to_module()
    net = module.Scalar()
    assert net.s.shape == ()
    a = torch.arange(3.0)
    torch.testing.assert_close(net(a), net.s * a)


def wide(legs: int) -> str:
    names = ", ".join(f"i{k}" for k in range(legs))
    return f"index {', '.join(f'i{k}: 2' for k in range(legs))}\ninput A[{names}]\ninput B[{names}]\noutput Y[] = A[{names}] * B[{names}]\n"


def test_more_than_52_indices(tmp_path):
    status, err = run(wide(60), tmp_path, "compile", "--target", "torch")
    assert status == 1 and err.startswith(f"{tmp_path / 'fuzz.tn'}:4:8: error: a contraction step of 'Y' needs 60 distinct indices")
    status, err = run(wide(60), tmp_path, "cost")
    assert status == 0, err
    status, err = run(wide(52), tmp_path, "compile", "--target", "torch")
    assert status == 0, err
