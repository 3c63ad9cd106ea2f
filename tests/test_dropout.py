"""Tensor dropout (``sample LEG in T with keep=P``, issue #12): with keep=1 the sampled network is
the exact one; the mean over seeded draws converges to the exact result (tolerance 5 standard
errors of the mean, seeds 0..DRAWS-1) for spatial, batch and channel legs on 1d-3d convolutions
with groups, stride, padding and dilation; the kept tensors are smaller; bad requests get errors."""

from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F

import tnc
from tnc.errors import TncError

DRAWS = 300
CONV = (F.conv1d, F.conv2d, F.conv3d)


def _layer(seed: int) -> dict:
    """Random hyperparameters of a grouped convolution (1d-3d)."""
    rng = random.Random(seed)
    dim = rng.choice([1, 2, 3])
    kernel = [rng.choice([1, 2, 3]) for _ in range(dim)]
    stride = [rng.choice([1, 2]) for _ in range(dim)]
    padding = [rng.choice([0, 1]) for _ in range(dim)]
    dilation = [rng.choice([1, 2]) for _ in range(dim)]
    size = [rng.randint(5, 7) for _ in range(dim)]
    return dict(dim=dim, K=kernel, S=stride, P=padding, L=dilation, I=size, G=rng.choice([1, 2]), C=2, D=2, N=3)


def _text(layer: dict, samples: list[str]) -> str:
    axes = range(1, layer["dim"] + 1)
    i, o, k = (", ".join(f"{x}{a}" for a in axes) for x in "iok")
    lines = [
        "size N",
        f"index n: N, g: {layer['G']}, c: {layer['C']}, d: {layer['D']}, "
        + ", ".join(f"i{a}: {layer['I'][a - 1]}, k{a}: {layer['K'][a - 1]}" for a in axes),
        *(f"pattern P{a}[i{a}, o{a}, k{a}] = conv(stride={layer['S'][a - 1]}, padding={layer['P'][a - 1]}, dilation={layer['L'][a - 1]})" for a in axes),
        f"input X[n, (g c), {i}]",
        f"param W[(g d), c, {k}]",
        f"input V[n, (g d), {o}]",
        f"Y[n, (g d), {o}] = X[n, (g c), {i}] * " + " * ".join(f"P{a}[i{a}, o{a}, k{a}]" for a in axes) + f" * W[(g d), c, {k}]",
        "output GW[(g d), c, " + k + "] = vjp(Y, W, V)",
        "output GX[n, (g c), " + i + "] = vjp(Y, X, V)",
        f"output Z[n, (g d), {o}] = X[n, (g c), {i}] * " + " * ".join(f"P{a}[i{a}, o{a}, k{a}]" for a in axes) + f" * W[(g d), c, {k}]",
        *samples,
    ]
    return "\n".join(lines) + "\n"


def _tensors(layer: dict) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    G, C, D, N = layer["G"], layer["C"], layer["D"], layer["N"]
    X = torch.randn(N, G * C, *layer["I"], generator=g, dtype=torch.float64)
    W = torch.randn(G * D, C, *layer["K"], generator=g, dtype=torch.float64)
    Y = CONV[layer["dim"] - 1](X, W, stride=layer["S"], padding=layer["P"], dilation=layer["L"], groups=G)
    return dict(X=X, W=W, V=torch.randn(Y.shape, generator=g, dtype=torch.float64), Y=Y)


def _exact(layer: dict, values: dict) -> dict[str, torch.Tensor]:
    X, W = values["X"].clone().requires_grad_(), values["W"].clone().requires_grad_()
    Y = CONV[layer["dim"] - 1](X, W, stride=layer["S"], padding=layer["P"], dilation=layer["L"], groups=layer["G"])
    gX, gW = torch.autograd.grad(Y, (X, W), values["V"])
    return dict(GW=gW, GX=gX, Z=Y.detach())


