"""Samplers: Karras schedule, exact network-evaluation counts, equality with k-diffusion (test-only dependency),
batch-size independence of per-sample seeded noise, and convergence on a Gaussian with the exact denoiser."""
from __future__ import annotations

import math

import pytest
import torch

from reactdiff.sampling import (
    SAMPLERS,
    PerSampleNoiseSampler,
    get_sigmas_karras,
    network_evaluations,
    per_sample_generators,
    randn_per_sample,
    sample,
)

NAMES = ["euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"]
SHAPE = (8, 6)  # per sample: (T, C)


class ToyDenoiser:
    """A fixed random EDM-preconditioned denoiser: D = c_skip x + c_out tanh(c_in x W + c_noise b); counts its calls."""

    def __init__(self, channels: int = SHAPE[-1], dtype: torch.dtype = torch.float64, seed: int = 0,
                 sigma_data: float = 0.5):
        g = torch.Generator().manual_seed(seed)
        self.w = (torch.randn(channels, channels, generator=g, dtype=torch.float64) / channels ** 0.5).to(dtype)
        self.b = torch.randn(channels, generator=g, dtype=torch.float64).to(dtype)
        self.sigma_data = sigma_data
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        sd2 = self.sigma_data ** 2
        norm = (s ** 2 + sd2).sqrt()
        c_skip, c_out, c_in, c_noise = sd2 / norm ** 2, s * self.sigma_data / norm, 1 / norm, s.log() / 4
        return c_skip * x + c_out * torch.tanh((c_in * x) @ self.w + c_noise * self.b)


def _initial(batch: int, dtype: torch.dtype, sigma_max: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *SHAPE, generator=g, dtype=torch.float64).to(dtype) * sigma_max


class ReplayNoise:
    """A noise sampler returning pre-drawn noise in call order (the same for two samplers given fresh copies)."""

    def __init__(self, noises):
        self.noises, self.calls = noises, 0

    def __call__(self, sigma, sigma_next):
        out = self.noises[self.calls]
        self.calls += 1
        return out


# ---------------------------------------------------------------------------------------------- schedule and NFE

@pytest.mark.parametrize("n", [1, 2, 10, 25])
def test_karras_schedule_matches_closed_form(n):
    smin, smax, rho = 0.01, 80.0, 7.0
    sig = get_sigmas_karras(n, smin, smax, rho, dtype=torch.float64)
    assert sig.shape == (n + 1,) and sig[-1] == 0 and sig.dtype == torch.float64
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        expected = (smax ** (1 / rho) + t * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        assert math.isclose(float(sig[i]), expected, rel_tol=1e-12)
    assert math.isclose(float(sig[0]), smax, rel_tol=1e-12)
    if n > 1:
        assert math.isclose(float(sig[n - 1]), smin, rel_tol=1e-12)
    assert torch.all(sig[1:] < sig[:-1])
    assert get_sigmas_karras(n).dtype == torch.float32  # default dtype


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_network_evaluations_match_model_calls(name, steps):
    model, seen = ToyDenoiser(), []
    sigmas = get_sigmas_karras(steps, dtype=torch.float64)
    x = _initial(2, torch.float64, float(sigmas[0]))
    sample(name, model, x, sigmas, callback=lambda info: seen.append(info["i"]))
    assert model.calls == network_evaluations(name, steps)
    assert seen == list(range(steps))


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="valid names: dpmpp_2m, dpmpp_2m_sde, euler, heun"):
        sample("ddim", ToyDenoiser(), _initial(1, torch.float64, 80.0), get_sigmas_karras(3))
    with pytest.raises(ValueError, match="unknown sampler"):
        network_evaluations("ddim", 10)
    assert set(SAMPLERS) == set(NAMES)


def test_deterministic_samplers_ignore_noise_sampler():
    sigmas = get_sigmas_karras(5, dtype=torch.float64)
    x = _initial(2, torch.float64, 80.0)

    def boom(*_):
        raise AssertionError("must not be called")

    for name in ["euler", "heun", "dpmpp_2m"]:
        torch.testing.assert_close(sample(name, ToyDenoiser(), x, sigmas, noise_sampler=boom),
                                   SAMPLERS[name](ToyDenoiser(), x, sigmas), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ equality with k-diffusion

@pytest.fixture(scope="module")
def kd():
    from k_diffusion import sampling  # the test extra has it: a missing reference fails, never skips

    return sampling


def test_karras_schedule_matches_k_diffusion(kd):
    for n in [1, 10, 25, 50]:
        ours, theirs = get_sigmas_karras(n, 0.01, 80.0, 7.0), kd.get_sigmas_karras(n, 0.01, 80.0, 7.0)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("name,solver", [("euler", None), ("heun", None), ("dpmpp_2m", None),
                                         ("dpmpp_2m_sde", "midpoint"), ("dpmpp_2m_sde", "heun")])
def test_equal_to_k_diffusion(kd, name, solver, steps, dtype):
    sigmas = get_sigmas_karras(steps, 0.01, 80.0, 7.0, dtype=dtype)
    x = _initial(3, dtype, float(sigmas[0]))
    ours_model, their_model = ToyDenoiser(dtype=dtype), ToyDenoiser(dtype=dtype)
    if name == "dpmpp_2m_sde":
        g = torch.Generator().manual_seed(2)
        noises = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(steps)]
        ours_noise, their_noise = ReplayNoise(noises), ReplayNoise(noises)
        ours = sample(name, ours_model, x, sigmas, noise_sampler=ours_noise, solver_type=solver)
        theirs = kd.sample_dpmpp_2m_sde(their_model, x, sigmas, noise_sampler=their_noise, solver_type=solver,
                                        disable=True)
        assert ours_noise.calls == their_noise.calls == steps - 1
    else:
        ours = sample(name, ours_model, x, sigmas)
        theirs = getattr(kd, f"sample_{name}")(their_model, x, sigmas, disable=True)
    assert ours.dtype == theirs.dtype == dtype
    assert ours_model.calls == their_model.calls == network_evaluations(name, steps)
    assert (ours - theirs).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------------------------- per-sample noise

