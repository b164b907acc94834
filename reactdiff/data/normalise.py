"""3DMM normalisation with REACT's mean_face.npy / std_face.npy, in either convention."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import faceverse as fv

CONVENTIONS = ("zscore", "center", "none")


def _load_stat(path: Path, what: str) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} file {path} not found (expected a (58,) float32 npy like REACT's {what}.npy)")
    arr = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    if arr.shape != (fv.FV_DIM,) or not np.isfinite(arr).all():
        raise ValueError(f"{path}: expected {fv.FV_DIM} finite values, got shape {arr.shape}")
    return arr


class FaceNormaliser:
    """`zscore`: (x - mean) / std (ReactDiff). `center`: x - mean (REACT 2023/24 baselines). `none`: identity."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, convention: str) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"normalisation {convention!r}: expected one of {CONVENTIONS}")
        if convention == "zscore" and (std <= 0).any():
            raise ValueError(f"std_face has {(std <= 0).sum()} non-positive values; zscore needs std > 0")
        self.mean, self.std, self.convention = mean.astype(np.float32), std.astype(np.float32), convention

    @classmethod
    def from_files(cls, mean_path: str | Path, std_path: str | Path, convention: str) -> "FaceNormaliser":
        return cls(_load_stat(Path(mean_path), "mean_face"), _load_stat(Path(std_path), "std_face"), convention)

    @classmethod
    def identity(cls) -> "FaceNormaliser":
        return cls(np.zeros(fv.FV_DIM, np.float32), np.ones(fv.FV_DIM, np.float32), "none")

    def normalise(self, x):
        if self.convention == "zscore":
            return (x - self.mean) / self.std
        if self.convention == "center":
            return x - self.mean
        return x

    def denormalise(self, x):
        if self.convention == "zscore":
            return x * self.std + self.mean
        if self.convention == "center":
            return x + self.mean
        return x

    def describe(self) -> dict:
        return {"convention": self.convention, "mean": self.mean.tolist(), "std": self.std.tolist()}
