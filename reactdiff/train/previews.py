"""Samples while training: K reactions to a few fixed validation clips with the EMA weights, scored and drawn.

    clips = PreviewClips.from_shards(cfg, val_shards)
    result = clips.sample(eval_model, cfg, rank, world_size)      # every rank: its clips; all ranks get all
    doc = clips.score(result)                                     # FRCorr, FRDist, motion statistics (rank 0)

The reactions are made exactly as `reactdiff sample` makes them (same seeds per (clip, role, k), same settings
but `train.sample_k` / `train.sample_steps`), so a run's last preview equals sampling its export.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from .. import atomic, dist
from ..data import frame_layout as fv
from ..data.frame_layout import FPS
from ..data.reader import BatchStream
from ..eval.ground_truth import load_ground_truth
from ..eval.metrics import fr_corr, fr_dist
from ..eval.motion import COUPLINGS, group_stats
from ..sampling.online import generate, window_settings
from ..sampling.writer import write_reaction


@dataclasses.dataclass
class PreviewClips:
    batch: dict  # the clips' eval items (CPU), n of them
    # the ground truth, for scoring and plotting (rank 0's work: None elsewhere)
    listeners: np.ndarray | None  # (M, T, 58) raw: every true listener of the shards (neighbour columns)
    neighbours: np.ndarray | None  # (n, M) the clips' appropriate listeners (identity without a neighbour matrix)
    speakers: np.ndarray | None  # (n, T, 58) raw: the clips' speakers
    shards: Path

    @property
    def rows(self) -> list[int]:
        return self.batch["matrix_row"].tolist()

    @classmethod
    def from_shards(cls, cfg, shards: Path, clips: int, truth: bool = True) -> "PreviewClips":
        """truth=False: without the ground truth (ranks that only generate)."""
        d = cfg.data  # normalised with the training statistics, which the model was built with
        stats = {"mean_face": d.mean_face or str(Path(d.shards) / "mean_face.npy"),
                 "std_face": d.std_face or str(Path(d.shards) / "std_face.npy")}
        data = OmegaConf.merge(d, {"shards": str(shards), "num_workers": 0, "batch_size": clips, **stats})
        batch = next(iter(BatchStream(data, train=False)))  # eval order: the first clips of the shards
        if not truth:
            return cls(batch, None, None, None, Path(shards))
        gt = load_ground_truth(shards, frames=cfg.data.eval_frames, need_neighbours=False)
        rows = batch["matrix_row"].tolist()
        return cls(batch, gt.listener_fv, gt.neighbours[rows], gt.speaker_fv[rows], Path(shards))

    @torch.no_grad()
    def sample(self, model, cfg, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """(n, K, T, 58) raw reactions, on every rank; rank r generates clips r, r + R, ..."""
        s, d, t = cfg.sample, cfg.data, cfg.train
        device = next(model.parameters()).device
        mine = list(range(rank, len(self.rows), world_size))
        part = {}
        for lo in range(0, len(mine), s.batch_size):
            idx = mine[lo:lo + s.batch_size]
            sub = {k: (v[idx].to(device) if isinstance(v, torch.Tensor) else [v[i] for i in idx])
                   for k, v in self.batch.items()}
            y = generate(model, sub, k=t.sample_k, history=d.history, window=s.window, overlap=s.overlap,
                         seed=s.seed, frames=d.eval_frames, **window_settings(s, steps=t.sample_steps))
            face = model.stats.denormalise(y[..., :fv.FV_DIM]).cpu().numpy()
            part.update({i: face[j] for j, i in enumerate(idx)})
        merged = {}
        for got in dist.all_gather_objects(part):
            merged.update(got)
        return np.stack([merged[i] for i in range(len(self.rows))])

    def score(self, reactions: np.ndarray) -> dict:
        """FRCorr / FRDist (react2024, the clips' appropriate listeners) and jitter / variance ratios per group."""
        true = self.listeners[self.rows]
        out = {"FRCorr": fr_corr(reactions, self.listeners, self.neighbours, device="cpu"),
               "FRDist": fr_dist(reactions, self.listeners, self.neighbours, device="cpu")}
        for group, stats in group_stats(reactions, true, FPS).items():
            out[f"jitter_ratio/{group}"] = stats["jitter_ratio"]
            out[f"variance_ratio/{group}"] = stats["variance_ratio"]
        return out


def plot_curves(batch: dict, speakers: np.ndarray, listeners: np.ndarray, reactions: np.ndarray, path: Path,
                step: int) -> None:
    """One row per channel pair of the quality list, one column per clip: the speaker's channel (grey, right axis),
    the K reactions' listener channel (colours) and the true listener's (black)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys((a, b) for a, b in COUPLINGS if not a.ops and not b.ops))  # the value channels
    n = len(reactions)
    fig, axes = plt.subplots(len(pairs), n, figsize=(5.5 * n, 1.9 * len(pairs)), squeeze=False, sharex=True)
    t = np.arange(reactions.shape[2]) / FPS
    for c in range(n):
        axes[0][c].set_title(f"{batch['key'][c]} {batch['role'][c]} (step {step})", fontsize=8)
        for r, (spk, lis) in enumerate(pairs):
            ax = axes[r][c]
            for k, reaction in enumerate(reactions[c]):
                ax.plot(t, lis(reaction), lw=0.8, alpha=0.8, color=f"C{k % 10}")
            ax.plot(t, lis(listeners[c]), color="k", lw=1.4, label="true listener")
            twin = ax.twinx()
            twin.plot(t, spk(speakers[c]), color="0.6", lw=0.8, ls="--")
            twin.tick_params(labelsize=6)
            ax.set_ylabel(f"listener {lis.label}\n(speaker {spk.label} grey)", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[-1][0].set_xlabel("seconds", fontsize=7)
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


def write_preview(out: Path, clips: PreviewClips, reactions: np.ndarray, scores: dict, step: int) -> None:
    """One preview, by rank 0: reactions/<row>.npy (K, T, 58) raw as in a sample folder, metrics.json, curves.png."""
    for row, r in zip(clips.rows, reactions):
        write_reaction(out, row, r)
    atomic.write_json(out / "metrics.json", {"step": step, "rows": clips.rows, "keys": clips.batch["key"],
                                            "roles": clips.batch["role"], **scores})
    plot_curves(clips.batch, clips.speakers, clips.listeners[clips.rows], reactions, out / "curves.png", step)

