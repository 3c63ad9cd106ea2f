"""tnc draw, tnc cost and the Python API."""

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from pricing import assert_prices_agree

import tnc
from tnc.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exit:
            status = exit.code
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ draw


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".dot", b"graph tnc")])
def test_draw_writes_each_format_deterministically(tmp_path, suffix, magic):
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    assert cli("draw", str(EXAMPLES / "conv2d.tn"), "-o", str(first))[0] == 0
    assert cli("draw", str(EXAMPLES / "conv2d.tn"), "-o", str(second))[0] == 0
    assert first.read_bytes().startswith(magic)
    assert first.read_bytes() == second.read_bytes()


def test_dot_shows_tensors_legs_hyperedges_and_open_legs(tmp_path):
    out = tmp_path / "kfc.dot"
    assert cli("draw", str(EXAMPLES / "kfc.tn"), "-o", str(out))[0] == 0
    dot = out.read_text()
    assert "shape=circle, label=\"X\"" in dot and "shape=triangle, label=\"P1\"" in dot
    assert "shape=point" in dot  # o1 joins four tensors: a hyperedge dot
    assert "shape=plaintext, label=\"g\"" in dot  # an open leg
    assert re.search(r'\[label="i1"\]', dot)


def test_draw_shows_the_cut_of_a_derivative(tmp_path):
    out = tmp_path / "psg.dot"
    assert cli("draw", str(EXAMPLES / "per_sample_grad.tn"), "-o", str(out))[0] == 0
    assert 'color="red"' in out.read_text()


def test_draw_one_term(tmp_path):
    out = tmp_path / "t.dot"
    assert cli("draw", str(EXAMPLES / "derived" / "kfc_input_vjp.tn"), "--term", "2", "-o", str(out))[0] == 0
    assert out.read_text().count("subgraph") == 1


@pytest.mark.parametrize(
    "args, message",
    [(("-o", "x.jpg"), "written as .svg, .png or .dot"), (("--term", "7", "-o", "x.png"), "no term to draw with number 7")],
    ids=["bad-suffix", "no-such-term"],
)
def test_draw_usage_errors(tmp_path, args, message):
    args = tuple(str(tmp_path / a) if a.startswith("x.") else a for a in args)
    status, _, err = cli("draw", str(EXAMPLES / "conv2d.tn"), *args)
    assert status == 2 and message in err
    assert not list(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------ cost


def test_cost_is_symbolic_in_free_sizes_and_numeric_when_bound():
    status, out, _ = cli("cost", str(EXAMPLES / "convnext_stem.tn"))
    assert status == 0
    assert "one-shot: 50331648*N  (= 805,306,368 at N=16) FLOPs" in out
    assert "== simplified, as tnc compile emits it (2 rewrites: dense)" in out
    status, out, _ = cli("cost", str(EXAMPLES / "convnext_stem.tn"), "--size", "N=2")
    assert "one-shot: 100,663,296 FLOPs" in out


@pytest.mark.parametrize("example", ["convnext_stem.tn", "resnet_shortcut.tn", "kfac_reduce.tn"])
def test_cost_drops_after_simplification(example):
    _, out, _ = cli("cost", str(EXAMPLES / example), "--size", "N=8")
    generated = [int(m.replace(",", "")) for m in re.findall(r"generated: .*\n    FLOPs:\s+([\d,]+)", out)]
    dense = [int(m.replace(",", "")) for m in re.findall(r"dense einsum as written .*: ([\d,]+) FLOPs", out)]
    assert len(generated) == len(dense) == 2 and generated[1] <= generated[0] and dense[1] < dense[0]


AGREEMENT = sorted(p.name for p in EXAMPLES.glob("*.tn"))


@pytest.mark.parametrize("example", AGREEMENT)
def test_cost_report_generated_comments_and_rewrite_log_agree(example):
    """One price per term: tnc cost, the comments of tnc compile and the log of tnc simplify."""
    _, report, _ = cli("cost", str(EXAMPLES / example))
    assert_prices_agree((EXAMPLES / example).read_text(), report)


# ------------------------------------------------------------------ Python API


def test_api_pipeline_and_immutability():
    net = tnc.load(EXAMPLES / "conv2d.tn")
    before = net.to_tn()
    grad = net.derive("W", vjp="V")
    assert net.to_tn() == before and grad.outputs == ["vjp_Y_W"]
    simplified = tnc.load(EXAMPLES / "resnet_shortcut.tn").simplify()
    assert [a.rule for a in simplified.log] == ["downsample", "downsample"]
    data = json.loads(grad.to_einsum("json"))
    assert data["outputs"][-1]["name"] == "vjp_Y_W"
    module = grad.to_module()
    X, V = torch.randn(2, 6, 9, 9, dtype=torch.float64), torch.randn(2, 8, 5, 5, dtype=torch.float64)
    W = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    (torch.nn.functional.conv2d(X, W, stride=2, padding=1, groups=2) * V).sum().backward()
    torch.testing.assert_close(module.vjp_Y_W(X=X, V=V), W.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("example", ["kfac_reduce.tn", "convnext_stem.tn", "resnet_shortcut.tn", "grad_norms.tn"])
@pytest.mark.parametrize("flags", [(), ("--no-simplify",)])
def test_api_and_cli_run_one_pipeline(example, flags, tmp_path):
    """to_torch_source / to_einsum give the bytes tnc compile writes, simplified by default."""
    simplify = not flags
    net = tnc.load(EXAMPLES / example)
    for target, text in (("torch", net.to_torch_source(simplify=simplify)), ("einsum", net.to_einsum(simplify=simplify))):
        status, out, _ = cli("compile", str(EXAMPLES / example), "--target", target, *flags)
        assert status == 0 and out == text
    assert net.simplify().to_torch_source() == net.to_torch_source()  # simplified once, not twice


def test_api_errors_are_tnc_errors():
    with pytest.raises(tnc.TncError) as error:
        tnc.parse("input X[i j]\n", "bad.tn")
    assert str(error.value).startswith("bad.tn:1:11: error: missing ',' before 'j'")
