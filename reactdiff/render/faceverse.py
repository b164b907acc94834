"""The FaceVerse v2 morphable model: load its file, turn 58-d REACT coefficients into meshes, and project them.

The model file is an `np.save`d dict (what `np.load(path, allow_pickle=True).item()` returns). It is read with a
restricted unpickler that builds numpy arrays, dtypes and plain containers only: a file that asks for anything else
(a pickle can run code) is refused.

    meanshape (V, 3)       idBase (3V, 150)       exBase (3V, 52)       tri (F, 3), 0-based
    meantex, texBase, point_buf, keypoints, skinmask, exp_name_list   (read when present; not needed for grey meshes)
    select_id, tri_select  (optional: the simplified mesh, a vertex subset and its triangles)

Bases are xyz-interleaved per vertex (rows 3i, 3i+1, 3i+2 are vertex i). Mesh coordinates have y pointing down.

A REACT frame is [exp 52 | rot 3 | trans 3] (reactdiff.data.frame_layout), raw (not mean-subtracted) coefficients:
shape = meanshape + idBase @ identity + exBase @ exp; world = R shape + t with R = Rz Ry Rx from Euler angles in
radians. The camera is the REACT renderer's: at distance 10 on +z looking at the origin, z flipped, focal 1315 px for
a 224 px image (scaled with the image size), principal point at the centre, image rows counted from the top.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import frame_layout as fv

FOCAL_224 = 1315.0  # REACT renderer: focal length in pixels for a 224 x 224 image
CAMERA_DISTANCE = 10.0
N_ID = 150
REQUIRED = ("meanshape", "idBase", "exBase", "tri")


class FaceVerseError(ValueError):
    pass


@dataclass
class FaceVerseModel:
    meanshape: torch.Tensor  # (V, 3)
    id_base: torch.Tensor  # (V, 3, 150)
    exp_base: torch.Tensor  # (V, 3, 52)
    tri: torch.Tensor  # (F, 3) long, 0-based
    exp_names: tuple[str, ...] | None = None
    source: str = ""

    @property
    def num_vertices(self) -> int:
        return self.meanshape.shape[0]

    @classmethod
    def load(cls, path: str | Path, simplified: bool = False) -> "FaceVerseModel":
        """Read and check a FaceVerse v2 model file; `simplified` picks the select_id / tri_select sub-mesh."""
        path = Path(path)
        if not path.is_file():
            raise FaceVerseError(f"{path}: FaceVerse model file not found")
        try:
            raw = load_npy_safely(path)
            d = raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object else raw
        except pickle.UnpicklingError as exc:
            raise FaceVerseError(f"{path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001  (any unreadable file gets the same explanation)
            raise FaceVerseError(f"{path}: not a FaceVerse model file (an np.save'd dict expected): {exc}") from None
        if not isinstance(d, dict):
            raise FaceVerseError(f"{path}: expected an np.save'd dict, found {type(d).__name__}")
        return cls.from_dict(d, source=str(path), simplified=simplified)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>", simplified: bool = False) -> "FaceVerseModel":
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise FaceVerseError(f"{source}: missing keys {missing} (a FaceVerse v2 model has "
                                 f"{', '.join(REQUIRED)}, ...)")
        mean = np.asarray(d["meanshape"], dtype=np.float32).reshape(-1)
        if mean.size % 3:
            raise FaceVerseError(f"{source}: meanshape has {mean.size} values, not a multiple of 3 (V x 3 expected)")
        v = mean.size // 3
        id_base, exp_base = np.asarray(d["idBase"], np.float32), np.asarray(d["exBase"], np.float32)
        for name, base, cols in (("idBase", id_base, N_ID), ("exBase", exp_base, fv.N_EXP)):
            if base.shape != (3 * v, cols):
                raise FaceVerseError(f"{source}: {name} has shape {base.shape}; expected (3V, {cols}) = "
                                     f"({3 * v}, {cols}) for the {v} vertices of meanshape")
        tri = _indices(d["tri"], f"{source}: tri", (None, 3))
        if tri.size and (tri.min() < 0 or tri.max() >= v):
            raise FaceVerseError(f"{source}: tri indexes vertices {tri.min()}..{tri.max()}; the model has {v} "
                                 f"(0-based)")
        names = tuple(str(n) for n in d["exp_name_list"]) if "exp_name_list" in d else None
        if names is not None and len(names) != fv.N_EXP:
            raise FaceVerseError(f"{source}: exp_name_list has {len(names)} names; expected {fv.N_EXP}")
        mean3, id3, exp3 = mean.reshape(v, 3), id_base.reshape(v, 3, N_ID), exp_base.reshape(v, 3, fv.N_EXP)
        if simplified:
            if "select_id" not in d or "tri_select" not in d:
                raise FaceVerseError(f"{source}: the simplified mesh needs select_id and tri_select")
            sel = _indices(np.asarray(d["select_id"]).reshape(-1), f"{source}: select_id", (None,))
            if sel.size and (sel.min() < 0 or sel.max() >= v):
                raise FaceVerseError(f"{source}: select_id must hold vertex indices in 0..{v - 1}")
            mean3, id3, exp3 = mean3[sel], id3[sel], exp3[sel]
            tri = _indices(d["tri_select"], f"{source}: tri_select", (None, 3))
            if tri.size and (tri.min() < 0 or tri.max() >= len(sel)):
                raise FaceVerseError(f"{source}: tri_select indexes {tri.min()}..{tri.max()}; select_id has {len(sel)}")
        return cls(torch.from_numpy(mean3.copy()), torch.from_numpy(id3.copy()), torch.from_numpy(exp3.copy()),
                   torch.from_numpy(tri.astype(np.int64)), names, source)

    def to(self, device) -> "FaceVerseModel":
        return FaceVerseModel(self.meanshape.to(device), self.id_base.to(device), self.exp_base.to(device),
                              self.tri.to(device), self.exp_names, self.source)

    def identity_shape(self, identity: torch.Tensor | None = None) -> torch.Tensor:
        """meanshape + idBase @ identity, (V, 3); identity None = the mean face."""
        if identity is None:
            return self.meanshape
        identity = torch.as_tensor(identity, dtype=torch.float32, device=self.meanshape.device).reshape(-1)
        if identity.numel() < N_ID:
            raise FaceVerseError(f"identity: {identity.numel()} values; a FaceVerse identity has {N_ID}")
        return self.meanshape + self.id_base @ identity[:N_ID]

    def vertices(self, coeffs: torch.Tensor, identity: torch.Tensor | None = None,
                 base: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 58) raw REACT coefficients -> (N, V, 3) world-space vertices (R shape + t). `base`: the identity's
        shape when the caller has it already (identity_shape), so that it is not recomputed per call."""
        coeffs = torch.as_tensor(coeffs, dtype=torch.float32, device=self.meanshape.device)
        if coeffs.ndim != 2 or coeffs.shape[1] != fv.FV_DIM:
            raise FaceVerseError(f"coefficients: expected (frames, {fv.FV_DIM}); got {tuple(coeffs.shape)}")
        base = self.identity_shape(identity) if base is None else base
        shape = base + torch.einsum("vdk,nk->nvd", self.exp_base, coeffs[:, fv.EXP_SLICE])
        rot = euler_to_matrix(coeffs[:, fv.ROT_SLICE])
        return shape @ rot.transpose(1, 2) + coeffs[:, None, fv.TRANS_SLICE]


