"""The benchmark's layer set: real 2d convolutions of six CNNs, from shared/reference/cnn-layers.md.

Every layer keeps its real channel counts, kernel, stride, padding, groups and input size (the
``id`` is the row of cnn-layers.md). ``kind`` is the class the benchmark reports by:

- ``general``: none of the structured cases below;
- ``dense``: kernel = stride, no padding (1x1 stride 1 included; ConvNeXt's patchify layers);
- ``down``: stride > kernel, no padding (ResNet's 1x1 stride-2 shortcuts);
- ``grouped``: groups > 1 (ResNeXt's 32 groups);
- ``depthwise``: groups = input channels (ConvNeXt, MobileNetV2);
- ``1xk``: a kernel that is 1 along one axis (InceptionV3's factorised 1x7 / 7x1 / 1x3).

``spelling`` says how the ``.tn`` program writes the layer (benchmarks/networks.py): ``standard``
with the channels as ``(g c)`` / ``(g d)`` (C = 1 for depthwise layers), or, for depthwise layers
also ``torch``, PyTorch's own layout ``X[n, c, ...]``, ``W[c, one, k1, k2]`` with a size-1 leg.
"""

from __future__ import annotations

from dataclasses import dataclass


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class Layer:
    id: int  # the row of cnn-layers.md
    net: str
    module: str
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    size: tuple[int, int]  # input H, W
    kind: str
    spelling: str = "standard"

    @property
    def name(self) -> str:
        return f"{self.net}.{self.module}" + ("" if self.spelling == "standard" else f" [{self.spelling} layout]")

    @property
    def short(self) -> str:
        """A short label for tables and plots."""
        return f"{self.id}:{self.net}"

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple((i + 2 * p - k) // s + 1 for i, k, s, p in zip(self.size, self.kernel, self.stride, self.padding))

    def describe(self) -> str:
        k = "x".join(map(str, self.kernel))
        s = "x".join(map(str, self.stride)) if self.stride[0] != self.stride[1] else str(self.stride[0])
        p = "x".join(map(str, self.padding)) if self.padding[0] != self.padding[1] else str(self.padding[0])
        h = "x".join(map(str, self.size)) if self.size[0] != self.size[1] else str(self.size[0])
        o = "x".join(map(str, self.out_size)) if self.out_size[0] != self.out_size[1] else str(self.out_size[0])
        g = f" G{self.groups}" if self.groups > 1 else ""
        return f"{self.c_in}->{self.c_out} K{k} S{s} P{p}{g} {h}->{o}"

    def scaled(self, factor: float) -> "Layer":
        """The same layer on an input whose spatial size is scaled (for --quick runs only)."""
        if factor == 1:
            return self
        minimum = [max(k, s) for k, s in zip(self.kernel, self.stride)]
        size = tuple(max(m, int(round(i * factor))) for i, m in zip(self.size, minimum))
        if self.kind in ("dense", "down"):  # keep the size divisible by the stride
            size = tuple(max(s, (i // s) * s) for i, s in zip(size, self.stride))
        return Layer(self.id, self.net, self.module, self.c_in, self.c_out, self.kernel, self.stride, self.padding, self.groups, size, self.kind, self.spelling)


def _layer(id, net, module, c_in, c_out, kernel, stride, padding, groups, size, kind, spelling="standard") -> Layer:
    return Layer(id, net, module, c_in, c_out, _pair(kernel), _pair(stride), _pair(padding), groups, _pair(size), kind, spelling)


# id, net, module, C_in, C_out, K, S, P, G, H=W in, class (the rows of cnn-layers.md)
LAYERS: list[Layer] = [
    # ResNet18
    _layer(20, "ResNet18", "conv1", 3, 64, 7, 2, 3, 1, 224, "general"),
    _layer(21, "ResNet18", "layer1.0.conv1", 64, 64, 3, 1, 1, 1, 56, "general"),
    _layer(24, "ResNet18", "layer2.0.downsample.0", 64, 128, 1, 2, 0, 1, 56, "down"),
    _layer(25, "ResNet18", "layer3.0.conv1", 128, 256, 3, 2, 1, 1, 28, "general"),
    _layer(29, "ResNet18", "layer4.0.conv2", 512, 512, 3, 1, 1, 1, 7, "general"),
    # AlexNet
    _layer(15, "AlexNet", "features.0", 3, 64, 11, 4, 2, 1, 224, "general"),
    _layer(16, "AlexNet", "features.3", 64, 192, 5, 1, 2, 1, 27, "general"),
    _layer(18, "AlexNet", "features.8", 384, 256, 3, 1, 1, 1, 13, "general"),
    # ConvNeXt-base
    _layer(50, "ConvNeXt", "features.0.0", 3, 128, 4, 4, 0, 1, 224, "dense"),
    _layer(51, "ConvNeXt", "features.1.0.block.0", 128, 128, 7, 1, 3, 128, 56, "depthwise"),
    _layer(52, "ConvNeXt", "features.2.1", 128, 256, 2, 2, 0, 1, 56, "dense"),
    _layer(55, "ConvNeXt", "features.5.0.block.0", 512, 512, 7, 1, 3, 512, 14, "depthwise"),
    _layer(51, "ConvNeXt", "features.1.0.block.0", 128, 128, 7, 1, 3, 128, 56, "depthwise", "torch"),
    _layer(55, "ConvNeXt", "features.5.0.block.0", 512, 512, 7, 1, 3, 512, 14, "depthwise", "torch"),
    # MobileNetV2
    _layer(101, "MobileNetV2", "features.0.0", 3, 32, 3, 2, 1, 1, 224, "general"),
    _layer(102, "MobileNetV2", "features.1.conv.0.0", 32, 32, 3, 1, 1, 32, 112, "depthwise"),
    _layer(104, "MobileNetV2", "features.2.conv.0.0", 16, 96, 1, 1, 0, 1, 112, "dense"),
    _layer(110, "MobileNetV2", "features.4.conv.1.0", 144, 144, 3, 2, 1, 144, 56, "depthwise"),
    _layer(110, "MobileNetV2", "features.4.conv.1.0", 144, 144, 3, 2, 1, 144, 56, "depthwise", "torch"),
    _layer(130, "MobileNetV2", "features.18.0", 320, 1280, 1, 1, 0, 1, 7, "dense"),
    # InceptionV3
    _layer(58, "InceptionV3", "Conv2d_1a_3x3", 3, 32, 3, 2, 0, 1, 299, "general"),
    _layer(73, "InceptionV3", "Mixed_6a.branch3x3", 288, 384, 3, 2, 0, 1, 35, "general"),
    _layer(75, "InceptionV3", "Mixed_6b.branch1x1", 768, 192, 1, 1, 0, 1, 17, "dense"),
    _layer(77, "InceptionV3", "Mixed_6b.branch7x7_2", 128, 128, (1, 7), 1, (0, 3), 1, 17, "1xk"),
    _layer(78, "InceptionV3", "Mixed_6b.branch7x7_3", 128, 192, (7, 1), 1, (3, 0), 1, 17, "1xk"),
    _layer(92, "InceptionV3", "Mixed_7b.branch3x3_2a", 384, 384, (1, 3), 1, (0, 1), 1, 8, "1xk"),
    # ResNeXt101_32x8d
    _layer(33, "ResNeXt", "layer1.0.conv2", 256, 256, 3, 1, 1, 32, 56, "grouped"),
    _layer(41, "ResNeXt", "layer3.0.conv2", 1024, 1024, 3, 2, 1, 32, 28, "grouped"),
    _layer(42, "ResNeXt", "layer3.0.conv3", 1024, 1024, 1, 1, 0, 1, 14, "dense"),
    _layer(43, "ResNeXt", "layer3.0.downsample.0", 512, 1024, 1, 2, 0, 1, 28, "down"),
    _layer(44, "ResNeXt", "layer3.1.conv2", 1024, 1024, 3, 1, 1, 32, 14, "grouped"),
]


def select(spec: str | None) -> list[Layer]:
    """``--layers``: comma-separated ids, net names or classes (``20,ResNeXt,depthwise``); all by default."""
    if not spec:
        return list(LAYERS)
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    chosen = []
    for layer in LAYERS:
        for w in wanted:
            if w == str(layer.id) or w.lower() == layer.net.lower() or w.lower() == layer.kind.lower():
                chosen.append(layer)
                break
    unknown = [w for w in wanted if not any(w == str(l.id) or w.lower() in (l.net.lower(), l.kind.lower()) for l in LAYERS)]
    if unknown:
        raise SystemExit(f"--layers: no layer matches {', '.join(unknown)} (ids: {', '.join(str(l.id) for l in LAYERS)})")
    return chosen
