"""Diffusion noise with the data's temporal spectrum (`model.noise=spectral`).

EDM's preconditioning assumes every coordinate of the data has std sigma_data. Per frame, z-scored 3DMM does; per
temporal frequency it does not: listener motion is smooth, so the high-frequency DCT coefficients of a window are
orders of magnitude smaller than the low ones. With white noise, the denoiser must then learn to cancel per-frame
noise exactly at every noise level; what it leaves becomes jitter that the ODE freezes into the sample (measured:
x0-hat at sigma = 1 carried 5x the data's frame-to-frame motion, samples 10x).

Here the diffusion runs in the window's whitened DCT coordinates, where every coordinate has std sigma_data: with
C the orthonormal DCT-II over the W frames of a window and r[k, d] the data's RMS of coefficient k of dim d,

    whiten(x) = sigma_data (C x) / r,     colour(eps) = C^T (r / sigma_data * (C eps)),

training adds colour(eps) * sigma instead of eps * sigma, and the denoising loss is the MSE of whiten(x0-hat - x0)
(every frequency counts by its share of the data, so high-frequency error -- jitter -- is expensive). Everything
else (the U-Net on frames, c_skip/c_out/c_in, the samplers' ODE/SDE steps) is unchanged: those steps are linear in
x, so they hold in any linear coordinates; samplers only draw coloured noise. r is measured from the training
shards when training starts (the same on every rank) and saved with the weights; for a window of another length
it is interpolated over normalised frequency k / (2 W).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn


@functools.lru_cache(maxsize=16)
def _dct_cpu(w: int) -> torch.Tensor:
    n = torch.arange(w, dtype=torch.float64)
    c = torch.cos(math.pi / w * (n[None, :] + 0.5) * n[:, None])  # c[k, t]
    c[0] *= 1 / math.sqrt(2)
    return c * math.sqrt(2 / w)


def dct_matrix(w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(w, w) orthonormal DCT-II: coefficients = C @ x over time; C^T C = I."""
    return _dct_cpu(int(w)).to(device=device, dtype=dtype)


def band_coefficients(w: int, fps: float, low_hz: float, high_hz: float) -> torch.Tensor:
    """(w,) bool: the DCT-II coefficients k of a w-frame window whose frequency k * fps / (2 w) is in [low, high]."""
    hz = torch.arange(int(w), dtype=torch.float64) * (float(fps) / (2 * int(w)))
    return (hz >= low_hz) & (hz <= high_hz)


def temper_dct(noise: torch.Tensor, temperature: float, level_temperature: float) -> torch.Tensor:
    """noise (B, w, D) times a temperature per DCT coefficient of the window: its level (its mean, coefficient 0)
    by level_temperature, the motion within it by temperature (white or DCT-coloured noise alike: a per-coefficient
    factor commutes with the spectrum's colouring)."""
    c = dct_matrix(noise.shape[1], noise.device, noise.dtype)
    t = torch.full((noise.shape[1], 1), temperature, device=noise.device, dtype=noise.dtype)
    t[0] = level_temperature
    return torch.einsum("tk,bkd->btd", c.T, t * torch.einsum("kt,btd->bkd", c, noise))


def dim_power(power, dim: int) -> torch.Tensor:
    """model.loss_weight_power as one exponent per dim, (dim,) float64: a number for every dim, or one per dim (with
    model.loss_group_power)."""
    p = torch.as_tensor(power, dtype=torch.float64)
    p = p.expand(dim) if p.ndim == 0 else p
    if p.shape != (dim,):
        raise ValueError(f"loss weight power: a number or one per dim ({dim}), got shape {tuple(p.shape)}")
    return p


def window_rms(windows: np.ndarray) -> np.ndarray:
    """RMS (W, D) of the DCT coefficients of windows (N, W, D), in float64; floored at 1e-3 of each dim's largest
    coefficient RMS so that whitening never divides by ~0."""
    x = torch.as_tensor(np.asarray(windows, np.float64))
    coef = torch.einsum("kt,ntd->nkd", dct_matrix(x.shape[1], dtype=torch.float64), x)
    rms = coef.square().mean(0).sqrt()
    return torch.maximum(rms, 1e-3 * rms.amax(0, keepdim=True).clamp_min(1e-12)).numpy()


