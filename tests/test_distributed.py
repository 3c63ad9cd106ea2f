"""Data-parallel generated code (``--shard N``) on two CPU processes with the gloo backend.

The batch of 5 is split unevenly (3 + 2 samples), so a normalisation by the local batch size
would be caught. Each rank runs the sharded module on its slice; the result must equal the
single-process result on the whole batch: the same on every rank where the batch is summed
(all-reduce) or gathered (Gram matrix), the rank's own rows where the batch leg stays open. The
weight gradient is also checked against autograd. float64, tolerance 1e-10.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

import tnc
from tnc.codegen.sharding import ShardError

ROOT = Path(__file__).resolve().parents[1]
BATCH, SPLIT = 5, (3, 2)
TOLERANCE = dict(rtol=1e-10, atol=1e-10)


def _networks() -> dict[str, tnc.Network]:
    load = lambda name: tnc.load(ROOT / "examples" / f"{name}.tn")  # noqa: E731
    return {
        "weight gradient": load("conv2d").derive("W", vjp="V"),
        "KFC": load("kfc"),
        "KFAC-reduce": load("kfac_reduce"),
        "GGN diagonal": load("ggn_diagonal"),
        "per-sample gradient norms": load("grad_norms"),
        "GGN Gram matrix": load("ggn_gram"),
        "linear steps after the sum": tnc.parse(LINEAR_AFTER_SUM, "linear.tn"),
    }


LINEAR_AFTER_SUM = """size N
index n: N, d: 6, c: 5, e: 2
input X[n, c]
input V[n, d]
input M[d, c, e]
T[d, c] = (1/N) * X[n, c] * V[n, d]
S[d, e] = T[d, c] * M[d, c, e]
output y[e] = 2 * S[d, e] + S[d, e]
"""


CASES = {  # name: how the output meets the batch
    "weight gradient": "summed",
    "KFC": "summed",
    "KFAC-reduce": "summed",
    "GGN diagonal": "summed",
    "per-sample gradient norms": "open",
    "GGN Gram matrix": "gathered",
    "linear steps after the sum": "summed",
}


def _batch_axes(network: tnc.Network, name: str) -> list[int]:
    program = network.program
    size = program.symbols["N"]
    return [p for p, axis in enumerate(program.tensors[name].axes) if program.axis_size(axis) == size]


def _inputs(network: tnc.Network, output: str, seed: int) -> dict[str, torch.Tensor]:
    program = network.program
    generator = torch.Generator().manual_seed(seed)
    values = {}
    for name in program.interface(output):
        shape = [int(program.concrete(program.axis_size(a)).subs(program.symbols["N"], BATCH)) for a in program.tensors[name].axes]
        values[name] = torch.randn(shape, generator=generator, dtype=torch.float64)
    return values


def _slice(values: dict[str, torch.Tensor], network: tnc.Network, rank: int) -> dict[str, torch.Tensor]:
    start = sum(SPLIT[:rank])
    return {
        name: _narrow(tensor, _batch_axes(network, name), start, SPLIT[rank])
        for name, tensor in values.items()
    }


def _narrow(tensor: torch.Tensor, axes: list[int], start: int, length: int) -> torch.Tensor:
    for axis in axes:
        tensor = tensor.narrow(axis, start, length)
    return tensor.contiguous()


def _module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def _worker(rank: int, world: int, folder: str) -> None:
    """One rank: run every sharded module on this rank's slices and save the results."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        jobs = torch.load(f"{folder}/jobs.pt", weights_only=False)
        results = {}
        for case, (source, output, values) in jobs.items():
            module = _module(source, "sharded")
            results[case] = getattr(module, output)(**values[rank])  # group: the whole world by default
        model = next(v for v in vars(_module(jobs["KFC"][0], "kfc")).values() if isinstance(v, type))()
        results["KFC module"] = model(**jobs["KFC"][2][rank])
        torch.save(results, f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """Every case run once on two processes; (jobs, full-batch inputs, results per rank)."""
    folder = tmp_path_factory.mktemp("distributed")
    networks, jobs, full = _networks(), {}, {}
    for number, (case, network) in enumerate(networks.items()):
        output = network.outputs[0]
        full[case] = (network, output, _inputs(network, output, seed=number))
        source = network.to_torch_source(shard="N")
        jobs[case] = (source, output, [_slice(full[case][2], network, rank) for rank in range(len(SPLIT))])
    torch.save(jobs, folder / "jobs.pt")
    mp.spawn(_worker, args=(len(SPLIT), str(folder)), nprocs=len(SPLIT), join=True)
    results = [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(len(SPLIT))]
    return full, results


@pytest.mark.parametrize("case", list(CASES))
def test_sharded_equals_whole_batch(case, distributed_run):
    full, results = distributed_run
    network, output, values = full[case]
    expected = getattr(network.to_module(), output)(**values)
    for rank, result in enumerate(r[case] for r in results):
        if CASES[case] == "open":  # the rank's own rows
            expected_rank = _narrow(expected, [0], sum(SPLIT[:rank]), SPLIT[rank])
            torch.testing.assert_close(result, expected_rank, **TOLERANCE)
        else:
            torch.testing.assert_close(result, expected, **TOLERANCE)


def test_sharded_weight_gradient_equals_autograd(distributed_run):
    """examples/conv2d.tn is F.conv2d(X, W, stride=2, padding=1, groups=2)."""
    full, results = distributed_run
    _, _, values = full["weight gradient"]
    W = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)  # the VJP does not read W
    Y = F.conv2d(values["X"], W, stride=2, padding=1, groups=2)
    (expected,) = torch.autograd.grad(Y, W, values["V"])
    for result in results:
        torch.testing.assert_close(result["weight gradient"], expected, **TOLERANCE)


