"""The pytorch3d backend of the grey meshes: FaceVerse's `ModelRenderer` as the REACT renderer builds it.

    look_at_view_transform(10, 0, 0) + FoVPerspectiveCameras(fov = 2 atan(112 / 1315), znear 0.01, zfar 50),
    PointLights at (0, 0, 1e5) with ambient 0.1, diffuse 0.95, specular 0, HardFlatShader, black background,
    one face per pixel, vertex colour grey 200 / 255.

pytorch3d comes from PyPI's `easypytorch3d` wheel (a build of FAIR's pytorch3d for our torch; the `pytorch3d` extra);
`available()` says why not when it does not import. The torch rasteriser (rasterize.py) shades with the same model.
"""
from __future__ import annotations

import functools
import math

import torch

from .faceverse import CAMERA_DISTANCE, FOCAL_224
from .rasterize import AMBIENT, DIFFUSE, GREY, LIGHT

BACKENDS = ("auto", "torch", "pytorch3d")


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when pytorch3d imports and rasterises here, else the reason."""
    try:
        from pytorch3d import _C  # noqa: F401 - the compiled ops: the wheel must match this torch
        from pytorch3d.renderer import MeshRasterizer  # noqa: F401
    except Exception as exc:  # ImportError, or an OSError / undefined symbol from a wheel built for another torch
        return (f"pytorch3d does not import ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); install the "
                f"extra: pip install -e .[pytorch3d] (Python 3.11 wheels)")
    return None


def resolve(rasteriser: str, device="cpu") -> str:
    """auto -> pytorch3d on a CUDA device when it imports, else torch (on the CPU pytorch3d's rasteriser is 90-430x
    slower than ours and draws the same frames: bench_render, tests/test_p3d.py); pytorch3d when it does not import
    -> a clear error."""
    if rasteriser not in BACKENDS:
        raise ValueError(f"rasteriser {rasteriser!r}: expected one of {', '.join(BACKENDS)}")
    if rasteriser == "auto":
        return "pytorch3d" if torch.device(device).type == "cuda" and not unavailable() else "torch"
    if rasteriser == "pytorch3d" and (why := unavailable()):
        raise ValueError(f"--rasteriser pytorch3d: {why}; or use --rasteriser torch")
    return rasteriser


class Pytorch3dGrey:
    """(N, V, 3) world vertices of one topology -> (N, size, size, 3) uint8 grey frames, as the REACT renderer."""

    def __init__(self, tri: torch.Tensor, size: int, device) -> None:
        from pytorch3d.renderer import (BlendParams, FoVPerspectiveCameras, HardFlatShader, MeshRasterizer,
                                        MeshRenderer, PointLights, RasterizationSettings, look_at_view_transform)

        self.device, self.size = torch.device(device), size
        self.tri = tri.to(self.device)
        r, t = look_at_view_transform(CAMERA_DISTANCE, 0, 0)
        fov = math.degrees(2 * math.atan(size / 2 / (FOCAL_224 * size / 224.0)))  # focal 1315 px at 224
        cameras = FoVPerspectiveCameras(R=r, T=t, znear=0.01, zfar=50, fov=fov, device=self.device)
        lights = PointLights(location=[list(LIGHT)], ambient_color=[[AMBIENT] * 3], diffuse_color=[[DIFFUSE] * 3],
                             specular_color=[[0.0] * 3], device=self.device)
        # bin_size 0: the naive rasteriser, exact for any mesh density (coarse-to-fine bins can overflow and drop
        # faces on dense meshes at small sizes)
        settings = RasterizationSettings(image_size=size, blur_radius=0.0, faces_per_pixel=1, bin_size=0)
        self.rasterizer = MeshRasterizer(cameras=cameras, raster_settings=settings)
        shader = HardFlatShader(cameras=cameras, lights=lights, blend_params=BlendParams(background_color=(0, 0, 0)),
                                device=self.device)
        self.renderer = MeshRenderer(self.rasterizer, shader)

    def _meshes(self, world: torch.Tensor):
        from pytorch3d.renderer import TexturesVertex
        from pytorch3d.structures import Meshes

        world = world.to(self.device, torch.float32)
        tex = TexturesVertex(torch.full_like(world, GREY / 255.0))
        return Meshes(verts=world, faces=self.tri[None].expand(len(world), -1, -1), textures=tex)

    @torch.no_grad()
    def render(self, world: torch.Tensor) -> torch.Tensor:
        images = self.renderer(self._meshes(world))[..., :3]
        return (images * 255).round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def face_index(self, world: torch.Tensor) -> torch.Tensor:
        """(N, size, size) index of the visible face per pixel (-1: background), into the mesh's triangles."""
        pix = self.rasterizer(self._meshes(world)).pix_to_face[..., 0]
        faces = self.tri.shape[0]
        return torch.where(pix >= 0, pix % faces, -1)  # packed over the batch -> per mesh
