"""Known bugs in tnc's rewrite passes (`tnc simplify`), found while writing tests/test_simplify.py.

Each test is the minimal reproducer of one bug and FAILS until tnc is fixed (no xfail on
purpose). References are plain torch (or the network compiled with --no-simplify), never the
code under test.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev

from tnc.cli.main import main
from tnc.codegen.tn import to_tn
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.simplify import simplify

TOLERANCE = dict(atol=1e-10, rtol=1e-10)


def _load(program, stem: str = "network") -> types.ModuleType:
    module = types.ModuleType(stem)
    exec(compile(to_torch_source(program, stem), f"<{stem}.py>", "exec"), module.__dict__)
    return module


def _simplified(source: str):
    program = compile_source(source, "bug.tn")
    simplify(program)
    return program


# ---------------------------------------------------------------- 1. dense: i and o both open legs


def test_dense_with_input_and_output_legs_both_open():
    """K = stride = 2, and both i and o are result legs (a block-diagonal matrix). The dense rule
    regroups the open leg i as (o k) although o is open too: InvalidIR "Y: a result leg is
    repeated; result legs ['o'] carried by no factor". (With K = 1 the identity rule rightly
    declines the same network, and dense then crashes the same way.)"""
    program = _simplified("index i: 4, k: 2\ninput X[i]\npattern P[i, o, k] = conv(stride=2)\noutput Y[i, o] = X[i] * P[i, o, k]\n")
    X = torch.randn(4, dtype=torch.float64)
    expected = X[:, None] * (torch.arange(4)[:, None] // 2 == torch.arange(2)[None, :])
    torch.testing.assert_close(_load(program).Y(X=X), expected, **TOLERANCE)


def test_compile_input_jacobian_of_the_convnext_stem(tmp_path: Path):
    """The same bug on a real network: grad(Y, X) of a 2x2/s2 patchify convolution has the open
    legs o1 (of Y) and i1' (of X) on one pattern. `tnc compile` (which simplifies by default)
    exits with "internal error: InvalidIR"; with --no-simplify it works."""
    source = tmp_path / "stem_jacobian.tn"
    source.write_text(
        "size N = 1\nindex n: N, c: 1, d: 1, i1: 4, i2: 4, k1: 2, k2: 2\n"
        "input X[n, c, i1, i2]\nparam W[d, c, k1, k2]\n"
        "pattern P1[i1, o1, k1] = conv(stride=2)\npattern P2[i2, o2, k2] = conv(stride=2)\n"
        "Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]\n"
        "output J[n, d, o1, o2, n', c', i1', i2'] = grad(Y, X)\n"
    )
    out = tmp_path / "stem_jacobian.py"
    assert main(["compile", str(source), "--target", "torch", "-o", str(out)]) == 0
    module = types.ModuleType("stem_jacobian")
    exec(out.read_text(), module.__dict__)
    W = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    X = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(module.J(W=W), jacrev(lambda x: F.conv2d(x, W, stride=2))(X), **TOLERANCE)


# ---------------------------------------------------------------- 2. identity: an open kernel leg


def test_identity_keeps_an_open_kernel_leg():
    """A 1x1 stride-1 pattern whose kernel leg k is a result leg. The identity rule removes the
    pattern and with it the only carrier of k: InvalidIR "result legs ['k'] carried by no factor"."""
    program = _simplified("index i: 3, k: 1\ninput X[i]\npattern P[i, o, k] = conv()\noutput Y[o, k] = X[i] * P[i, o, k]\n")
    X = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(_load(program).Y(X=X), X[:, None], **TOLERANCE)


# ---------------------------------------------------------------- 3. merge-terms: sizes of summed legs


def test_merge_terms_compares_the_sizes_of_summed_legs():
    """X[(a b)] * Z[(b a)] with (a, b) of sizes (2, 3) and X[(c d)] * Z[(d c)] with (3, 2) have
    isomorphic graphs but read X and Z through different reshapes. merge-terms ignores leg sizes
    and rewrites the sum as 2 * X[(a b)] * Z[(b a)]: a silently wrong number."""
    program = _simplified(
        "index a: 2, b: 3, c: 3, d: 2, i: 6, j: 6\ninput X[i]\ninput Z[j]\n"
        "output Y[] = X[(a b)] * Z[(b a)] + X[(c d)] * Z[(d c)]\n"
    )
    X, Z = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    expected = (X.reshape(2, 3) * Z.reshape(3, 2).T).sum() + (X.reshape(3, 2) * Z.reshape(2, 3).T).sum()
    torch.testing.assert_close(_load(program).Y(X=X, Z=Z), expected, **TOLERANCE)


# ---------------------------------------------------------------- 4. printing a down-sampled network


def _downsample_source(size_line: str) -> str:
    return (
        f"{size_line}\nindex n: 2, i: I, k: 1\ninput X[n, i]\nparam W[k]\n"
        "pattern P[i, o, k] = conv(stride=2)\noutput Y[n, o] = X[n, i] * P[i, o, k] * W[k]\n"
    )


def test_simplified_downsample_with_a_bound_size_reparses():
    """`size I = 15` (the ResNet shortcut written with a named size): after downsample the only
    thing that fixed o's size, floor((I - 1)/2) + 1, was the pattern. to_tn leaves sizes with a
    floor to inference, so `tnc simplify`'s output fails to parse: "cannot infer the size of index 'o'"."""
    program = _simplified(_downsample_source("size I = 15"))
    reparsed = compile_source(to_tn(program), "simplified.tn")
    X, W = torch.randn(2, 15, dtype=torch.float64), torch.randn(1, dtype=torch.float64)
    torch.testing.assert_close(_load(reparsed).Y(X=X, W=W), X[:, ::2] * W, **TOLERANCE)


