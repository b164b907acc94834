"""3DMM normalisation with REACT's mean_face.npy / std_face.npy, in either convention: the one owner of it.

FaceNormaliser is the reader's (numpy) face of the statistics; FaceStats the model's (torch buffers saved with the
weights, so an export carries the normalisation it was trained with). Both go through normalise / denormalise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import frame_layout as fv

NORMALISATIONS = ("zscore", "center", "none")


def _load_stat(path: Path, what: str) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} file {path} not found (expected a (58,) float32 npy like REACT's {what}.npy)")
    arr = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    if arr.shape != (fv.FV_DIM,) or not np.isfinite(arr).all():
        raise ValueError(f"{path}: expected {fv.FV_DIM} finite values, got shape {arr.shape}")
    return arr


def check_stats(mean, std, convention: str) -> None:
    """What every normaliser must hold: 58 finite means and stds (std > 0 for zscore), a known convention."""
    if convention not in NORMALISATIONS:
        raise ValueError(f"normalisation {convention!r}: expected one of {NORMALISATIONS}")
    mean, std = np.asarray(mean, dtype=np.float64).reshape(-1), np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (fv.FV_DIM,) or std.shape != (fv.FV_DIM,):
        raise ValueError(f"mean/std must have {fv.FV_DIM} values, got {mean.shape[0]} / {std.shape[0]}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError("mean/std must be finite")
    if convention == "zscore" and (std <= 0).any():
        raise ValueError(f"std_face has {(std <= 0).sum()} non-positive values; zscore needs std > 0")


def normalise(x, mean, std, convention: str):
    """Raw 3DMM -> the model's coordinates (numpy or torch alike)."""
    if convention == "zscore":
        return (x - mean) / std
    if convention == "center":
        return x - mean
    return x


def denormalise(x, mean, std, convention: str):
    """The model's coordinates -> raw 3DMM (numpy or torch alike)."""
    if convention == "zscore":
        return x * std + mean
    if convention == "center":
        return x + mean
    return x


def frame_moments(track: np.ndarray) -> dict:
    """Count, mean and sum of squared deviations of a (T, 58) track's frames: merge_moments' parts."""
    x = np.asarray(track, np.float64).reshape(-1, fv.FV_DIM)
    m = x.mean(0)
    return {"n": len(x), "mean": m, "m2": ((x - m) ** 2).sum(0)}


def merge_moments(parts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over all frames (Chan et al. pairwise merge, in the given order)."""
    n, mean, m2 = 0, np.zeros(fv.FV_DIM), np.zeros(fv.FV_DIM)
    for p in parts:
        nb = p["n"]
        if nb == 0:
            continue
        d = p["mean"] - mean
        tot = n + nb
        mean = mean + d * nb / tot
        m2 = m2 + p["m2"] + d ** 2 * n * nb / tot
        n = tot
    if n == 0:
        raise ValueError("no frames to compute mean_face/std_face from (the train split is empty)")
    return mean.astype(np.float32), np.maximum(np.sqrt(m2 / n), 1e-6).astype(np.float32)


class FaceNormaliser:
    """`zscore`: (x - mean) / std (ReactDiff). `center`: x - mean (REACT 2023/24 baselines). `none`: identity.
    The reader's (numpy) face of the statistics; the model carries the same numbers as buffers (FaceStats)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, convention: str) -> None:
        check_stats(mean, std, convention)
        self.mean, self.std, self.convention = mean.astype(np.float32), std.astype(np.float32), convention

    @classmethod
    def from_files(cls, mean_path: str | Path, std_path: str | Path, convention: str) -> "FaceNormaliser":
        return cls(_load_stat(Path(mean_path), "mean_face"), _load_stat(Path(std_path), "std_face"), convention)

    @classmethod
    def identity(cls) -> "FaceNormaliser":
        return cls(np.zeros(fv.FV_DIM, np.float32), np.ones(fv.FV_DIM, np.float32), "none")

    @classmethod
    def of_model(cls, stats) -> "FaceNormaliser":
        """The statistics a model (an export) was trained with: FaceStats -> a reader's normaliser."""
        return cls(stats.mean.detach().cpu().numpy(), stats.std.detach().cpu().numpy(), stats.convention)

    def normalise(self, x):
        return normalise(x, self.mean, self.std, self.convention)

    def denormalise(self, x):
        return denormalise(x, self.mean, self.std, self.convention)

    def same_as(self, other: "FaceNormaliser", atol: float = 1e-6) -> bool:
        return (self.convention == other.convention and np.allclose(self.mean, other.mean, atol=atol)
                and np.allclose(self.std, other.std, atol=atol))

    def describe(self) -> dict:
        return {"convention": self.convention, "mean": self.mean.tolist(), "std": self.std.tolist()}


class FaceStats(nn.Module):
    """mean/std (58,) buffers and a normalisation convention; `denormalise` undoes `FaceNormaliser.normalise`.

    The buffers are saved with the weights, so an export carries the normalisation it was trained with.
    """

    def __init__(self, mean, std, convention: str) -> None:
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        std = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
        check_stats(mean.numpy(), std.numpy(), convention)
        self.convention = convention
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @classmethod
    def identity(cls) -> "FaceStats":
        return cls(np.zeros(fv.FV_DIM, np.float32), np.ones(fv.FV_DIM, np.float32), "none")

    @classmethod
    def from_normaliser(cls, norm: FaceNormaliser) -> "FaceStats":
        return cls(norm.mean, norm.std, norm.convention)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 3DMM values of the first 58 channels of x (..., C >= 58); channels past 58 are returned unchanged."""
        if x.shape[-1] < fv.FV_DIM:
            raise ValueError(f"expected at least {fv.FV_DIM} channels, got {x.shape[-1]}")
        if self.convention == "none":
            return x
        face = denormalise(x[..., :fv.FV_DIM], self.mean.to(x.dtype), self.std.to(x.dtype), self.convention)
        return face if x.shape[-1] == fv.FV_DIM else torch.cat([face, x[..., fv.FV_DIM:]], dim=-1)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}"
