"""Known bugs in tnc's derivatives and .tn printer, found while writing tests/test_derive.py.

Each test is the minimal reproducer of one bug and FAILS until tnc is fixed (no xfail on
purpose). References are torch.func / hand-written tensors, never tnc itself.
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import jacrev

from tnc.cli.main import main
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOLERANCE = dict(atol=1e-10, rtol=1e-10)


def _load(program, stem: str) -> types.ModuleType:
    module = types.ModuleType(stem)
    exec(compile(to_torch_source(program, stem), f"<{stem}.py>", "exec"), module.__dict__)
    return module


def _constant(module: types.ModuleType, name: str, *shape: int) -> torch.Tensor:
    """An output that is a constant, made in the dtype of the float64 variable it takes."""
    return getattr(module, name)(torch.zeros(shape, dtype=torch.float64))


# ---------------------------------------------------------------- 1. a tensor used with another grouping


def test_grad_of_declared_tensor_used_grouped():
    """W declared with one leg m, used as W[(i j)]: legal forward, but grad says
    "'W' is used with a grouping of legs other than its declaration's"."""
    source = "index i: 3, j: 4\nparam W[m]\nY[i, j] = W[(i j)]\noutput J[i, j, m] = grad(Y, W)\n"
    module = _load(compile_source(source, "regroup.tn"), "regroup")
    torch.testing.assert_close(_constant(module, "J", 12), torch.eye(12, dtype=torch.float64).reshape(3, 4, 12), **TOLERANCE)


def test_grad_of_grouped_declaration_used_with_one_leg():
    """W declared as W[(i j)], used as W[m]: same error. (W has one storage axis, so the left
    side names it with one entry, here the group (i j).)"""
    source = "index i: 3, j: 4\nparam W[(i j)]\nY[m] = W[m]\noutput J[m, (i j)] = grad(Y, W)\n"
    module = _load(compile_source(source, "regroup2.tn"), "regroup2")
    torch.testing.assert_close(_constant(module, "J", 12), torch.eye(12, dtype=torch.float64), **TOLERANCE)


def test_grad_through_grouped_definition_used_with_one_leg():
    """A defined as A[(i j)], used as A[m] (legal forward): grad says
    "'A' is defined with the axis (i j) but used with [m]" (expansion cannot regroup)."""
    source = "index i: 3, j: 4\nparam W[i, j]\nA[(i j)] = 2 * W[i, j]\nY[m] = A[m]\noutput J[m, i, j] = grad(Y, W)\n"
    module = _load(compile_source(source, "regroup3.tn"), "regroup3")
    torch.testing.assert_close(_constant(module, "J", 3, 4), 2 * torch.eye(12, dtype=torch.float64).reshape(12, 3, 4), **TOLERANCE)


def test_grad_through_regrouped_chain():
    """The same inside a chain: A[m] = Xf[m] * Wf[m], B[i, j] = A[(i j)] * W[j], grad(B, Wf)."""
    source = (
        "index m: 12, i: 3, j: 4\ninput Xf[m]\nparam Wf[m]\nparam W[j]\n"
        "A[m] = Xf[m] * Wf[m]\nB[i, j] = A[(i j)] * W[j]\noutput J[i, j, m] = grad(B, Wf)\n"
    )
    module = _load(compile_source(source, "regroup4.tn"), "regroup4")
    g = torch.Generator().manual_seed(0)
    Xf, Wf, W = (torch.randn(n, generator=g, dtype=torch.float64) for n in (12, 12, 4))
    expected = jacrev(lambda w: (Xf * w).reshape(3, 4) * W)(Wf)
    torch.testing.assert_close(module.J(Xf=Xf, W=W), expected, **TOLERANCE)


def test_left_side_names_a_grouped_axis_with_one_leg():
    """J[n, m, (g d), c] = grad(Y, W) with Y[n, (g d)]: the left side names Y's grouped axis m
    and gives the copy of W's axis the names (g d). The checker keeps Y's g, d for the unnamed
    group, they clash with the copy, and tnc exits 70: "internal error: InvalidIR: J: a result
    leg is repeated" (J[n, (g d), m, c], the other way round, works)."""
    source = (
        "size G = 2, D = 3\nindex n: 2, g: G, d: D, c: 4, m: 6\ninput X[n, c]\nparam W[(g d), c]\n"
        "Y[n, (g d)] = X[n, c] * W[(g d), c]\noutput J[n, m, (g d), c] = grad(Y, W)\n"
    )
    module = _load(compile_source(source, "lhs.tn"), "lhs")
    g = torch.Generator().manual_seed(0)
    X, W = torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(module.J(X=X), jacrev(lambda w: X @ w.T)(W), **TOLERANCE)


