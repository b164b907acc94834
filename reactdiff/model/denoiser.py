"""EDM preconditioning (Karras et al. 2022, Table 1) around a raw network F, and the training noise levels.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
    c_noise = ln(sigma) / 4;  loss weight lambda(sigma) = 1 / c_out^2.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for a batch of sigmas (B,)."""
    sd2 = sigma_data ** 2
    total = sigma ** 2 + sd2
    return sd2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2 per sample: every noise level weighs alike at
    the start."""
    sigma = torch.as_tensor(sigma).reshape(-1)
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class SigmaDensity:
    """Training noise levels: EDM's log-normal, or the truncated 'cosine' (v-diffusion) density of the paper's code.

    cosine: sigma = sd * tan(pi/2 * u), u uniform between the values that map to sigma_min and sigma_max, i.e. the
    density a cosine noise schedule puts on sigma, truncated to [sigma_min, sigma_max].
    """

    def __init__(self, kind: str = "lognormal", p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5,
                 sigma_min: float = 0.01, sigma_max: float = 80.0) -> None:
        if kind not in ("lognormal", "cosine"):
            raise ValueError(f"sigma density {kind!r}: expected lognormal or cosine")
        self.kind, self.p_mean, self.p_std = kind, p_mean, p_std
        self.sigma_data, self.sigma_min, self.sigma_max = sigma_data, sigma_min, sigma_max

    def quantile(self, p: float) -> float:
        """The noise level below which a share p of training draws fall."""
        if self.kind == "lognormal":
            import statistics

            return math.exp(self.p_mean + self.p_std * statistics.NormalDist().inv_cdf(p))
        lo = math.atan(self.sigma_min / self.sigma_data) * 2 / math.pi
        hi = math.atan(self.sigma_max / self.sigma_data) * 2 / math.pi
        return math.tan((lo + p * (hi - lo)) * math.pi / 2) * self.sigma_data

    def sample(self, n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        if self.kind == "lognormal":
            z = torch.randn(n, generator=generator, device=device)
            return (self.p_mean + self.p_std * z).exp()
        lo = math.atan(self.sigma_min / self.sigma_data) * 2 / math.pi
        hi = math.atan(self.sigma_max / self.sigma_data) * 2 / math.pi
        u = torch.rand(n, generator=generator, device=device) * (hi - lo) + lo
        return torch.tan(u * math.pi / 2) * self.sigma_data


class Denoiser(nn.Module):
    """Wraps the raw network `net(x_in, c_noise, **cond)`; calling it gives D(x; sigma), the x0 estimate."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)."""
        c_skip, c_out, c_in, c_noise = preconditioning(sigma.to(x.dtype), self.sigma_data)
        per_sample = (-1, *[1] * (x.ndim - 1))  # (B,) -> (B, 1, ...) against x
        c_skip, c_out, c_in = c_skip.view(per_sample), c_out.view(per_sample), c_in.view(per_sample)
        return c_skip * x + c_out * self.net(c_in * x, c_noise.flatten(), **cond)

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, whiten=None, frames=None, **cond):
        """EDM-weighted denoising loss per sample (B,), and the x0 estimate (for the priors). `whiten` maps the error
        into the coordinates where the data has std sigma_data (noise with the data's spectrum, spectrum.py).
        frames (B, W) bool, or None for all: the real frames of windows that run past a clip's end; the padding's
        error is zeroed before whitening and the mean is over the real frames, so padding never enters the loss."""
        x0_hat = self(x0 + noise * sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype), sigma, **cond)
        weight = loss_weight(sigma.float(), self.sigma_data)
        err = x0_hat.float() - x0.float()  # fp32 whatever the precision
        if frames is not None:
            err = err * frames[..., None].to(err.dtype)
        if whiten is not None:
            err = whiten(err)
        per_sample = (err ** 2).flatten(1).mean(1) * weight
        if frames is not None:  # mean over real frames: W / real of the mean over all
            per_sample = per_sample * frames.shape[1] / frames.sum(1).clamp(min=1).to(per_sample.dtype)
        return per_sample, x0_hat
