"""Derivatives on the graph of definitions (reverse and forward mode) against torch.func.

Each case is a random 2- or 3-layer convolution network (1d-3d, groups, stride, padding incl.
``same`` and asymmetric, dilation; with relu, tanh or no function between layers) with a
quadratic loss, derived through the API (``net.derive``), compiled to the torch target and
compared in float64 with torch.func (grad, vjp, jvp) and autograd. Seeds: ``random.Random(2000 +
number)`` for the hyperparameters, ``torch.Generator().manual_seed(number)`` for the values.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from conv_reference import ReferenceAxis, random_axis
from torch.func import grad, jvp, vjp

import tnc
from tnc.cli.main import main

TOLERANCE = dict(atol=1e-9, rtol=1e-9)
FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh, None: lambda x: x}


@dataclass(frozen=True)
class Layer:
    groups: int
    per_in: int
    per_out: int
    axes: tuple[ReferenceAxis, ...]

    def kernel(self) -> tuple[int, ...]:
        return (self.groups * self.per_out, self.per_in, *(a.kernel for a in self.axes))


@dataclass(frozen=True)
class Net:
    function: str | None
    layers: tuple[Layer, ...]
    batch: int = 2

    @property
    def params(self) -> list[str]:
        return [f"W{n}" for n in range(1, len(self.layers) + 1)]

    def text(self) -> str:
        dims = range(1, len(self.layers[0].axes) + 1)
        lines = ["size N", "index n: N"]
        sizes = {f"i0_{d}": a.size for d, a in zip(dims, self.layers[0].axes)}
        for n, layer in enumerate(self.layers, start=1):
            lines.append(f"index g{n}: {layer.groups}, c{n}: {layer.per_in}, d{n}: {layer.per_out}")
            lines.append("index " + ", ".join(f"k{n}_{d}: {a.kernel}" for d, a in zip(dims, layer.axes)))
        lines.append("index " + ", ".join(f"{k}: {v}" for k, v in sizes.items()))
        lines.append(f"input X[n, (g1 c1), {', '.join(f'i0_{d}' for d in dims)}]")
        for n, layer in enumerate(self.layers, start=1):
            lines.append(f"param W{n}[(g{n} d{n}), c{n}, {', '.join(f'k{n}_{d}' for d in dims)}]")
            for d, axis in zip(dims, layer.axes):
                left, right = axis.pads()
                padding = "same" if axis.padding == "same" else f"({left}, {right})"
                lines.append(f"pattern P{n}_{d}[i{n - 1}_{d}, i{n}_{d}, k{n}_{d}] = conv(stride={axis.stride}, padding={padding}, dilation={axis.dilation})")
        previous = "X"
        for n, layer in enumerate(self.layers, start=1):
            i_in = ", ".join(f"i{n - 1}_{d}" for d in dims)
            i_out = ", ".join(f"i{n}_{d}" for d in dims)
            k = ", ".join(f"k{n}_{d}" for d in dims)
            patterns = " * ".join(f"P{n}_{d}[i{n - 1}_{d}, i{n}_{d}, k{n}_{d}]" for d in dims)
            # the previous layer's (g d) channel axis is read as this layer's (g c): a regrouping
            lines.append(f"Z{n}[n, (g{n} d{n}), {i_out}] = {previous}[n, (g{n} c{n}), {i_in}] * {patterns} * W{n}[(g{n} d{n}), c{n}, {k}]")
            previous = f"Z{n}"
            if self.function and n < len(self.layers):
                lines.append(f"A{n}[n, (g{n} d{n}), {i_out}] = {self.function}(Z{n}[n, (g{n} d{n}), {i_out}])")
                previous = f"A{n}"
        last = len(self.layers)
        out = ", ".join(f"i{last}_{d}" for d in dims)
        lines.append(f"output L[] = 0.5 * Z{last}[n, (g{last} d{last}), {out}] * Z{last}[n, (g{last} d{last}), {out}]")
        return "\n".join(lines) + "\n"

    def forward(self, X: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(self.layers[0].axes)]
        for n, (layer, W) in enumerate(zip(self.layers, weights), start=1):
            pads = [p for axis in reversed(layer.axes) for p in axis.pads()]
            stride, dilation = tuple(a.stride for a in layer.axes), tuple(a.dilation for a in layer.axes)
            X = conv(F.pad(X, pads), W, stride=stride, dilation=dilation, groups=layer.groups)
            if n < len(self.layers):
                X = FUNCTIONS[self.function](X)
        return X

    def loss(self, X: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.forward(X, *weights) ** 2).sum()

    def values(self, seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        first = self.layers[0]
        shapes = {"X": (self.batch, first.groups * first.per_in, *(a.size for a in first.axes))}
        shapes |= {f"W{n}": layer.kernel() for n, layer in enumerate(self.layers, start=1)}
        shapes["U"] = shapes["W1"]
        return {k: torch.randn(s, generator=generator, dtype=torch.float64) for k, s in shapes.items()}


def random_net(number: int) -> Net:
    rng = random.Random(2000 + number)
    dims, depth = 1 + number % 3, 2 + number % 2
    function = [None, "relu", "tanh"][number % 3 if number < 3 else (number + 1) % 3]
    layers, channels = [], None
    sizes = [rng.randint(5, 8 if dims < 3 else 6) for _ in range(dims)]
    for _ in range(depth):
        groups = rng.choice([1, 2])
        per_in = rng.choice([1, 2]) if channels is None else None
        if channels is not None:  # this layer's groups must divide the previous layer's channels
            groups = groups if channels % groups == 0 else 1
            per_in = channels // groups
        per_out = rng.choice([1, 2])
        axes = tuple(random_axis(rng, s) for s in sizes)
        layers.append(Layer(groups, per_in, per_out, axes))
        channels, sizes = groups * per_out, [a.output() for a in axes]
    return Net(function, tuple(layers))


NETS = [random_net(number) for number in range(9)]


def _call(module, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
    function = getattr(module, name)
    return function(**{p: values[p] for p in inspect.signature(function).parameters})


def test_random_nets_cover_the_options():
    axes = [a for net in NETS for layer in net.layers for a in layer.axes]
    assert {len(net.layers[0].axes) for net in NETS} == {1, 2, 3} and {len(net.layers) for net in NETS} == {2, 3}
    assert {net.function for net in NETS} == {None, "relu", "tanh"}
    assert {a.stride for a in axes} >= {1, 2} and {a.dilation for a in axes} >= {1, 2}
    assert any(a.padding == "same" for a in axes) and any(isinstance(a.padding, tuple) for a in axes)
    assert any(layer.groups > 1 for net in NETS for layer in net.layers[1:])


@pytest.mark.parametrize("number", range(len(NETS)))
def test_all_gradients_at_once(number: int):
    """net.derive([W1, W2, ...]): one program, every gradient, each equal to torch.func.grad."""
    net = NETS[number]
    derived = tnc.parse(net.text(), f"net{number}.tn").derive(net.params)
    assert derived.outputs == [f"dL_d{w}" for w in net.params]
    assert "dL_dZ1" in derived.program.definitions  # the chain rule on definitions, not expansion
    module, values = derived.to_module(), net.values(number)
    weights = [values[w] for w in net.params]
    for position, w in enumerate(net.params, start=1):
        expected = grad(net.loss, argnums=position)(values["X"], *weights)
        torch.testing.assert_close(_call(module, f"dL_d{w}", values), expected, **TOLERANCE, msg=f"{net}: {w}")
    # the nn.Module's forward returns them together, as autograd's backward computes them
    model = getattr(module, [n for n in dir(module) if n.startswith("Net")][0])().double()
    for w in net.params:
        getattr(model, w).data.copy_(values[w])
    leaves = [values[w].clone().requires_grad_(True) for w in net.params]
    net.loss(values["X"], *leaves).backward()
    for result, leaf in zip(model(values["X"]), leaves):
        torch.testing.assert_close(result, leaf.grad, **TOLERANCE)


@pytest.mark.parametrize("number", range(len(NETS)))
def test_in_file_gradients_share_one_backward_chain(number: int):
    """``output G1[...] = grad(L, W1)`` ... in the file: reverse mode on the definitions too, one
    chain of steps for every form of ``L`` (each error defined once, before the first form)."""
    net = NETS[number]
    text = net.text().replace("output L[]", "L[]")
    for n, layer in enumerate(net.layers, start=1):
        legs = ", ".join(f"k{n}_{d}" for d in range(1, len(layer.axes) + 1))
        text += f"output G{n}[(g{n} d{n}), c{n}, {legs}] = grad(L, W{n})\n"
    parsed = tnc.parse(text, f"net{number}.tn")
    steps = [name for name in parsed.program.definitions if name.startswith("dL_d")]
    assert steps[0] == f"dL_dZ{len(net.layers)}" and "dL_dZ1" in steps, steps
    printed = parsed.to_tn()
    assert printed.index("dL_dZ1[") < printed.index("output G1[") and "grad(" not in printed
    module, values = tnc.parse(printed, "again.tn").to_module(), net.values(number)
    weights = [values[w] for w in net.params]
    for position, w in enumerate(net.params, start=1):
        expected = grad(net.loss, argnums=position)(values["X"], *weights)
        torch.testing.assert_close(_call(module, f"G{position}", values), expected, **TOLERANCE, msg=f"{net}: {w}")


@pytest.mark.parametrize("number", range(len(NETS)))
def test_input_vjp_jvp_and_hvp(number: int):
    """vjp to the input, jvp of the loss along U, and the Hessian-vector product (jvp of grad)."""
    net = NETS[number]
    source = tnc.parse(net.text(), f"net{number}.tn")
    values = net.values(number)
    X, U, weights = values["X"], values["U"], [values[w] for w in net.params]
    rest = weights[1:]
    input_grad = source.derive("X").to_module()
    expected = grad(net.loss, argnums=0)(X, *weights)
    torch.testing.assert_close(_call(input_grad, "dL_dX", values), expected, **TOLERANCE)
    tangent = source.derive("W1", jvp="U")
    expected = jvp(lambda W1: net.loss(X, W1, *rest), (weights[0],), (U,))[1]
    torch.testing.assert_close(_call(tangent.to_module(), "jvp_L_W1", values), expected, **TOLERANCE)
    hvp = source.derive("W1").derive("W1", jvp="U")
    expected = jvp(lambda W1: grad(net.loss, argnums=1)(X, W1, *rest), (weights[0],), (U,))[1]
    torch.testing.assert_close(_call(hvp.to_module(), "jvp_dL_dW1_W1", values), expected, **TOLERANCE)


@pytest.mark.parametrize("number", [0, 4, 8])
def test_ggn_vector_product(number: int):
    """G u = J^T J u for the quadratic loss: the vjp of the last layer with the jvp as its seed."""
    net = NETS[number]
    last = f"Z{len(net.layers)}"
    values = net.values(number)
    X, U, weights = values["X"], values["U"], [values[w] for w in net.params]
    source = tnc.parse(net.text(), f"net{number}.tn")
    tangent = source.derive("W1", of=last, jvp="U")
    ggn = tangent.derive("W1", of=last, vjp=tangent.outputs[0])
    forward = lambda W1: net.forward(X, W1, *weights[1:])  # noqa: E731
    expected = vjp(forward, weights[0])[1](jvp(forward, (weights[0],), (U,))[1])[0]
    torch.testing.assert_close(_call(ggn.to_module(), ggn.outputs[0], values), expected, **TOLERANCE)


def test_grad_of_grad_of_a_small_net():
    """grad(grad(...)): the Hessian of a two-layer tanh net's loss with respect to W1."""
    text = NETS[2].text().replace("output L[]", "L[]") + "output H[(g1 d1), c1, k1_1, k1_2, k1_3, (g1' d1'), c1', k1_1', k1_2', k1_3'] = grad(grad(L, W1), W1)\n"
    if len(NETS[2].layers[0].axes) != 3:
        pytest.fail("NETS[2] is a 3d net")
    net, values = NETS[2], NETS[2].values(2)
    module = tnc.parse(text, "hessian.tn").to_module()
    weights = [values[w] for w in net.params]
    expected = torch.func.hessian(lambda W1: net.loss(values["X"], W1, *weights[1:]))(weights[0])
    torch.testing.assert_close(_call(module, "H", values), expected.reshape(_call(module, "H", values).shape), **TOLERANCE)