def _call(module, output: str, values: dict, seed: int | None) -> torch.Tensor:
    arguments = {"GW": ("X", "V"), "GX": ("W", "V"), "Z": ("X", "W")}[output]
    return getattr(module, output)(**{a: values[a] for a in arguments}, seed=seed)


CASES = [  # (the statement, the output it estimates)
    ("sample i1 in GW with keep=0.5", "GW"),
    ("sample n in GW with keep=0.4", "GW"),
    ("sample n in GW with keep=0.5, by=X", "GW"),
    ("sample c in Z with keep=0.5", "Z"),
    ("sample k1 in Z with keep=0.6", "Z"),
    ("sample d in GX with keep=0.5", "GX"),  # inside the grouped axes (g d) of W and V
    ("sample i1 in GW with keep=0.3, min=2", "GW"),  # 2 rows surely, chosen uniformly
    ("sample n in GW with keep=0.3, by=X, min=1", "GW"),  # the largest sample surely
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("statement, output", CASES)
def test_keep_one_is_exact(statement, output, seed):
    layer = _layer(seed)
    module = tnc.parse(_text(layer, [re.sub(r"keep=[0-9.]+", "keep=1", statement)])).to_module()
    values = _tensors(layer)
    torch.testing.assert_close(_call(module, output, values, seed), _exact(layer, values)[output], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("statement, output", CASES)
def test_mean_over_draws_is_the_exact_result(statement, output, seed):
    layer = _layer(10 + seed)
    module = tnc.parse(_text(layer, [statement])).to_module()
    values = _tensors(layer)
    draws = torch.stack([_call(module, output, values, s) for s in range(DRAWS)])
    exact = _exact(layer, values)[output]
    error = (draws.mean(0) - exact).abs()
    standard_error = draws.std(0) / DRAWS**0.5
    assert (error <= 5 * standard_error + 1e-9).all(), f"largest error {float((error - 5 * standard_error).max()):.3g}"
    assert draws.std(0).max() > 0  # it did sample


def test_sampling_the_weight_gradient_leaves_the_others_exact():
    layer = _layer(3)
    module = tnc.parse(_text(layer, ["sample i1 in GW with keep=0.3"])).to_module()
    values = _tensors(layer)
    exact = _exact(layer, values)
    torch.testing.assert_close(module.GX(W=values["W"], V=values["V"]), exact["GX"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(module.Z(X=values["X"], W=values["W"]), exact["Z"], rtol=1e-10, atol=1e-10)


def _kept_counts(monkeypatch, module, values: dict, draws: int) -> list[int]:
    """How many slices each of ``draws`` seeded calls of GW keeps."""
    counts, keep = [], module._keep

    def counting(*args):
        kept, weights = keep(*args)
        counts.append(len(kept))
        return kept, weights

    monkeypatch.setattr(module, "_keep", counting)
    for seed in range(draws):
        _call(module, "GW", values, seed)
    return counts


def test_a_seed_repeats_the_draw_and_the_kept_slices_are_fewer(monkeypatch):
    layer = dict(_layer(0), I=[40] * _layer(0)["dim"])
    text = _text(layer, ["sample i1 in GW with keep=0.25"])
    source = tnc.parse(text).to_torch_source()
    assert "index_select(2, _kept_i1)" in source and "_through_rows(V, 2, _kept_i1" in source
    assert "P1_kept" not in source  # the pattern's kept rows are read by indexing V, never built
    module = tnc.parse(text).to_module()
    values = _tensors(layer)
    first, again, other = (_call(module, "GW", values, s) for s in (7, 7, 8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    counts = _kept_counts(monkeypatch, module, values, 50)
    assert abs(sum(counts) / len(counts) / 40 - 0.25) < 0.05  # 50 draws of 40 slices: sd of the mean 0.01


@pytest.mark.parametrize("by", ["", ", by=X"])
def test_a_minimum_is_always_kept(monkeypatch, by):
    layer = dict(_layer(0), N=12)
    module = tnc.parse(_text(layer, [f"sample n in GW with keep=0.1{by}, min=4"])).to_module()
    values = _tensors(layer)
    counts = _kept_counts(monkeypatch, module, values, 200)
    assert min(counts) >= 4
    assert abs(sum(counts) / len(counts) - (4 + 0.1 * 8)) < 0.3  # 200 draws: sd of the mean 0.06


BIG_BATCH = dict(_layer(0), N=40)  # two draws of 40 samples at keep 0.5 agree with chance 2**-40


def _rank_draws(rank: int, world: int, folder: str, text: str) -> None:
    """One rank: GW drawn with a seed and with torch's generator seeded alike on every rank."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        module, values = tnc.parse(text).to_module(), _tensors(BIG_BATCH)
        torch.manual_seed(0)
        draws = [_call(module, "GW", values, seed) for seed in (3, None)]
        torch.save(draws, f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_draw_independently(tmp_path):
    """Under torch.distributed rank r draws with the r-th number drawn from the seed (from a seed
    drawn from torch's generator when there is none), so two ranks keep different slices."""
    text = _text(BIG_BATCH, ["sample n in GW with keep=0.5"])
    torch.multiprocessing.spawn(_rank_draws, args=(2, str(tmp_path), text), nprocs=2, join=True)
    (seeded0, global0), (seeded1, global1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    alone = _call(tnc.parse(text).to_module(), "GW", _tensors(BIG_BATCH), 3)
    assert torch.equal(seeded0, alone)  # rank 0's seed is the seed itself
    assert not torch.equal(seeded0, seeded1) and not torch.equal(global0, global1)


@pytest.mark.parametrize(
    "statement, message",
    [
        ("sample o1 in Z with keep=0.5", "'o1' is an open leg of 'Z': sampling it would drop entries of the result"),
        ("sample q in GW with keep=0.5", "'GW' does not sum over 'q'"),
        ("sample i1 in X with keep=0.5", "'X' is not defined by an equation"),
        ("sample i1 in GW with keep=1.5", "keep must be a number in (0, 1], not 3/2"),
        ("sample i1 in GW with keep=0.5, by=W", "by=W: 'W' carries no leg 'i1' in the definition of 'GW'"),
        ("sample i1 in GW with p=0.5", "unknown argument 'p' of sample; it takes keep, by, min"),
        ("sample i1 in GW with keep=0.5, min=0", "min must be a positive integer, the fewest slices kept, not 0"),
        ("sample i1 in GW with keep=0.5, min=1.5", "min must be a positive integer, the fewest slices kept, not 3/2"),
        ("sample i1 of GW with keep=0.5", "expected 'in' here: sample LEG in TENSOR with keep=P"),
    ],
)
def test_bad_samples(statement, message):
    with pytest.raises(TncError, match="error: " + message.replace("(", r"\(").replace(")", r"\)")):
        tnc.parse(_text(_layer(1), [statement]), "t.tn")


def test_einsum_target_refuses_sampled_legs():
    with pytest.raises(TncError, match="drawn when the code runs: compile it with --target torch"):
        tnc.parse(_text(_layer(1), ["sample i1 in GW with keep=0.5"])).to_einsum()


def test_the_file_keeps_its_samples():
    net = tnc.parse(_text(_layer(1), ["sample n in GW with keep=0.5, by=X"]))
    assert net.to_tn().endswith("sample n in GW with keep=0.5, by=X\n")
    assert net.simplify().to_tn().endswith("sample n in GW with keep=0.5, by=X\n")


def _layer_module(seed: int, statement: str, **changes):
    layer = dict(_layer(seed), **changes)
    text = _text(layer, [statement]).replace("\nY[", "\noutput Y[")
    return layer, tnc.parse(text).to_module()


@pytest.mark.parametrize("statement", ["sample i1 in GW with keep=0.5", "sample n in GW with keep=0.5, by=X"])
def test_sampled_layer_is_exact_forward_and_unbiased_backward(statement):
    layer, module = _layer_module(11, statement)
    values = _tensors(layer)
    exact = _exact(layer, values)
    gradients = []
    for seed in range(DRAWS):
        X, W = values["X"].clone().requires_grad_(), values["W"].clone().requires_grad_()
        Y = module.SampledGW.apply(X, W, seed)
        torch.testing.assert_close(Y, values["Y"], rtol=1e-10, atol=1e-10)
        Y.backward(values["V"])
        torch.testing.assert_close(X.grad, exact["GX"], rtol=1e-10, atol=1e-10)  # the input VJP is exact
        gradients.append(W.grad)
    draws = torch.stack(gradients)
    assert ((draws.mean(0) - exact["GW"]).abs() <= 5 * draws.std(0) / DRAWS**0.5 + 1e-9).all()


def test_sampled_layer_saves_only_the_kept_rows():
    """The tensors saved for backward hold the kept rows of X (about keep of it), not X."""
    layer, module = _layer_module(0, "sample i1 in GW with keep=0.25", I=[40] * _layer(0)["dim"])
    values = _tensors(layer)
    X, W = values["X"].clone().requires_grad_(), values["W"].clone().requires_grad_()
    fractions = []
    for seed in range(40):
        Y = module.SampledGW.apply(X, W, seed)
        saved = Y.grad_fn.saved_tensors
        assert not any(t.data_ptr() == X.data_ptr() for t in saved)
        rows = [t for t in saved if t.dim() == X.dim() and t.shape[:2] == X.shape[:2] and t.shape[3:] == X.shape[3:]]
        assert len(rows) == 1  # X's kept rows: [N, C, kept, ...]
        fractions.append(rows[0].numel() / X.numel())
    assert abs(sum(fractions) / len(fractions) - 0.25) < 0.05  # 40 draws of 40 rows: sd of the mean 0.01


def test_cost_prices_the_sampled_code_at_the_expected_count():
    """tnc cost shows what the generated code costs over the kept slices (its comment's formula),
    valued at the expected number kept: min surely, keep of the rest."""
    from tnc.cost.report import cost_text

    layer = dict(_layer(2), I=[20] * _layer(2)["dim"])
    net = tnc.parse(_text(layer, ["sample i1 in GW with keep=0.25, min=2"]))
    comment = re.search(r"def _eval_GW\(.*?term 1 costs (.*?) FLOPs", net.to_torch_source(), re.S).group(1)
    report = cost_text(net.program)
    assert "sampled: i1 (size 20) kept with keep=0.25, min=2: kept_i1 = 6.5 expected" in report
    assert re.search(r"FLOPs: +" + re.escape(comment) + r"  \(= [0-9,]+ at .*kept_i1 expected\)", report)


def test_sampled_layer_without_other_gradients():
    """A file with only the forward tensor and its sampled weight gradient: nothing but the
    draw is saved, X gets no gradient."""
    layer = _layer(4)
    text = _text(layer, ["sample i1 in GW with keep=0.5"]).replace("\nY[", "\noutput Y[")
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("output GX", "output Z")))
    module, values = tnc.parse(text).to_module(), _tensors(layer)
    X, W = values["X"].clone().requires_grad_(), values["W"].clone().requires_grad_()
    Y = module.SampledGW.apply(X, W, 0)
    Y.backward(values["V"])
    torch.testing.assert_close(Y, values["Y"], rtol=1e-10, atol=1e-10)
    assert X.grad is None and W.grad.shape == W.shape


def test_sampled_layer_module_trains_like_a_conv():
    """Sampled<G>Layer holds W as a parameter: forward is the convolution, X's gradient exact,
    W's the sampled one (unbiased over seeds, 5 standard errors), reproducible per seed."""
    layer, module = _layer_module(12, "sample i1 in GW with keep=0.5")
    values = _tensors(layer)
    exact = _exact(layer, values)
    conv = module.SampledGWLayer().double()
    assert [name for name, _ in conv.named_parameters()] == ["W"]
    with torch.no_grad():
        conv.W.copy_(values["W"])
    gradients = []
    for seed in [*range(DRAWS), 0]:
        X = values["X"].clone().requires_grad_()
        conv.zero_grad()
        Y = conv(X, seed=seed)
        torch.testing.assert_close(Y, values["Y"], rtol=1e-10, atol=1e-10)
        Y.backward(values["V"])
        torch.testing.assert_close(X.grad, exact["GX"], rtol=1e-10, atol=1e-10)
        gradients.append(conv.W.grad.clone())
    assert torch.equal(gradients[0], gradients[-1])
    draws = torch.stack(gradients[:-1])
    assert ((draws.mean(0) - exact["GW"]).abs() <= 5 * draws.std(0) / DRAWS**0.5 + 1e-9).all()


@pytest.mark.parametrize(
    "I, K, stride, left, right, dilation",
    [(9, 3, 1, 1, 1, 1), (9, 3, 2, 1, 1, 1), (10, 3, 2, 0, 1, 2), (8, 2, 3, 2, 0, 1), (7, 4, 1, 3, 0, 2), (5, 1, 2, 0, 0, 1)],
)
def test_reading_through_kept_rows_is_the_pattern_contraction(I, K, stride, left, right, dilation):
    """sum_o P[rows, o, k] * D[a, o, b] == _through_rows(D, 1, rows, ...) for a direct P."""
    module = tnc.parse(_text(_layer(0), ["sample i1 in GW with keep=0.5"])).to_module()
    O = (I + left + right - dilation * (K - 1) - 1) // stride + 1
    i, o, k = torch.arange(I)[:, None, None], torch.arange(O)[None, :, None], torch.arange(K)[None, None, :]
    pattern = (i == stride * o + dilation * k - left).double()
    rows = torch.tensor(sorted(random.Random(I * K).sample(range(I), I // 2 + 1)))
    D = torch.randn(2, O, 3, dtype=torch.float64)
    expected = torch.einsum("jok,aob->ajkb", pattern[rows], D)
    torch.testing.assert_close(module._through_rows(D, 1, rows, O, K, stride, left, dilation), expected, rtol=0, atol=0)


MODE_PADDED = """size N
index n: N, c: 2, d: 3, i1: 7, i2: 6, k1: 3, k2: 3
pattern P1[i1, o1, k1] = conv(padding=2, padding_mode=reflect)
pattern P2[i2, o2, k2] = conv(padding=1, padding_mode=circular)
input X[n, c, i1, i2]
param W[d, c, k1, k2]
input V[n, d, o1, o2]
Y[n, d, o1, o2] = X[n, c, i1, i2] * P1[i1, o1, k1] * P2[i2, o2, k2] * W[d, c, k1, k2]
output G[d, c, k1, k2] = vjp(Y, W, V)
"""


@pytest.mark.parametrize("leg", ["i1", "i2"])
def test_sampling_a_mode_padded_pattern(leg):
    """A reflect/circular pattern reads some inputs twice, so its kept rows are taken, never
    inverted (no _through_rows); keep=1 equals autograd through F.pad(mode)."""
    source = tnc.parse(MODE_PADDED + f"sample {leg} in G with keep=0.5\n").to_torch_source()
    assert "_through_rows(V" not in source
    module = tnc.parse(MODE_PADDED + f"sample {leg} in G with keep=1\n").to_module()
    g = torch.Generator().manual_seed(5)
    X, W = torch.randn(4, 2, 7, 6, generator=g, dtype=torch.float64), torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    W.requires_grad_()
    padded = F.pad(F.pad(X, (0, 0, 2, 2), mode="reflect"), (1, 1, 0, 0), mode="circular")
    Y = F.conv2d(padded, W)
    V = torch.randn(Y.shape, generator=g, dtype=torch.float64)
    (expected,) = torch.autograd.grad(Y, W, V)
    torch.testing.assert_close(module.G(X=X, V=V, seed=0), expected, rtol=1e-10, atol=1e-10)