def test_randn_per_sample_is_batch_independent():
    seeds = [3, 1, 4, 1_000_003]
    batch = randn_per_sample(SHAPE, per_sample_generators(seeds), "cpu", torch.float32)
    assert batch.shape == (4, *SHAPE)
    for i, seed in enumerate(seeds):
        alone = randn_per_sample(SHAPE, per_sample_generators([seed]), "cpu", torch.float32)
        assert torch.equal(batch[i], alone[0])
    assert not torch.equal(batch[0], batch[1])
    f64 = randn_per_sample(SHAPE, per_sample_generators(seeds), "cpu", torch.float64)
    assert f64.dtype == torch.float64 and torch.equal(f64.float(), batch)  # same values for every dtype
    with pytest.raises(ValueError):
        per_sample_generators([-1])


def _sample_seeded(name: str, seeds: list[int], steps: int = 8) -> torch.Tensor:
    dtype = torch.float64
    sigmas = get_sigmas_karras(steps, dtype=dtype)
    init_gens, noise_gens = per_sample_generators(seeds), per_sample_generators([s + 10_000 for s in seeds])
    x = randn_per_sample(SHAPE, init_gens, "cpu", dtype) * sigmas[0]
    noise = PerSampleNoiseSampler(noise_gens, SHAPE, "cpu", dtype)
    return sample(name, ToyDenoiser(dtype=dtype), x, sigmas, noise_sampler=noise)


@pytest.mark.parametrize("name", NAMES)
def test_output_does_not_depend_on_batch(name):
    seeds = [7, 8, 9, 10]
    batch = _sample_seeded(name, seeds)
    for i, seed in enumerate(seeds):
        torch.testing.assert_close(batch[i], _sample_seeded(name, [seed])[0], rtol=0, atol=1e-12)
    assert (batch[0] - batch[1]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------- convergence

SIGMA_DATA = 0.5


def _gaussian_std(name: str, steps: int, n: int = 20_000) -> float:
    """Std of `n` scalar samples drawn with the exact denoiser of data ~ N(0, SIGMA_DATA^2)."""
    def exact(x, sigma):
        return x * SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2)

    sigmas = get_sigmas_karras(steps, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    x = x / x.std() * sigmas[0]  # exact initial std: deterministic samplers then carry no sampling error
    out = sample(name, exact, x, sigmas, noise_sampler=lambda *_: torch.randn(n, generator=g, dtype=torch.float64))
    assert abs(out.mean().item()) <= 0.03
    return out.std().item()


@pytest.mark.parametrize("name", NAMES)
def test_gaussian_data_recovers_its_std(name):
    # Euler is first order: with 50 Karras steps its std is 5.3% low (exactly what its discrete map predicts, see
    # below), so it gets 100 steps (2.6% low); the second-order samplers are within 0.6% at 50, the SDE 1.6%.
    steps = 100 if name == "euler" else 50
    assert abs(_gaussian_std(name, steps) - SIGMA_DATA) <= 0.03 * SIGMA_DATA


def test_euler_bias_is_its_discrete_map_and_orders_are_right():
    sigmas = get_sigmas_karras(50, dtype=torch.float64).tolist()
    gain = sigmas[0]  # Euler on this linear ODE multiplies x by prod(1 + (s' - s) s / (s^2 + sd^2))
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        gain *= 1 + (s_next - s) * s / (s ** 2 + SIGMA_DATA ** 2)
    assert math.isclose(_gaussian_std("euler", 50), gain, rel_tol=1e-9)
    err = {name: [abs(_gaussian_std(name, k) / SIGMA_DATA - 1) for k in (50, 100)] for name in NAMES[:3]}
    assert 1.6 < err["euler"][0] / err["euler"][1] < 2.4  # halving the step halves a first-order error
    for name in ("heun", "dpmpp_2m"):
        assert err[name][0] / err[name][1] > 3.2  # and quarters a second-order one
