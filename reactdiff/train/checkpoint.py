"""Checkpoints that count only when complete, and resume from the latest complete one.

    <run>/checkpoints/step00000100/      DeepSpeed's files (model, ZeRO optimiser shards, lr scheduler, client state)
        rank00000.safetensors/.json ...  per rank: RNG states, the trainer's noise generator (tensors), the data
                                         position (JSON): nothing the trainer reads back is unpickled
        ema.safetensors                  the fp32 EMA weights (rank 0)
        COMPLETE                         written last, by rank 0, after every rank has finished
    <run>/checkpoints/latest             DeepSpeed's pointer (for zero_to_fp32); resume does not trust it

A save killed half way (even kill -9) leaves a folder without COMPLETE: it is ignored and removed on resume.
"""
from __future__ import annotations

import json
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


def _rng_tensors_and_facts() -> tuple[dict, dict]:
    """Every RNG's state as tensors (safetensors) and JSON facts: Python's, numpy's, torch's (and CUDA's)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.python": torch.tensor(words, dtype=torch.int64), "rng.numpy": torch.from_numpy(
        np.asarray(keys, np.int64)), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    facts = {"python": [version, gauss], "numpy": [name, int(pos), int(has_gauss), float(cached)]}
    return tensors, facts


def _set_rng(tensors: dict, facts: dict) -> None:
    version, gauss = facts["python"]
    random.setstate((version, tuple(int(w) for w in tensors["rng.python"].tolist()), gauss))
    name, pos, has_gauss, cached = facts["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def save_rank_state(path: Path, rank: int, state: dict) -> None:
    """This rank's state: tensors (e.g. a generator's state) -> rank<r>.safetensors, the rest (JSON-serialisable,
    e.g. the data position) -> rank<r>.json, with every RNG's state."""
    rng, facts = _rng_tensors_and_facts()
    tensors = {**rng, **{f"state.{k}": v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}}
    save_file(tensors, str(path / f"rank{rank:05d}.safetensors"))
    atomic.write_json(path / f"rank{rank:05d}.json", {"rng": facts, "state": {
        k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}})


def load_rank_state(path: Path, rank: int, world_size: int) -> dict:
    """The state save_rank_state wrote (restoring every RNG). A rank file that would need unpickling is refused."""
    tensors_file, json_file = path / f"rank{rank:05d}.safetensors", path / f"rank{rank:05d}.json"
    if not tensors_file.is_file() or not json_file.is_file():
        if (path / f"rank{rank:05d}.pt").is_file():
            raise ValueError(f"{path / f'rank{rank:05d}.pt'}: a rank state in the old pickled format; it is not "
                             f"unpickled (a pickle can run code). Continue from that checkpoint's weights instead: "
                             f"`reactdiff export --run {path.parent.parent} --step {int(path.name[4:])}`, or start "
                             f"the run again")
        raise FileNotFoundError(f"{tensors_file} missing: checkpoint {path.name} was written by a different world "
                                f"size ({world_size} ranks now)")
    tensors = load_file(str(tensors_file))
    doc = json.loads(json_file.read_text())
    _set_rng(tensors, doc["rng"])
    return {**doc["state"], **{k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}}


def save(engine, folder: Path, step: int, client: dict, rank_state: dict, ema_state: dict | None, keep: int) -> Path:
    """Every rank calls this at the same step."""
    tag = tag_for(step)
    path = folder / tag
    engine.save_checkpoint(str(folder), tag=tag, client_state=client)
    save_rank_state(path, dist.rank(), rank_state)
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
    rank_state = load_rank_state(folder / tag, dist.rank(), dist.world_size())
    ema = load_file(str(folder / tag / EMA_FILE)) if (folder / tag / EMA_FILE).is_file() else None
    return client, rank_state, ema