def _indices(values, what: str, shape: tuple) -> np.ndarray:
    """An integer index array (float arrays holding whole numbers are accepted: some model files store them so)."""
    arr = np.asarray(values)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        raise FaceVerseError(f"{what} must be an array of shape {tuple('F' if w is None else w for w in shape)}; "
                             f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.array_equal(arr, np.round(arr)):
            raise FaceVerseError(f"{what} must hold integer indices; got {arr.dtype} values")
    return arr.astype(np.int64)


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(N, 3) Euler angles (x, y, z) in radians -> (N, 3, 3) rotation matrices R = Rz Ry Rx."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def project(world: torch.Tensor, size: int) -> torch.Tensor:
    """(N, V, 3) world vertices -> (N, V, 3) [column, row, depth] in pixels of a size x size image (continuous
    coordinates: pixel (r, c) covers [c, c+1) x [r, r+1)); depth is the distance along the viewing axis."""
    focal = FOCAL_224 * size / 224.0
    depth = CAMERA_DISTANCE - world[..., 2]
    col = focal * world[..., 0] / depth + size / 2
    row = size / 2 - focal * world[..., 1] / depth
    return torch.stack([col, row, depth], dim=-1)


# what np.save writes for an object array of arrays and containers; nothing else may be built from the file
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name} from this file: a FaceVerse model file "
                                         f"holds numpy arrays only (a pickle can run code)")
        return super().find_class(module, name)


def load_npy_safely(path: str | Path):
    """np.load of an .npy file, object arrays included, without running what a pickle may ask for."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        return _NumpyOnlyUnpickler(f).load()
