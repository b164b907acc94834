"""PIRender (Ren et al., ICCV 2021) as the REACT challenge retrained it for FaceVerse: photoreal frames of a listener
from their reference image and 58-d coefficient windows.

    driving (B, 58, 27)  --mapping_net.pre (1x1 conv, 58 -> 73)--> the original 73-channel motion input
                         --mapping_net (temporal convs, pooled)--> descriptor (B, 256)
    reference (B, 3, S, S) in [-1, 1] --warpping_net (ADAIN hourglass -> flow field)--> warped reference
    [reference | warped] --editing_net (encoder, ADAIN res-blocks, decoder)--> fake_image (B, 3, S, S), tanh

Frame t is driven by the coefficients of frames t-13..t+13 (clamped at the clip's ends). The reference is the
listener's first video frame (the shards' `ref.png`), resized to 256 and centre-cropped to 224 as the REACT code does.
Checkpoints: the generator's state dict, bare or under `net_G_ema` / `net_G` / `state_dict` (DataParallel's
`module.` prefixes removed), loaded strictly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pirender_blocks import ADAINHourglass, FineDecoder, FineEncoder, LayerNorm2d, act

SEMANTIC_RADIUS = 13  # 27-frame windows
COEFF_NC, FACEVERSE_NC, DESCRIPTOR_NC = 73, 58, 256
CHECKPOINT_KEYS = ("net_G_ema", "net_G", "state_dict")


class MappingNet(nn.Module):
    def __init__(self, in_nc: int | None = FACEVERSE_NC, coeff_nc: int = COEFF_NC, descriptor_nc: int = DESCRIPTOR_NC,
                 layers: int = 3) -> None:
        super().__init__()
        self.layers = layers
        if in_nc is not None:  # the REACT retraining's learned map from FaceVerse to the original input width
            self.pre = nn.Conv1d(in_nc, coeff_nc, 1)
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, 7))
        for i in range(layers):
            self.add_module(f"encoder{i}", nn.Sequential(act(), nn.Conv1d(descriptor_nc, descriptor_nc, 3, dilation=3)))
        self.pooling = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "pre"):
            x = self.pre(x)
        out = self.first(x)
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        return self.pooling(out)


def flow_to_deformation(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) flow in pixels (x first) -> (B, h, w, 2) sampling grid: the identity grid (corner pixels at -1 and
    1) plus the normalised flow."""
    b, _, h, w = flow.shape
    norm = 2 * torch.cat([flow[:, :1] / (w - 1), flow[:, 1:] / (h - 1)], 1)
    ys = 2 * torch.arange(h, dtype=flow.dtype, device=flow.device) / (h - 1) - 1
    xs = 2 * torch.arange(w, dtype=flow.dtype, device=flow.device) / (w - 1) - 1
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], -1)
    return grid[None] + norm.permute(0, 2, 3, 1)