def test_sharded_module_forward(distributed_run):
    full, results = distributed_run
    network, output, values = full["KFC"]
    expected = getattr(network.to_module(), output)(**values)
    for result in results:
        torch.testing.assert_close(result["KFC module"], expected, **TOLERANCE)


@pytest.mark.parametrize(
    "text, reducing",
    [
        (LINEAR_AFTER_SUM, "_eval_y"),  # T (30 entries) and S (12) stay partial sums; y has 2
        (LINEAR_AFTER_SUM.replace("e: 2", "e: 9").replace("y[e]", "y[d, e]"), "_eval_T"),  # S and y: 54 each
        (LINEAR_AFTER_SUM + "output z[d, e] = S[d, e]\n", "_eval_S"),  # S is read twice
        (LINEAR_AFTER_SUM.replace("output y[e] = 2 * S[d, e] + S[d, e]", "output y[e] = S[d, e] * S[d, e]"), "_eval_S"),
    ],
    ids=["smallest last", "first smallest", "two readers", "quadratic reader"],
)
def test_reduction_moves_to_the_smallest_linear_step(text, reducing):
    source = tnc.parse(text, "linear.tn").to_torch_source(shard="N")
    functions = {block.split("(")[0]: block for block in source.split("\ndef ")[1:]}
    assert [name for name, body in functions.items() if name.startswith("_eval") and "_all_reduce(" in body] == [reducing]


def test_single_process_sharded_code_is_plain():
    """Without torch.distributed initialised the sharded code communicates nothing."""
    network = tnc.load(ROOT / "examples" / "kfc.tn")
    values = _inputs(network, "A", seed=0)
    plain, sharded = network.to_module(), network.to_module(shard="N")
    torch.testing.assert_close(sharded.A(**values), plain.A(**values), **TOLERANCE)
    assert network.to_torch_source() == tnc.load(ROOT / "examples" / "kfc.tn").to_torch_source()
    assert "torch.distributed" not in network.to_torch_source()


@pytest.mark.parametrize(
    "text, message",
    [
        ("index n: 4, i: 3\ninput X[n, i]\noutput A[i] = X[n, i]\n", "--shard N: the file declares no size 'N'"),
        ("size N = 4\nindex n: N, i: 3\ninput X[n, i]\noutput A[i] = X[n, i]\n", "'N' is bound in the file"),
        ("size N\nindex n: N, i: 3\nparam W[n, i]\noutput A[i] = W[n, i]\n", "the param 'W' has a leg of size N"),
    ],
)
def test_bad_shard_requests(text, message):
    with pytest.raises(ShardError, match=re.escape(message)):
        tnc.parse(text, "bad.tn").to_torch_source(shard="N")
