"""What a training run reports: stdout lines, metrics.jsonl (one JSON row per log line; rows with "kind":
"validation" / "samples" come from watch.py, training rows have no kind), wandb (offline by default; grouped by run
name, so evaluations of the run join it), loss.png (training and validation curves, rewritten at every validation).

Throughput: samples/s, the share of wall time spent waiting for data, peak memory, and on GPU an estimated MFU
(model FLOPs per step, counted once with torch's FlopCounterMode, over the GPU's dense peak).
"""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch

from .. import atomic, dist

METRICS_JSONL = "metrics.jsonl"

# dense bf16/fp16 tensor-core peaks (FLOP/s) for the MFU estimate
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "V100": 125e12,
              "L4": 121e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def count_flops(fn) -> int:
    """FLOPs of one call of fn (forward + backward if fn does both)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


class RunLog:
    """Rank 0 writes; other ranks only keep time."""

    def __init__(self, run_dir: Path, cfg, wandb_id: str, resumed: bool) -> None:
        self.run_dir, self.main = run_dir, dist.is_main()
        self.wandb = None
        if self.main and cfg.train.wandb.value != "disabled":
            import wandb
            from omegaconf import OmegaConf

            os.environ.setdefault("WANDB_SILENT", "true")
            # our own wandb service, never one inherited from the launching process: a run killed with -9 stays
            # registered there, and its restart (same run id) would be refused as "in use"
            os.environ.pop("WANDB_SERVICE", None)
            self.wandb = wandb.init(project=cfg.train.wandb_project, name=cfg.name, id=wandb_id, resume="allow",
                                    mode=cfg.train.wandb.value, dir=str(run_dir), group=cfg.name, job_type="train",
                                    config=OmegaConf.to_container(cfg, resolve=True))
        self.window_start, self.data_wait, self.samples = time.perf_counter(), 0.0, 0

    def exclude(self, secs: float) -> None:
        """Time spent outside training steps (watching): left out of the current throughput window."""
        self.window_start += secs

    def waited(self, secs: float, samples: int) -> None:
        self.data_wait += secs
        self.samples += samples

    def log(self, step: int, metrics: dict, flops_per_step: float | None, steps_in_window: int) -> dict:
        now = time.perf_counter()
        secs = max(now - self.window_start, 1e-9)
        row = {"step": step, **{k: float(v) for k, v in metrics.items()},
               "samples_per_s": self.samples * dist.world_size() / secs,
               "data_wait_pct": 100 * self.data_wait / secs, "peak_mem_gb": peak_memory_gb()}
        peak = peak_flops()
        if flops_per_step and peak:
            row["mfu_pct"] = 100 * flops_per_step * steps_in_window / secs / peak
        self.window_start, self.data_wait, self.samples = now, 0.0, 0
        if self.main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.wandb is not None:
                self.wandb.log(row, step=step)
            parts = [f"step {step}", f"loss {row['loss']:.4f}", f"denoise {row['denoise']:.4f}",
                     f"prior {row['prior_total']:.4f}", f"lr {row['lr']:.2e}", f"{row['samples_per_s']:.1f} samples/s",
                     f"data wait {row['data_wait_pct']:.0f}%", f"mem {row['peak_mem_gb']:.2f} GB"]
            if "mfu_pct" in row:
                parts.append(f"MFU {row['mfu_pct']:.1f}%")
            print(" | ".join(parts), flush=True)
        return row

    def event(self, kind: str, row: dict, images: dict | None = None, videos: dict | None = None) -> None:
        """Rank 0: one validation / samples row -> metrics.jsonl (with its kind) and wandb (pictures and videos
        by path)."""
        with open(self.run_dir / METRICS_JSONL, "a") as f:
            f.write(json.dumps({"kind": kind, **row}) + "\n")
        if self.wandb is not None:
            import wandb

            media = {k: wandb.Image(str(p)) for k, p in (images or {}).items()}
            media.update({k: wandb.Video(str(p), format="mp4") for k, p in (videos or {}).items()})
            self.wandb.log({k: v for k, v in row.items() if k != "step"} | media, step=row["step"])

    def plot(self) -> None:
        plot_loss_curve(self.run_dir / METRICS_JSONL, self.run_dir / "loss.png")

    def finish(self) -> None:
        if not self.main:
            return
        self.plot()
        if self.wandb is not None:
            self.wandb.finish()


def read_rows(path: Path, kind: str = "train") -> list[dict]:
    """The rows of one kind of a run's metrics.jsonl: "train" (the log lines), "validation" or "samples"."""
    if not Path(path).is_file():
        return []
    rows = (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())
    by_step = {}  # a run resumed from an earlier checkpoint logs its steps again: the later row wins
    for r in rows:
        if r.get("kind", "train") == kind:
            by_step.pop(r["step"], None)
            by_step[r["step"]] = r
    return sorted(by_step.values(), key=lambda r: r["step"])


def plot_loss_curve(metrics: Path, out: Path) -> None:
    """Training loss terms and, when there are any, the validation loss (raw and EMA weights), written atomically."""
    rows, val = read_rows(metrics), read_rows(metrics, "validation")
    if not rows and not val:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "denoise", "prior_total"):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=f"train {key}", lw=1)
    for key, style in (("val/loss", dict(color="k", marker="o", ms=3)),
                       ("val/loss_ema", dict(color="C3", marker="s", ms=3))):
        if val:
            ax.plot([r["step"] for r in val], [r[key] for r in val], label=key.replace("val/", "validation "),
                    **style)
    ax.set_xlabel("optimiser step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic.save_figure(fig, out, dpi=100)
    plt.close(fig)
