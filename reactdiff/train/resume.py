"""What a rerun of a run folder may change, decided before the engine exists.

    plan = plan_resume(cfg, run_dir, world_size)   # None: nothing to resume (fresh start)

Free to change: the number of ranks and the ZeRO stage (the checkpoint is re-partitioned through DeepSpeed's
universal checkpoint where its layout differs), `train.steps`, logging, checkpoint cadence, validation and sample
settings, workers and paths. The global batch is kept (grad_accum = global / (micro-batch x ranks)); where it does
not divide, or where the resolved config differs in what is trained (model, data, optimiser, schedule, seed), the
rerun is refused, naming the keys, unless `train.allow_config_change=true`. Every start appends a row to
`<run>/starts.jsonl` (step, layout, changed keys) so the run says what took effect when.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

from omegaconf import OmegaConf

from .. import atomic, config, recorded
from . import checkpoint

# keys a rerun may change: they do not change what the network is trained on (or only the run's length)
FREE_KEYS = ("name", "data.num_workers", "data.shards", "data.val_shards", "data.mean_face", "data.std_face",
             "sample.", "train.out", "train.steps", "train.log_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.wandb", "train.wandb_project", "train.resume", "train.compile",
             "train.sync_every", "train.val_", "train.sample_", "train.render_", "train.zero_stage",
             "train.allow_config_change")
STARTS = "starts.jsonl"


def _free(key: str) -> bool:
    return any(key == k or (k.endswith((".", "_")) and key.startswith(k)) for k in FREE_KEYS)


def flat(cfg) -> dict:
    """A resolved config as {dotted.key: value}."""
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return out


def config_changes(old, new) -> dict[str, list]:
    """{key: [recorded, now]} for every key whose value differs."""
    return {k: list(v) for k, v in recorded.changes(flat(old), flat(new)).items()}


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    tag: str  # the checkpoint to continue from
    layout: dict  # how it was trained: world_size, zero_stage, train_batch_size, ...
    grad_accum: int  # micro-batches per step now
    universal: bool  # re-partition through DeepSpeed's universal checkpoint
    same_ranks: bool  # rank r's own state (RNG, noise generator) can be restored
    changes: dict  # config keys that differ from the recorded config


def plan_resume(cfg, run_dir: Path, world_size: int, tag: str | None) -> ResumePlan | None:
    """How to continue the run in `run_dir` from checkpoint `tag` (checkpoint.latest_usable; None: start afresh)
    with `cfg` on `world_size` ranks; raises ConfigError where it cannot."""
    t = cfg.train
    if not t.resume or tag is None:
        return None
    changes = {}
    if (run_dir / "config.yaml").is_file():
        changes = config_changes(config.load(run_dir / "config.yaml", saved=True), cfg)
    trained = {k: v for k, v in changes.items() if not _free(k)}
    if trained and not t.allow_config_change:
        lines = recorded.describe(trained, "  " + recorded.ARROW, sep="\n")
        raise config.ConfigError(
            f"{run_dir}: this rerun changes what is trained from checkpoint {tag}:\n{lines}\nRun it under another "
            f"name (name=...), restore those values, or set train.allow_config_change=true to continue with them "
            f"(recorded in {run_dir / STARTS} with the step they took effect)")
    layout = checkpoint.read_layout(run_dir / "checkpoints" / tag)
    micro, old_global = cfg.data.batch_size, layout["train_batch_size"]
    grad_accum = t.grad_accum
    if "train.grad_accum" not in changes and "data.batch_size" not in changes:
        grad_accum, rest = divmod(old_global, micro * world_size)
        if rest or grad_accum == 0:
            fits = [n for n in range(1, old_global // micro + 1) if old_global % (micro * n) == 0]
            new_global = micro * t.grad_accum * world_size
            if not t.allow_config_change:
                raise config.ConfigError(
                    f"{run_dir}: checkpoint {tag} trained with {old_global} windows per step ({layout['world_size']} "
                    f"rank(s) x micro-batch {micro} x grad_accum {layout['grad_accum']}); {world_size} rank(s) cannot "
                    f"make {old_global} ({old_global} / ({micro} x {world_size}) is not whole). Resume on "
                    f"{', '.join(map(str, fits))} rank(s), or set train.allow_config_change=true to continue with "
                    f"{new_global} windows per step (then scale train.lr with the global batch, the linear rule: "
                    f"train.lr={t.lr * new_global / old_global:.3g})")
            grad_accum = t.grad_accum
    universal = _needs_universal(run_dir, tag, layout, t.zero_stage, world_size)
    return ResumePlan(tag, layout, grad_accum, universal, layout["world_size"] == world_size, changes)


def _needs_universal(run_dir: Path, tag: str, layout: dict, stage: int, world_size: int) -> bool:
    old_stage, old_world = layout["zero_stage"], layout["world_size"]
    if (old_stage, old_world) == (stage, world_size):
        return False
    if not layout["partitioned"] and stage == old_stage:  # ZeRO 0 in fp32: every rank holds everything
        return False
    if layout["partitioned"] and max(old_stage, stage) < 3 and (stage > 0 or old_stage == 0):
        return True  # ZeRO 1/2 (and bf16 ZeRO 0, whose optimiser partitions too)
    if old_stage == stage == 3:
        return True
    command = f"reactdiff train --config {run_dir / 'config.yaml'} train.zero_stage={old_stage}"
    raise config.ConfigError(
        f"{run_dir / 'checkpoints' / tag}: written with ZeRO {old_stage} on {old_world} rank(s); it cannot be "
        f"resumed with ZeRO {stage} (DeepSpeed's universal checkpoint re-partitions ZeRO 1 and 2 into each other and "
        f"ZeRO 3 into ZeRO 3, on any number of ranks; a ZeRO 0 fp32 checkpoint loads on any number of ranks at "
        f"ZeRO 0). Resume with train.zero_stage={old_stage}, on any number of ranks: `{command}`")


def record_start(run_dir: Path, step: int, world_size: int, ds_cfg: dict, plan: ResumePlan | None) -> None:
    """One row per start of the run (rank 0): when, where, the layout, and what changed."""
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "step": step, "host": socket.gethostname(),
           "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID"), "world_size": world_size,
           "zero_stage": ds_cfg["zero_optimization"]["stage"], "grad_accum": ds_cfg["gradient_accumulation_steps"],
           "train_batch_size": ds_cfg["train_batch_size"]}
    if plan is not None:
        row.update({"from": plan.tag, "universal": plan.universal, "changed": plan.changes})
    atomic.append_line(run_dir / STARTS, json.dumps(row))