# ---------------------------------------------------------------- 2. zero derivatives and left-side sizes


def test_zero_derivative_infers_result_leg_sizes():
    """grad(Y, W) with Y independent of W is 0, but its result legs still are copies of W's
    legs; an undeclared leg on the left side gets "cannot infer the size of index 'l'"
    (the same file with Y depending on W checks fine)."""
    source = "index i: 3, k: 2\ninput X[i]\nparam W[k]\nY[i] = X[i] * X[i]\noutput J[i, l] = grad(Y, W)\n"
    program = compile_source(source, "zero.tn")
    assert program.size("l") == 2
    X, W = torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    torch.testing.assert_close(_load(program, "zero").J(X, W), torch.zeros(3, 2, dtype=torch.float64))


# ---------------------------------------------------------------- 3. a derived file that does not compile


def test_derived_input_jacobian_compiles_with_the_torch_target(tmp_path, capsys):
    """`tnc derive examples/conv2d.tn --wrt X` prints dY_dX = P1 P2 W delta[n, n'] delta[g, g']:
    nothing it reads carries the free batch size N, so `tnc compile OUT --target torch` fails
    ("size 'N' is free and cannot be read from the shapes of dY_dX's inputs (W)") although the
    derived file is valid. (One fix: let such output functions take the free size by keyword.)"""
    out = tmp_path / "dY_dX.tn"
    assert main(["derive", str(EXAMPLES / "conv2d.tn"), "--wrt", "X", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["compile", str(out), "--target", "torch", "-o", str(tmp_path / "dY_dX.py")]) == 0, capsys.readouterr().err
    namespace: dict = {}
    exec(compile((tmp_path / "dY_dX.py").read_text(), "dY_dX.py", "exec"), namespace)
    g = torch.Generator().manual_seed(0)
    X, W = torch.randn(2, 6, 9, 9, generator=g, dtype=torch.float64), torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    function = namespace["dY_dX"]
    arguments = {"W": W, "N": 2, "X": X}
    result = function(**{p: arguments[p] for p in inspect.signature(function).parameters})
    torch.testing.assert_close(result, jacrev(lambda x: F.conv2d(x, W, stride=2, padding=1, groups=2))(X), **TOLERANCE)


# ---------------------------------------------------------------- 4. one mistake, one error


def test_wrong_size_seed_is_reported_once(tmp_path, capsys):
    """A vjp seed with a leg of the wrong size gives two errors about the same index (at the
    call and at the seed); for jvp the second one names the internal copy j' that the user
    never wrote. tests/test_errors.py's rule: a mistake is reported once."""
    for form, legs in (("vjp(Y, W, S)", "G[j]"), ("jvp(Y, W, S)", "G[i]")):
        path = tmp_path / "seed.tn"
        path.write_text(f"index i: 3, j: 4, k: 5\ninput X[i, j]\nparam W[j]\ninput S[k]\nY[i] = X[i, j] * W[j]\n{legs} = {form}\n")
        assert main(["check", str(path)]) == 1
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", line)]
        assert len(errors) == 1, err
        assert "j'" not in errors[0], err
