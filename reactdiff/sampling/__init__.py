"""Sampling: Karras sigma schedule, Euler / Heun / DPM-Solver++(2M) / DPM-Solver++(2M) SDE, per-sample seeded noise."""
from .noise import PerSampleNoiseSampler, per_sample_generators, randn_per_sample
from .samplers import (
    SAMPLERS,
    get_sigmas_karras,
    network_evaluations,
    sample,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_euler,
    sample_heun,
)

__all__ = [
    "SAMPLERS",
    "PerSampleNoiseSampler",
    "get_sigmas_karras",
    "network_evaluations",
    "per_sample_generators",
    "randn_per_sample",
    "sample",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_euler",
    "sample_heun",
]
