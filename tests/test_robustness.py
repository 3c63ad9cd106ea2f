"""Any input gets exit 0 or a positioned error with exit 1: never a traceback, a crash or a hang."""

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tnc.cli.main import main

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
