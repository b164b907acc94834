"""Honest baselines and the ground-truth reference, scored on the same ground truth as the model.

- `mean`: the mean listener frame of the baseline split, held still for the whole clip (what a model that learned
  nothing but the average face would produce);
- `random`: K real listener reactions drawn from the baseline split -- *another* split than the evaluated one:
  drawing from the evaluated pool leaks appropriate reactions into the baseline (on REACT ~20% of such draws are
  exact appropriate reactions), so it is refused;
- `mime`: the listener copies the speaker;
- `ground truth`: K copies of the true listener -- the metrics' ceiling / floor, a reference, not a baseline to beat.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .ground_truth import GroundTruth, load_ground_truth

DESCRIPTIONS = {
    "baseline: mean": "the baseline split's mean listener frame, held still",
    "baseline: random": "K real listener reactions drawn from the baseline split (never the evaluated one)",
    "baseline: mime": "the listener copies the speaker",
    "reference: ground truth": "K copies of the true listener: the metrics' ceiling/floor, not a baseline",
}


def default_baseline_shards(shards: Path) -> Path | None:
    """The sibling `train` folder of the evaluated shards, when it exists and is another folder."""
    candidate = Path(shards).resolve().parent / "train"
    if (candidate / "index.json").is_file() and candidate != Path(shards).resolve():
        return candidate
    return None


def resolve_baseline_shards(shards: Path, baseline_shards: Path | None) -> Path:
    """The baseline split to draw from: given, or the default; never the evaluated folder itself."""
    chosen = Path(baseline_shards) if baseline_shards is not None else default_baseline_shards(shards)
    if chosen is None:
        raise ValueError(f"the baselines need real listeners from another split than {shards}: there is no sibling "
                         f"`train` shard folder; pass --baseline-shards DIR (e.g. the training shards), or "
                         f"--no-baselines")
    if not (chosen / "index.json").is_file():
        raise FileNotFoundError(f"--baseline-shards {chosen}: no index.json (expected a make_shards output folder)")
    if chosen.resolve() == Path(shards).resolve():
        raise ValueError(f"--baseline-shards {chosen} is the evaluated split: its listeners are the appropriate "
                         f"reactions themselves; give another split (e.g. the training shards)")
    return chosen


def listener_pool(baseline_shards: Path, frames: int) -> np.ndarray:
    """(M, frames, 58): every listener of every role sample of the baseline split (both directions)."""
    return load_ground_truth(baseline_shards, frames=frames, need_neighbours=False).listener_fv


def baselines(gt: GroundTruth, k: int, pool: np.ndarray | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Each entry (N, K, T, 58), in the order of DESCRIPTIONS; without a pool only mime and the reference."""
    n, t = gt.rows, gt.listener_fv.shape[1]
    out = {}
    if pool is not None:
        if pool.shape[1] < t:
            raise ValueError(f"the baseline clips have {pool.shape[1]} frames; the evaluated ones {t}")
        pool = pool[:, :t]
        mean = pool.reshape(-1, pool.shape[-1]).mean(0, dtype=np.float64).astype(np.float32)
        out["baseline: mean"] = np.broadcast_to(mean, (n, k, t, mean.shape[0])).copy()
        rng = np.random.default_rng(seed)
        draws = np.stack([rng.choice(len(pool), size=k, replace=k > len(pool)) for _ in range(n)])
        out["baseline: random"] = pool[draws]
    out["baseline: mime"] = np.repeat(gt.speaker_fv[:, None], k, axis=1)
    out["reference: ground truth"] = np.repeat(gt.listener_fv[:, None], k, axis=1)
    return out