class TemporalSpectrum(nn.Module):
    """The data's DCT-coefficient RMS per dim (a buffer saved with the weights) and the colour/whiten maps."""

    def __init__(self, window: int, dim: int, sigma_data: float,
                 loss_weight_power: float | tuple[float, ...] = 0.0) -> None:
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.loss_weight_power = loss_weight_power  # a number, or one per dim (dim_power)
        self._power: dict = {}  # device -> the per-dim exponents there (made once: no copy per loss call)
        # white until fitted: r = sigma_data everywhere makes colour/whiten the identity
        self.register_buffer("rms", torch.full((int(window), int(dim)), self.sigma_data))

    @torch.no_grad()
    def fit(self, windows: np.ndarray) -> None:
        """Measure r from normalised training windows (N, W, D) with W = the buffer's window length."""
        if windows.ndim != 3 or windows.shape[1:] != tuple(self.rms.shape):
            raise ValueError(f"spectrum windows must be (N, {self.rms.shape[0]}, {self.rms.shape[1]}), got "
                             f"{windows.shape}")
        self.rms.copy_(torch.from_numpy(window_rms(windows)).to(self.rms))

    def scale(self, w: int, device, dtype) -> torch.Tensor:
        """(w, D) r / sigma_data for a window of w frames (interpolated over normalised frequency k / 2w)."""
        rms = self.rms.to(device=device, dtype=torch.float32)
        n = rms.shape[0]
        if w != n:
            pos = torch.arange(w, device=device, dtype=torch.float32) * (n / w)  # same normalised frequency
            lo = pos.floor().long().clamp(max=n - 1)
            hi = (lo + 1).clamp(max=n - 1)
            frac = (pos - lo.float())[:, None]
            rms = rms[lo] * (1 - frac) + rms[hi] * frac
        return (rms / self.sigma_data).to(dtype)

    def colour(self, eps: torch.Tensor) -> torch.Tensor:
        """White noise (B, w, D) -> noise with the data's spectrum (unit std in whitened coordinates)."""
        w = eps.shape[1]
        c = dct_matrix(w, eps.device, eps.dtype)
        return torch.einsum("tk,bkd->btd", c.T, self.scale(w, eps.device, eps.dtype) * torch.einsum(
            "kt,btd->bkd", c, eps))

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """(B, w, D) frames -> whitened DCT coefficients (B, w, D)."""
        w = x.shape[1]
        return torch.einsum("kt,btd->bkd", dct_matrix(w, x.device, x.dtype), x) / self.scale(w, x.device, x.dtype)

    def temper(self, noise: torch.Tensor, temperature: float, level_temperature: float) -> torch.Tensor:
        """The diffusion's noise (B, w, D) with its window level by level_temperature, the rest by temperature."""
        return temper_dct(noise, temperature, level_temperature)

    def loss_coordinates(self, err: torch.Tensor, band: torch.Tensor | None = None) -> torch.Tensor:
        """The error in the coordinates the denoising loss is the mean square of: whitened, each coefficient weighted
        by (r / sigma_data)^p normalised to mean 1 per dim (p = model.loss_weight_power: 0 every whitened coordinate
        alike, 2 the plain per-frame MSE, 1 between: slow motion -- pose continuity, reactions -- is most of the
        signal and most of what a viewer sees, jitter still costs); `band` (w, D): weights on the DCT coefficients
        (model.loss_band), the same coordinates."""
        white = self.whiten(err)
        if band is not None:
            white = white * band.to(white.dtype)
        p = self.loss_weight_power
        if isinstance(p, (int, float)):
            if not p:
                return white
        else:  # one exponent per dim
            if err.device not in self._power:
                self._power[err.device] = dim_power(p, err.shape[2]).to(device=err.device, dtype=torch.float32)
            p = self._power[err.device]
        s = self.scale(err.shape[1], err.device, torch.float32) ** p
        return white * (s / s.mean(0, keepdim=True)).sqrt().to(white.dtype)
