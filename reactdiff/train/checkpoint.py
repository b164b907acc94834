"""Checkpoints that count only when complete, and resume from the latest complete one.

    <run>/checkpoints/step00000100/      DeepSpeed's files (model, ZeRO optimiser shards, lr scheduler, client state)
        rank00000.pt ...                 per rank: RNG states, the trainer's noise generator, the data position
        ema.safetensors                  the fp32 EMA weights (rank 0)
        COMPLETE                         written last, by rank 0, after every rank has finished
    <run>/checkpoints/latest             DeepSpeed's pointer (for zero_to_fp32); resume does not trust it

A save killed half way (even kill -9) leaves a folder without COMPLETE: it is ignored and removed on resume.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import atomic, dist

MARKER, EMA_FILE = "COMPLETE", "ema.safetensors"
_TAG = re.compile(r"^step(\d{8})$")


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def complete_tags(folder: Path) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not folder.is_dir():
        return []
    tags = [p.name for p in folder.iterdir() if _TAG.match(p.name) and (p / MARKER).is_file()]
    return sorted(tags)


def incomplete_tags(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _TAG.match(p.name) and not (p / MARKER).is_file())


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine, folder: Path, step: int, client: dict, rank_state: dict, ema_state: dict | None, keep: int) -> Path:
    """Every rank calls this at the same step."""
    tag = tag_for(step)
    path = folder / tag
    engine.save_checkpoint(str(folder), tag=tag, client_state=client)
    torch.save({**rank_state, "rng": rng_state()}, path / f"rank{dist.rank():05d}.pt")
    dist.barrier()
    if dist.is_main():
        if ema_state is not None:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(path / EMA_FILE))
        atomic.write_text(path / MARKER, f"step {step}\n")
        for old in complete_tags(folder)[:-keep]:
            shutil.rmtree(folder / old, ignore_errors=True)
    dist.barrier()
    return path


def load(engine, folder: Path) -> tuple[dict, dict, dict | None] | None:
    """Load the latest complete checkpoint into `engine`; returns (client state, this rank's state, EMA) or None."""
    if dist.is_main():
        for tag in incomplete_tags(folder):  # debris of an interrupted save
            shutil.rmtree(folder / tag, ignore_errors=True)
    dist.barrier()
    tags = complete_tags(folder)
    if not tags:
        return None
    tag = tags[-1]
    _, client = engine.load_checkpoint(str(folder), tag=tag, load_optimizer_states=True,
                                       load_lr_scheduler_states=True)
    rank_file = folder / tag / f"rank{dist.rank():05d}.pt"
    if not rank_file.is_file():
        raise FileNotFoundError(f"{rank_file} missing: checkpoint {tag} was written by a different world size "
                                f"({dist.world_size()} ranks now)")
    rank_state = torch.load(rank_file, weights_only=False)
    set_rng_state(rank_state.pop("rng"))
    ema = load_file(str(folder / tag / EMA_FILE)) if (folder / tag / EMA_FILE).is_file() else None
    return client, rank_state, ema