def warp(source: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Resample `source` at `deformation` (upsampled to the source's size first), as the released code does with the
    grid_sample defaults of its torch (bilinear, zero padding, align_corners False)."""
    h, w = source.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(source, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)


class WarpingNet(nn.Module):
    def __init__(self, image_nc=3, descriptor_nc=DESCRIPTOR_NC, base_nc=32, max_nc=256, encoder_layer=5,
                 decoder_layer=3) -> None:
        super().__init__()
        self.hourglass = ADAINHourglass(image_nc, descriptor_nc, base_nc, max_nc, encoder_layer, decoder_layer)
        nc = self.hourglass.output_nc
        self.flow_out = nn.Sequential(LayerNorm2d(nc), act(), nn.Conv2d(nc, 2, 7, 1, 3))
        self.pool = nn.AdaptiveAvgPool2d(1)  # in the released module (unused), kept for its structure

    def forward(self, image, descriptor) -> dict:
        flow = self.flow_out(self.hourglass(image, descriptor))
        return {"flow_field": flow, "warp_image": warp(image, flow_to_deformation(flow))}


class EditingNet(nn.Module):
    def __init__(self, image_nc=3, descriptor_nc=DESCRIPTOR_NC, layer=3, base_nc=64, max_nc=256,
                 num_res_blocks=2) -> None:
        super().__init__()
        self.encoder = FineEncoder(image_nc * 2, base_nc, max_nc, layer)
        self.decoder = FineDecoder(image_nc, descriptor_nc, base_nc, max_nc, layer, num_res_blocks)

    def forward(self, image, warped, descriptor):
        return self.decoder(self.encoder(torch.cat([image, warped], 1)), descriptor)


class FaceGenerator(nn.Module):
    """The released generator (config face.yaml); `in_nc=None` builds the original 73-channel PIRender."""

    def __init__(self, in_nc: int | None = FACEVERSE_NC) -> None:
        super().__init__()
        self.mapping_net = MappingNet(in_nc)
        self.warpping_net = WarpingNet()  # sic: the checkpoint's name
        self.editing_net = EditingNet()

    def forward(self, image, driving, stage: str | None = None) -> dict:
        descriptor = self.mapping_net(driving)
        out = self.warpping_net(image, descriptor)
        if stage != "warp":
            out["fake_image"] = self.editing_net(image, out["warp_image"], descriptor)
        return out


def load_generator(path: str | Path, map_location="cpu") -> FaceGenerator:
    """A FaceGenerator with a checkpoint's weights (strict: every key, every shape)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PIRender checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable torch checkpoint: {exc}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a state dict (or a dict holding one); found {type(ckpt).__name__}")
    state = next((ckpt[k] for k in CHECKPOINT_KEYS if isinstance(ckpt.get(k), dict)), ckpt)
    state = {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}
    if not any(k.startswith("mapping_net.") for k in state):
        raise ValueError(f"{path}: no mapping_net.* weights: not a PIRender generator (looked in "
                         f"{', '.join(CHECKPOINT_KEYS)} and the top level)")
    if "mapping_net.pre.weight" not in state:
        raise ValueError(f"{path}: the generator has no mapping_net.pre (58 -> 73): it is the original PIRender, "
                         f"driven by 73-d BFM coefficients; FaceVerse reactions need the REACT-retrained checkpoint")
    gen = FaceGenerator(state["mapping_net.pre.weight"].shape[1])
    own = gen.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: does not match the PIRender generator: {len(missing)} missing "
                         f"{missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, wrong shapes {wrong[:4]}")
    gen.load_state_dict(state)
    return gen.eval()


def driving_windows(coeffs: torch.Tensor, radius: int = SEMANTIC_RADIUS) -> torch.Tensor:
    """(T, C) -> (T, C, 2 * radius + 1): frame t's window t-radius..t+radius, indices clamped to the clip."""
    t = coeffs.shape[0]
    idx = (torch.arange(t, device=coeffs.device)[:, None] + torch.arange(-radius, radius + 1, device=coeffs.device)
           ).clamp(0, t - 1)
    return coeffs[idx].permute(0, 2, 1)


def reference_tensor(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) in [-1, 1]: shorter side resized to size * 256 / 224, centre crop."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    scale = size * 256 / 224 / min(img.size)
    img = img.resize((max(size, round(img.size[0] * scale)), max(size, round(img.size[1] * scale))), Image.BILINEAR)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 127.5 - 1
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


class PIRenderer:
    """Photoreal frames of (T, 58) raw coefficient sequences, `chunk` frames per generator call."""

    def __init__(self, generator: FaceGenerator, size: int = 224, device="cpu", chunk: int = 16) -> None:
        if size % 32:
            raise ValueError(f"PIRender frames must be a multiple of 32 pixels (5 halvings); got {size}")
        self.device = torch.device(device)
        self.gen, self.size, self.chunk = generator.to(self.device).eval(), size, chunk

    @torch.no_grad()
    def frames(self, coeffs, reference: np.ndarray, frames: int | None = None) -> Iterator[np.ndarray]:
        """The first `frames` frames (default all); their windows still reach past that cut into `coeffs`."""
        coeffs = torch.as_tensor(np.asarray(coeffs, np.float32), device=self.device)
        if coeffs.ndim != 2 or coeffs.shape[1] != FACEVERSE_NC or not bool(torch.isfinite(coeffs).all()):
            raise ValueError(f"expected a finite (frames, {FACEVERSE_NC}) FaceVerse sequence; "
                             f"got {tuple(coeffs.shape)}")
        ref = reference_tensor(reference, self.size).to(self.device)
        windows = driving_windows(coeffs)[:frames]
        for s in range(0, len(windows), self.chunk):
            w = windows[s:s + self.chunk]
            out = self.gen(ref.expand(len(w), -1, -1, -1), w)["fake_image"].clamp(-1, 1)
            yield ((out * 0.5 + 0.5) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
