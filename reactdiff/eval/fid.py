"""FRRea: Frechet distance between feature statistics of rendered real and generated frames, as pytorch-fid computes it.

The feature extractor is injectable: any callable mapping a (B, 3, H, W) float batch in [0, 1] to (B, F) features (or
(B, F, h, w) maps, average-pooled as pytorch-fid does). The REACT one is pytorch-fid's InceptionV3 pool3 (2048-d)
built from a local `pt_inception-2015-12-05-6726825d.pth` (`inception_extractor`); it needs the `pytorch_fid`
package and never downloads anything. Statistics: mean and np.cov(rowvar=False) of the features in float64.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from scipy import linalg

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
Extractor = Callable[[torch.Tensor], torch.Tensor]


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) with pytorch-fid's safeguards.

    sqrtm(S1 S2) (scipy, disp=False where SciPy still has it); if not finite, eps * I is added to both covariances;
    a negligible imaginary part (diagonal within 1e-3 of 0) is dropped, a larger one raises ValueError.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"FRRea: mean vectors differ in length: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"FRRea: covariances must both be {(mu1.shape[0],) * 2}; got {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"FRRea: singular covariance product; adding {eps} to the diagonal of both covariances")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FRRea: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm(a, disp=False)[0]; plain sqrtm on SciPy versions without `disp` (removed in 1.18)."""
    if "disp" in inspect.signature(linalg.sqrtm).parameters:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in SciPy 1.16, same result
            return linalg.sqrtm(a, disp=False)[0]
    return linalg.sqrtm(a)


def activation_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (n, F) features, as pytorch-fid's calculate_activation_statistics."""
    act = np.asarray(features, dtype=np.float64)
    if act.ndim != 2 or act.shape[0] < 2:
        raise ValueError(f"FRRea: need (n >= 2, F) features; got shape {act.shape}")
    return act.mean(axis=0), np.cov(act, rowvar=False)


def _batches(frames, batch_size: int) -> Iterable[torch.Tensor]:
    """A (n, 3, H, W) array/tensor, or an iterable of such batches (e.g. rendered clip by clip)."""
    if torch.is_tensor(frames) or isinstance(frames, np.ndarray):
        frames = torch.as_tensor(frames)
        for s in range(0, frames.shape[0], batch_size):
            yield frames[s:s + batch_size]
    else:
        for b in frames:
            yield torch.as_tensor(b)


@torch.no_grad()
def extract_features(frames, extractor: Extractor, *, batch_size: int = 50, device=None) -> np.ndarray:
    """Features (n, F) float64 of frames in [0, 1]; spatial maps are average-pooled to 1x1 as pytorch-fid does."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    feats = []
    for batch in _batches(frames, batch_size):
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"FRRea: frames must be (B, 3, H, W) batches; got {tuple(batch.shape)}")
        if not bool(torch.isfinite(batch).all()):
            raise ValueError("FRRea: frames contain NaN/inf values")
        out = extractor(batch.to(device=device, dtype=torch.float32))
        if isinstance(out, (list, tuple)):  # pytorch-fid's InceptionV3 returns a list of block outputs
            out = out[0]
        if out.ndim == 4:
            if out.shape[2:] != (1, 1):
                out = torch.nn.functional.adaptive_avg_pool2d(out, (1, 1))
            out = out.flatten(1)
        feats.append(out.double().cpu().numpy())
    if not feats:
        raise ValueError("FRRea: no frames given")
    return np.concatenate(feats)


def fr_rea(real_frames, fake_frames, extractor: Extractor | None = None, *, weights: str | Path | None = None,
           batch_size: int = 50, device=None) -> float:
    """FID between real and generated rendered frames (each (n, 3, H, W) in [0, 1], or an iterable of batches).

    `extractor` defaults to the pytorch-fid InceptionV3 pool3 built from `weights` (the local .pth file).
    """
    if extractor is None:
        if weights is None:
            raise ValueError(f"FRRea: pass an extractor, or weights= the path of pytorch-fid's {FID_WEIGHTS_NAME}")
        extractor = inception_extractor(weights, device=device)
    mu1, s1 = activation_statistics(extract_features(real_frames, extractor, batch_size=batch_size, device=device))
    mu2, s2 = activation_statistics(extract_features(fake_frames, extractor, batch_size=batch_size, device=device))
    return frechet_distance(mu1, s1, mu2, s2)


def inception_extractor(weights: str | Path, device=None) -> Extractor:
    """pytorch-fid's InceptionV3 (FID variant, pool3, 2048-d; resizes to 299 and maps [0, 1] to [-1, 1]).

    The weights come from the given file: pytorch-fid's own downloader is bypassed, nothing is fetched.
    """
    try:
        from pytorch_fid import inception as pf_inception
    except ImportError as exc:
        raise ImportError("FRRea with InceptionV3 needs the pytorch-fid package (`pip install pytorch-fid`), "
                          "or pass your own extractor") from exc
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"FRRea: Inception weights {path} not found (expected pytorch-fid's "
                                f"{FID_WEIGHTS_NAME})")

    def local_weights(*args, **kwargs):
        return torch.load(path, map_location="cpu", weights_only=True)

    if not hasattr(pf_inception, "load_state_dict_from_url"):
        raise ImportError("this pytorch-fid version loads its weights differently; pass your own extractor")
    with _patched(pf_inception, "load_state_dict_from_url", local_weights):
        model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = model.eval().to(device)
    return lambda batch: model(batch)[0]


@contextlib.contextmanager
def _patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)
