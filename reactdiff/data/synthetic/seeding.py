"""Deterministic random streams keyed by the global seed and stable names (never Python's salted hash())."""
from __future__ import annotations

import zlib

import numpy as np


def stable_hash(name: str) -> int:
    """A 32-bit hash of `name` that is the same in every process and Python version."""
    return zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on `seed` and the names, e.g. rng_for(0, "clip", "train/NoXI/010/1")."""
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng([int(seed), *(stable_hash(n) for n in names)])
