"""Checkpoints that count only when complete, and resume from the latest complete one.

    <run>/checkpoints/step00000100/      DeepSpeed's files (model, ZeRO optimiser shards, lr scheduler, client state)
        rank00000.safetensors/.json ...  per rank: RNG states, the trainer's noise generator (tensors), the data
                                         position (JSON): nothing the trainer reads back is unpickled
        ema.safetensors                  the fp32 EMA weights (rank 0)
        layout.json                      how it was trained: ranks, ZeRO stage, global batch (rank 0)
        COMPLETE                         written last, by rank 0, after every rank has finished: every file's
                                         size and sha256
    <run>/checkpoints/latest             DeepSpeed's pointer (for zero_to_fp32); resume does not trust it

A save killed half way (even kill -9) leaves a folder without COMPLETE: it is ignored and removed on resume. A
complete checkpoint whose files no longer match COMPLETE (truncated, overwritten) is set aside as
`<tag>.corrupt-<time>` with a warning and the previous one is used: never step 0 silently. A checkpoint written on
another number of ranks or ZeRO stage is re-partitioned through DeepSpeed's universal checkpoint
(`ds_to_universal`, into `<run>/checkpoints/universal/<tag>`, removed once loaded). DeepSpeed's own files
(`*_model_states.pt`, `*_optim_states.pt`) are read by DeepSpeed's loader, which unpickles them
(torch.load(weights_only=False)): they are trusted only because this run wrote them.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import atomic, dist
from ..digest import sha256_file

MARKER, EMA_FILE, LAYOUT = "COMPLETE", "ema.safetensors", "layout.json"
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


def load_rank_state(path: Path, rank: int, world_size: int, restore_rng: bool = True) -> dict:
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
    if restore_rng:
        _set_rng(tensors, doc["rng"])
    return {**doc["state"], **{k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}}


def manifest(path: Path) -> dict:
    """{relative path: [bytes, sha256]} of every file of a checkpoint folder but COMPLETE."""
    return {str(f.relative_to(path)): [f.stat().st_size, sha256_file(f)]
            for f in sorted(path.rglob("*")) if f.is_file() and f.name != MARKER}


def verify(path: Path) -> str | None:
    """What is wrong with a complete checkpoint's files (None: they match COMPLETE). Checkpoints written before
    COMPLETE held a manifest cannot be checked and pass."""
    try:
        doc = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None  # the older "step N" marker
    for name, (size, digest) in doc.get("files", {}).items():
        f = path / name
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != size:
            return f"{f} has {f.stat().st_size} bytes, COMPLETE says {size}"
        if sha256_file(f) != digest:
            return f"{f} does not match its sha256 in COMPLETE"
    return None


def latest_usable(folder: Path) -> str | None:
    """The newest complete checkpoint whose files verify; newer broken ones are set aside with a warning."""
    for tag in reversed(complete_tags(folder)):
        problem = verify(folder / tag)
        if problem is None:
            return tag
        aside = folder / f"{tag}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        (folder / tag).rename(aside)
        warnings.warn(f"checkpoint {folder / tag} is corrupt ({problem}); set aside as {aside.name}, resuming from "
                      f"the previous complete checkpoint", stacklevel=2)
        print(f"[train] WARNING: checkpoint {tag} is corrupt ({problem}); set aside as {aside.name}", flush=True)
    return None


def read_layout(path: Path) -> dict:
    """How a checkpoint was trained. Older checkpoints: ranks from their rank files, the rest from the run's
    deepspeed.json (written at the start that saved them)."""
    if (path / LAYOUT).is_file():
        return json.loads((path / LAYOUT).read_text())
    ds = json.loads((path.parent.parent / "deepspeed.json").read_text())
    ranks = len(list(path.glob("rank*.safetensors"))) or len(list(path.glob("rank*.pt")))
    return {"world_size": ranks, "zero_stage": ds["zero_optimization"]["stage"],
            "train_batch_size": ds["train_batch_size"], "grad_accum": ds["gradient_accumulation_steps"],
            "partitioned": any(path.glob("*optim_states.pt"))}


def save(engine, folder: Path, step: int, client: dict, rank_state: dict, ema_state: dict | None, keep: int,
         layout: dict) -> Path:
    """Every rank calls this at the same step. layout: world_size, zero_stage, train_batch_size, grad_accum."""
    tag = tag_for(step)
    path = folder / tag
    engine.save_checkpoint(str(folder), tag=tag, client_state=client)
    save_rank_state(path, dist.rank(), rank_state)
    dist.barrier()
    if dist.is_main():
        if ema_state is not None:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(path / EMA_FILE))
        atomic.write_json(path / LAYOUT, {**layout, "partitioned": any(path.glob("*optim_states.pt"))})
        atomic.write_json(path / MARKER, {"step": step, "files": manifest(path)})
        for old in complete_tags(folder)[:-keep]:
            shutil.rmtree(folder / old, ignore_errors=True)
    dist.barrier()
    return path


def to_universal(folder: Path, tag: str) -> Path:
    """DeepSpeed's universal form of checkpoint `tag` (any ranks, ZeRO 1<->2, 3<->3), made once by rank 0."""
    out = folder / "universal" / tag
    if not out.is_dir():
        with atomic.replacing_folder(out) as tmp:
            cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
                   str(folder / tag), "--output_folder", str(tmp), "--inject_missing_state",
                   "--num_extract_workers", "1", "--num_merge_workers", "1"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"re-partitioning checkpoint {folder / tag} failed (`{' '.join(cmd)}`):\n"
                                   f"{res.stdout[-2000:]}{res.stderr[-3000:]}")
    return out


def load(engine, folder: Path, tag: str, universal: bool, same_ranks: bool) -> tuple[dict, dict, dict | None]:
    """Load checkpoint `tag` into `engine` (re-partitioned when `universal`); returns (client state, this rank's
    state, EMA). On another number of ranks the rank state is rank 0's data position only (the same on every
    rank); the caller seeds this rank's generators."""
    if dist.is_main():
        for debris in incomplete_tags(folder):  # debris of an interrupted save
            shutil.rmtree(folder / debris, ignore_errors=True)
        if universal:
            dist.print0(f"[train] re-partitioning checkpoint {tag} for this layout (DeepSpeed universal checkpoint)",
                        flush=True)
            to_universal(folder, tag)
    dist.barrier()
    load_dir = folder / "universal" if universal else folder
    _, client = engine.load_checkpoint(str(load_dir), tag=tag, load_optimizer_states=True,
                                       load_lr_scheduler_states=True)
    if client is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {load_dir / tag}")
    if same_ranks:
        rank_state = load_rank_state(folder / tag, dist.rank(), dist.world_size())
    else:
        rank_state = {"data": load_rank_state(folder / tag, 0, dist.world_size(), restore_rng=False)["data"]}
    ema = load_file(str(folder / tag / EMA_FILE)) if (folder / tag / EMA_FILE).is_file() else None
    dist.barrier()
    if universal and dist.is_main():
        shutil.rmtree(folder / "universal", ignore_errors=True)
    return client, rank_state, ema
