"""Diffusion noise with the data's full temporal covariance over a window (`model.noise=covariance`).

`model.noise=spectral` (spectrum.py) treats a window's DCT coefficients as independent: a stationary process,
equally free at every frame. What the diffusion models is not stationary: a window minus its prediction from the
last known frame (model.anchor) is ~0 at the window's first frame and spreads with time. Measured on the quality
benchmark's data, the DCT model gives the first frame 12x (expression), 50x (head rotation) and 250x (translation)
the variance it has, so neither the noise nor the loss knows that a window's first frames continue its past:
samples jump there (the jitter at the sampling windows' joins, README).

Here each dim d has its own (W, W) second-moment matrix S_d = V diag(lam) V^T of the windows the diffusion models,
and
    colour(eps) = V diag(sqrt(lam) / sigma_data) V^T eps,    whiten(x) = diag(sigma_data / sqrt(lam)) V^T x,
so the noise has the data's covariance and the loss measures the error in the data's own principal coordinates
(an error the data never makes at the window's first frame costs what it looks like). loss_weight_power p weighs
the coordinates by (sqrt(lam) / sigma_data)^p, normalised to mean 1 per dim, as the spectral noise does; on a
stationary process both give the same loss. A window of w < W frames uses the leading (w, w) block (the exact
covariance of its first w frames); longer windows are refused. S is kept in float64 whatever precision the network
runs in: its small eigenvalues (the first frames) do not survive bf16.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .spectrum import dct_matrix, dim_power

EIGEN_FLOOR = 1e-6  # eigenvalues floored at this share of each dim's largest (the spectrum floors RMS at 1e-3)


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """The maps' dtype: bf16 matrices would blur the first frames' small variances, so half precision runs in fp32."""
    return torch.promote_types(dtype, torch.float32)


def window_second_moment(windows: np.ndarray) -> np.ndarray:
    """(D, W, W) float64 second moment E[x x^T] over time of windows (N, W, D), per dim."""
    x = torch.as_tensor(np.asarray(windows, np.float64))
    return torch.einsum("ntd,nsd->dts", x, x).div(x.shape[0]).numpy()


class TemporalCovariance(nn.Module):
    """The windows' temporal second moment per dim (a float64 buffer saved with the weights) and the
    colour / whiten / loss maps, with the interface of spectrum.TemporalSpectrum."""

    def __init__(self, window: int, dim: int, sigma_data: float,
                 loss_weight_power: float | tuple[float, ...] = 0.0) -> None:
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.loss_weight_power = loss_weight_power  # a number, or one per dim (spectrum.dim_power)
        # white until fitted: sigma_data^2 I makes colour/whiten the identity
        eye = torch.eye(int(window), dtype=torch.float64) * self.sigma_data ** 2
        self.register_buffer("cov", eye.expand(int(dim), -1, -1).clone())
        self._maps: dict = {}  # (w, device, dtype) -> maps(), made from cov on first use

    @property
    def window(self) -> int:
        return self.cov.shape[1]

    @torch.no_grad()
    def fit(self, windows: np.ndarray) -> None:
        """Measure S from normalised training windows (N, W, D) with W = the buffer's window length."""
        d, w = self.cov.shape[:2]
        if windows.ndim != 3 or windows.shape[1:] != (w, d):
            raise ValueError(f"covariance windows must be (N, {w}, {d}), got {windows.shape}")
        self.cov.copy_(torch.from_numpy(window_second_moment(windows)))
        self._maps.clear()

    def _apply(self, fn, recurse=True):
        cov = self.cov
        super()._apply(fn, recurse)
        self.cov = cov.to(self.cov.device)  # moves with the model, stays float64
        self._maps.clear()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._maps.clear()

    def maps(self, w: int, device, dtype) -> tuple[torch.Tensor, ...]:
        """(colour, whiten, weight, unwhiten) for w-frame windows: noise = colour @ eps, whitened coordinates =
        whiten @ x and back, x = unwhiten @ coordinates, per dim ((D, w, w) each; the coordinates in ascending order
        of variance: the last is the window's leading principal component), and each whitened coordinate's loss
        weight (sqrt, (D, w))."""
        key = (int(w), torch.device(device), dtype)
        if key not in self._maps:
            if w > self.window:
                raise ValueError(f"model.noise=covariance knows windows of up to {self.window} frames (the training "
                                 f"window); got a {w}-frame window: sample with sample.window <= data.window")
            lam, v = torch.linalg.eigh(self.cov[:, :w, :w].detach().to("cpu", torch.float64))
            lam = torch.maximum(lam, EIGEN_FLOOR * lam.amax(1, keepdim=True).clamp_min(1e-12))
            s = lam.sqrt() / self.sigma_data  # each principal coordinate's std in sigma_data units
            colour = v @ torch.diag_embed(s) @ v.transpose(1, 2)
            whiten = v.transpose(1, 2) / s[..., None]
            p = s ** dim_power(self.loss_weight_power, s.shape[0])[:, None]
            weight = (p / p.mean(1, keepdim=True)).sqrt()
            unwhiten = v * s[:, None, :]
            self._maps[key] = tuple(m.to(device=device, dtype=dtype) for m in (colour, whiten, weight, unwhiten))
        return self._maps[key]

    def colour(self, eps: torch.Tensor) -> torch.Tensor:
        """White noise (B, w, D) -> noise with the data's temporal covariance (unit std in whitened coordinates)."""
        dtype = _at_least_fp32(eps.dtype)
        colour = self.maps(eps.shape[1], eps.device, dtype)[0]
        return torch.einsum("dts,bsd->btd", colour, eps.to(dtype)).to(eps.dtype)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """(B, w, D) frames -> whitened principal coordinates (B, w, D)."""
        dtype = _at_least_fp32(x.dtype)
        whiten = self.maps(x.shape[1], x.device, dtype)[1]
        return torch.einsum("dks,bsd->bkd", whiten, x.to(dtype)).to(x.dtype)

    def unwhiten(self, coords: torch.Tensor) -> torch.Tensor:
        """Whitened principal coordinates (B, w, D) -> frames (B, w, D): the inverse of whiten."""
        dtype = _at_least_fp32(coords.dtype)
        unwhiten = self.maps(coords.shape[1], coords.device, dtype)[3]
        return torch.einsum("dtk,bkd->btd", unwhiten, coords.to(dtype)).to(coords.dtype)

    def temper(self, noise: torch.Tensor, temperature: float, level_temperature: float) -> torch.Tensor:
        """The diffusion's noise (B, w, D) with the window's leading principal component by level_temperature, the
        rest by temperature: that component starts where the past ended, so a wider level leaves the window's first
        frames where its past put them (the DCT's level, coefficient 0, moves them too)."""
        t = torch.full((noise.shape[1], 1), temperature, device=noise.device, dtype=noise.dtype)
        t[-1] = level_temperature  # eigenvalues ascend: the last coordinate has the most variance
        return self.unwhiten(t * self.whiten(noise))

    def loss_coordinates(self, err: torch.Tensor, band: torch.Tensor | None = None) -> torch.Tensor:
        """The error in the coordinates the denoising loss is the mean square of; `band` (w, D): weights on the
        error's DCT coefficients (model.loss_band), applied before the whitening mixes the frequencies."""
        if band is not None:
            c = dct_matrix(err.shape[1], err.device, err.dtype)
            err = torch.einsum("kt,bkd->btd", c, band.to(err.dtype) * torch.einsum("kt,btd->bkd", c, err))
        weight = self.maps(err.shape[1], err.device, _at_least_fp32(err.dtype))[2]
        return (self.whiten(err) * weight.transpose(0, 1)).to(err.dtype)
