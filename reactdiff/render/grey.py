"""Grey mesh frames of 58-d FaceVerse sequences: coefficients -> mesh -> projection -> rasterisation -> shading
(the torch rasteriser, rasterize.py, or pytorch3d, p3d.py: the same camera, light and grey material)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..data import frame_layout as fv
from . import p3d
from . import rasterize as rz
from .faceverse import FaceVerseModel, project


class GreyRenderer:
    """Renders (T, 58) raw coefficient sequences as (n, size, size, 3) uint8 chunks of `chunk` frames (the memory
    bound), with the torch rasteriser or pytorch3d (`rasteriser`: torch | pytorch3d | auto; `self.rasteriser` is
    the one used)."""

    def __init__(self, model: FaceVerseModel, size: int = 224, identity=None, device="cpu", chunk: int = 32,
                 rasteriser: str = "torch") -> None:
        if size < 2 or size % 2:
            raise ValueError(f"render size must be an even number of pixels >= 2 (mp4 needs it); got {size}")
        self.device = torch.device(device)
        self.model, self.size, self.chunk = model.to(self.device), size, chunk
        self.base = self.model.identity_shape(identity)  # validated and computed once
        self.rasteriser = p3d.resolve(rasteriser, self.device)
        self.p3d = p3d.Pytorch3dGrey(self.model.tri, size, self.device) if self.rasteriser == "pytorch3d" else None

    @property
    def name(self) -> str:
        """What settings files record: "grey mesh (torch)" or "grey mesh (pytorch3d)"."""
        return f"grey mesh ({self.rasteriser})"

    @torch.no_grad()
    def render(self, coeffs) -> torch.Tensor:
        """(n, 58) -> (n, size, size, 3) uint8 tensor on the renderer's device."""
        world = self.model.vertices(torch.as_tensor(np.asarray(coeffs), device=self.device), base=self.base)
        if self.p3d is not None:
            return self.p3d.render(world)
        index, _ = rz.rasterize(project(world, self.size), self.model.tri, self.size)
        return rz.shade(index, rz.face_shading(world, self.model.tri))

    def frames(self, coeffs) -> Iterator[np.ndarray]:
        coeffs = np.asarray(coeffs, np.float32)
        if coeffs.ndim != 2 or coeffs.shape[1] != fv.FV_DIM:
            raise ValueError(f"expected a (frames, {fv.FV_DIM}) FaceVerse sequence; got {coeffs.shape}")
        if not np.isfinite(coeffs).all():
            raise ValueError("the FaceVerse sequence contains NaN/inf values")
        for s in range(0, len(coeffs), self.chunk):
            yield self.render(coeffs[s:s + self.chunk]).cpu().numpy()
