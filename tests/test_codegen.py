"""The generated code: deterministic, standalone, importable, and the command line around it."""

from __future__ import annotations

import ast
import inspect
import io
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tnc
from tnc.cli.main import main
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source

ROOT = Path(__file__).resolve().parents[1]
CONV2D = ROOT / "examples" / "conv2d.tn"
TOLERANCE = dict(atol=1e-10, rtol=1e-10)

# Several outputs, an intermediate used twice, coefficients with a free size, a subtraction,
# a hyperedge (V three times on the same legs), a grouped result and a primed index.
MIXED = """\
size N, C = 3, D = 2
index n: N, c: C, d: D
input X[n, c]
param W[d, c]
input V[n, d]
A[n, d] = X[n, c] * W[d, c]
output G[c, c'] = (1/N) * X[n, c] * X[n, c']
output S[(n d)] = A[n, d] - 0.5 * V[n, d] + 2 * A[n, d] * V[n, d] * V[n, d]
output T[d] = A[n, d]
"""


def mixed_reference(X, W, V):
    A = X @ W.T
    G = X.T @ X / X.shape[0]
    S = (A - 0.5 * V + 2 * A * V * V).reshape(-1)
    return G, S, A.sum(0)


def load(source: str, name: str = "generated") -> dict:
    namespace: dict = {"__name__": f"tnc_generated_{name}"}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace


def torch_source(text: str, stem: str = "network", sizes: dict[str, int] | None = None) -> str:
    return to_torch_source(compile_source(text, f"{stem}.tn", sizes), stem)


def run_tnc(*args: str, stdin: str | None = None, hashseed: str = "0") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONHASHSEED=hashseed)
    return subprocess.run([sys.executable, "-m", "tnc", *args], input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("text", [CONV2D.read_text(), MIXED], ids=["conv2d", "mixed"])
def test_byte_identical_in_one_process(text):
    first = torch_source(text, "net")
    second = torch_source(text, "net")
    assert first == second


@pytest.mark.parametrize(
    "args",
    [("--target", "torch"), ("--target", "einsum"), ("--target", "einsum", "--format", "json")],
    ids=["torch", "einsum-text", "einsum-json"],
)
def test_byte_identical_across_processes(tmp_path, args):
    path = tmp_path / "mixed.tn"
    path.write_text(MIXED)
    outputs = []
    for seed in ("0", "4242"):  # different string hashing, so set order may differ
        result = run_tnc("compile", str(path), *args, hashseed=seed)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.encode())
    assert outputs[0] == outputs[1]
    if "torch" in args:  # the command line gives what the library gives
        assert outputs[0] == torch_source(MIXED, "mixed").encode()


# --------------------------------------------------------------------- standalone code
@pytest.mark.parametrize("text", [CONV2D.read_text(), MIXED], ids=["conv2d", "mixed"])
def test_compiles_and_imports_only_torch_and_stdlib(tmp_path, text):
    source = torch_source(text, "net")
    path = tmp_path / "net.py"
    path.write_text(source)
    py_compile.compile(str(path), cfile=str(tmp_path / "net.pyc"), doraise=True)
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in generated code"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Name):
            assert node.id not in ("__import__", "importlib", "exec", "eval"), node.id
    assert "tnc" not in imported
    assert "torch" in imported
    assert imported <= {"torch"} | set(sys.stdlib_module_names), imported


