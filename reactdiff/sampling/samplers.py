"""Diffusion samplers for an EDM denoiser D(x, sigma) -> x0-hat: Karras schedule, Euler, Heun, DPM-Solver++(2M) (+SDE).

Conventions (those of k-diffusion, so results match it to float rounding):
- ``model(x, sigma_batch, **extra_args)`` returns the denoised estimate; ``sigma_batch`` has shape (B,) and x's dtype.
- ``sigmas`` is a decreasing 1-D schedule, normally ending with 0 (see :func:`get_sigmas_karras`).
- ``x`` is the initial noisy sample at ``sigmas[0]`` (i.e. unit noise already scaled by ``sigmas[0]``); any shape
  with the batch first. Per-step coefficients are computed as Python floats (float64) from the schedule, so the
  samplers work unchanged for any tensor shape, dtype and device.
- ``callback`` (optional) is called once per step with a dict: x, i, sigma, sigma_hat, sigma_next, denoised.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

Denoiser = Callable[..., torch.Tensor]
NoiseSampler = Callable[[Any, Any], torch.Tensor]

__all__ = [
    "SAMPLERS",
    "get_sigmas_karras",
    "network_evaluations",
    "sample",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_euler",
    "sample_heun",
]


def get_sigmas_karras(n: int, sigma_min: float = 0.01, sigma_max: float = 80.0, rho: float = 7.0,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: n sigmas linear in sigma^(1/rho) from sigma_max down to sigma_min, then 0."""
    if n < 1:
        raise ValueError(f"need at least one step, got n={n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(device=device, dtype=dtype)


def _schedule(sigmas: torch.Tensor) -> list[float]:
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries, got shape {tuple(sigmas.shape)}")
    values = [float(s) for s in sigmas.detach().cpu().tolist()]
    if any(b > a for a, b in zip(values, values[1:])) or values[-1] < 0:
        raise ValueError("sigmas must be non-negative and non-increasing")
    return values


def _denoise(model: Denoiser, x: torch.Tensor, sigma: float, extra_args: dict | None) -> torch.Tensor:
    return model(x, x.new_full((x.shape[0],), sigma), **(extra_args or {}))


def _report(callback, x, i, sigmas, sigma_next, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "sigma_next": sigma_next,
                  "denoised": denoised})


@torch.no_grad()
def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callable | None = None) -> torch.Tensor:
    """Karras et al. 2022, Algorithm 1 (deterministic Euler steps on the probability-flow ODE)."""
    sched = _schedule(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(sched[:-1], sched[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        _report(callback, x, i, sigmas, sigma_next, denoised)
        slope = (x - denoised) / sigma  # dx/dsigma
        x = x + slope * (sigma_next - sigma)
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callable | None = None) -> torch.Tensor:
    """Karras et al. 2022, Algorithm 2 without churn (Heun's 2nd order; a plain Euler step into sigma = 0)."""
    sched = _schedule(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(sched[:-1], sched[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        _report(callback, x, i, sigmas, sigma_next, denoised)
        slope = (x - denoised) / sigma
        step = sigma_next - sigma
        x_euler = x + slope * step
        if sigma_next == 0:
            x = x_euler
            continue
        slope_next = (x_euler - _denoise(model, x_euler, sigma_next, extra_args)) / sigma_next
        x = x + (slope + slope_next) / 2 * step
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                    callback: Callable | None = None) -> torch.Tensor:
    """Lu et al. 2022, DPM-Solver++(2M): 2nd-order multistep data-prediction ODE solver in lambda = -log sigma."""
    sched = _schedule(sigmas)
    prev_denoised: torch.Tensor | None = None
    prev_h = 0.0
    for i, (sigma, sigma_next) in enumerate(zip(sched[:-1], sched[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        _report(callback, x, i, sigmas, sigma_next, denoised)
        if sigma_next == 0:  # lambda -> inf: the exact update is x0-hat itself
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)  # step in lambda
            keep = math.exp(-h)  # = sigma_next / sigma
            gain = -math.expm1(-h)  # = 1 - sigma_next / sigma
            if prev_denoised is None:  # first step: 1st order (DPM-Solver++ 1 == DDIM)
                estimate = denoised
            else:
                half_inv_r = h / (2.0 * prev_h)  # 1 / (2 r), r = h_prev / h
                estimate = denoised + half_inv_r * (denoised - prev_denoised)
            x = keep * x + gain * estimate
            prev_h = h
        prev_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                        callback: Callable | None = None, eta: float = 1.0, s_noise: float = 1.0,
                        noise_sampler: NoiseSampler | None = None, solver_type: str = "midpoint") -> torch.Tensor:
    """k-diffusion's sample_dpmpp_2m_sde: DPM-Solver++(2M) on the SDE (eta = 1) with a midpoint or Heun correction."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    if noise_sampler is None:
        def noise_sampler(_sigma, _sigma_next):  # fresh Gaussian noise from the global RNG
            return torch.randn_like(x)
    sched = _schedule(sigmas)
    prev_denoised: torch.Tensor | None = None
    prev_h = 0.0
    for i, (sigma, sigma_next) in enumerate(zip(sched[:-1], sched[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        _report(callback, x, i, sigmas, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            eh = (1.0 + eta) * h  # effective step of the deterministic part
            phi = -math.expm1(-eh)  # 1 - exp(-(1 + eta) h)
            x = (sigma_next / sigma) * math.exp(-eta * h) * x + phi * denoised
            if prev_denoised is not None:
                inv_r = h / prev_h
                coef = 0.5 * phi if solver_type == "midpoint" else 1.0 - phi / eh
                x = x + (coef * inv_r) * (denoised - prev_denoised)
            if eta:
                scale = sigma_next * math.sqrt(-math.expm1(-2.0 * eta * h)) * s_noise
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * scale
            prev_h = h
        prev_denoised = denoised
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}

_STOCHASTIC = frozenset({"dpmpp_2m_sde"})


def _check_name(name: str) -> None:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(sorted(SAMPLERS))}")


def network_evaluations(name: str, steps: int) -> int:
    """Number of model calls a sampler makes for `steps` steps of a schedule that ends with sigma = 0."""
    _check_name(name)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return 2 * steps - 1 if name == "heun" else steps


def sample(name: str, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
           noise_sampler: NoiseSampler | None = None, callback: Callable | None = None,
           **sampler_kwargs: Any) -> torch.Tensor:
    """Run the sampler called `name`; noise_sampler (and eta/s_noise/solver_type) apply to the SDE sampler only."""
    _check_name(name)
    kwargs = dict(sampler_kwargs)
    if name in _STOCHASTIC:
        kwargs["noise_sampler"] = noise_sampler
    elif kwargs:
        raise TypeError(f"sampler {name!r} takes no options, got {sorted(kwargs)}")
    return SAMPLERS[name](model, x, sigmas, extra_args=extra_args, callback=callback, **kwargs)
