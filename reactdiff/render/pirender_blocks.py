"""PIRender's building blocks, with the module names and shapes of its released generator checkpoints (so their
state dicts load strictly). Every nonlinearity is LeakyReLU(0.1) unless noted; spectral norm is off at inference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def act() -> nn.Module:
    return nn.LeakyReLU(0.1)


class ADAIN(nn.Module):
    """Instance norm modulated by an MLP of the motion descriptor: norm(x) * (1 + gamma) + beta."""

    def __init__(self, channels: int, feature_nc: int = 256, hidden: int = 128) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Linear(feature_nc, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        h = self.mlp_shared(feature.reshape(feature.shape[0], -1))
        gamma, beta = self.mlp_gamma(h)[..., None, None], self.mlp_beta(h)[..., None, None]
        return self.param_free_norm(x) * (1 + gamma) + beta


class LayerNorm2d(nn.Module):
    """Layer norm over (C, H, W) of each sample, with a per-channel affine map stored as (C, 1, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape))


class ADAINEncoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, feature_nc: int) -> None:
        super().__init__()
        self.conv_0 = nn.Conv2d(cin, cout, 4, 2, 1)
        self.conv_1 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.norm_0, self.norm_1 = ADAIN(cin, feature_nc), ADAIN(cout, feature_nc)
        self.actvn = act()

    def forward(self, x, z):
        x = self.conv_0(self.actvn(self.norm_0(x, z)))
        return self.conv_1(self.actvn(self.norm_1(x, z)))


class ADAINDecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int, feature_nc: int) -> None:
        super().__init__()
        self.conv_0 = nn.Conv2d(cin, hidden, 3, 1, 1)
        self.conv_1 = nn.ConvTranspose2d(hidden, cout, 3, 2, 1, output_padding=1)
        self.conv_s = nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)
        self.norm_0, self.norm_1 = ADAIN(cin, feature_nc), ADAIN(hidden, feature_nc)
        self.norm_s = ADAIN(cin, feature_nc)
        self.actvn = act()

    def forward(self, x, z):
        shortcut = self.conv_s(self.actvn(self.norm_s(x, z)))
        dx = self.conv_0(self.actvn(self.norm_0(x, z)))
        return shortcut + self.conv_1(self.actvn(self.norm_1(dx, z)))


class ADAINEncoder(nn.Module):
    def __init__(self, image_nc: int, feature_nc: int, ngf: int, max_nc: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.input_layer = nn.Conv2d(image_nc, ngf, 7, 1, 3)
        for i in range(layers):
            self.add_module(f"encoder{i}", ADAINEncoderBlock(min(ngf * 2 ** i, max_nc), min(ngf * 2 ** (i + 1), max_nc),
                                                             feature_nc))

    def forward(self, x, z) -> list[torch.Tensor]:
        out = [self.input_layer(x)]
        for i in range(self.layers):
            out.append(getattr(self, f"encoder{i}")(out[-1], z))
        return out


class ADAINDecoder(nn.Module):
    """Up from the deepest encoder map, concatenating the encoder's maps on the way (skip connections)."""

    def __init__(self, feature_nc: int, ngf: int, max_nc: int, encoder_layers: int, decoder_layers: int) -> None:
        super().__init__()
        self.levels = list(range(encoder_layers - decoder_layers, encoder_layers))[::-1]
        for i in self.levels:
            cin = min(ngf * 2 ** (i + 1), max_nc) * (1 if i == encoder_layers - 1 else 2)
            cout = min(ngf * 2 ** i, max_nc)
            self.add_module(f"decoder{i}", ADAINDecoderBlock(cin, cout, cout, feature_nc))
        self.output_nc = cout * 2

    def forward(self, maps: list[torch.Tensor], z) -> torch.Tensor:
        maps = list(maps)
        out = maps.pop()
        for i in self.levels:
            out = torch.cat([getattr(self, f"decoder{i}")(out, z), maps.pop()], 1)
        return out


class ADAINHourglass(nn.Module):
    def __init__(self, image_nc: int, feature_nc: int, ngf: int, max_nc: int, encoder_layers: int,
                 decoder_layers: int) -> None:
        super().__init__()
        self.encoder = ADAINEncoder(image_nc, feature_nc, ngf, max_nc, encoder_layers)
        self.decoder = ADAINDecoder(feature_nc, ngf, max_nc, encoder_layers, decoder_layers)
        self.output_nc = self.decoder.output_nc

    def forward(self, x, z):
        return self.decoder(self.encoder(x, z), z)


class Sequential2d(nn.Module):
    """Blocks whose layers live in a `model` Sequential (the checkpoint's `<block>.model.<i>` names)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UpBlock2d(Sequential2d):
    def forward(self, x):
        return self.model(F.interpolate(x, scale_factor=2))


class FineEncoder(nn.Module):
    def __init__(self, image_nc: int, ngf: int, max_nc: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.first = Sequential2d(nn.Conv2d(image_nc, ngf, 7, 1, 3), LayerNorm2d(ngf), act())
        for i in range(layers):
            cin, cout = min(ngf * 2 ** i, max_nc), min(ngf * 2 ** (i + 1), max_nc)
            self.add_module(f"down{i}", Sequential2d(nn.Conv2d(cin, cout, 3, 1, 1), LayerNorm2d(cout), act(),
                                                     nn.AvgPool2d(2)))

    def forward(self, x) -> list[torch.Tensor]:
        out = [self.first(x)]
        for i in range(self.layers):
            out.append(getattr(self, f"down{i}")(out[-1]))
        return out


class FineADAINResBlock2d(nn.Module):
    def __init__(self, channels: int, feature_nc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1, self.norm2 = ADAIN(channels, feature_nc), ADAIN(channels, feature_nc)
        self.actvn = act()

    def forward(self, x, z):
        # as released: the first branch's result is overwritten, so conv1/norm1 do not affect the output (their
        # weights are in the checkpoint, and kept here so that it loads strictly)
        return self.norm2(self.conv2(x), z) + x


class FineADAINResBlocks(nn.Module):
    def __init__(self, blocks: int, channels: int, feature_nc: int) -> None:
        super().__init__()
        self.blocks = blocks
        for i in range(blocks):
            self.add_module(f"res{i}", FineADAINResBlock2d(channels, feature_nc))

    def forward(self, x, z):
        for i in range(self.blocks):
            x = getattr(self, f"res{i}")(x, z)
        return x


class FineDecoder(nn.Module):
    def __init__(self, image_nc: int, feature_nc: int, ngf: int, max_nc: int, layers: int, blocks: int) -> None:
        super().__init__()
        self.levels = list(range(layers))[::-1]
        for i in self.levels:
            cin, cout = min(ngf * 2 ** (i + 1), max_nc), min(ngf * 2 ** i, max_nc)
            self.add_module(f"up{i}", UpBlock2d(nn.Conv2d(cin, cout, 3, 1, 1), LayerNorm2d(cout), act()))
            self.add_module(f"res{i}", FineADAINResBlocks(blocks, cin, feature_nc))
            self.add_module(f"jump{i}", Sequential2d(nn.Conv2d(cout, cout, 3, 1, 1), LayerNorm2d(cout), act()))
        self.final = Sequential2d(nn.Conv2d(ngf, image_nc, 7, 1, 3), nn.Tanh())

    def forward(self, maps: list[torch.Tensor], z) -> torch.Tensor:
        maps = list(maps)
        out = maps.pop()
        for i in self.levels:
            out = getattr(self, f"up{i}")(getattr(self, f"res{i}")(out, z)) + getattr(self, f"jump{i}")(maps.pop())
        return self.final(out)