def test_runs_where_tnc_cannot_be_imported(tmp_path):
    """Import the generated file in a fresh interpreter where importing tnc fails."""
    (tmp_path / "net.py").write_text(torch_source(CONV2D.read_text(), "net"))
    script = (
        "import sys\n"
        "sys.modules['tnc'] = None  # any import of tnc now raises ImportError\n"
        "import torch, net\n"
        "x = torch.randn(2, 6, 9, 9)\n"
        "m = net.Net()\n"
        "assert m(x).shape == (2, 8, 5, 5)\n"
        "assert net.Y(x, m.W).shape == (2, 8, 5, 5)\n"
        "assert not any(name == 'tnc' or name.startswith('tnc.') for name in sys.modules if sys.modules[name] is not None)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------- the nn.Module
def test_module_params_buffers_and_forward():
    namespace = load(torch_source(CONV2D.read_text(), "conv2d"))
    module = namespace["Conv2d"]()
    assert isinstance(module, torch.nn.Module)
    parameters = dict(module.named_parameters())
    assert list(parameters) == ["W"]
    assert isinstance(parameters["W"], torch.nn.Parameter)
    assert parameters["W"].shape == (8, 3, 3, 3)
    assert parameters["W"].requires_grad
    buffers = dict(module.named_buffers())
    assert set(buffers) == {"P1", "P2"}
    assert not any(isinstance(b, torch.nn.Parameter) for b in buffers.values())
    assert buffers["P1"].shape == (9, 5, 3)
    # the pattern: P[i, o, k] = 1 where i = 2*o + k - 1
    expected = torch.zeros(9, 5, 3)
    for o in range(5):
        for k in range(3):
            if 0 <= 2 * o + k - 1 < 9:
                expected[2 * o + k - 1, o, k] = 1
    assert torch.equal(buffers["P1"], expected)
    # patterns are not persistent: the state dict holds the params only
    assert list(module.state_dict()) == ["W"]

    module = module.double()
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    result = module(x)
    reference = F.conv2d(x, module.W, stride=2, padding=1, groups=2)
    torch.testing.assert_close(result, reference, **TOLERANCE)
    torch.testing.assert_close(namespace["Y"](x, module.W), result, **TOLERANCE)
    torch.testing.assert_close(namespace["Y"](X=x, W=module.W), result, **TOLERANCE)
    # gradients reach the parameter
    result.square().sum().backward()
    assert module.W.grad is not None and module.W.grad.shape == (8, 3, 3, 3)


def test_function_works_in_float32_and_keeps_the_dtype():
    namespace = load(torch_source(CONV2D.read_text(), "conv2d"))
    x, w = torch.randn(2, 6, 9, 9), torch.randn(8, 3, 3, 3)
    result = namespace["Y"](x, w)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, F.conv2d(x, w, stride=2, padding=1, groups=2), atol=1e-5, rtol=1e-5)


def test_function_checks_shapes():
    namespace = load(torch_source(CONV2D.read_text(), "conv2d"))
    with pytest.raises(ValueError, match="X must have shape"):
        namespace["Y"](torch.randn(2, 5, 9, 9), torch.randn(8, 3, 3, 3))


def test_module_with_several_outputs_and_intermediates():
    namespace = load(torch_source(MIXED, "mixed"))
    x, w, v = (torch.randn(*shape, dtype=torch.float64) for shape in [(5, 3), (2, 3), (5, 2)])
    G, S, T = mixed_reference(x, w, v)
    torch.testing.assert_close(namespace["G"](X=x), G, **TOLERANCE)
    torch.testing.assert_close(namespace["S"](X=x, W=w, V=v), S, **TOLERANCE)
    torch.testing.assert_close(namespace["T"](X=x, W=w), T, **TOLERANCE)
    module = namespace["Mixed"]().double()
    with torch.no_grad():
        module.W.copy_(w)
    outputs = module(x, v)
    assert len(outputs) == 3
    for got, want in zip(outputs, (G, S, T)):
        torch.testing.assert_close(got, want, **TOLERANCE)


FREE_PARAM = "size N, M = 3\nindex n: N, m: M\ninput X[m]\nparam W[n, m]\noutput Y[n] = W[n, m] * X[m]\n"


def test_param_with_free_size_is_a_constructor_argument():
    namespace = load(torch_source(FREE_PARAM, "free"))
    module = namespace["Free"](N=4).double()
    assert module.W.shape == (4, 3)
    x = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(namespace["Y"](X=x, W=module.W), module.W @ x, **TOLERANCE)



def test_forward_reads_a_free_size_from_a_param():
    namespace = load(torch_source(FREE_PARAM, "free"))
    module = namespace["Free"](N=4).double()
    x = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(module(x), module.W @ x, **TOLERANCE)