def test_single_layer_keeps_expansion():
    """One layer and its loss stay one expanded product (the old output, unchanged)."""
    text = "index n: 2, c: 2, d: 3, i: 6, k: 3\ninput X[n, c, i]\nparam W[d, c, k]\npattern P[i, o, k] = conv()\n"
    text += "Y[n, d, o] = X[n, c, i] * P[i, o, k] * W[d, c, k]\noutput L[] = 0.5 * Y[n, d, o] * Y[n, d, o]\n"
    derived = tnc.parse(text, "one.tn").derive("W")
    assert set(derived.program.definitions) == {"Y", "L", "dL_dW"}


def test_cli_wrt_list_prints_the_steps(tmp_path, capsys):
    path = tmp_path / "net.tn"
    path.write_text(NETS[1].text())
    assert main(["derive", str(path), "--wrt", "W1,W2"]) == 0
    printed = capsys.readouterr().out
    assert "\ndL_dZ2[" in printed and "\ndL_dA1[" in printed and "relu'(A1[" in printed
    assert "output dL_dW1[" in printed and "output dL_dW2[" in printed
    again = tnc.parse(printed, "again.tn").to_module()
    values, net = NETS[1].values(1), NETS[1]
    expected = grad(net.loss, argnums=2)(values["X"], *(values[w] for w in net.params))
    torch.testing.assert_close(_call(again, "dL_dW2", values), expected, **TOLERANCE)
