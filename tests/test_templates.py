"""Templates with free batch, channel and spatial sizes and bound kernel, stride, padding and
dilation (benchmarks/templates.py; issue #9): every one compiles for every layer configuration,
zero paddings included, and the convolutions agree with torch.nn.functional in float64."""

from __future__ import annotations

import inspect
import types

import pytest
import torch
import torch.nn.functional as F

import tnc
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


def _conv_cases() -> list[dict[str, int]]:
    return [dict(K=3, S=1, P=1, L=1), dict(K=3, S=2, P=0, L=1), dict(K=2, S=2, P=0, L=2)]


@pytest.fixture
def conv_file(tmp_path):
    path = tmp_path / "conv.tn"
    path.write_text(TEMPLATES["forward_2d"])
    return path


@pytest.fixture
def compiles(monkeypatch):
    """Counts the compilations tnc.Template runs (each one a call of tnc.api.parse)."""
    import tnc.templates

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[2])
        return parse(*args, **kwargs)

    monkeypatch.setattr(tnc.templates, "parse", counting)
    return calls


@pytest.mark.parametrize("sizes", _conv_cases(), ids=_label)
def test_template_binds_per_layer_and_reads_free_sizes(conv_file, compiles, sizes):
    """One template, one compilation per (K, S, P, L); batch, channels and image size free."""
    conv = tnc.Template(conv_file)
    K, S, P, L = (sizes[k] for k in "KSPL")
    for batch, channels, image in [(2, 3, 9), (5, 1, 8)]:  # a full and a partial last batch
        x = torch.randn(batch, channels, image, image - 1, dtype=torch.float64)
        w = torch.randn(4, channels, K, K, dtype=torch.float64)
        expected = F.conv2d(x, w, stride=S, padding=P, dilation=L)
        torch.testing.assert_close(conv.function(**sizes)(X=x, W=w), expected, **TOLERANCE)
        assert conv.module(**sizes) is conv.module(**sizes)
    assert compiles == [sizes]


def test_template_keeps_a_module_per_binding(conv_file, compiles):
    conv = tnc.Template(conv_file)
    first, second = (conv.module(**sizes) for sizes in _conv_cases()[:2])
    assert first is not second and first.__name__ != second.__name__
    assert conv.module(**_conv_cases()[0]) is first and len(compiles) == 2


def test_template_disk_cache_serves_another_template(conv_file, compiles, tmp_path):
    sizes = _conv_cases()[1]
    tnc.Template(conv_file, cache_dir=tmp_path / "cache").module(**sizes)
    assert len(list((tmp_path / "cache").glob("conv_*.py"))) == 1
    module = tnc.Template(conv_file, cache_dir=tmp_path / "cache").module(**sizes)  # a fresh process
    assert len(compiles) == 1
    x, w = torch.randn(1, 2, 7, 7, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(module.Y(X=x, W=w), F.conv2d(x, w, stride=2), **TOLERANCE)


@pytest.mark.parametrize("cached", [False, True], ids=["memory", "disk"])
def test_template_recompiles_an_edited_file(conv_file, tmp_path, cached):
    """The key holds the file's content: an edited template is compiled again, never served stale."""
    conv = tnc.Template(conv_file, cache_dir=tmp_path / "cache" if cached else None)
    sizes = _conv_cases()[0]
    x, w = torch.randn(1, 2, 6, 6, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    before = conv.function(**sizes)(X=x, W=w)
    conv_file.write_text(conv_file.read_text() + "output Z[n, d] = 2 * Y[n, d, o1, o2]\n")
    module = conv.module(**sizes)
    torch.testing.assert_close(module.Y(X=x, W=w), before, **TOLERANCE)
    torch.testing.assert_close(module.Z(X=x, W=w), 2 * before.sum((2, 3)), **TOLERANCE)


def test_template_from_text_and_its_outputs():
    conv = tnc.Template(TEMPLATES["forward_2d"] + "output Z[n, d] = Y[n, d, o1, o2]\n", name="conv")
    assert conv.module(**_conv_cases()[0]).__name__.startswith("tnc_generated_conv_")
    with pytest.raises(ValueError, match="has outputs Y, Z; pick one with output="):
        conv.function(**_conv_cases()[0])
    assert conv.function("Z", **_conv_cases()[0]).__name__ == "Z"


def test_template_options_are_part_of_the_key(conv_file):
    sizes = _conv_cases()[0]
    plain, sharded = tnc.Template(conv_file), tnc.Template(conv_file, shard="N")
    assert plain.key("text", sizes) != sharded.key("text", sizes)
    assert "group" in inspect.signature(sharded.function(**sizes)).parameters
    assert "group" not in inspect.signature(plain.function(**sizes)).parameters
