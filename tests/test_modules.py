"""Generated nn.Modules made in-process (``Network.to_module()``) behave like PyTorch's: they pickle,
torch.save and deepcopy, compile with dynamic shapes, export, and check their inputs' shapes with
the messages the generated functions give. Values are compared in float64 against torch.nn.functional."""

from __future__ import annotations

import copy
import io
import pickle
import types
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

import tnc

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = dict(atol=1e-10, rtol=1e-10)


def _kfac_reduce(X: torch.Tensor) -> torch.Tensor:
    """kfac_reduce.tn by unfold: per group g, u = unfold(X_g).mean(-1), A[g] = u^T u / N."""
    groups = X.unflatten(1, (2, -1)).unbind(1)
    units = [F.unfold(x, (3, 2), stride=(2, 1), padding=(1, 0)).mean(-1) for x in groups]
    return torch.stack([u.T @ u / X.shape[0] for u in units])


# example, the output, the reference (input, module) -> output, the per-sample input shape
CASES: dict[str, tuple[str, Callable, tuple[int, ...]]] = {
    "conv2d": ("Y", lambda X, m: F.conv2d(X, m.W, stride=2, padding=1, groups=2), (6, 9, 9)),
    "conv2d_bias": ("Y", lambda X, m: F.conv2d(X, m.W, m.b, stride=2, padding=1, groups=2), (6, 9, 9)),
    "kfac_reduce": ("A", lambda X, m: _kfac_reduce(X), (4, 6, 5)),
}


def _generated(example: str) -> types.ModuleType:
    return tnc.load(ROOT / "examples" / f"{example}.tn").to_module()


def _model_class(module: types.ModuleType) -> type[torch.nn.Module]:
    (cls,) = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    return cls


def _model(example: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _model_class(_generated(example))().double()


def _input(example: str, batch: int = 3, seed: int = 1) -> torch.Tensor:
    shape = CASES[example][2]
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _round_trip(obj: object) -> object:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("example", sorted(CASES))
def test_forward_matches_the_reference(example):
    model, X = _model(example), _input(example)
    torch.testing.assert_close(model(X), CASES[example][1](X, model), **TOLERANCE)


def test_same_source_gives_the_same_module():
    assert _generated("conv2d") is _generated("conv2d")
    assert _generated("conv2d") is not _generated("conv2d_bias")


COPIES: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "torch.save": _round_trip,
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("example", sorted(CASES))
def test_copies_compute_the_same(example, how):
    model, X = _model(example), _input(example)
    clone = COPIES[how](model)
    assert type(clone) is type(model) and clone is not model
    assert clone.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value) and clone.state_dict()[key] is not value
    torch.testing.assert_close(clone(X), model(X), atol=0, rtol=0)


@pytest.mark.parametrize("example", sorted(CASES))
def test_state_dict_loads_into_a_fresh_instance(example):
    model, X = _model(example, seed=0), _input(example)
    fresh = _model(example, seed=1)
    if model.state_dict():
        assert not torch.equal(fresh(X), model(X))
    fresh.load_state_dict(_round_trip(model.state_dict()))
    torch.testing.assert_close(fresh(X), model(X), atol=0, rtol=0)


@pytest.mark.parametrize("example", sorted(CASES))
def test_compile_with_dynamic_batch_matches_eager(example):
    torch._dynamo.reset()
    model = _model(example)
    compiled = torch.compile(model, dynamic=True)
    for batch in (2, 5):
        X = _input(example, batch)
        torch.testing.assert_close(compiled(X), model(X), **TOLERANCE)


@pytest.mark.parametrize("example", sorted(CASES))
def test_export_runs_like_eager(example):
    model, X = _model(example), _input(example)
    exported = torch.export.export(model, (X,))
    torch.testing.assert_close(exported.module()(X), model(X), **TOLERANCE)


@pytest.mark.parametrize("shape", [(3, 6, 9, 8), (3, 6, 9), (3, 5, 9, 9)], ids=str)
@pytest.mark.parametrize("example", ["conv2d", "conv2d_bias"])
def test_wrong_shape_gives_the_functions_message(example, shape):
    module = _generated(example)
    model = _model_class(module)()
    X = torch.randn(shape)
    with pytest.raises(ValueError) as expected:
        module.Y(X, *(getattr(model, p) for p in ("W", "b") if hasattr(model, p)))
    with pytest.raises(ValueError) as raised:
        model(X)
    assert str(raised.value) == str(expected.value)
    assert str(raised.value) == f"X must have shape {(3, 6, 9, 9)}, got {shape}"


def test_wrong_shape_in_kfac_reduce_gives_the_functions_message():
    module = _generated("kfac_reduce")
    X = torch.randn(2, 4, 5, 6)
    with pytest.raises(ValueError) as expected:
        module.A(X)
    with pytest.raises(ValueError) as raised:
        _model_class(module)()(X)
    assert str(raised.value) == str(expected.value) == "X must have shape (2, 4, 6, 5), got (2, 4, 5, 6)"
