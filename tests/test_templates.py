"""Templates with free batch, channel and spatial sizes and bound kernel, stride, padding and
dilation (benchmarks/templates.py; issue #9): every one compiles for every layer configuration,
zero paddings included, and the convolutions agree with torch.nn.functional in float64."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from benchmarks.templates import BINDINGS, TEMPLATES
from tnc.api import parse
from tnc.cli.main import main
from tnc.codegen.einsum import to_text
from tnc.codegen.torch_module import to_torch_source
from tnc.frontend import compile_source
from tnc.passes.simplify import simplify

TOLERANCE = dict(atol=1e-10, rtol=1e-10)
N, C, D, SIZE = 2, 2, 3, 7


def _label(sizes: dict[str, int]) -> str:
    return "-".join(f"{k}{v}" for k, v in sizes.items())


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("template")
    exec(compile(source, "<template>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("sizes", BINDINGS, ids=_label)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_compiles_for_every_binding(name, sizes):
    program = compile_source(TEMPLATES[name], f"{name}.tn", sizes)
    simplify(program)
    compile(to_torch_source(program, name), name, "exec")
    to_text(program)


@pytest.mark.parametrize("sizes", BINDINGS, ids=_label)
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kind", ["forward", "transpose"])
def test_convolution_templates_match_torch(kind, dim, sizes):
    K, S, P, L = (sizes[k] for k in "KSPL")
    spatial = [SIZE - d for d in range(dim)]  # a different size per axis
    if kind == "forward" and any((i + 2 * P - L * (K - 1) - 1) // S + 1 < 1 for i in spatial):
        pytest.skip("input too small for this layer")
    generator = torch.Generator().manual_seed(dim)
    x = torch.randn(N, C, *spatial, generator=generator, dtype=torch.float64)
    w = torch.randn(*((C, D) if kind == "transpose" else (D, C)), *[K] * dim, generator=generator, dtype=torch.float64)
    module = _module(to_torch_source(simplify_and_return(TEMPLATES[f"{kind}_{dim}d"], sizes), "t"))
    if kind == "forward":
        expected = (F.conv1d, F.conv2d, F.conv3d)[dim - 1](x, w, stride=S, padding=P, dilation=L)
        result = module.Y(X=x, W=w)
    else:
        expected = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dim - 1](x, w, stride=S, padding=P, dilation=L)
        result = module.Y(Z=x, W=w)
    torch.testing.assert_close(result, expected, **TOLERANCE)


def simplify_and_return(text: str, sizes: dict[str, int]):
    program = compile_source(text, "template.tn", sizes)
    simplify(program)
    return program


def _kfac_reduce(x: torch.Tensor, K: int, S: int, P: int) -> torch.Tensor:
    """The KFAC-reduce factor from F.unfold: mean over positions, outer product, / N."""
    u = F.unfold(x, K, padding=P, stride=S).mean(-1)
    return u.T @ u / x.shape[0]


@pytest.mark.parametrize("how", ["cli", "api"])
def test_kfac_reduce_template_with_zero_padding(tmp_path, capsys, how):
    """Issue #9: `--size P=0` was rejected ("expected NAME=POSITIVE_INTEGER") and
    `tnc.parse(text, sizes={..., "P": 0})` failed with an AttributeError."""
    sizes = {"K": 2, "S": 2, "P": 0, "L": 1}
    text = TEMPLATES["kfac_reduce_2d"]
    if how == "cli":
        path = tmp_path / "kfac_reduce.tn"
        path.write_text(text)
        assert main(["compile", str(path), "--target", "torch", *[f"--size={k}={v}" for k, v in sizes.items()]]) == 0
        source = capsys.readouterr().out
    else:
        source = parse(text, sizes=sizes).simplify().to_torch_source()
    x = torch.randn(N, C, 8, 6, dtype=torch.float64)
    torch.testing.assert_close(_module(source).A(X=x), _kfac_reduce(x, 2, 2, 0), **TOLERANCE)
