"""The DeepSpeed config, generated from ours (one source of truth), optionally overlaid by an expert JSON."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ConfigError


def resolve_precision(requested: str, device_type: str) -> str:
    """`auto`: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU. Half precision on CPU is refused."""
    if device_type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ConfigError(f"train.precision={requested} needs a GPU; this run is on {device_type} (use fp32 or "
                              f"auto)")
        return "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def deepspeed_config(cfg, world_size: int, precision: str, grad_accum: int | None = None,
                     load_universal: bool = False) -> dict:
    """grad_accum: micro-batches per step (default train.grad_accum; a resume on other ranks keeps the global
    batch); load_universal: the checkpoint to load is DeepSpeed's universal form (re-partitioned)."""
    t = cfg.train
    grad_accum = grad_accum or t.grad_accum
    ds = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": cfg.data.batch_size * grad_accum * world_size,
        "gradient_clipping": float(t.grad_clip),
        "zero_optimization": {"stage": int(t.zero_stage)},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,  # our optimiser is torch's AdamW (no compiled DeepSpeed ops needed)
        "steps_per_print": 1 << 30,  # we log ourselves
        "wall_clock_breakdown": False,
    }
    if load_universal:
        ds["checkpoint"] = {"load_universal": True}
    if t.zero_stage == 3:
        ds["zero_optimization"].update({"stage3_gather_16bit_weights_on_model_save": False,
                                        "stage3_param_persistence_threshold": 0})
    if t.deepspeed_json:
        path = Path(t.deepspeed_json)
        if not path.is_file():
            raise ConfigError(f"train.deepspeed_json: {path} not found")
        try:
            ds = _merge(ds, json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"train.deepspeed_json: {path} is not valid JSON: {exc}") from None
    return ds
