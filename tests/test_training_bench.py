"""The second-order training benchmark (benchmarks/training.py): its networks have the layer
configurations of shared/reference/cnn-layers.md, and its KFAC with tnc factors takes the same
steps as with unfold-based factors."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from benchmarks.layers import LAYERS
from benchmarks.training import all_cnn_c, resnet18, trainer

ALL_CNN_C = [  # rows 6-14: C_in, C_out, K, S, P
    (3, 96, 3, 1, 1), (96, 96, 3, 1, 1), (96, 96, 3, 2, 1), (96, 192, 3, 1, 1), (192, 192, 3, 1, 1),
    (192, 192, 3, 2, 1), (192, 192, 3, 1, 0), (192, 192, 1, 1, 0), (192, 100, 1, 1, 0),
]  # fmt: skip


def _convs(model: nn.Module) -> dict[str, tuple]:
    return {
        name: (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
        for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
    }


def test_all_cnn_c_has_its_layers():
    assert list(_convs(all_cnn_c()).values()) == ALL_CNN_C


def test_resnet18_has_its_layers():
    renamed = {}  # torchvision's module names: Sequential index 4 + 2*stage + block is layer<stage+1>.<block>
    for name, config in _convs(resnet18()).items():
        head, _, tail = name.partition(".")
        renamed["conv1" if head == "0" else f"layer{(int(head) - 4) // 2 + 1}.{(int(head) - 4) % 2}.{tail}"] = config
    rows = [layer for layer in LAYERS if layer.net == "ResNet18" and layer.spelling == "standard"]
    assert len(renamed) == 20 and rows
    for layer in rows:
        assert renamed[layer.module] == (layer.c_in, layer.c_out, layer.kernel[0], layer.stride[0], layer.padding[0])


@pytest.mark.parametrize("network, kind", [("All-CNN-C", "KFAC-reduce"), ("ResNet18", "KFC")])
def test_tnc_and_unfold_optimizers_take_the_same_steps(network, kind):
    args = argparse.Namespace(width=0.125, batch=3, inverse_every=2)
    results = []
    for factors in ("unfold", "tnc"):
        steps, _, model = trainer(network, f"{kind} {factors}", args)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        steps()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]) - before)
    assert results[0].abs().max() > 1e-5  # the steps moved the parameters
    torch.testing.assert_close(results[1], results[0], rtol=1e-3, atol=1e-7)