def test_simplified_downsample_with_a_free_size_reparses():
    """The same with `size I` free: the printed file has no size for o either."""
    program = _simplified(_downsample_source("size I"))
    compile_source(to_tn(program), "simplified.tn")


# ---------------------------------------------------------------- 5. the empty sum loses its inputs


def test_compile_of_a_network_that_simplifies_to_zero(tmp_path: Path):
    """Y[n] = X[n] - X[n] with n: N free. merge-terms and zero-terms leave Y = 0, which reads no
    tensor, so N can no longer be read from X's shape. At commit 67ef9a3 the default `tnc compile`
    failed ("size 'N' is free and cannot be read from the shapes of Y's inputs (no tensors)");
    since 897fc51 it exits 0 but writes `def _eval_Y(, *, N: int)`, a syntax error (see also the
    last test). With --no-simplify the same valid file compiles to a working Y(X)."""
    source = tmp_path / "zero.tn"
    source.write_text("size N\nindex n: N\ninput X[n]\noutput Y[n] = X[n] - X[n]\n")
    out = tmp_path / "zero.py"
    assert main(["compile", str(source), "--target", "torch", "-o", str(out)]) == 0
    module = types.ModuleType("zero")
    exec(compile(out.read_text(), str(out), "exec"), module.__dict__)
    X = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(module.Y(X=X), torch.zeros(4, dtype=torch.float64))