# ------------------------------------------------------------------ --size binding
def test_size_option_binds_the_batch(capsys):
    free_status, free, _ = cli(capsys, "compile", str(CONV2D), "--target", "torch")
    status, bound, err = cli(capsys, "compile", str(CONV2D), "--target", "torch", "--size", "N=4")
    assert (free_status, status) == (0, 0), err
    assert "N = X.shape[0]" in free
    assert "Free sizes" in free
    assert "N = X.shape[0]" not in bound
    assert "Free sizes" not in bound
    assert "(4, 6, 9, 9)" in bound
    namespace = load(bound, "bound")
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(4, 6, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(namespace["Y"](x, w), F.conv2d(x, w, stride=2, padding=1, groups=2), **TOLERANCE)
    with pytest.raises(ValueError, match=r"must have shape \(4, 6, 9, 9\)"):
        namespace["Y"](torch.randn(3, 6, 9, 9, dtype=torch.float64), w)


def test_size_option_in_einsum_target(capsys):
    status, out, _ = cli(capsys, "compile", str(CONV2D), "--target", "einsum", "--size", "N=7", "--format", "json")
    assert status == 0
    data = json.loads(out)
    (operand,) = [op for op in data["outputs"][0]["terms"][0]["operands"] if op["name"] == "X"]
    assert operand["view"] == ["7", "2", "3", "9", "9"]


# ------------------------------------------------------------------------- -o OUT
def test_output_file_is_written(tmp_path, capsys):
    target = tmp_path / "conv2d_module.py"
    status, out, err = cli(capsys, "compile", str(CONV2D), "--target", "torch", "-o", str(target))
    assert status == 0, err
    assert out == ""
    assert target.read_text() == to_torch_source(compile_source(CONV2D.read_text(), str(CONV2D)), "conv2d")
    py_compile.compile(str(target), cfile=str(tmp_path / "x.pyc"), doraise=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv2d_module.py", "x.pyc"]


def test_output_file_overwrites(tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    status, _, _ = cli(capsys, "compile", str(CONV2D), "--target", "einsum", "-o", str(target))
    assert status == 0
    assert target.read_text().startswith("# output Y[n, (g d), o1, o2]")


def test_failed_compilation_leaves_existing_output_untouched(tmp_path, capsys):
    bad = tmp_path / "bad.tn"
    bad.write_text("index i: 3\ninput X[i]\nY[i] = Z[i]\n")
    target = tmp_path / "out.py"
    target.write_text("# precious\n")
    before = target.stat()
    for target_kind in ("torch", "einsum"):
        status, out, err = cli(capsys, "compile", str(bad), "--target", target_kind, "-o", str(target))
        assert status == 1
        assert out == ""
        assert "unknown tensor 'Z'" in err
    assert target.read_text() == "# precious\n"
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tn", "out.py"]  # no temporary left


def test_unwritable_output_is_an_error_without_traceback(tmp_path, capsys):
    status, _, err = cli(capsys, "compile", str(CONV2D), "--target", "torch", "-o", str(tmp_path / "missing-dir" / "out.py"))
    assert status == 1
    assert "cannot write the file" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------- einsum JSON
def test_json_format(capsys):
    status, out, _ = cli(capsys, "compile", str(CONV2D), "--target", "einsum", "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert {"outputs", "patterns", "sizes"} <= set(data)
    (output,) = data["outputs"]
    assert output["name"] == "Y"
    assert output["axes"] == [["n"], ["g", "d"], ["o1"], ["o2"]]
    assert output["intermediate"] is False
    (term,) = output["terms"]
    assert term["coefficient"] == "1"
    inputs, result = term["equation"].split("->")
    assert len(result) == 5  # n, g, d, o1, o2
    assert [op["name"] for op in term["operands"]] == ["X", "P1", "P2", "W"]
    for op, letters in zip(term["operands"], inputs.split(",")):
        assert len(op["view"]) == len(letters) == sum(len(axis) for axis in op["axes"])
    x = term["operands"][0]
    assert x["axes"] == [["n"], ["g", "c"], ["i1"], ["i2"]]
    assert x["view"] == ["N", "2", "3", "9", "9"]
    patterns = {row["name"]: row for row in data["patterns"]}
    assert set(patterns) == {"P1", "P2"}
    assert patterns["P1"] == {
        "name": "P1",
        "legs": ["i1", "o1", "k1"],
        "summed_over_outputs": False,
        "input_size": "9",
        "output_size": "5",
        "kernel_size": "3",
        "stride": 2,
        "padding": ["1", "1"],
        "dilation": 1,
        "output_padding": 0,
    }
    assert data["sizes"]["o1"] == "5"
    assert data["sizes"]["n"] == "N"


def test_json_format_with_intermediates_and_coefficients(tmp_path, capsys):
    path = tmp_path / "mixed.tn"
    path.write_text(MIXED)
    status, out, _ = cli(capsys, "compile", str(path), "--target", "einsum", "--format", "json")
    assert status == 0
    data = json.loads(out)
    names = [(o["name"], o["intermediate"]) for o in data["outputs"]]
    assert ("A", True) in names
    assert {"G", "S", "T"} <= {n for n, intermediate in names if not intermediate}
    assert names.index(("A", True)) < names.index(("S", False))
    (g,) = [o for o in data["outputs"] if o["name"] == "G"]
    assert g["terms"][0]["coefficient"] == "1/N"
    (s,) = [o for o in data["outputs"] if o["name"] == "S"]
    assert [t["coefficient"] for t in s["terms"]] == ["1", "-0.5", "2"] or [t["coefficient"] for t in s["terms"]] == ["1", "-1/2", "2"]
    assert data["patterns"] == []


def test_text_format_lists_equations_and_patterns(capsys):
    status, out, _ = cli(capsys, "compile", str(CONV2D), "--target", "einsum")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "# output Y[n, (g d), o1, o2]"
    assert any(line.startswith('Y = einsum("') and line.endswith('", X, P1, P2, W)') for line in lines)
    assert "P1 = conv(I=9, O=5, K=3, stride=2, padding=(1, 1), dilation=1)" in lines


# ------------------------------------------------------------------------ tnc check
def test_check_prints_every_tensor_with_legs_and_shape(capsys):
    status, out, err = cli(capsys, "check", str(CONV2D))
    assert status == 0, err
    rows = {line.split()[1].split("[")[0]: line for line in out.splitlines() if line.startswith("  ") and " shape [" in line}
    assert set(rows) == {"X", "W", "P1", "P2", "Y"}
    expected = {
        "X": ("input", "X[n, (g c), i1, i2]", "shape [N, 6, 9, 9]"),
        "W": ("param", "W[(g d), c, k1, k2]", "shape [8, 3, 3, 3]"),
        "P1": ("pattern", "P1[i1, o1, k1] = conv(stride=2, padding=1)", "shape [9, 5, 3]"),
        "P2": ("pattern", "P2[i2, o2, k2] = conv(stride=2, padding=1)", "shape [9, 5, 3]"),
        "Y": ("output", "Y[n, (g d), o1, o2]", "shape [N, 8, 5, 5]"),
    }
    for name, (kind, legs, shape) in expected.items():
        row = rows[name].strip()
        assert row.startswith(kind), row
        assert legs in row, row
        assert row.endswith(shape), row
    assert "  o1: 5" in out.splitlines()
    assert "  N (free)" in out.splitlines()


def test_check_with_size_binding(capsys):
    status, out, _ = cli(capsys, "check", str(CONV2D), "--size", "N=32")
    assert status == 0
    assert "  N = 32" in out.splitlines()
    assert "shape [32, 6, 9, 9]" in out


# ---------------------------------------------------------------- awkward names
AWKWARD = """\
size N, lambda = 3
index in: N, for: lambda, def: 2
input torch[in, for]
input sum[for, def]
param max[def]
param self[def]
pattern functools[for, class, def] = conv()
None[in, class] = torch[in, for] * functools[for, class, def] * max[def]
output print[in, class] = None[in, class] + 2 * None[in, class] * self[def] / lambda
output Module[in] = torch[in, for] * sum[for, def] * max[def]
output forward[in, for] = torch[in, for] * sum[for, def] * self[def]
"""


def test_names_that_clash_with_python_still_work(tmp_path):
    """Python keywords, builtins, `torch`, `self`, nn.Module attributes as tensor, size and index names."""
    source = torch_source(AWKWARD, "awkward")
    path = tmp_path / "awkward.py"
    path.write_text(source)
    py_compile.compile(str(path), cfile=str(tmp_path / "awkward.pyc"), doraise=True)
    namespace = load(source, "awkward")
    assert namespace["torch"] is torch  # the module name is not shadowed
    functions = {name: value for name, value in namespace.items() if callable(value) and not name.startswith("_")}
    t, s = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    mx, sf = torch.randn(2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    # the pattern with no padding, kernel 2 on a size-3 axis: class = o in 0..1, for = o + def
    none = torch.stack([t[:, o : o + 2] @ mx for o in range(2)], dim=1)
    expected_print = none + 2 * none * sf.sum() / 3
    expected_module = t @ (s @ mx)
    expected_forward = t * (s @ sf)
    module_class = namespace["Awkward"]
    module = module_class().double()
    with torch.no_grad():
        params = dict(module.named_parameters())
        assert len(params) == 2
        max_name = [n for n in params if n.startswith("max")][0]
        self_name = [n for n in params if n.startswith("self")][0]
        params[max_name].copy_(mx)
        params[self_name].copy_(sf)
    got_print, got_module, got_forward = module(t, s)
    torch.testing.assert_close(got_print, expected_print, **TOLERANCE)
    torch.testing.assert_close(got_module, expected_module, **TOLERANCE)
    torch.testing.assert_close(got_forward, expected_forward, **TOLERANCE)
    # the output functions, positionally in declaration order
    by_doc = {f.__doc__.split("[")[0]: f for f in functions.values() if isinstance(f, type(lambda: 0)) and f.__doc__}
    torch.testing.assert_close(by_doc["print"](t, mx, sf), expected_print, **TOLERANCE)
    torch.testing.assert_close(by_doc["Module"](t, s, mx), expected_module, **TOLERANCE)
    torch.testing.assert_close(by_doc["forward"](t, s, sf), expected_forward, **TOLERANCE)


def test_names_that_clash_with_generated_helpers():
    """A tensor named like a size, and tensors named like the generated helpers and temporaries."""
    text = (
        "size N, X = 2\nindex n: N, x: X\ninput N[n, x]\ninput _expect[x]\ninput _conv_pattern[x]\nparam _t0[x]\n"
        "output X[n] = N[n, x] * _expect[x] + 2 * N[n, x] * _conv_pattern[x] * _t0[x]\n"
    )
    namespace = load(torch_source(text, "clash"))
    a = torch.randn(5, 2, dtype=torch.float64)
    b, c, d = (torch.randn(2, dtype=torch.float64) for _ in range(3))
    expected = a @ b + 2 * (a @ (c * d))
    public = [v for k, v in namespace.items() if k.startswith("X") and isinstance(v, type(lambda: 0))]
    assert len(public) == 1
    torch.testing.assert_close(public[0](a, b, c, d), expected, **TOLERANCE)
    module = namespace["Clash"]().double()
    with torch.no_grad():
        next(module.parameters()).copy_(d)
    torch.testing.assert_close(module(a, b, c), expected, **TOLERANCE)


def test_index_names_that_are_python_keywords():
    text = "index in: 3, is: 4, not: 2\ninput A[in, is]\ninput B[is, not]\noutput C[in, not] = A[in, is] * B[is, not]\n"
    namespace = load(torch_source(text, "keywords"))
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(namespace["C"](A=a, B=b), a @ b, **TOLERANCE)


def test_primed_tensor_names():
    text = "index i: 3, j: 2\ninput X[i, j]\nX'[j, i] = X[i, j]\noutput X''[j] = X'[j, i]\n"
    source = torch_source(text, "primes")
    namespace = load(source)
    x = torch.randn(3, 2, dtype=torch.float64)
    public = [v for k, v in namespace.items() if k.startswith("X_prime_prime") and callable(v)]
    assert len(public) == 1
    torch.testing.assert_close(public[0](x), x.sum(0), **TOLERANCE)



def test_class_name_does_not_replace_an_output_function():
    text = "index i: 3\ninput X[i]\noutput Y[i] = 2 * X[i]\n"
    namespace = load(torch_source(text, "y"))  # stem "y": the class would be called Y
    x = torch.randn(3, dtype=torch.float64)
    assert isinstance(namespace["Y"], type(lambda: 0)), "the output function Y was replaced"
    assert isinstance(namespace["Y"](x), torch.Tensor)
    torch.testing.assert_close(namespace["Y"](x), 2 * x, **TOLERANCE)
    classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    assert len(classes) == 1



def test_builtin_named_inputs_are_callable_by_keyword():
    text = "index i: 3\ninput sum[i]\ninput max[i]\noutput Y[i] = sum[i] * max[i]\n"
    namespace = load(torch_source(text, "kw"))
    a, b = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(namespace["Y"](**{"sum": a, "max": b}), a * b)


# ------------------------------------------------------------------ standard input
def test_standard_input_in_process(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(CONV2D.read_text()))
    status, out, err = cli(capsys, "compile", "-", "--target", "torch")
    assert status == 0, err
    assert out == to_torch_source(compile_source(CONV2D.read_text(), "<stdin>"), "network")
    assert "class Network(torch.nn.Module)" in out


def test_standard_input_subprocess():
    result = run_tnc("compile", "-", "--target", "torch", stdin=CONV2D.read_text())
    assert result.returncode == 0, result.stderr
    namespace = load(result.stdout, "stdin")
    module = namespace["Network"]().double()
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(module(x), F.conv2d(x, module.W, stride=2, padding=1, groups=2), **TOLERANCE)
    check = run_tnc("check", "-", stdin=CONV2D.read_text())
    assert check.returncode == 0
    assert "shape [N, 8, 5, 5]" in check.stdout


@pytest.mark.parametrize(
    "text, call",
    [
        ("size N\nindex i: 3\ninput X[i]\nY[i] = (1/N) * X[i]\n", lambda f, x: f(x, N=4)),
        ("size N\nindex a: N, b: N\ninput X[(a b)]\nY[a, b] = X[(a b)]\n", lambda f, x: f(x, N=3)),
    ],
    ids=["coefficient-only", "squared"],
)
def test_a_free_size_no_shape_tells_is_a_keyword_argument(text, call):
    namespace = load(torch_source(text, "kw"))
    x = torch.arange(9, dtype=torch.float64)
    result = call(namespace["Y"], x[:3] if "(1/N)" in text else x)
    expected = x[:3] / 4 if "(1/N)" in text else x.reshape(3, 3)
    torch.testing.assert_close(result, expected, **TOLERANCE)
    with pytest.raises(TypeError):
        namespace["Y"](x[:3] if "(1/N)" in text else x)  # the size is required


@pytest.mark.parametrize(
    "text",
    [
        "index i: 3\ninput X[i]\noutput Y[i] = 2 * X[i]\n",
        "index i: 3, j: 4\ninput X[i, j]\noutput Y[j, i] = -0.5 * X[i, j]\n",
        "index i: 3, j: 4\ninput X[i, j]\ninput Z[j]\noutput Y[i] = 3 * X[i, j] * Z[j] - X[i, j] * Z[j]\n",
        "size N = 2\nindex n: N, c: 2, c': 2, i: 5, k: 3\ninput X[n, c, i]\nparam W[c, c', k]\npattern P[i, o, k] = conv(padding=1)\n"
        "output Y[n, c', o] = (1/3) * X[n, c, i] * P[i, o, k] * W[c, c', k]\n",
    ],
    ids=["copy", "transpose", "two-terms", "native-conv"],
)
def test_coefficients_never_change_the_arguments(text):
    """Scaling happens in place only on new tensors, never on a view of an input."""
    namespace = load(torch_source(text, "scaled"))
    function = namespace["Y"]
    arguments = {name: torch.randn(*shape, dtype=torch.float64) for name, shape in
                 {"X": (2, 2, 5) if "W[" in text else (3, 4) if "j: 4" in text else (3,), "Z": (4,), "W": (2, 2, 3)}.items()}
    wanted = {p: arguments[p] for p in inspect.signature(function).parameters}
    before = {name: tensor.clone() for name, tensor in wanted.items()}
    function(**wanted)
    for name, tensor in wanted.items():
        assert torch.equal(tensor, before[name]), name


LETTERS = [  # (legs in order of first appearance, expected letters)
    (["i1", "i2", "k1", "k2"], "ijkl"),
    (["m2", "o1", "n", "o2"], "monp"),  # n keeps its letter although m2 and o1 come first
    (["k1", "i1", "i2", "i3", "k2"], "kijlm"),  # every initial is claimed before a fallback
    (["n'", "n", "c"], "onc"),  # a one-letter index has priority over n'
    (["_a", "b"], "ab"),  # no letter initial: the first free letter
]


@pytest.mark.parametrize(("legs", "letters"), LETTERS)
def test_einsum_letters_read_like_the_file(legs: list[str], letters: str) -> None:
    from tnc.codegen.names import einsum_letters

    assert "".join(einsum_letters(legs).values()) == letters


@pytest.mark.parametrize("file", ["kfc.tn", "kfac_reduce.tn", "conv2d.tn", "ggn_gram.tn"])
def test_einsum_target_keeps_the_batch_letter(file: str, capsys) -> None:
    assert main(["compile", str(ROOT / "examples" / file), "--target", "einsum"]) == 0
    equations = [line for line in capsys.readouterr().out.splitlines() if "einsum(" in line]
    assert equations and all('einsum("n' in line or ',n' in line for line in equations), equations


def test_einsum_text_writes_a_scalar_term_as_ones():
    """A term that is a number alone has no einsum call: ``2 * ones([])`` (JSON: no operands)."""
    net = tnc.parse("index n: 4, c: 3\ninput X[n, c]\noutput s[] = 2 + X[n, c] * X[n, c]\n")
    assert net.to_einsum().splitlines()[1:3] == ["s = 2 * ones([])", 's += einsum("nc,nc->", X, X)']
