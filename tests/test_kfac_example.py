"""The KFAC training example (examples/kfac, issues #13 and #14): its conv input factors from the
tnc template equal the unfold-based ones, and training with either gives the same loss curve, in
one process and on two gloo processes under DistributedDataParallel (float64)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

EXAMPLE = Path(__file__).parents[1] / "examples" / "kfac"
pytest.importorskip("sklearn", reason="the example's data set; scikit-learn is in the dev extra")


sys.path.insert(0, str(EXAMPLE))  # as the script runs; spawned processes import it again
kfac, train_digits = importlib.import_module("kfac"), importlib.import_module("train_digits")

LAYERS = [  # (in, out, kernel, stride, padding, image)
    (1, 8, 3, 1, 1, 8),
    (8, 16, 3, 2, 1, 8),
    (16, 16, 2, 2, 0, 4),
    (3, 5, 5, 3, 2, 11),
    (2, 4, 1, 1, 0, 6),
]


@pytest.mark.parametrize("kind", ["expand", "reduce"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: "C{}-D{}-K{}-S{}-P{}-I{}".format(*c))
def test_template_factors_equal_unfold_factors(layer, kind):
    C, D, K, S, P, image = layer
    conv = nn.Conv2d(C, D, K, stride=S, padding=P).double()
    x = torch.randn(5, C, image, image - 1, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    factors = {name: kfac.KFAC(conv, name, kind)._input_factor(conv, x) for name in ("tnc", "unfold")}
    assert factors["tnc"].shape == (C * K * K + 1,) * 2
    torch.testing.assert_close(factors["tnc"], factors["unfold"], atol=1e-12, rtol=1e-12)


def _options(**changes) -> argparse.Namespace:
    options = dict(steps=6, batch=24, lr=0.1, damping=0.5, seed=1, dtype="float64", processes=2)
    return argparse.Namespace(**{**options, **changes})


@pytest.mark.parametrize("kind", ["expand", "reduce"])
def test_tnc_and_unfold_train_alike(kind):
    (unfold, _), (generated, _) = (train_digits.train(_options(), name, kind) for name in ("unfold", "tnc"))
    assert len(generated) == 6
    torch.testing.assert_close(torch.tensor(generated), torch.tensor(unfold), atol=0, rtol=1e-10)


def test_two_processes_train_as_one():
    single, _ = train_digits.train(_options(), "unfold", "reduce")
    split, _ = train_digits.distributed(_options(), "reduce")
    torch.testing.assert_close(torch.tensor(split), torch.tensor(single), atol=0, rtol=1e-10)


def test_kfac_learns_the_digits():
    losses, accuracy = train_digits.train(_options(steps=40, batch=64), "tnc", "expand")
    assert losses[-1] < losses[0] / 2 and accuracy > 0.6