def test_simplification_keeps_the_output_function_signature():
    """With concrete sizes the same rewrite compiles, but Y() loses its parameter X (the spec:
    Y's parameters are the inputs it depends on, as written), so Y(X=x) raises TypeError."""
    program = _simplified("index n: 3\ninput X[n]\noutput Y[n] = X[n] - X[n]\n")
    torch.testing.assert_close(_load(program).Y(X=torch.ones(3, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64))


# ---------------------------------------------------------------- 6. squeeze: a group of one repeated leg


def test_squeeze_of_a_repeated_size_one_leg_prints_a_parsable_file():
    """X[n, (s s)] with s of size 1: squeeze drops both copies and leaves the empty group
    X[n, ()], which the printer writes and the parser rejects ("unexpected ')'; expected a name")."""
    program = _simplified("index n: 3, s: 1, i: 1\ninput X[n, i]\noutput Y[n] = X[n, (s s)]\n")
    compile_source(to_tn(program), "simplified.tn")


# ---------------------------------------------------------------- 7. found on the way: codegen of an empty sum


def test_zero_output_with_a_free_size_compiles_to_valid_python():
    """Not a rewrite bug: `Y[n] = 0` with n: N free (the language's zero tensor) compiles, with or
    without --no-simplify, to `def _eval_Y(, *, N: int)` and `_eval_Y(, N=N)`: a SyntaxError
    when the module is imported. Y(N=4) should return zeros(4)."""
    module = types.ModuleType("zero_tensor")
    exec(compile(to_torch_source(compile_source("size N\nindex n: N\noutput Y[n] = 0\n", "zero.tn"), "zero"), "<zero.py>", "exec"), module.__dict__)
    torch.testing.assert_close(module.Y(N=4), torch.zeros(4))


# ---------------------------------------------------------------- 8. dense: a pattern summed over i alone


def _dense_pattern(I: int, O: int, K: int, stride: int) -> torch.Tensor:
    """P[i, o, k] = [i = stride*o + k], built entry by entry."""
    P = torch.zeros(I, O, K, dtype=torch.float64)
    for o in range(O):
        for k in range(K):
            if stride * o + k < I:
                P[stride * o + k, o, k] = 1
    return P


@pytest.mark.parametrize("kernel, outputs, channels", [(2, 5, 2), (3, 2, 1), (4, 3, 2)])
@pytest.mark.parametrize("target", ["torch", "einsum"])
def test_kfac_reduce_of_a_transpose_convolution_with_kernel_equal_to_stride(tmp_path: Path, capsys, kernel, outputs, channels, target):
    """Issue #9: the KFAC-reduce factor of a transpose convolution whose kernel equals its stride
    (every k2/s2 upsampling layer). Z lives on o, and i is carried by the pattern alone; the dense
    rule regrouped i as (o k) in no factor, which dropped the only carrier of the result leg k:
    `tnc compile` ended in "InvalidIR: A, term 1: result legs ['k2'] carried by no factor"."""
    source = tmp_path / "upsample_kfac.tn"
    source.write_text(
        f"size N\nsize C = {channels}, O2 = {outputs}\nsize I2 = (O2 - 1)*{kernel} + {kernel}\n"
        f"index n: N, c: C, o2: O2, k2: {kernel}, i2: I2\ninput Z[n, c, o2]\n"
        f"pattern P2[i2, o2, k2] = conv(stride={kernel})\n"
        "output A[(c k2), (c' k2')] = Z[n, c, o2] * P2[i2, o2, k2] * Z[n, c', o2'] * P2[i2', o2', k2']\n"
    )
    Z = torch.randn(3, channels, outputs, dtype=torch.float64)
    P = _dense_pattern(outputs * kernel, outputs, kernel, kernel)
    expected = torch.einsum("nco,iok,ndp,jpl->ckdl", Z, P, Z, P).reshape(channels * kernel, channels * kernel)
    assert main(["compile", str(source), "--target", target]) == 0
    generated = capsys.readouterr().out
    if target == "torch":
        module = types.ModuleType("upsample_kfac")
        exec(generated, module.__dict__)
        torch.testing.assert_close(module.A(Z=Z), expected, **TOLERANCE)
    else:  # one einsum over the operands as written: Z, the pattern, Z, the pattern
        equation = re.search(r'einsum\("([^"]+)"', generated).group(1)
        result = torch.einsum(equation, Z, P, Z, P).reshape(channels * kernel, channels * kernel)
        torch.testing.assert_close(result, expected, **TOLERANCE)
